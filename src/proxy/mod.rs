//! The `ProxyHttp` implementation: a thin dispatcher over the phases.
//!
//! Phase map:
//! - `early_request_filter`: load the snapshot, request id, client IP.
//! - `request_filter`: normalise the path, route (404/405/400).
//! - `upstream_peer` / `fail_to_connect`: target selection and failover.
//! - `upstream_request_filter`: upstream target, `X-Forwarded-*`, request id.
//! - `response_filter`: request id on the response.
//! - `fail_to_proxy`: every error response, as problem+json.

mod caching;
pub mod ctx;
pub mod edge;
pub mod errors;
pub mod forward;
mod limits;
mod observe;
mod policies;
mod route;
mod upstream_request;

use crate::config::CorsConfig;
use crate::config::HashKey;
use crate::policy::cache::Outcome;
use crate::policy::{cors, headers};
use crate::runtime::GatewayState;
use async_trait::async_trait;
use bytes::Bytes;
use ctx::{InflightGuard, RequestCtx};
use errors::{respond, GatewayError};
use pingora::cache::key::HashBinary;
use pingora::cache::{CacheKey, CacheMeta, ForcedFreshness, HitHandler, RespCacheable};
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::modules::http::HttpModules;
use pingora::prelude::HttpPeer;
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use pingora::upstreams::peer::HttpUpstreamRequestPolicy;
use pingora::{Error, ErrorType, Result};
use route::route_request;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub struct Gateway {
    pub state: Arc<GatewayState>,
}

/// Headers an error response still owes the client: the route's rate-limit
/// state (a 429 has its own) and, on cached routes, `Cache-Status`.
fn error_extras(
    err: &GatewayError,
    ctx: &mut RequestCtx,
    req: &http::HeaderMap,
) -> Vec<(&'static str, String)> {
    let mut extra = match (err, &ctx.rate_limit) {
        (GatewayError::RateLimited(_), _) | (_, None) => Vec::new(),
        (_, Some(state)) => state.headers(),
    };
    if ctx.cache_tag.is_some() {
        let outcome = ctx.cache_outcome.unwrap_or(Outcome::Miss {
            stored: false,
            collapsed: false,
        });
        ctx.cache_outcome = Some(outcome);
        extra.push(("cache-status", outcome.cache_status()));
    }
    // Browsers can only read an error a CORS route allows them to.
    if let Some(cfg) = ctx.route().and_then(|r| r.cors.as_ref()) {
        extra.extend(cors::response_headers(cfg, cors::origin(req)));
        extra.push(("vary", "Origin".into()));
    }
    extra
}

impl Gateway {
    /// Answers a CORS preflight for a route with `cors` (never proxied).
    async fn preflight(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        cfg: &CorsConfig,
    ) -> Result<bool> {
        let origin = cors::origin(&session.req_header().headers)
            .unwrap_or("")
            .to_string();
        if !cors::allowed(cfg, &origin) {
            return self.fail(session, ctx, GatewayError::CorsRejected).await;
        }
        let mut resp = ResponseHeader::build(204, Some(8))?;
        for (name, value) in cors::preflight_headers(cfg, &origin) {
            resp.insert_header(name, value)?;
        }
        resp.insert_header("x-request-id", ctx.request_id.as_str())?;
        resp.insert_header(http::header::CONTENT_LENGTH, "0")?;
        session.write_response_header(Box::new(resp), true).await?;
        Ok(true)
    }

    fn hash_key(&self, session: &Session, ctx: &RequestCtx, key: &HashKey) -> Vec<u8> {
        match key {
            HashKey::ClientIp => ctx
                .client_ip
                .map(|ip| ip.to_string().into_bytes())
                .unwrap_or_default(),
            HashKey::Path => ctx
                .normalized_path
                .as_deref()
                .unwrap_or(session.req_header().uri.path())
                .as_bytes()
                .to_vec(),
            HashKey::Header(name) => session
                .req_header()
                .headers
                .get(name)
                .map(|v| v.as_bytes().to_vec())
                .unwrap_or_default(),
            // Requests without the claim fall back to the client address.
            HashKey::Claim(name) => match ctx.claims.as_ref().and_then(|c| c.get(name)) {
                Some(v) => crate::http::claim_text(v).as_bytes().to_vec(),
                None => self.hash_key(session, ctx, &HashKey::ClientIp),
            },
        }
    }

