//! The access policies of a matched route: authentication and rate limits.
//! `pipeline.rs` states their order; these are the steps.

use super::errors::GatewayError;
use crate::config::LimitKey;
use crate::policy::auth::{AuthDenied, AuthRequest, Identity};
use crate::policy::rate_limit::{self, LimitState, Verdict};
use crate::runtime::{GatewayState, Route};
use http::HeaderMap;
use std::net::IpAddr;
use std::sync::Arc;

/// Authentication: the identity, or the refusal (401/403/503).
pub(super) async fn authenticate(
    route: &Route,
    req: &AuthRequest<'_>,
) -> Result<Option<Identity>, AuthDenied> {
    let Some(auth) = &route.auth else {
        return Ok(None);
    };
    match auth.authenticate(req).await {
        Ok(identity) => Ok(Some(identity)),
        Err(denied) => {
            if let Some(m) = route
                .metrics
                .as_ref()
                .and_then(|m| m.auth.get(denied.reason() as usize))
            {
                m.inc();
            }
            Err(denied)
        }
    }
}

/// Rate limits: counts the request against every limit of the route; the
/// state to report goes to `report` (also on a 429).
pub(super) async fn limit(
    state: &GatewayState,
    route: &Route,
    headers: &HeaderMap,
    identity: Option<&Identity>,
    client: Option<IpAddr>,
    report: &mut Option<LimitState>,
) -> Result<(), GatewayError> {
    if route.rate_limits.is_empty() {
        return Ok(());
    }
    // Appends the limit's key to `out`; false: none (then the client IP).
    let key_of = |k: &LimitKey, out: &mut String| -> bool {
        match k {
            LimitKey::ClientIp => false,
            LimitKey::Consumer => identity
                .and_then(|i| i.user.as_deref())
                .map(|u| out.push_str(u))
                .is_some(),
            LimitKey::Claim(name) => identity
                .and_then(|i| i.claims.as_ref()?.get(name))
                .map(|v| out.push_str(&crate::http::claim_text(v)))
                .is_some(),
            LimitKey::Header(h) => headers
                .get(h)
                .map(|v| out.push_str(&String::from_utf8_lossy(v.as_bytes())))
                .is_some(),
        }
    };
    let on_redis_error = |store: &rate_limit::RedisStore, e: &str| {
        state.metrics.redis_errors.inc();
        if store.should_log() {
            log::error!(
                "rate limit: Redis {} failed: {e} (on_error: {:?})",
                store.config.redacted_url(),
                store.config.on_error
            );
        }
    };
    let verdict = rate_limit::check(&route.rate_limits, key_of, client, on_redis_error).await;
    let count = |over: &[Arc<str>]| {
        let Some(m) = &route.metrics else { return };
        for (limit, counter) in route.rate_limits.iter().zip(m.limited.iter()) {
            if over.contains(&limit.name) {
                counter.inc();
            }
        }
    };
    match verdict {
        Verdict::Pass(state) => {
            *report = state;
            Ok(())
        }
        Verdict::Exceeded { report: r, over } => {
            count(&over);
            *report = Some(r.clone());
            Err(GatewayError::RateLimited(Box::new(r)))
        }
        Verdict::Unavailable { over } => {
            count(&over);
            Err(GatewayError::RateLimitUnavailable)
        }
    }
}
