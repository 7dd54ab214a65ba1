//! Upstream pools: the current target set (static addresses plus what DNS
//! gives), selection, in-flight accounting (`max_inflight`), active and
//! passive health, the retry budget, and the `HttpPeer` of each attempt.
//!
//! A reload reuses the `Arc<Pool>` of every upstream whose config did not
//! change, so its state and background tasks carry over; changed or
//! removed pools are dropped with the last snapshot that uses them, which
//! also ends their tasks. Within a pool, DNS swaps the target set whole:
//! a target that stays keeps its `Arc<Target>` (health, ejection, in-flight
//! count; Pingora's connection pool is keyed by address, so its idle
//! connections stay too), and a removed one lives on in the guards of the
//! requests still in flight to it.

pub(crate) mod budget;
pub(crate) mod discovery;
pub(crate) mod health;
pub(crate) mod passive;
pub(crate) mod target;
pub(crate) mod upgrade;

use crate::config::{TargetAddr, UpstreamConfig};
use crate::observability::metrics::UpstreamMetrics;
use arc_swap::ArcSwap;
use budget::RetryBudget;
use passive::Millis;
use pingora::lb::health_check::HealthCheck;
use pingora::prelude::HttpPeer;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant, SystemTime};
pub(crate) use target::Target;
use target::TargetSet;

/// One target as shown by the admin API.
#[derive(Debug, Clone, PartialEq)]
pub struct TargetStatus {
    pub addr: SocketAddr,
    pub weight: usize,
    pub healthy: bool,
    pub inflight: usize,
    /// Set while passive health keeps the target out of rotation.
    pub ejected_until: Option<SystemTime>,
}

/// Counts one request in flight to a target (and to its pool, for
/// `max_inflight`) until dropped.
pub(crate) struct TargetGuard {
    pool: Arc<Pool>,
    target: Arc<Target>,
}

impl TargetGuard {
    /// The target's address as text, for metric labels.
    pub(crate) fn label(&self) -> &str {
        &self.target.label
    }

    pub(crate) fn addr(&self) -> SocketAddr {
        self.target.addr
    }

    pub(crate) fn pool(&self) -> &Arc<Pool> {
        &self.pool
    }

    /// Passive health: the attempt got an answer below 500.
    pub(crate) fn succeeded(&self) {
        if self.pool.config.passive_health.is_some() {
            self.target.passive.success();
        }
    }

    /// Passive health: a 5xx, a reset, a timeout or a failed connect.
    pub(crate) fn failed(&self) {
        self.pool.failed(&self.target);
    }
}

impl Drop for TargetGuard {
    fn drop(&mut self) {
        self.target.inflight.fetch_sub(1, Ordering::Relaxed);
        self.pool.inflight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Why a pick found nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Unavailable {
    /// No target takes traffic (none healthy, or none resolved).
    NoTarget,
    /// `max_inflight` requests are in flight already.
    Overloaded,
}

/// What the names of a pool resolved to, by config entry.
#[derive(Default)]
pub(crate) struct DnsState {
    /// The last good answer per name (`host:port` or the SRV name).
    pub answers: BTreeMap<String, Vec<(SocketAddr, usize)>>,
    /// The last failure per name, cleared by a good answer.
    pub errors: BTreeMap<String, String>,
}

pub struct Pool {
    pub name: Arc<str>,
    pub config: UpstreamConfig,
    set: ArcSwap<TargetSet>,
    /// Removed targets that still had requests in flight.
    draining: Mutex<Vec<Weak<Target>>>,
    checker: Option<Box<dyn HealthCheck + Send + Sync>>,
    /// Set after the first health-check pass (or at once without checks),
    /// so `/ready` does not report targets as healthy before anyone looked.
    checked: AtomicBool,
    /// Requests in flight to any target (retries included).
    inflight: AtomicUsize,
    pub(crate) budget: RetryBudget,
    /// Ejection deadlines count from here.
    epoch: Instant,
    pub(crate) dns: Mutex<DnsState>,
    /// Mirrored copies in flight to this pool (`proxy::mirror`).
    pub(crate) mirrors: AtomicUsize,
    /// `server.resolver` when the pool was built (a change rebuilds it).
    pub(crate) resolvers: Vec<SocketAddr>,
    pub(crate) metrics: UpstreamMetrics,
}

/// What a new pool is built from besides its config.
pub(crate) struct PoolCtx<'a> {
    pub resolvers: &'a [SocketAddr],
    pub metrics: UpstreamMetrics,
    /// The pool this one replaces: its DNS answers seed the new set.
    pub seed: Option<&'a Pool>,
}

impl Pool {
    /// A pool with its static targets; names start unresolved unless
    /// `seed` (the pool this one replaces) has answers for them.
    pub(crate) fn new(name: &str, config: &UpstreamConfig, pcx: PoolCtx<'_>) -> Pool {
        let mut dns = DnsState::default();
        if let Some(old) = pcx.seed {
            let old = old.dns.lock().unwrap_or_else(|p| p.into_inner());
            for key in discovery::names(config) {
                if let Some(a) = old.answers.get(&key) {
                    dns.answers.insert(key, a.clone());
                }
            }
        }
        let pool = Pool {
            name: Arc::from(name),
            set: ArcSwap::from_pointee(TargetSet::new(config.balance, Vec::new())),
            draining: Mutex::new(Vec::new()),
            checker: health::checker(config),
            checked: AtomicBool::new(config.health_check.is_none()),
            inflight: AtomicUsize::new(0),
            budget: RetryBudget::new(config.retry_budget),
            epoch: Instant::now(),
            dns: Mutex::new(dns),
            mirrors: AtomicUsize::new(0),
            resolvers: pcx.resolvers.to_vec(),
            metrics: pcx.metrics,
            config: config.clone(),
        };
        pool.rebuild();
        pool
    }

