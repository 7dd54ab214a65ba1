//! The cache phases of the proxy, for routes with `cache`. Decisions live in
//! `policy::cache`; this module wires them to Pingora's cache hooks.
//!
//! Poisoning defences: the key holds everything that selects a response
//! (method class, scheme, host, route, path, query, `Vary`'d headers), and
//! on cached routes the headers that upstream frameworks honour to rewrite
//! a request but that are not in the key are removed, while
//! `X-Forwarded-Host`/`-Proto` are always set from keyed values.

use super::pipeline::Source;
use crate::cache::store::PurgeTag;
use crate::http::names;
use crate::http::normalize_host;
use crate::policy::cache::{self as policy, Outcome, Storable};
use crate::runtime::{GatewayState, Route};
use http::Method;
use pingora::cache::key::HashBinary;
use pingora::cache::{CacheKey, CacheMeta, CachePhase, NoCacheReason, RespCacheable};
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::proxy::Session;
use std::time::{Duration, SystemTime};

/// Request headers that some upstream frameworks use to rewrite the URL,
/// method or origin. They are not part of the cache key, so on cached
/// routes they are dropped instead of being able to change a cached body.
const UNKEYED_OVERRIDES: &[&str] = &[
    "x-original-url",
    "x-rewrite-url",
    "x-http-method-override",
    "x-http-method",
    "x-method-override",
    "x-forwarded-server",
    "x-forwarded-scheme",
    "x-forwarded-port",
    "x-forwarded-prefix",
    "x-host",
    "forwarded",
];

/// The cache's view of one request on a cached route (the ctx slice of
/// this module).
#[derive(Debug)]
pub(crate) struct CacheCtx {
    /// What the cache key and purges use.
    pub tag: PurgeTag,
    /// How the cache handled the request, once known.
    pub outcome: Option<Outcome>,
    /// The response was judged storable.
    pub stored: bool,
    /// An unsafe method: invalidate the path after a successful answer.
    pub invalidate: bool,
}

/// Removes the [`UNKEYED_OVERRIDES`] a request carries. The request's few
/// names are compared with the list first: removing each of the 11 by
/// name parsed and hashed it every time, about 5,000 instructions on
/// every cache hit, for headers that are almost never there.
fn strip_unkeyed_overrides(req: &mut RequestHeader) {
    let present = |req: &RequestHeader| {
        req.headers
            .keys()
            .find(|n| UNKEYED_OVERRIDES.contains(&n.as_str()))
            .cloned()
    };
    while let Some(name) = present(req) {
        req.remove_header(&name);
    }
}

/// Request phase, on routes with `cache`: strips unkeyed override headers
/// from GET/HEAD and tags the request for the key and for invalidation.
pub(super) fn prepare(
    req: &mut RequestHeader,
    normalized: Option<&str>,
    route: &Route,
) -> Option<CacheCtx> {
    route.cache?;
    let (outcome, invalidate) = match req.method {
        Method::GET | Method::HEAD => {
            strip_unkeyed_overrides(req);
            (None, false)
        }
        Method::POST | Method::PUT | Method::PATCH | Method::DELETE => {
            (Some(Outcome::Method), true)
        }
        _ => (Some(Outcome::Method), false),
    };
    let tag = PurgeTag {
        host: crate::http::request_host(req)
            .map(|h| normalize_host(h).into_owned())
            .unwrap_or_default(),
        path: normalized.unwrap_or_else(|| req.uri.path()).to_string(),
        query: req.uri.query().unwrap_or("").to_string(),
    };
    Some(CacheCtx {
        tag,
        outcome,
        stored: false,
        invalidate,
    })
}

/// `request_cache_filter`: enable the cache for GET/HEAD on cached routes.
pub(super) fn enable(state: &GatewayState, session: &mut Session, cache: &mut CacheCtx) {
    if cache.outcome.is_some() {
        return;
    }
    if policy::request_no_store(session.req_header()) {
        cache.outcome = Some(Outcome::Bypass);
        return;
    }
    state.cache.enable(session);
}

