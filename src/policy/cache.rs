//! HTTP caching decisions of a shared cache (RFC 9111), kept pure:
//! whether a response may be stored and for how long, which request
//! headers a stored response varies on, and the RFC 9211 `Cache-Status`.

use http::header;
use pingora::cache::cache_control::{CacheControl, InterpretCacheControl};
use pingora::cache::filters::calculate_expires_header_time;
use pingora::cache::key::HashBinary;
use pingora::cache::VarianceBuilder;
use pingora::http::{RequestHeader, ResponseHeader};
use std::time::{Duration, SystemTime};

/// Statuses stored without further ado (SPEC).
pub(crate) const CACHEABLE_STATUS: &[u16] = &[200, 203, 204, 301, 404, 410];

#[derive(Debug, Clone, PartialEq)]
pub enum Storable {
    /// Store; fresh for `fresh` (zero: store but revalidate every time).
    Store {
        fresh: Duration,
        swr_secs: u32,
        sie_secs: u32,
    },
    NoStore(&'static str),
}

/// `Cache-Control: no-store` on the request: nothing of this exchange is stored.
pub(crate) fn request_no_store(req: &RequestHeader) -> bool {
    request_cache_control(req).is_some_and(|cc| cc.no_store())
}

/// The request's `Cache-Control`, parsed. Most requests have none: looking
/// for it by a parsed name first skips Pingora's parser, which looks the
/// name up as a string (parsed and hashed again) on every call.
fn request_cache_control(req: &RequestHeader) -> Option<CacheControl> {
    if !req.headers.contains_key(header::CACHE_CONTROL) {
        return None;
    }
    CacheControl::from_req_headers(req)
}

/// The client asks for a revalidated answer (`no-cache`, `max-age=0`, or
/// `Pragma: no-cache` without `Cache-Control`).
pub(crate) fn request_wants_revalidation(req: &RequestHeader) -> bool {
    match request_cache_control(req) {
        Some(cc) => cc.no_cache() || matches!(cc.max_age(), Ok(Some(0))),
        None => req
            .headers
            .get(header::PRAGMA)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.to_ascii_lowercase().contains("no-cache")),
    }
}

/// May `resp` to `req` be stored, and for how long? `authenticated` is true
/// when the request carried credentials (RFC 9111 §3.5); `fallback` is the
/// freshness used when the response gives none.
pub fn storable(
    req: &RequestHeader,
    resp: &ResponseHeader,
    authenticated: bool,
    fallback: Duration,
) -> Storable {
    if !CACHEABLE_STATUS.contains(&resp.status.as_u16()) {
        return Storable::NoStore("status");
    }
    if request_no_store(req) {
        return Storable::NoStore("request no-store");
    }
    let cc = CacheControl::from_resp_headers(resp);
    if let Some(cc) = &cc {
        if cc.no_store() {
            return Storable::NoStore("no-store");
        }
        if cc.private() {
            return Storable::NoStore("private");
        }
    }
    if authenticated
        && !cc
            .as_ref()
            .is_some_and(|cc| cc.public() || matches!(cc.s_maxage(), Ok(Some(_))))
    {
        return Storable::NoStore("authorization");
    }
    if resp.headers.contains_key(header::SET_COOKIE) {
        return Storable::NoStore("set-cookie");
    }
    if vary_names(resp.headers.get_all(header::VARY))
        .iter()
        .any(|n| n == "*")
    {
        return Storable::NoStore("vary *");
    }
    let now = SystemTime::now();
    let explicit = cc.as_ref().and_then(|cc| cc.fresh_duration()).or_else(|| {
        calculate_expires_header_time(resp).map(|t| t.duration_since(now).unwrap_or(Duration::ZERO))
    });
    let mut fresh = explicit.unwrap_or(fallback);
    if cc.as_ref().is_some_and(|cc| cc.no_cache()) {
        fresh = Duration::ZERO;
    }
    let has_validator =
        resp.headers.contains_key(header::ETAG) || resp.headers.contains_key(header::LAST_MODIFIED);
    if fresh.is_zero() && !has_validator {
        return Storable::NoStore("no freshness");
    }
    let secs = |v: Option<Result<Option<u32>, _>>| {
        v.and_then(|r: pingora::Result<Option<u32>>| r.ok())
            .flatten()
            .unwrap_or(0)
    };
    Storable::Store {
        fresh,
        swr_secs: secs(cc.as_ref().map(|c| c.stale_while_revalidate())),
        sie_secs: secs(cc.as_ref().map(|c| c.stale_if_error())),
    }
}