    fn now(&self) -> Millis {
        self.epoch.elapsed().as_millis() as Millis + 1
    }

    /// Recomposes the set from the static targets and the DNS answers,
    /// keeping the state of every target that stays.
    pub(crate) fn rebuild(&self) {
        let mut wanted: Vec<(SocketAddr, usize)> = Vec::new();
        {
            let dns = self.dns.lock().unwrap_or_else(|p| p.into_inner());
            for t in &self.config.targets {
                match &t.addr {
                    TargetAddr::Ip(a) => wanted.push((*a, t.weight)),
                    TargetAddr::Name { .. } => {
                        let answers = dns.answers.get(&t.addr.text());
                        wanted.extend(answers.into_iter().flatten().map(|(a, _)| (*a, t.weight)));
                    }
                }
            }
            if let Some(srv) = &self.config.srv {
                wanted.extend(dns.answers.get(srv).into_iter().flatten().copied());
            }
        }
        let old = self.set.load();
        let mut targets: Vec<Arc<Target>> = Vec::with_capacity(wanted.len());
        for (addr, weight) in wanted {
            if targets.iter().any(|t| t.addr == addr) {
                continue;
            }
            targets.push(match old.get(addr).filter(|t| t.weight == weight) {
                Some(t) => t.clone(),
                None => Arc::new(Target::new(addr, weight)),
            });
        }
        let mut draining = self.draining.lock().unwrap_or_else(|p| p.into_inner());
        draining.retain(|w| w.strong_count() > 0);
        for t in &old.targets {
            if !targets.iter().any(|n| Arc::ptr_eq(n, t)) && t.inflight() > 0 {
                draining.push(Arc::downgrade(t));
            }
        }
        self.set
            .store(Arc::new(TargetSet::new(self.config.balance, targets)));
    }

    /// Picks a target not in `exclude` and counts the request in flight.
    /// `key` is used by `consistent_hash` only.
    pub(crate) fn pick(
        self: &Arc<Self>,
        key: &[u8],
        exclude: &[SocketAddr],
    ) -> Result<TargetGuard, Unavailable> {
        // Reserve the slot first, so concurrent picks never exceed the cap.
        let before = self.inflight.fetch_add(1, Ordering::Relaxed);
        if self.config.max_inflight.is_some_and(|max| before >= max) {
            self.inflight.fetch_sub(1, Ordering::Relaxed);
            return Err(Unavailable::Overloaded);
        }
        let now = self.config.passive_health.as_ref().map(|_| self.now());
        let set = self.set.load();
        let Some(target) = set.select(key, |t| t.usable(now) && !exclude.contains(&t.addr)) else {
            self.inflight.fetch_sub(1, Ordering::Relaxed);
            return Err(Unavailable::NoTarget);
        };
        let target = target.clone();
        target.inflight.fetch_add(1, Ordering::Relaxed);
        Ok(TargetGuard {
            pool: self.clone(),
            target,
        })
    }

    /// True when some target takes traffic (split: a side without one
    /// gives its share to the others).
    pub(crate) fn has_usable_target(&self) -> bool {
        let now = self.config.passive_health.as_ref().map(|_| self.now());
        self.set.load().targets.iter().any(|t| t.usable(now))
    }

