//! Rate limiting: named limits of `requests` per `per` window, counted per
//! key, locally (`local.rs`, pingora-limits) or across every instance that
//! shares a Redis: exactly, one Redis call per request (`redis.rs`), or
//! counted locally and reconciled every `sync` (`sync.rs`). A route may name several limits; all must
//! pass, and every one of them counts the request.
//!
//! [`decide`] is the pure part: from each limit's count it picks the answer
//! and the limit reported in the headers (the most restrictive: a refusing
//! limit with the longest wait, else the one with the fewest requests left).

pub(crate) mod local;
pub(crate) mod redis;
pub(crate) mod sync;

use crate::config::{LimitBackend, LimitKey, RateLimitConfig};
use std::sync::Arc;
use std::time::Duration;

/// One named limit with its counter.
pub struct Limit {
    pub name: Arc<str>,
    pub config: RateLimitConfig,
    counter: Counter,
    fixed: Fixed,
}

enum Counter {
    Local(local::LocalCounter),
    Redis(redis::RedisCounter),
    Synced(Arc<sync::SyncedCounter>),
}

/// The response fields that depend only on the limit, built once per
/// config (a clone is a reference count, not a formatted string).
#[derive(Debug, Clone, PartialEq)]
struct Fixed {
    /// `X-RateLimit-Limit`.
    limit: http::HeaderValue,
    /// `RateLimit-Policy`: `"name";q=requests;w=window`.
    policy: http::HeaderValue,
}

impl Fixed {
    fn new(name: &str, requests: u64, window_secs: u64) -> Fixed {
        Fixed {
            limit: http::HeaderValue::from(requests),
            policy: field_value(field(name, ("q", requests), ("w", window_secs))),
        }
    }
}

/// A limit's view of one request.
#[derive(Debug, Clone, PartialEq)]
pub struct LimitState {
    pub limit: Arc<str>,
    fixed: Fixed,
    pub requests: u64,
    pub window_secs: u64,
    pub remaining: u64,
    /// Seconds until the window ends (at least 1).
    pub reset_secs: u64,
    pub exceeded: bool,
}

/// The response fields, parsed once.
mod names {
    use http::HeaderName;
    pub(super) const LIMIT: HeaderName = HeaderName::from_static("x-ratelimit-limit");
    pub(super) const REMAINING: HeaderName = HeaderName::from_static("x-ratelimit-remaining");
    pub(super) const RESET: HeaderName = HeaderName::from_static("x-ratelimit-reset");
    pub(super) const POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
    pub(super) const STATE: HeaderName = HeaderName::from_static("ratelimit");
}

/// A `field` string as a header value. Limit names are checked at load
/// (printable ASCII, no `"` or `\\`), so this does not fail; if it did,
/// the field would be empty rather than the request lost.
fn field_value(s: String) -> http::HeaderValue {
    http::HeaderValue::try_from(s).unwrap_or_else(|_| http::HeaderValue::from_static(""))
}

impl LimitState {
    fn new(limit: &Limit, count: u64, reset: Duration) -> LimitState {
        let requests = limit.config.requests;
        LimitState {
            limit: limit.name.clone(),
            fixed: limit.fixed.clone(),
            requests,
            window_secs: limit.config.per.as_secs().max(1),
            remaining: requests.saturating_sub(count),
            reset_secs: reset.as_secs_f64().ceil().max(1.0) as u64,
            exceeded: count > requests,
        }
    }

    /// Adds `X-RateLimit-*`, draft `RateLimit-Policy`/`RateLimit` and, on
    /// a refusal, `Retry-After` to a response (proxied or generated);
    /// numbers become header values directly.
    pub fn add_to(&self, h: &mut http::HeaderMap) {
        use http::HeaderValue;
        h.insert(names::LIMIT, self.fixed.limit.clone());
        h.insert(names::REMAINING, HeaderValue::from(self.remaining));
        h.insert(names::RESET, HeaderValue::from(self.reset_secs));
        h.insert(names::POLICY, self.fixed.policy.clone());
        let state = field(&self.limit, ("r", self.remaining), ("t", self.reset_secs));
        h.insert(names::STATE, field_value(state));
        if self.exceeded {
            h.insert(
                http::header::RETRY_AFTER,
                HeaderValue::from(self.reset_secs),
            );
        }
    }
}