/// Request headers that need Pingora's hit path (conditionals, ranges,
/// request cache directives, a body): with any of them, a hit is not taken
/// by [`fresh_hit`].
const NEEDS_HIT_PATH: [http::HeaderName; 10] = [
    http::header::RANGE,
    http::header::IF_RANGE,
    http::header::IF_NONE_MATCH,
    http::header::IF_MODIFIED_SINCE,
    http::header::IF_MATCH,
    http::header::IF_UNMODIFIED_SINCE,
    http::header::CACHE_CONTROL,
    http::header::PRAGMA,
    http::header::CONTENT_LENGTH,
    http::header::TRANSFER_ENCODING,
];

/// The hit fast path, in `request_filter`: a plain GET whose stored answer
/// is fresh, has no Vary variance and a `Content-Length` gets the stored
/// head (with `Age`, as Pingora's hit does) and body at once, skipping
/// Pingora's lookup, lock and hit state machine (about a third of a hit's
/// instructions). Every other cached request returns `None` and goes on to
/// Pingora's cache phases unchanged: HEAD, conditional and range requests,
/// request `Cache-Control`/`Pragma`, a request body, stale or Vary'd
/// entries, bodies without a length.
pub(super) fn fresh_hit(
    state: &GatewayState,
    session: &Session,
    route: &Route,
    cache: &mut CacheCtx,
    compress: Option<&super::compress::CompressCtx>,
) -> Option<(Box<ResponseHeader>, bytes::Bytes)> {
    // (Other methods already carry their outcome from `prepare`.)
    let req = session.req_header();
    if req.method != Method::GET || req.headers.keys().any(|n| NEEDS_HIT_PATH.contains(n)) {
        return None;
    }
    let primary = crate::cache::primary(crate::http::scheme(session), &route.name, &cache.tag);
    let fresh = state.cache.store.fresh(&primary, SystemTime::now())?;
    let encoding = compress.map(super::compress::variant);
    let mut head = fresh.head;
    let length = head.headers.get(http::header::CONTENT_LENGTH)?;
    length.to_str().ok()?.parse::<usize>().ok()?;
    if policy::variance(&head.headers, req, encoding).is_some() {
        return None;
    }
    // The clone is full: room for `Age`, `Accept-Ranges` and what
    // `pipeline::response` adds (request id, Cache-Status, up to 7
    // rate-limit fields) in one grow.
    super::heads::reserve(&mut head.headers, 11).ok()?;
    let age = http::HeaderValue::from(fresh.age);
    super::heads::put(&mut head.headers, http::header::AGE, age).ok()?;
    // A 200 with a length can be asked for in ranges: Pingora's hit path
    // says so (its `range_header_filter`, as nginx does).
    if head.status == http::StatusCode::OK {
        let bytes = http::HeaderValue::from_static("bytes");
        super::heads::put(&mut head.headers, http::header::ACCEPT_RANGES, bytes).ok()?;
    }
    head.version = http::Version::HTTP_11;
    let header = Box::new(super::heads::response_from(head, fresh.reason).ok()?);
    cache.outcome = Some(Outcome::Hit {
        ttl: fresh.ttl,
        collapsed: false,
    });
    Some((header, fresh.body))
}

pub(super) fn key(session: &Session, route: &Route, cache: &CacheCtx) -> CacheKey {
    crate::cache::key(crate::http::scheme(session), &route.name, &cache.tag)
}

