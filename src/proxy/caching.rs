//! The cache phases of the proxy, for routes with `cache`. Decisions live in
//! `policy::cache`; this module wires them to Pingora's cache hooks.
//!
//! Poisoning defences: the key holds everything that selects a response
//! (method class, scheme, host, route, path, query, `Vary`'d headers), and
//! on cached routes the headers that upstream frameworks honour to rewrite
//! a request but that are not in the key are removed, while
//! `X-Forwarded-Host`/`-Proto` are always set from keyed values.

use super::ctx::RequestCtx;
use crate::cache::store::PurgeTag;
use crate::http::normalize_host;
use crate::policy::cache::{self as policy, Outcome, Storable};
use crate::runtime::GatewayState;
use crate::runtime::Route;
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

/// Request phase, after the route's policies passed.
pub fn prepare(req: &mut RequestHeader, ctx: &mut RequestCtx, route: &Route) {
    if route.cache.is_none() {
        return;
    }
    match req.method {
        Method::GET | Method::HEAD => {
            for h in UNKEYED_OVERRIDES {
                req.remove_header(*h);
            }
        }
        Method::POST | Method::PUT | Method::PATCH | Method::DELETE => {
            ctx.cache_outcome = Some(Outcome::Method);
            ctx.cache_invalidate = true;
        }
        _ => ctx.cache_outcome = Some(Outcome::Method),
    }
    ctx.cache_tag = Some(PurgeTag {
        host: crate::http::request_host(req)
            .map(|h| normalize_host(h).into_owned())
            .unwrap_or_default(),
        path: ctx
            .normalized_path
            .clone()
            .unwrap_or_else(|| req.uri.path().to_string()),
        query: req.uri.query().unwrap_or("").to_string(),
    });
}

/// `request_cache_filter`: enable the cache for GET/HEAD on cached routes.
pub fn enable(state: &GatewayState, session: &mut Session, ctx: &mut RequestCtx) {
    if ctx.cache_tag.is_none() || ctx.cache_outcome.is_some() || ctx.error.is_some() {
        return;
    }
    if policy::request_no_store(session.req_header()) {
        ctx.cache_outcome = Some(Outcome::Bypass);
        return;
    }
    state.cache.enable(session);
}

pub fn key(session: &Session, ctx: &RequestCtx) -> pingora::Result<CacheKey> {
    let (Some(route), Some(tag)) = (ctx.route(), ctx.cache_tag.as_ref()) else {
        return pingora::Error::e_explain(
            pingora::ErrorType::InternalError,
            "cache key without a cached route",
        );
    };
    Ok(crate::cache::key(
        crate::http::scheme(session),
        &route.name,
        tag,
    ))
}

pub fn response_cacheable(
    session: &Session,
    resp: &ResponseHeader,
    ctx: &mut RequestCtx,
) -> RespCacheable {
    let Some(route) = ctx.route() else {
        return RespCacheable::Uncacheable(NoCacheReason::InternalError);
    };
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
            ctx.cache_stored = true;
            RespCacheable::Cacheable(CacheMeta::new(
                fresh_until,
                now,
                swr_secs,
                sie_secs,
                resp.clone(),
            ))
        }
        Storable::NoStore(reason) => {
            ctx.cache_stored = false;
            RespCacheable::Uncacheable(NoCacheReason::Custom(reason))
        }
    }
}

pub fn variance(meta: &CacheMeta, req: &RequestHeader) -> Option<HashBinary> {
    policy::variance(meta.headers(), req)
}

fn ttl(meta: &CacheMeta) -> i64 {
    let now = SystemTime::now();
    match meta.fresh_until().duration_since(now) {
        Ok(d) => d.as_secs() as i64,
        Err(e) => -(e.duration().as_secs_f64().ceil() as i64),
    }
}

/// The outcome once the response head is known.
pub fn outcome(session: &Session, resp_status: u16, ctx: &RequestCtx) -> Option<Outcome> {
    if let Some(o) = ctx.cache_outcome {
        return Some(o);
    }
    ctx.cache_tag.as_ref()?;
    let collapsed = session.cache.lock_duration().is_some();
    Some(match session.cache.phase() {
        CachePhase::Hit => Outcome::Hit {
            ttl: ttl(session.cache.cache_meta()),
            collapsed,
        },
        CachePhase::Stale | CachePhase::StaleUpdating => Outcome::Hit {
            ttl: ttl(session.cache.cache_meta()),
            collapsed,
        },
        CachePhase::Expired => Outcome::Revalidated {
            status: resp_status,
            stored: ctx.cache_stored,
        },
        CachePhase::Revalidated | CachePhase::RevalidatedNoCache(_) => Outcome::Revalidated {
            status: 304,
            stored: false,
        },
        _ => Outcome::Miss {
            stored: ctx.cache_stored,
            collapsed,
        },
    })
}

/// Adds the `Cache-Status` member after any upstream one.
pub fn add_status(resp: &mut ResponseHeader, outcome: Outcome) -> pingora::Result<()> {
    let mut value = outcome.cache_status();
    if let Some(up) = resp
        .headers
        .get("cache-status")
        .and_then(|v| v.to_str().ok())
    {
        value = format!("{up}, {value}");
    }
    resp.insert_header("cache-status", value)?;
    Ok(())
}

/// After the response: count the lookup and invalidate after unsafe methods.
pub fn finish(state: &GatewayState, ctx: &RequestCtx, status: u16, metrics: bool) {
    let (Some(route), Some(outcome)) = (ctx.route(), ctx.cache_outcome) else {
        return;
    };
    if metrics {
        state
            .metrics
            .cache_lookups
            .with_label_values(&[&*route.name, outcome.label()])
            .inc();
    }
    if ctx.cache_invalidate && status < 400 {
        if let Some(tag) = &ctx.cache_tag {
            state
                .cache
                .store
                .purge_path(&tag.path, None, Some(&tag.host));
        }
    }
}