/// The lower-cased field names of `Vary` header values.
pub(crate) fn vary_names<'a>(
    values: impl IntoIterator<Item = &'a http::HeaderValue>,
) -> Vec<String> {
    let mut names: Vec<String> = values
        .into_iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|n| n.trim().to_ascii_lowercase())
        .filter(|n| !n.is_empty())
        .collect();
    names.sort();
    names.dedup();
    names
}

/// The secondary key of a stored response: the values of the request
/// headers its `Vary` names (absent headers count as empty).
/// `encoding`, when given, stands for the `Accept-Encoding` value: on
/// `compress` routes the variant is the negotiated coding.
pub fn variance(
    resp_headers: &http::HeaderMap,
    req: &RequestHeader,
    encoding: Option<&[u8]>,
) -> Option<HashBinary> {
    let names = vary_names(resp_headers.get_all(header::VARY));
    if names.is_empty() {
        return None;
    }
    let mut b = VarianceBuilder::new();
    for n in &names {
        if let (Some(e), "accept-encoding") = (encoding, n.as_str()) {
            b.add_owned_name_value(n.clone(), e.to_vec());
            continue;
        }
        let value = req
            .headers
            .get_all(n.as_str())
            .iter()
            .map(|v| v.as_bytes())
            .collect::<Vec<_>>()
            .join(&b","[..]);
        b.add_owned_name_value(n.clone(), value);
    }
    b.finalize()
}

/// How gatehouse's cache handled a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Served from cache; `ttl` seconds of freshness left (negative: stale).
    Hit { ttl: i64, collapsed: bool },
    /// Fetched from upstream; whether the response was stored.
    Miss { stored: bool, collapsed: bool },
    /// A stale entry was revalidated with the upstream.
    Revalidated { status: u16, stored: bool },
    /// The method is not cacheable (`POST` on a cached route).
    Method,
    /// The request said `no-store`.
    Bypass,
}

impl Outcome {
    /// The `Cache-Status` member (RFC 9211), as a string (tests).
    #[cfg(test)]
    pub(crate) fn cache_status(&self) -> String {
        let mut out = String::with_capacity(48);
        self.push_cache_status(&mut out);
        out
    }

    /// Appends the `Cache-Status` member (RFC 9211) to `out`, without
    /// `format!` (it is written on every response of a cached route).
    pub(crate) fn push_cache_status(&self, out: &mut String) {
        let flag = |out: &mut String, on: bool, text: &str| {
            if on {
                out.push_str(text);
            }
        };
        out.push_str("gatehouse; ");
        match *self {
            Outcome::Hit { ttl, collapsed } => {
                out.push_str("hit; ttl=");
                if ttl < 0 {
                    out.push('-');
                }
                crate::netfmt::push_u64(out, ttl.unsigned_abs());
                flag(out, collapsed, "; collapsed");
            }
            Outcome::Miss { stored, collapsed } => {
                out.push_str("fwd=miss");
                flag(out, stored, "; stored");
                flag(out, collapsed, "; collapsed");
            }
            Outcome::Revalidated { status, stored } => {
                out.push_str("fwd=stale; fwd-status=");
                crate::netfmt::push_u64(out, status.into());
                flag(out, stored, "; stored");
            }
            Outcome::Method => out.push_str("fwd=method"),
            Outcome::Bypass => out.push_str("fwd=bypass"),
        }
    }

    pub(crate) fn result(&self) -> CacheResult {
        match *self {
            Outcome::Hit { ttl, .. } if ttl < 0 => CacheResult::Stale,
            Outcome::Hit { .. } => CacheResult::Hit,
            Outcome::Miss { .. } => CacheResult::Miss,
            Outcome::Revalidated { .. } => CacheResult::Revalidated,
            Outcome::Method => CacheResult::Method,
            Outcome::Bypass => CacheResult::Bypass,
        }
    }
}

