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
    let key_of = |k: &LimitKey| -> Option<String> {
        match k {
            LimitKey::ClientIp => None,
            LimitKey::Consumer => identity?.user.clone(),
            LimitKey::Claim(name) => identity?
                .claims
                .as_ref()?
                .get(name)
                .map(|v| crate::http::claim_text(v).into_owned()),
            LimitKey::Header(h) => headers
                .get(h)
                .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned()),
        }
    };
    let mut fallback = String::new();
    if let Some(ip) = client {
        crate::netfmt::push_ip(&mut fallback, ip);
    }
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
    let verdict = rate_limit::check(&route.rate_limits, key_of, &fallback, on_redis_error).await;
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
            Err(GatewayError::RateLimited(r))
        }
        Verdict::Unavailable { over } => {
            count(&over);
            Err(GatewayError::RateLimitUnavailable)
        }
    }
}
