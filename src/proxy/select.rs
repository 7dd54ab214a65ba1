//! The upstream side of a request: the split side, the target of each
//! attempt (`upstream_peer`), and what happens when an attempt fails
//! (`fail_to_connect`, `error_while_proxy`, a retryable status in
//! `upstream_response_filter`). Decisions are `policy::retry` and
//! `policy::split`; passive health hears every attempt's outcome.

use super::ctx::RequestCtx;
use super::errors::GatewayError;
use crate::config::{Balance, HashKey, RetryReason};
use crate::policy::{retry, split};
use crate::runtime::Route;
use crate::upstream::{Pool, TargetGuard, Unavailable};
use pingora::http::ResponseHeader;
use pingora::prelude::HttpPeer;
use pingora::proxy::Session;
use pingora::upstreams::peer::HttpUpstreamRequestPolicy;
use pingora::{Error, ErrorSource, ErrorType};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

/// The upstream side of one request (the ctx slice of this module).
#[derive(Default)]
pub(crate) struct Attempts {
    /// Attempts so far.
    pub count: usize,
    /// The side of the route's split (0 without a split).
    pub side: usize,
    /// Targets that failed during this request.
    pub failed: Vec<SocketAddr>,
    /// Why the last attempt failed.
    pub last_failure: Option<RetryReason>,
    /// The last failed attempt timed out (the answer is then 504).
    pub timed_out: bool,
    /// A status of the current attempt that is being retried.
    pub retry_status: Option<u16>,
    /// The current (finally: the last) target.
    pub target: Option<SocketAddr>,
    /// Counts the attempt in the target's and pool's in-flight numbers.
    pub guard: Option<TargetGuard>,
    /// When the first target was chosen.
    pub start: Option<Instant>,
    /// When the upstream response ended (or its head arrived).
    pub end: Option<Instant>,
    pub status: Option<u16>,
}

/// The consistent-hash (or split) key of a request: client address, path,
/// header or claim bytes (a missing claim falls back to the client address).
fn hash_key(session: &Session, cx: &RequestCtx, key: &HashKey) -> Vec<u8> {
    let client_ip = || {
        let mut s = String::new();
        if let Some(ip) = cx.client.ip {
            crate::netfmt::push_ip(&mut s, ip);
        }
        s.into_bytes()
    };
    match key {
        HashKey::ClientIp => client_ip(),
        HashKey::Path => cx
            .normalized_path()
            .unwrap_or(session.req_header().uri.path())
            .as_bytes()
            .to_vec(),
        HashKey::Header(name) => session
            .req_header()
            .headers
            .get(name)
            .map(|v| v.as_bytes().to_vec())
            .unwrap_or_default(),
        HashKey::Claim(name) => {
            let claims = cx.identity.as_ref().and_then(|i| i.claims.as_ref());
            match claims.and_then(|c| c.get(name)) {
                Some(v) => crate::http::claim_text(v).as_bytes().to_vec(),
                None => client_ip(),
            }
        }
    }
}

/// The side of the route's split for this request (sticky with
/// `split_key` when the request has a value for it).
fn choose_side(session: &Session, cx: &RequestCtx, route: &Route) -> usize {
    if route.upstreams.len() < 2 {
        return 0;
    }
    let key = route
        .split_key
        .as_ref()
        .map(|k| hash_key(session, cx, k))
        .filter(|k| !k.is_empty());
    let usable = |i: usize| route.upstreams[i].0.has_usable_target();
    split::choose(&route.upstreams, |p| &p.name, key.as_deref(), usable).unwrap_or(0)
}

/// `upstream_peer`: the next target, never one that already failed for
/// this request while another can take it. Retries after resets, timeouts
/// and statuses wait a jittered backoff first.
pub(super) async fn peer(
    session: &Session,
    cx: &mut RequestCtx,
) -> Result<Box<HttpPeer>, GatewayError> {
    // The previous attempt no longer counts toward `max_inflight`.
    cx.upstream.guard = None;
    if cx.upstream.count == 0 {
        let route = cx.route().ok_or(GatewayError::Internal)?;
        cx.upstream.side = choose_side(session, cx, route);
    } else if cx
        .upstream
        .last_failure
        .is_some_and(|r| r != RetryReason::Connect)
    {
        tokio::time::sleep(retry::backoff(cx.upstream.count)).await;
    }
    let route = cx.route().ok_or(GatewayError::Internal)?;
    let pool = &route.upstreams[cx.upstream.side].0;
    if cx.upstream.count == 0 && retry::uses_budget(&pool.config) {
        pool.budget.request();
    }
    let key = match pool.config.balance {
        Balance::ConsistentHash => hash_key(session, cx, &pool.config.hash_key),
        _ => Vec::new(),
    };
    let guard =
        pick(pool, &key, &cx.upstream).map_err(|why| unavailable(pool, why, &cx.upstream))?;
    let addr = guard.addr();
    let mut peer = pool.peer(addr, route.timeout);
    if !route.websocket {
        peer.options.http_upstream_request_policy = HttpUpstreamRequestPolicy::deny_upgrades();
    } else if session.is_upgrade_req() {
        crate::upstream::upgrade::for_handshake(&mut peer);
    }
    let up = &mut cx.upstream;
    up.count += 1;
    up.target = Some(addr);
    up.start.get_or_insert_with(Instant::now);
    up.guard = Some(guard);
    super::trace::attempt(cx, addr);
    Ok(Box::new(peer))
}

