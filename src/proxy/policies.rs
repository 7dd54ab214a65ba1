//! The request-phase policy chain of a matched route, in this order:
//! authentication, then rate limits. Rate limits count every request on
//! the route, authenticated or not (unauthenticated ones by client IP), so
//! credential guessing is limited too; over a limit the answer is 429 even
//! when the credentials were also bad.

use super::ctx::RequestCtx;
use super::errors::GatewayError;
use crate::config::LimitKey;
use crate::policy::rate_limit;
use crate::runtime::GatewayState;
use crate::runtime::{Route, Snapshot};
use pingora::proxy::Session;

pub async fn on_request(
    state: &GatewayState,
    session: &Session,
    ctx: &mut RequestCtx,
    snap: &Snapshot,
    route: &Route,
) -> Result<(), GatewayError> {
    let metrics = snap.config.admin.is_some().then_some(&state.metrics);
    let mut auth_error = None;
    if let Some(auth) = &route.auth {
        match auth.authenticate(&session.req_header().headers).await {
            Ok(identity) => {
                ctx.user = identity.user;
                ctx.claims = identity.claims;
                ctx.identity_headers = identity.headers;
            }
            Err(denied) => {
                if let Some(m) = metrics {
                    m.auth_failures
                        .with_label_values(&[&*route.name, denied.reason()])
                        .inc();
                }
                auth_error = Some(GatewayError::Auth(denied));
            }
        }
    }
    if !route.rate_limits.is_empty() {
        let req = session.req_header();
        let key_of = |k: &LimitKey| -> Option<String> {
            match k {
                LimitKey::ClientIp => None,
                LimitKey::Consumer => ctx.user.clone(),
                LimitKey::Claim(name) => ctx
                    .claims
                    .as_ref()?
                    .get(name)
                    .map(|v| crate::http::claim_text(v).into_owned()),
                LimitKey::Header(h) => req
                    .headers
                    .get(h)
                    .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned()),
            }
        };
        let client = ctx.client_ip.map(|ip| ip.to_string()).unwrap_or_default();
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
        let verdict = rate_limit::check(&route.rate_limits, key_of, &client, on_redis_error).await;
        if let Some(m) = metrics {
            for limit in &verdict.exceeded {
                m.rate_limited
                    .with_label_values(&[&*route.name, limit])
                    .inc();
            }
        }
        if verdict.unavailable {
            return Err(GatewayError::RateLimitUnavailable);
        }
        ctx.rate_limit = verdict.report;
        if !verdict.exceeded.is_empty() {
            let state = ctx
                .rate_limit
                .clone()
                .expect("an exceeded limit is reported");
            return Err(GatewayError::RateLimited(state));
        }
    }
    match auth_error {
        Some(e) => Err(e),
        None => Ok(()),
    }
}
