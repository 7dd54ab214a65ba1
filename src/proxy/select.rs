//! Choosing the upstream target of a request, and failing over to another
//! target when a connection fails (`upstream_peer`, `fail_to_connect`).

use super::ctx::RequestCtx;
use super::errors::GatewayError;
use crate::config::{Balance, HashKey};
use crate::upstream::TargetGuard;
use pingora::prelude::HttpPeer;
use pingora::proxy::Session;
use pingora::upstreams::peer::HttpUpstreamRequestPolicy;
use pingora::{Error, ErrorType};
use std::net::SocketAddr;
use std::time::Instant;

/// The upstream side of one request (the ctx slice of this module).
#[derive(Default)]
pub(crate) struct Attempts {
    /// Connection attempts so far.
    pub count: usize,
    /// Targets that failed to connect during this request.
    pub failed: Vec<SocketAddr>,
    /// The last failed attempt timed out.
    pub timed_out: bool,
    /// The current (finally: the last) target.
    pub target: Option<SocketAddr>,
    /// Counts the request in the target's in-flight number.
    pub guard: Option<TargetGuard>,
    /// When the first target was chosen.
    pub start: Option<Instant>,
    /// When the upstream response ended (or its head arrived).
    pub end: Option<Instant>,
    pub status: Option<u16>,
}

/// The consistent-hash key of a request: `None` client address, path,
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

/// `upstream_peer`: the next target of the route's pool, never one that
/// already failed for this request.
pub(super) fn peer(session: &Session, cx: &mut RequestCtx) -> Result<Box<HttpPeer>, GatewayError> {
    let route = cx.route().ok_or(GatewayError::Internal)?;
    let pool = &route.upstream;
    let key = match pool.config.balance {
        Balance::ConsistentHash => hash_key(session, cx, &pool.config.hash_key),
        _ => Vec::new(),
    };
    let Some(addr) = pool.select(&key, &cx.upstream.failed) else {
        let up = &cx.upstream;
        return Err(if up.failed.is_empty() {
            GatewayError::NoHealthyUpstream
        } else if up.timed_out {
            GatewayError::UpstreamTimeout
        } else {
            GatewayError::BadGateway
        });
    };
    let mut peer = pool.peer(addr, route.timeout);
    if !route.websocket {
        peer.options.http_upstream_request_policy = HttpUpstreamRequestPolicy::deny_upgrades();
    }
    let guard = pool.track(addr);
    let up = &mut cx.upstream;
    up.count += 1;
    up.target = Some(addr);
    up.start.get_or_insert_with(Instant::now);
    up.guard = guard;
    Ok(Box::new(peer))
}

/// `fail_to_connect`: remember the target and retry on another one while
/// the pool's `retries` allow.
pub(super) fn connect_failed(cx: &mut RequestCtx, mut e: Box<Error>) -> Box<Error> {
    let retries = cx.route().map_or(0, |r| r.upstream.config.retries);
    let up = &mut cx.upstream;
    if let Some(t) = up.target {
        up.failed.push(t);
    }
    up.timed_out = matches!(e.etype(), ErrorType::ConnectTimedout);
    if up.count <= retries {
        e.set_retry(true);
    }
    e
}