    async fn fail(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        err: GatewayError,
    ) -> Result<bool> {
        // A 401 on a limited route still shows the limit; a 429 shows its own.
        let extra = error_extras(&err, ctx, &session.req_header().headers);
        respond(session, &err, &ctx.request_id, &extra).await?;
        ctx.error = Some(err);
        Ok(true)
    }
}

#[async_trait]
impl ProxyHttp for Gateway {
    type CTX = RequestCtx;

    fn new_ctx(&self) -> RequestCtx {
        RequestCtx::default()
    }

    /// No downstream modules: the default registers a (disabled) compression
    /// module whose per-request context costs allocations on every request.
    fn init_downstream_modules(&self, _modules: &mut HttpModules) {}

    /// The head has been parsed: tell the [`edge::Edge`] deadline.
    fn on_connection_reuse(
        &self,
        _session: &mut Session,
        _ctx: &mut RequestCtx,
        prev: Box<dyn std::any::Any + Send + Sync>,
    ) {
        if let Some(signal) = prev.downcast_ref::<edge::HeadSignal>() {
            signal.0.store(true, std::sync::atomic::Ordering::Release);
        }
    }

    /// Marks the connection as reused for the next request's deadline.
    fn persist_connection_context(
        &self,
        _session: &Session,
        _ctx: &RequestCtx,
    ) -> Option<Box<dyn std::any::Any + Send + Sync>> {
        Some(Box::new(edge::Reused))
    }

    async fn early_request_filter(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        let snap = self.state.snapshots.load();
        self.state.metrics.inflight.inc();
        ctx.inflight = Some(InflightGuard(self.state.metrics.inflight.clone()));
        let req = session.req_header();
        ctx.request_id = match req.headers.get("x-request-id") {
            Some(v) if crate::http::sane_request_id(v.as_bytes()) => {
                v.to_str().unwrap_or_default().to_string()
            }
            _ => crate::http::new_request_id(),
        };
        let trusted = &snap.config.server.trusted_proxies;
        if let Some(peer) = session
            .client_addr()
            .and_then(|a| a.as_inet())
            .map(|a| a.ip())
        {
            ctx.peer_ip = Some(peer);
            ctx.peer_trusted = forward::is_trusted(peer, trusted);
            let xff: Vec<&str> = if ctx.peer_trusted {
                req.headers
                    .get_all("x-forwarded-for")
                    .iter()
                    .filter_map(|v| v.to_str().ok())
                    .collect()
            } else {
                Vec::new()
            };
            ctx.client_ip = Some(forward::client_ip(peer, &xff, trusted));
        }
        let limits = snap.config.server.limits;
        ctx.snapshot = Some(snap);
        if let Err(e) = limits::check_head(session, &limits) {
            // Oversized or ambiguous: answer (fail_to_proxy) and close.
            let status = e.status();
            ctx.error = Some(e);
            session.set_keepalive(None);
            return Err(Error::explain(
                ErrorType::HTTPStatus(status),
                "request refused by limits",
            ));
        }
        Ok(())
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        let Some(snap) = ctx.snapshot.clone() else {
            return self.fail(session, ctx, GatewayError::Internal).await;
        };
        // Before any policy: a client can never supply its own identity.
        forward::strip_identity_headers(session.req_header_mut(), &snap.identity_headers);
        let req = session.req_header();
        let preflight = cors::preflight_method(&req.method, &req.headers);
        let routed = match route_request(ctx, req, preflight.as_ref().unwrap_or(&req.method)) {
            Ok(r) => r,
            Err(e) => return self.fail(session, ctx, e).await,
        };
        ctx.route = Some(routed.route);
        ctx.normalized_path = routed.normalized;
        ctx.upstream_uri = routed.upstream_uri;
        session.set_keepalive(Some(snap.config.server.idle_timeout.as_secs().max(1)));
        let route = &snap.routes[routed.route];
        if let (Some(_), Some(cfg)) = (&preflight, &route.cors) {
            return self.preflight(session, ctx, cfg).await;
        }
        caching::prepare(session.req_header_mut(), ctx, route);
        match policies::on_request(&self.state, session, ctx, &snap, route).await {
            Ok(()) => Ok(false),
            Err(e) => self.fail(session, ctx, e).await,
        }
    }