/// A target that has not failed yet; after a reset, timeout or status,
/// the same one again if no other can take the retry.
fn pick(pool: &Arc<Pool>, key: &[u8], up: &Attempts) -> Result<TargetGuard, Unavailable> {
    match pool.pick(key, &up.failed) {
        Err(Unavailable::NoTarget)
            if up.last_failure.is_some_and(|r| r != RetryReason::Connect) =>
        {
            pool.pick(key, &[])
        }
        other => other,
    }
}

fn unavailable(pool: &Pool, why: Unavailable, up: &Attempts) -> GatewayError {
    match why {
        Unavailable::Overloaded => {
            pool.metrics.overloaded.inc();
            GatewayError::Overloaded
        }
        Unavailable::NoTarget if up.failed.is_empty() => GatewayError::NoHealthyUpstream,
        Unavailable::NoTarget if up.timed_out => GatewayError::UpstreamTimeout,
        Unavailable::NoTarget => GatewayError::BadGateway,
    }
}

/// Asks `policy::retry` about the current attempt's failure, counting a
/// retry (or a refusal of the budget) in the upstream's metrics.
fn decide(session: &Session, cx: &mut RequestCtx, reason: RetryReason) -> bool {
    let Some(guard) = &cx.upstream.guard else {
        return false;
    };
    let (pool, addr) = (guard.pool(), guard.addr());
    let facts = retry::Attempted {
        method: &session.req_header().method,
        attempts: cx.upstream.count,
        body_buffered: !session.as_ref().retry_buffer_truncated(),
        response_started: session.response_written().is_some(),
    };
    let decision = retry::decide(&pool.config, reason, &facts, || pool.budget.try_retry());
    match decision {
        retry::Decision::Retry => {
            if let Some(i) = RetryReason::ALL.iter().position(|r| *r == reason) {
                pool.metrics.retries[i].inc();
            }
        }
        retry::Decision::BudgetExhausted => pool.metrics.budget_exhausted.inc(),
        retry::Decision::No => {}
    }
    let up = &mut cx.upstream;
    up.last_failure = Some(reason);
    up.failed.push(addr);
    decision == retry::Decision::Retry
}

/// `fail_to_connect`: passive health hears it; retried on another target
/// while `retries` allow.
pub(super) fn connect_failed(
    session: &Session,
    cx: &mut RequestCtx,
    mut e: Box<Error>,
) -> Box<Error> {
    super::trace::attempt_done(cx, None);
    if let Some(g) = &cx.upstream.guard {
        g.failed();
    }
    // A connect timeout is a connect failure too (nothing was sent), but
    // the client hears 504 if no other target answers.
    cx.upstream.timed_out = matches!(e.etype(), ErrorType::ConnectTimedout);
    let retry = decide(session, cx, RetryReason::Connect);
    if retry {
        e.set_retry(true);
    }
    e
}

/// `upstream_response_filter`: passive health hears the status; a
/// retryable one becomes an error that `error_while_proxy` retries.
pub(super) fn response_head(
    session: &Session,
    cx: &mut RequestCtx,
    resp: &ResponseHeader,
) -> pingora::Result<()> {
    let status = resp.status.as_u16();
    super::trace::attempt_done(cx, Some(status));
    cx.upstream.status = Some(status);
    cx.upstream.end = Some(Instant::now());
    let Some(g) = &cx.upstream.guard else {
        return Ok(());
    };
    if status < 500 {
        g.succeeded();
        return Ok(());
    }
    g.failed();
    let reason = RetryReason::Status(status);
    if g.pool().config.retry_on.contains(&reason) && decide(session, cx, reason) {
        cx.upstream.retry_status = Some(status);
        return Error::e_explain(ErrorType::HTTPStatus(status), "retrying upstream status");
    }
    Ok(())
}

/// `error_while_proxy`: a retryable status decided above, or a reset or
/// timeout after the request was sent; anything else keeps Pingora's rule
/// (a stale reused connection is retried for idempotent requests).
pub(super) fn proxy_failed(
    session: &Session,
    cx: &mut RequestCtx,
    mut e: Box<Error>,
    client_reused: bool,
) -> Box<Error> {
    super::trace::attempt_done(cx, None);
    if cx.upstream.retry_status.take().is_some() {
        e.set_retry(true);
        return e;
    }
    let reason = match (e.esource(), e.etype()) {
        (ErrorSource::Upstream, ErrorType::ReadTimedout | ErrorType::WriteTimedout) => {
            Some(RetryReason::Timeout)
        }
        (
            ErrorSource::Upstream,
            ErrorType::ConnectionClosed | ErrorType::ReadError | ErrorType::WriteError,
        ) => Some(RetryReason::Reset),
        _ => None,
    };
    let Some(reason) = reason else {
        default_retry(session, &mut e, client_reused);
        return e;
    };
    if let Some(g) = &cx.upstream.guard {
        g.failed();
    }
    cx.upstream.timed_out = reason == RetryReason::Timeout;
    if decide(session, cx, reason) {
        e.set_retry(true);
    } else {
        default_retry(session, &mut e, client_reused);
    }
    e
}

/// Pingora's default: never for non-idempotent methods or a truncated body
/// buffer, else only errors on a reused (possibly stale) connection.
fn default_retry(session: &Session, e: &mut Error, client_reused: bool) {
    let replayable = session.req_header().method.is_idempotent()
        && !session.as_ref().retry_buffer_truncated()
        && session.response_written().is_none();
    if replayable {
        e.retry.decide_reuse(client_reused);
    } else {
        e.set_retry(false);
    }
}