pub(super) fn response_cacheable(
    session: &Session,
    resp: &ResponseHeader,
    route: &Route,
    cache: &mut CacheCtx,
) -> RespCacheable {
    let fallback = route.cache.unwrap_or(Duration::ZERO);
    let req = session.req_header();
    let authenticated =
        route.auth.is_some() || req.headers.contains_key(http::header::AUTHORIZATION);
    match policy::storable(req, resp, authenticated, fallback) {
        Storable::Store {
            fresh,
            swr_secs,
            sie_secs,
        } => {
            let now = SystemTime::now();
            // Zero freshness: stored for revalidation only.
            let fresh_until = if fresh.is_zero() {
                now - Duration::from_secs(1)
            } else {
                now + fresh
            };
            cache.stored = true;
            RespCacheable::Cacheable(CacheMeta::new(
                fresh_until,
                now,
                swr_secs,
                sie_secs,
                resp.clone(),
            ))
        }
        Storable::NoStore(reason) => {
            cache.stored = false;
            RespCacheable::Uncacheable(NoCacheReason::Custom(reason))
        }
    }
}

pub(super) fn variance(
    meta: &CacheMeta,
    req: &RequestHeader,
    compress: Option<&super::compress::CompressCtx>,
) -> Option<HashBinary> {
    policy::variance(meta.headers(), req, compress.map(super::compress::variant))
}

fn ttl(meta: &CacheMeta) -> i64 {
    let now = SystemTime::now();
    match meta.fresh_until().duration_since(now) {
        Ok(d) => d.as_secs() as i64,
        Err(e) => -(e.duration().as_secs_f64().ceil() as i64),
    }
}

/// The outcome once a proxied or cached response head is known.
fn observed(session: &Session, resp_status: u16, cache: &CacheCtx) -> Outcome {
    if let Some(o) = cache.outcome {
        return o;
    }
    let collapsed = session.cache.lock_duration().is_some();
    match session.cache.phase() {
        CachePhase::Hit | CachePhase::Stale | CachePhase::StaleUpdating => Outcome::Hit {
            ttl: ttl(session.cache.cache_meta()),
            collapsed,
        },
        CachePhase::Expired => Outcome::Revalidated {
            status: resp_status,
            stored: cache.stored,
        },
        CachePhase::Revalidated | CachePhase::RevalidatedNoCache(_) => Outcome::Revalidated {
            status: 304,
            stored: false,
        },
        _ => Outcome::Miss {
            stored: cache.stored,
            collapsed,
        },
    }
}

/// Response decoration: records the outcome and adds the `Cache-Status`
/// member (after any upstream one). An answer gatehouse generated itself is
/// a miss that was not stored.
pub(super) fn decorate(
    session: &Session,
    status: u16,
    headers: &mut http::HeaderMap,
    cache: &mut CacheCtx,
    source: &Source,
) -> pingora::Result<()> {
    let outcome = match source {
        Source::Upstream => observed(session, status, cache),
        _ => cache.outcome.unwrap_or(Outcome::Miss {
            stored: false,
            collapsed: false,
        }),
    };
    cache.outcome = Some(outcome);
    // An upstream's (or a stored) `Cache-Status` keeps its members; ours
    // is the last (RFC 9211 §2).
    let mut value = String::with_capacity(64);
    if let Some(up) = headers
        .get(&names::CACHE_STATUS)
        .and_then(|v| v.to_str().ok())
    {
        value.push_str(up);
        value.push_str(", ");
    }
    outcome.push_cache_status(&mut value);
    let value = http::HeaderValue::try_from(value).map_err(|e| {
        pingora::Error::because(pingora::ErrorType::InternalError, "Cache-Status", e)
    })?;
    headers.insert(names::CACHE_STATUS, value);
    Ok(())
}

/// After the response: count the lookup and invalidate after unsafe methods.
pub(super) fn finish(state: &GatewayState, route: &Route, cache: &CacheCtx, status: u16) {
    let Some(outcome) = cache.outcome else {
        return;
    };
    let counter = route
        .metrics
        .as_ref()
        .and_then(|m| m.cache.get(outcome.result() as usize));
    if let Some(c) = counter {
        c.inc();
    }
    if cache.invalidate && status < 400 {
        let tag = &cache.tag;
        state
            .cache
            .store
            .purge_path(&tag.path, None, Some(&tag.host));
    }
}