    fn request_cache_filter(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<()> {
        caching::enable(&self.state, session, ctx);
        Ok(())
    }

    fn cache_key_callback(&self, session: &Session, ctx: &mut RequestCtx) -> Result<CacheKey> {
        caching::key(session, ctx)
    }

    /// `Cache-Control: no-cache` (or `max-age=0`) from the client makes a
    /// stored response revalidate first.
    async fn cache_hit_filter(
        &self,
        session: &mut Session,
        _meta: &CacheMeta,
        _hit_handler: &mut HitHandler,
        _is_fresh: bool,
        _ctx: &mut RequestCtx,
    ) -> Result<Option<ForcedFreshness>> {
        let revalidate = crate::policy::cache::request_wants_revalidation(session.req_header());
        Ok(revalidate.then_some(ForcedFreshness::ForceExpired))
    }

    fn response_cache_filter(
        &self,
        session: &Session,
        resp: &ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<RespCacheable> {
        Ok(caching::response_cacheable(session, resp, ctx))
    }

    fn cache_vary_filter(
        &self,
        meta: &CacheMeta,
        _ctx: &mut RequestCtx,
        req: &RequestHeader,
    ) -> Option<HashBinary> {
        caching::variance(meta, req)
    }

    /// Stale-while-revalidate within the stored window (Pingora checks it),
    /// and stale-if-error on upstream failures.
    fn should_serve_stale(
        &self,
        _session: &mut Session,
        _ctx: &mut RequestCtx,
        error: Option<&Error>,
    ) -> bool {
        error.is_none_or(|e| e.esource() == &pingora::ErrorSource::Upstream)
    }

    /// Bodies without a usable `Content-Length` (chunked) are counted as
    /// they stream: past `max_body` the request is stopped, answered 413
    /// (if nothing was sent yet) and the connection closed.
    async fn request_body_filter(
        &self,
        session: &mut Session,
        body: &mut Option<Bytes>,
        _end_of_stream: bool,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        if let (Some(b), Some(snap)) = (body.as_ref(), ctx.snapshot.as_ref()) {
            ctx.body_bytes += b.len() as u64;
            if ctx.body_bytes > snap.config.server.limits.max_body {
                ctx.error = Some(GatewayError::PayloadTooLarge);
                session.set_keepalive(None);
                return Err(Error::explain(
                    ErrorType::HTTPStatus(413),
                    "request body over max_body",
                ));
            }
        }
        Ok(())
    }

    async fn upstream_peer(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Result<Box<HttpPeer>> {
        let route = ctx
            .route()
            .ok_or_else(|| Error::explain(ErrorType::InternalError, "no route"))?;
        let pool = route.upstream.clone();
        let timeout = route.timeout;
        let websocket = route.websocket;
        let key = match pool.config.balance {
            crate::config::Balance::ConsistentHash => {
                self.hash_key(session, ctx, &pool.config.hash_key)
            }
            _ => Vec::new(),
        };
        match pool.select(&key, &ctx.failed) {
            Some(addr) => {
                ctx.attempts += 1;
                ctx.target = Some(addr);
                ctx.upstream_start.get_or_insert_with(Instant::now);
                ctx.target_guard = None;
                ctx.target_guard = pool.track(addr);
                let mut peer = pool.peer(addr, timeout);
                if !websocket {
                    peer.options.http_upstream_request_policy =
                        HttpUpstreamRequestPolicy::deny_upgrades();
                }
                Ok(Box::new(peer))
            }
            None => {
                let err = if ctx.failed.is_empty() {
                    GatewayError::NoHealthyUpstream
                } else if ctx.last_connect_timed_out {
                    GatewayError::UpstreamTimeout
                } else {
                    GatewayError::BadGateway
                };
                let status = err.status();
                ctx.error = Some(err);
                Err(Error::explain(
                    ErrorType::HTTPStatus(status),
                    "no upstream target",
                ))
            }
        }
    }

    fn fail_to_connect(
        &self,
        _session: &mut Session,
        _peer: &HttpPeer,
        ctx: &mut RequestCtx,
        mut e: Box<Error>,
    ) -> Box<Error> {
        if let Some(t) = ctx.target {
            ctx.failed.push(t);
        }
        ctx.last_connect_timed_out = matches!(e.etype(), ErrorType::ConnectTimedout);
        let retries = ctx.route().map_or(0, |r| r.upstream.config.retries);
        if ctx.attempts <= retries {
            e.set_retry(true);
        }
        e
    }

    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        up: &mut RequestHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        upstream_request::prepare(session, up, ctx)
    }

    async fn upstream_response_filter(
        &self,
        _session: &mut Session,
        resp: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        ctx.upstream_status = Some(resp.status.as_u16());
        ctx.upstream_end = Some(Instant::now());
        Ok(())
    }

    fn upstream_response_body_filter(
        &self,
        _session: &mut Session,
        _body: &mut Option<Bytes>,
        end_of_stream: bool,
        ctx: &mut RequestCtx,
    ) -> Result<Option<Duration>> {
        if end_of_stream {
            ctx.upstream_end = Some(Instant::now());
        }
        Ok(None)
    }

    async fn logging(&self, session: &mut Session, _e: Option<&Error>, ctx: &mut RequestCtx) {
        let status = session.response_written().map_or(0, |r| r.status.as_u16());
        let metrics = ctx
            .snapshot
            .as_ref()
            .is_some_and(|s| s.config.admin.is_some());
        caching::finish(&self.state, ctx, status, metrics);
        observe::record(&self.state, session, ctx);
        ctx.target_guard = None;
    }

    async fn response_filter(
        &self,
        session: &mut Session,
        resp: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        resp.insert_header("x-request-id", ctx.request_id.as_str())?;
        if let Some(outcome) = caching::outcome(session, resp.status.as_u16(), ctx) {
            ctx.cache_outcome = Some(outcome);
            caching::add_status(resp, outcome)?;
        }
        if let Some(state) = &ctx.rate_limit {
            state.add_to(resp)?;
        }
        if let Some((route, vars)) = ctx.route_and_vars() {
            headers::apply_response(&route.response_headers, resp, &vars)?;
            if let Some(cfg) = &route.cors {
                for (name, value) in
                    cors::response_headers(cfg, cors::origin(&session.req_header().headers))
                {
                    resp.insert_header(name, value)?;
                }
                resp.append_header(http::header::VARY, "Origin")?;
            }
        }
        Ok(())
    }

    /// Decisions gatehouse made itself (no healthy target) and clients that
    /// went away are not worth an error-log line each; they are counted.
    /// Refused client requests (limits, framing) are counted in metrics and
    /// the access log, not worth an error line each.
    fn suppress_error_log(&self, _session: &Session, ctx: &RequestCtx, e: &Error) -> bool {
        matches!(
            ctx.error,
            Some(
                GatewayError::NoHealthyUpstream
                    | GatewayError::PayloadTooLarge
                    | GatewayError::HeadersTooLarge
                    | GatewayError::UriTooLong
                    | GatewayError::BadRequest(_)
            )
        ) || matches!(
            e.etype(),
            ErrorType::Custom("InvalidChunk") | ErrorType::InvalidHTTPHeader
        ) || (e.esource() == &pingora::ErrorSource::Downstream
            && matches!(
                e.etype(),
                ErrorType::ConnectionClosed | ErrorType::ReadError | ErrorType::WriteError
            ))
    }

    async fn fail_to_proxy(
        &self,
        session: &mut Session,
        e: &Error,
        ctx: &mut RequestCtx,
    ) -> FailToProxy {
        let err = match ctx.error.clone() {
            Some(err) => Some(err),
            None => GatewayError::from_pingora(e),
        };
        let Some(err) = err else {
            return FailToProxy {
                error_code: 0,
                can_reuse_downstream: false,
            };
        };
        let code = err.status();
        // Once the response has started nothing more can be said.
        if session.response_written().is_none() {
            if ctx.request_id.is_empty() {
                ctx.request_id = crate::http::new_request_id();
            }
            session.set_keepalive(None);
            let extra = error_extras(&err, ctx, &session.req_header().headers);
            if let Err(werr) = respond(session, &err, &ctx.request_id, &extra).await {
                log::debug!("could not send error response: {werr}");
            }
        }
        ctx.error = Some(err);
        FailToProxy {
            error_code: code,
            can_reuse_downstream: false,
        }
    }
}