/// One draft `RateLimit` item, `"name";a=1;b=2`, written without `format!`
/// (the formatting machinery was about 1,100 instructions each).
fn field(name: &str, a: (&str, u64), b: (&str, u64)) -> String {
    let mut out = String::with_capacity(name.len() + 48);
    out.push('"');
    out.push_str(name);
    out.push('"');
    for (key, n) in [a, b] {
        out.push(';');
        out.push_str(key);
        out.push('=');
        crate::netfmt::push_u64(&mut out, n);
    }
    out
}

/// What the route's limits decided.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Under every limit; the limit to report in the headers (none when
    /// no limit could be checked).
    Pass(Option<LimitState>),
    /// 429: the refusing limit with the longest wait, and every limit the
    /// request went over (for metrics).
    Exceeded {
        report: LimitState,
        over: Vec<Arc<str>>,
    },
    /// 503: a Redis limit could not be checked and `on_error: deny`; the
    /// limits that could be checked and were over still count.
    Unavailable { over: Vec<Arc<str>> },
}

/// Picks the verdict from the limits that could be checked.
pub(crate) fn decide(states: Vec<LimitState>, unavailable: bool) -> Verdict {
    let over: Vec<Arc<str>> = states
        .iter()
        .filter(|s| s.exceeded)
        .map(|s| s.limit.clone())
        .collect();
    if unavailable {
        return Verdict::Unavailable { over };
    }
    let refusing = states
        .iter()
        .filter(|s| s.exceeded)
        .max_by_key(|s| s.reset_secs)
        .cloned();
    match refusing {
        Some(report) => Verdict::Exceeded { report, over },
        None => Verdict::Pass(states.into_iter().min_by(|a, b| {
            a.remaining
                .cmp(&b.remaining)
                .then(b.reset_secs.cmp(&a.reset_secs))
        })),
    }
}

/// The Redis connection limits of one `redis` section share.
pub use self::redis::RedisStore;

impl Limit {
    pub fn new(name: &str, config: &RateLimitConfig, store: Option<&Arc<RedisStore>>) -> Limit {
        let counter = match (config.backend, store, config.sync) {
            (LimitBackend::Redis, Some(store), Some(_)) => Counter::Synced(Arc::new(
                sync::SyncedCounter::new(store.clone(), name, config.per),
            )),
            (LimitBackend::Redis, Some(store), None) => {
                Counter::Redis(redis::RedisCounter::new(store.clone(), name, config.per))
            }
            _ => Counter::Local(local::LocalCounter::new(config.per)),
        };
        Limit {
            name: Arc::from(name),
            config: config.clone(),
            counter,
            fixed: Fixed::new(name, config.requests, config.per.as_secs().max(1)),
        }
    }

    /// True when this limit can keep counting across a reload to `config`.
    pub fn reusable_for(&self, config: &RateLimitConfig, store: Option<&Arc<RedisStore>>) -> bool {
        self.config == *config
            && match (&self.counter, store) {
                (Counter::Local(_), _) => true,
                (_, Some(s)) => self.redis_store().is_some_and(|c| Arc::ptr_eq(c, s)),
                (_, None) => false,
            }
    }

    pub fn redis_store(&self) -> Option<&Arc<RedisStore>> {
        match &self.counter {
            Counter::Redis(c) => Some(&c.store),
            Counter::Synced(c) => Some(&c.store),
            Counter::Local(_) => None,
        }
    }

    /// With `sync`: starts the reconcile task, which ends with the limit.
    pub fn spawn_sync(&self, spawner: &crate::tasks::Spawner, errors: prometheus::IntCounter) {
        if let (Counter::Synced(c), Some(every)) = (&self.counter, self.config.sync) {
            spawner.spawn(sync::run(Arc::downgrade(c), every, errors));
        }
    }
}