    fn failed(&self, target: &Target) {
        let Some(cfg) = &self.config.passive_health else {
            return;
        };
        let now = self.now();
        let may_eject = || {
            let set = self.set.load();
            let ejected = set
                .targets
                .iter()
                .filter(|t| t.passive.ejected(now))
                .count();
            ejected < passive::ejection_cap(cfg.max_ejected, set.targets.len())
        };
        if let Some(length) = target.passive.failure(cfg, now, may_eject) {
            self.metrics.ejections.inc();
            log::warn!(
                "upstream `{}`: {} ejected for {length:?} after {} failures in a row",
                self.name,
                target.label,
                cfg.consecutive_failures
            );
        }
    }

    /// The peer for one attempt; `timeout` (the route's) overrides the
    /// upstream's read/write timeout.
    pub fn peer(&self, addr: SocketAddr, timeout: Option<Duration>) -> HttpPeer {
        let c = &self.config;
        let mut peer = HttpPeer::new(addr, c.tls, c.sni.clone());
        let io_timeout = timeout.unwrap_or(c.read_timeout);
        peer.options.connection_timeout = Some(c.connect_timeout);
        peer.options.total_connection_timeout = Some(c.connect_timeout);
        peer.options.read_timeout = Some(io_timeout);
        peer.options.write_timeout = Some(io_timeout);
        peer.options.idle_timeout = Some(Duration::from_secs(60));
        if c.tls && !c.tls_verify {
            peer.options.verify_cert = false;
            peer.options.verify_hostname = false;
        }
        peer
    }

    fn status(&self, t: &Target, now: Millis) -> TargetStatus {
        let wall = SystemTime::now();
        TargetStatus {
            addr: t.addr,
            weight: t.weight,
            healthy: t.healthy(),
            inflight: t.inflight(),
            ejected_until: t
                .passive
                .ejected_until(now)
                .map(|until| wall + Duration::from_millis(until - now)),
        }
    }

    /// The current targets.
    pub fn targets(&self) -> Vec<TargetStatus> {
        let now = self.now();
        self.set
            .load()
            .targets
            .iter()
            .map(|t| self.status(t, now))
            .collect()
    }

    /// Removed targets that still have requests in flight.
    pub fn draining(&self) -> Vec<TargetStatus> {
        let now = self.now();
        let mut draining = self.draining.lock().unwrap_or_else(|p| p.into_inner());
        draining.retain(|w| w.upgrade().is_some_and(|t| t.inflight() > 0));
        draining
            .iter()
            .filter_map(Weak::upgrade)
            .map(|t| self.status(&t, now))
            .collect()
    }

    /// Why the pool takes no traffic, or `None` when it does: checked at
    /// least once, and some target is healthy and not ejected.
    pub fn unready_reason(&self) -> Option<String> {
        if !self.checked.load(Ordering::Acquire) {
            return Some(format!(
                "upstream `{}` has not been health-checked yet",
                self.name
            ));
        }
        if self.has_usable_target() {
            return None;
        }
        let dns = self.dns.lock().unwrap_or_else(|p| p.into_inner());
        let unresolved: Vec<String> = discovery::names(&self.config)
            .into_iter()
            .filter(|n| !dns.answers.contains_key(n))
            .map(|n| match dns.errors.get(&n) {
                Some(e) => format!("`{n}` has not resolved ({e})"),
                None => format!("`{n}` has not resolved yet"),
            })
            .collect();
        Some(
            match (self.set.load().targets.is_empty(), unresolved.is_empty()) {
                (true, false) => format!(
                    "upstream `{}` has no targets: {}",
                    self.name,
                    unresolved.join(", ")
                ),
                (true, true) => format!("upstream `{}` has no targets", self.name),
                _ => format!("upstream `{}` has no healthy target", self.name),
            },
        )
    }

    /// For `/upstreams`: each name with the addresses it resolved to and
    /// its last error; `None` without names.
    pub fn dns_status(&self) -> Option<serde_json::Value> {
        let names = discovery::names(&self.config);
        if names.is_empty() {
            return None;
        }
        let dns = self.dns.lock().unwrap_or_else(|p| p.into_inner());
        let by_name: serde_json::Map<String, serde_json::Value> = names
            .into_iter()
            .map(|n| {
                let addrs: Vec<String> = dns
                    .answers
                    .get(&n)
                    .into_iter()
                    .flatten()
                    .map(|(a, _)| a.to_string())
                    .collect();
                let v = serde_json::json!({"addresses": addrs, "error": dns.errors.get(&n)});
                (n, v)
            })
            .collect();
        Some(serde_json::json!({
            "resolve": self.config.resolve.map_or("once".to_string(), |d| format!("{}s", d.as_secs_f64())),
            "names": by_name,
        }))
    }

    pub fn has_health_check(&self) -> bool {
        self.checker.is_some()
    }
}