/// The `result` label of `gatehouse_cache_lookups_total` and the
/// access-log `cache` value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CacheResult {
    Hit,
    Stale,
    Miss,
    Revalidated,
    Method,
    Bypass,
}

impl CacheResult {
    /// In label order: `ALL[r as usize] == r`.
    pub(crate) const ALL: [CacheResult; 6] = [
        CacheResult::Hit,
        CacheResult::Stale,
        CacheResult::Miss,
        CacheResult::Revalidated,
        CacheResult::Method,
        CacheResult::Bypass,
    ];

    pub(crate) fn label(self) -> &'static str {
        match self {
            CacheResult::Hit => "hit",
            CacheResult::Stale => "stale",
            CacheResult::Miss => "miss",
            CacheResult::Revalidated => "revalidated",
            CacheResult::Method => "method",
            CacheResult::Bypass => "bypass",
        }
    }

    /// Every label, in [`CacheResult::ALL`] order.
    pub(crate) fn labels() -> [&'static str; 6] {
        CacheResult::ALL.map(CacheResult::label)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_index_their_labels() {
        for (i, r) in CacheResult::ALL.iter().enumerate() {
            assert_eq!(*r as usize, i);
        }
        let labels = CacheResult::labels();
        assert_eq!(labels.len(), 6);
        assert!(labels
            .iter()
            .all(|l| labels.iter().filter(|m| m == &l).count() == 1));
    }

    fn req(headers: &[(&str, &str)]) -> RequestHeader {
        let mut r = RequestHeader::build("GET", b"/x", None).unwrap();
        for (k, v) in headers {
            r.append_header(k.to_string(), *v).unwrap();
        }
        r
    }

    fn resp(status: u16, headers: &[(&str, &str)]) -> ResponseHeader {
        let mut r = ResponseHeader::build(status, None).unwrap();
        for (k, v) in headers {
            r.append_header(k.to_string(), *v).unwrap();
        }
        r
    }

    fn fresh(s: Storable) -> Duration {
        match s {
            Storable::Store { fresh, .. } => fresh,
            Storable::NoStore(r) => panic!("not stored: {r}"),
        }
    }

    const TTL: Duration = Duration::from_secs(60);

    #[test]
    fn freshness_order() {
        let r = req(&[]);
        assert_eq!(fresh(storable(&r, &resp(200, &[]), false, TTL)), TTL);
        assert_eq!(
            fresh(storable(
                &r,
                &resp(200, &[("cache-control", "max-age=10")]),
                false,
                TTL
            )),
            Duration::from_secs(10)
        );
        assert_eq!(
            fresh(storable(
                &r,
                &resp(200, &[("cache-control", "max-age=10, s-maxage=20")]),
                false,
                TTL
            )),
            Duration::from_secs(20)
        );
        let expires = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(100));
        let f = fresh(storable(
            &r,
            &resp(200, &[("expires", expires.as_str())]),
            false,
            TTL,
        ));
        assert!(
            f > Duration::from_secs(95) && f <= Duration::from_secs(100),
            "{f:?}"
        );
    }

    #[test]
    fn refusals() {
        let r = req(&[]);
        let no = |resp: ResponseHeader, auth: bool| storable(&r, &resp, auth, TTL);
        assert_eq!(no(resp(500, &[]), false), Storable::NoStore("status"));
        assert_eq!(
            no(resp(302, &[("cache-control", "max-age=60")]), false),
            Storable::NoStore("status")
        );
        assert_eq!(
            no(resp(200, &[("cache-control", "no-store")]), false),
            Storable::NoStore("no-store")
        );
        assert_eq!(
            no(resp(200, &[("cache-control", "private, no-store")]), false),
            Storable::NoStore("no-store")
        );
        assert_eq!(
            no(
                resp(200, &[("cache-control", "private, max-age=60")]),
                false
            ),
            Storable::NoStore("private")
        );
        assert_eq!(
            no(resp(200, &[("cache-control", "max-age=60")]), true),
            Storable::NoStore("authorization")
        );
        assert!(matches!(
            no(resp(200, &[("cache-control", "public, max-age=60")]), true),
            Storable::Store { .. }
        ));
        assert!(matches!(
            no(resp(200, &[("cache-control", "s-maxage=60")]), true),
            Storable::Store { .. }
        ));
        assert_eq!(
            no(resp(200, &[("set-cookie", "a=b")]), false),
            Storable::NoStore("set-cookie")
        );
        assert_eq!(
            no(resp(200, &[("vary", "Accept, *")]), false),
            Storable::NoStore("vary *")
        );
        assert_eq!(
            no(resp(200, &[("cache-control", "max-age=0")]), false),
            Storable::NoStore("no freshness")
        );
        assert_eq!(
            storable(
                &req(&[("cache-control", "no-store")]),
                &resp(200, &[]),
                false,
                TTL
            ),
            Storable::NoStore("request no-store")
        );
    }

    #[test]
    fn no_cache_with_validator_is_stored_for_revalidation() {
        let s = storable(
            &req(&[]),
            &resp(200, &[("cache-control", "no-cache"), ("etag", "\"v1\"")]),
            false,
            TTL,
        );
        assert_eq!(fresh(s), Duration::ZERO);
    }

    #[test]
    fn stale_directives() {
        let s = storable(
            &req(&[]),
            &resp(
                200,
                &[(
                    "cache-control",
                    "max-age=1, stale-while-revalidate=30, stale-if-error=60",
                )],
            ),
            false,
            TTL,
        );
        assert_eq!(
            s,
            Storable::Store {
                fresh: Duration::from_secs(1),
                swr_secs: 30,
                sie_secs: 60
            }
        );
    }

    #[test]
    fn variance_follows_vary() {
        let mut h = http::HeaderMap::new();
        h.insert("vary", "Accept-Language".parse().unwrap());
        let en = variance(&h, &req(&[("accept-language", "en")]), None);
        let fr = variance(&h, &req(&[("accept-language", "fr")]), None);
        assert!(en.is_some() && en != fr);
        assert_eq!(
            en,
            variance(
                &h,
                &req(&[("Accept-Language", "en"), ("x-other", "1")]),
                None
            )
        );
        assert_eq!(variance(&http::HeaderMap::new(), &req(&[]), None), None);
    }

    #[test]
    fn revalidation_requests() {
        assert!(request_wants_revalidation(&req(&[(
            "cache-control",
            "no-cache"
        )])));
        assert!(request_wants_revalidation(&req(&[(
            "cache-control",
            "max-age=0"
        )])));
        assert!(request_wants_revalidation(&req(&[("pragma", "no-cache")])));
        assert!(!request_wants_revalidation(&req(&[])));
    }

    #[test]
    fn cache_status_is_what_format_wrote() {
        let flag = |on: bool, t: &'static str| if on { t } else { "" };
        for (a, b) in [(false, false), (true, false), (false, true), (true, true)] {
            for ttl in [-3601, -1, 0, 1, 30, i64::MAX, i64::MIN] {
                let hit = Outcome::Hit { ttl, collapsed: a };
                let want = format!("gatehouse; hit; ttl={ttl}{}", flag(a, "; collapsed"));
                assert_eq!(hit.cache_status(), want);
            }
            let miss = Outcome::Miss {
                stored: a,
                collapsed: b,
            };
            let want = format!(
                "gatehouse; fwd=miss{}{}",
                flag(a, "; stored"),
                flag(b, "; collapsed")
            );
            assert_eq!(miss.cache_status(), want);
            let reval = Outcome::Revalidated {
                status: 304,
                stored: a,
            };
            let want = format!(
                "gatehouse; fwd=stale; fwd-status=304{}",
                flag(a, "; stored")
            );
            assert_eq!(reval.cache_status(), want);
        }
    }

    #[test]
    fn cache_status_strings() {
        assert_eq!(
            Outcome::Hit {
                ttl: 30,
                collapsed: false
            }
            .cache_status(),
            "gatehouse; hit; ttl=30"
        );
        assert_eq!(
            Outcome::Miss {
                stored: true,
                collapsed: false
            }
            .cache_status(),
            "gatehouse; fwd=miss; stored"
        );
        assert_eq!(Outcome::Method.cache_status(), "gatehouse; fwd=method");
        assert_eq!(
            Outcome::Revalidated {
                status: 304,
                stored: false
            }
            .cache_status(),
            "gatehouse; fwd=stale; fwd-status=304"
        );
    }
}