/// Counts one request against every limit of a route. `key_of` appends
/// the value a limit counts by; `false` (none) falls back to `client`.
pub async fn check(
    limits: &[Arc<Limit>],
    key_of: impl Fn(&LimitKey, &mut String) -> bool,
    client: Option<std::net::IpAddr>,
    on_redis_error: impl Fn(&RedisStore, &str),
) -> Verdict {
    let mut states = Vec::with_capacity(limits.len());
    let mut unavailable = false;
    for l in limits {
        // Written into one buffer: `format!` here cost ~500 instructions a
        // request. The client IP only for a limit that falls back to it (an
        // empty address when the peer has none, e.g. a Unix socket).
        let mut key = String::with_capacity(64);
        key.push_str("k:");
        if !key_of(&l.config.key, &mut key) {
            key.clear();
            key.push_str("ip:");
            if let Some(ip) = client {
                crate::netfmt::push_ip(&mut key, ip);
            }
        }
        match &l.counter {
            Counter::Local(c) => {
                let (count, reset) = c.observe(&key);
                states.push(LimitState::new(l, count, reset));
            }
            Counter::Redis(c) => match c.observe(&key).await {
                Ok((count, reset)) => states.push(LimitState::new(l, count, reset)),
                Err(e) => {
                    on_redis_error(&c.store, &e);
                    unavailable |= c.store.deny_on_error();
                }
            },
            // Redis unreachable at the last sync: `allow` keeps the local
            // count, `deny` refuses (the sync task counts the error).
            Counter::Synced(c) => match c.observe(&key) {
                (_, _, false) if c.store.deny_on_error() => unavailable = true,
                (count, reset, _) => states.push(LimitState::new(l, count, reset)),
            },
        }
    }
    decide(states, unavailable)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn st(name: &str, requests: u64, count: u64, reset: u64) -> LimitState {
        LimitState {
            limit: name.into(),
            fixed: Fixed::new(name, requests, 60),
            requests,
            window_secs: 60,
            remaining: requests.saturating_sub(count),
            reset_secs: reset,
            exceeded: count > requests,
        }
    }

    /// The headers `add_to` writes, as (name, value) text.
    fn headers(s: &LimitState) -> Vec<(String, String)> {
        let mut h = http::HeaderMap::new();
        s.add_to(&mut h);
        h.iter()
            .map(|(n, v)| (n.to_string(), v.to_str().unwrap().to_string()))
            .collect()
    }

    fn pass(v: Verdict) -> LimitState {
        match v {
            Verdict::Pass(Some(s)) => s,
            other => panic!("expected a pass with a report, got {other:?}"),
        }
    }

    #[test]
    fn reports_the_most_restrictive() {
        let v = decide(vec![st("a", 100, 10, 30), st("b", 10, 5, 50)], false);
        assert_eq!(pass(v).limit.as_ref(), "b");
        // tie on remaining: the longer wait
        let v = decide(vec![st("a", 10, 5, 30), st("b", 10, 5, 50)], false);
        assert_eq!(pass(v).limit.as_ref(), "b");
    }

    #[test]
    fn refusals_report_the_longest_wait() {
        let v = decide(
            vec![
                st("a", 10, 11, 5),
                st("b", 100, 101, 40),
                st("c", 1000, 1, 59),
            ],
            false,
        );
        let Verdict::Exceeded { report: r, over } = v else {
            panic!("expected a refusal");
        };
        assert_eq!(r.limit.as_ref(), "b");
        assert_eq!(over.len(), 2);
        let h = headers(&r);
        let has = |n: &str, v: &str| h.contains(&(n.to_string(), v.to_string()));
        assert!(has("retry-after", "40"));
        assert!(has("x-ratelimit-remaining", "0"));
        assert!(has("ratelimit", "\"b\";r=0;t=40"));
        assert!(has("ratelimit-policy", "\"b\";q=100;w=60"));
    }

    #[test]
    fn nothing_to_report_without_states() {
        assert_eq!(
            decide(Vec::new(), true),
            Verdict::Unavailable { over: Vec::new() }
        );
        assert_eq!(decide(Vec::new(), false), Verdict::Pass(None));
    }
}
