//! Per-request state carried through the ProxyHttp phases.

use super::errors::GatewayError;
use crate::cache::store::PurgeTag;
use crate::policy::auth::token_cache::Claims;
use crate::policy::cache::Outcome;
use crate::policy::headers;
use crate::policy::rate_limit::LimitState;
use crate::runtime::{Route, Snapshot};
use crate::upstream::TargetGuard;
use http::{HeaderName, HeaderValue};
use prometheus::IntGauge;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

/// Keeps `gatehouse_inflight_requests` right even if a request's future is
/// dropped before `logging` runs.
pub struct InflightGuard(pub IntGauge);

impl Drop for InflightGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

pub struct RequestCtx {
    pub start: Instant,
    /// Loaded once in `early_request_filter`; fixed for the whole request.
    pub snapshot: Option<Arc<Snapshot>>,
    pub request_id: String,
    /// The client as derived from the peer and trusted `X-Forwarded-For`.
    pub client_ip: Option<IpAddr>,
    pub peer_ip: Option<IpAddr>,
    pub peer_trusted: bool,
    pub route: Option<usize>,
    /// The normalised path when it differs from the request's path.
    pub normalized_path: Option<String>,
    /// The request target to send upstream when it differs from the client's.
    pub upstream_uri: Option<http::Uri>,
    /// Request body bytes received so far.
    pub body_bytes: u64,
    /// Upstream attempts made so far.
    pub attempts: usize,
    /// Targets that failed to connect during this request.
    pub failed: Vec<SocketAddr>,
    pub last_connect_timed_out: bool,
    pub target: Option<SocketAddr>,
    pub target_guard: Option<TargetGuard>,
    pub upstream_start: Option<Instant>,
    pub upstream_end: Option<Instant>,
    pub upstream_status: Option<u16>,
    /// The authenticated identity (JWT `sub` or API-key id), for logs.
    pub user: Option<String>,
    /// The verified JWT's claims.
    pub claims: Option<Claims>,
    /// Identity headers to send upstream.
    pub identity_headers: Vec<(HeaderName, HeaderValue)>,
    /// The rate limit reported in the response headers.
    pub rate_limit: Option<LimitState>,
    /// On cached routes (GET/HEAD): what the cache key and purges use.
    pub cache_tag: Option<PurgeTag>,
    /// On cached routes: how the cache handled the request.
    pub cache_outcome: Option<Outcome>,
    /// The response was judged storable.
    pub cache_stored: bool,
    /// An unsafe method on a cached route: invalidate the path afterwards.
    pub cache_invalidate: bool,
    /// An error gatehouse decided itself, rendered by `fail_to_proxy`.
    pub error: Option<GatewayError>,
    pub inflight: Option<InflightGuard>,
}

impl Default for RequestCtx {
    fn default() -> Self {
        RequestCtx {
            start: Instant::now(),
            snapshot: None,
            request_id: String::new(),
            client_ip: None,
            peer_ip: None,
            peer_trusted: false,
            route: None,
            normalized_path: None,
            upstream_uri: None,
            body_bytes: 0,
            attempts: 0,
            failed: Vec::new(),
            last_connect_timed_out: false,
            target: None,
            target_guard: None,
            upstream_start: None,
            upstream_end: None,
            upstream_status: None,
            user: None,
            claims: None,
            identity_headers: Vec::new(),
            rate_limit: None,
            cache_tag: None,
            cache_outcome: None,
            cache_stored: false,
            cache_invalidate: false,
            error: None,
            inflight: None,
        }
    }
}

impl RequestCtx {
    pub fn route(&self) -> Option<&Route> {
        let snap = self.snapshot.as_ref()?;
        snap.routes.get(self.route?)
    }

    /// The matched route and the values its header templates may use.
    pub fn route_and_vars(&self) -> Option<(&Route, headers::Vars<'_>)> {
        let route = self.route()?;
        let vars = headers::Vars {
            request_id: &self.request_id,
            client_ip: self.client_ip,
            route: &route.name,
            claims: self.claims.as_deref(),
        };
        Some((route, vars))
    }
}
