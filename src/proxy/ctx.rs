//! Per-request state carried through the ProxyHttp phases: one slice per
//! policy, each defined next to the policy that owns it. Only the snapshot,
//! the request id, the body count and the gateway's own error are shared.

use super::caching::CacheCtx;
use super::compress::CompressCtx;
use super::errors::GatewayError;
use super::forward::ClientAddr;
use super::mirror::MirrorCtx;
use super::route::Matched;
use super::select::Attempts;
use crate::policy::auth::Identity;
use crate::policy::headers;
use crate::policy::rate_limit::LimitState;
use crate::runtime::{Route, Snapshot};
use prometheus::IntGauge;
use std::sync::Arc;
use std::time::Instant;

/// Keeps a gauge (`gatehouse_inflight_requests`, `gatehouse_tunnels_open`)
/// right even if a request's future is dropped before `logging` runs.
pub(crate) struct InflightGuard(pub IntGauge);

impl Drop for InflightGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

pub(crate) struct RequestCtx {
    pub start: Instant,
    /// Loaded once in `early_request_filter`; fixed for the whole request.
    pub snapshot: Option<Arc<Snapshot>>,
    pub request_id: String,
    pub client: ClientAddr,
    /// Set once routing matched (`route.rs`).
    pub matched: Option<Matched>,
    /// Set by authentication (`policy::auth`).
    pub identity: Option<Identity>,
    /// The rate limit reported in the response headers (`policy::rate_limit`).
    pub limit: Option<LimitState>,
    /// On cached routes (`caching.rs`).
    pub cache: Option<CacheCtx>,
    /// Upstream target choice and attempts (`select.rs`).
    pub upstream: Attempts,
    /// The copy of a mirrored request (`mirror.rs`).
    pub mirror: Option<MirrorCtx>,
    /// On routes with `compress` (`compress.rs`).
    pub compress: Option<CompressCtx>,
    /// Request body bytes received so far.
    pub body_bytes: u64,
    /// An error gatehouse decided itself, rendered by `fail_to_proxy`.
    pub error: Option<GatewayError>,
    pub inflight: Option<InflightGuard>,
    /// An upgraded connection (101): counted in `gatehouse_tunnels_open`
    /// until the tunnel closes.
    pub tunnel: Option<InflightGuard>,
    /// Spans of a traced request (`trace.rs`).
    pub trace: Option<Box<crate::observability::tracing::TraceCtx>>,
}

/// A request that starts now.
impl Default for RequestCtx {
    fn default() -> RequestCtx {
        RequestCtx {
            start: Instant::now(),
            snapshot: None,
            request_id: String::new(),
            client: ClientAddr::default(),
            matched: None,
            identity: None,
            limit: None,
            cache: None,
            upstream: Attempts::default(),
            mirror: None,
            compress: None,
            body_bytes: 0,
            error: None,
            inflight: None,
            tunnel: None,
            trace: None,
        }
    }
}

impl RequestCtx {
    pub(crate) fn route(&self) -> Option<&Route> {
        let snap = self.snapshot.as_ref()?;
        snap.routes.get(self.matched.as_ref()?.route)
    }

    /// The matched route and the values its header templates may use.
    pub(crate) fn route_and_vars(&self) -> Option<(&Route, headers::Vars<'_>)> {
        let route = self.route()?;
        let vars = headers::Vars {
            request_id: &self.request_id,
            client_ip: self.client.ip,
            route: &route.name,
            claims: self.identity.as_ref().and_then(|i| i.claims.as_deref()),
        };
        Some((route, vars))
    }

    /// The normalised path when it differs from the request's.
    pub(crate) fn normalized_path(&self) -> Option<&str> {
        self.matched.as_ref()?.normalized.as_deref()
    }
}
