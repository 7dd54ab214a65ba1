//! The `ProxyHttp` implementation. Every hook is a short dispatcher: the
//! order of the policies is `pipeline.rs`, each policy's glue is its own
//! module.
//!
//! Phase map:
//! - `early_request_filter`: load the snapshot, request id, client address,
//!   head limits (`limits.rs`).
//! - `request_filter`: `pipeline::request` (identity strip, route, CORS
//!   preflight, cache preparation, auth, rate limits).
//! - `request_body_filter`: `max_body` on streamed bodies.
//! - cache hooks: `caching.rs` and `policy::cache`.
//! - `upstream_peer` / `fail_to_connect`: target choice and failover
//!   (`select.rs`).
//! - `upstream_request_filter`: the head sent upstream (`upstream_request.rs`).
//! - `upstream_response_*`: upstream status and timing.
//! - `response_filter`: `pipeline::response` for proxied and cached answers.
//! - `fail_to_proxy`: gatehouse's own errors, as problem+json, decorated by
//!   the same `pipeline::response`.
//! - `logging`: cache bookkeeping, metrics and the access log (`observe.rs`).

pub(crate) mod accept;
mod caching;
mod compress;
pub(crate) mod ctx;
pub(crate) mod errors;
pub(crate) mod explain;
pub(crate) mod forward;
mod heads;
mod limits;
pub(crate) mod listen;
pub(crate) mod mirror;
mod observe;
mod pipeline;
mod policies;
mod reject;
mod route;
mod select;
mod trace;
mod upstream_request;

use crate::runtime::GatewayState;
use async_trait::async_trait;
use bytes::Bytes;
use ctx::{InflightGuard, RequestCtx};
use errors::GatewayError;
use pingora::cache::key::HashBinary;
use pingora::cache::{CacheKey, CacheMeta, ForcedFreshness, HitHandler, RespCacheable};
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::modules::http::HttpModules;
use pingora::prelude::HttpPeer;
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use pingora::{Error, ErrorType, Result};
use pipeline::{Answer, Source};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub(crate) struct Gateway {
    pub state: Arc<GatewayState>,
    pub mirrors: Arc<mirror::Mirrors>,
}

/// The error `ctx.error` now holds, as the Pingora error that stops the
/// request (`fail_to_proxy` then answers it).
fn stop(ctx: &mut RequestCtx, err: GatewayError, why: &'static str) -> Box<Error> {
    let status = err.status();
    ctx.error = Some(err);
    Error::explain(ErrorType::HTTPStatus(status), why)
}

/// Writes `err` as problem+json, decorated like every response.
async fn respond(session: &mut Session, ctx: &mut RequestCtx, err: &GatewayError) -> Result<()> {
    let body = err.problem().body(&ctx.request_id);
    let mut resp = err.response_header(body.len())?;
    pipeline::response(session, &mut resp, ctx, Source::Gateway)?;
    let head_only = session.req_header().method == http::Method::HEAD;
    session
        .write_response_header(Box::new(resp), head_only)
        .await?;
    if !head_only {
        session.write_response_body(Some(body), true).await?;
    }
    Ok(())
}

/// Answers `err` from `request_filter` (the request ends there).
async fn refuse(session: &mut Session, ctx: &mut RequestCtx, err: GatewayError) -> Result<bool> {
    respond(session, ctx, &err).await?;
    ctx.error = Some(err);
    Ok(true)
}

#[async_trait]
impl ProxyHttp for Gateway {
    /// Boxed: Pingora keeps the context inside its per-request future,
    /// twice, and that future is copied whole when it is boxed.
    type CTX = Box<RequestCtx>;

    fn new_ctx(&self) -> Box<RequestCtx> {
        Box::default()
    }

    /// No downstream modules: the default registers a (disabled) compression
    /// module whose per-request context costs allocations on every request.
    fn init_downstream_modules(&self, _modules: &mut HttpModules) {}

    /// The head has been parsed: tell the [`accept`] deadline (every
    /// HTTP/1 session carries its connection's signal).
    fn on_connection_reuse(
        &self,
        _session: &mut Session,
        _ctx: &mut Box<RequestCtx>,
        signal: Box<dyn std::any::Any + Send + Sync>,
    ) {
        if let Some(signal) = signal.downcast_ref::<accept::HeadSignal>() {
            signal.arrived(&self.state);
        }
    }

    async fn early_request_filter(
        &self,
        session: &mut Session,
        ctx: &mut Box<RequestCtx>,
    ) -> Result<()> {
        let snap = self.state.snapshots.load();
        self.state.metrics.inflight.inc();
        ctx.inflight = Some(InflightGuard(self.state.metrics.inflight.clone()));
        ctx.request_id = forward::request_id(session.req_header());
        ctx.client = forward::ClientAddr::of(session, &snap.config.server.trusted_proxies);
        trace::begin(&snap, session.req_header(), ctx);
        let checked = limits::check_head(session, &snap.config.server.limits);
        // Each read of the body must come within `body_timeout` (HTTP/1;
        // Pingora's default is 60 s, and it is a no-op for HTTP/2).
        session.set_read_timeout(Some(snap.config.server.limits.body_timeout));
        ctx.snapshot = Some(snap);
        checked.map_err(|e| {
            // Oversized or ambiguous: answer (fail_to_proxy) and close.
            session.set_keepalive(None);
            stop(ctx, e, "request refused by limits")
        })
    }

    async fn request_filter(
        &self,
        session: &mut Session,
        ctx: &mut Box<RequestCtx>,
    ) -> Result<bool> {
        match pipeline::request(&self.state, session, ctx).await {
            Ok(Answer::Continue) => Ok(false),
            Ok(Answer::Respond(mut resp)) => {
                pipeline::response(session, &mut resp, ctx, Source::Preflight)?;
                session.write_response_header(resp, true).await?;
                Ok(true)
            }
            Ok(Answer::Cached(mut resp, body)) => {
                pipeline::response(session, &mut resp, ctx, Source::Upstream)?;
                let empty = body.is_empty();
                session.write_response_header(resp, empty).await?;
                if !empty {
                    session.write_response_body(Some(body), true).await?;
                }
                Ok(true)
            }
            Err(e) => refuse(session, ctx, e).await,
        }
    }

    fn request_cache_filter(&self, session: &mut Session, ctx: &mut Box<RequestCtx>) -> Result<()> {
        if let (Some(cache), None) = (&mut ctx.cache, &ctx.error) {
            caching::enable(&self.state, session, cache);
            // A bypass (`no-store`) looks nothing up.
            if cache.outcome.is_none() {
                trace::cache_lookup(ctx);
            }
        }
        Ok(())
    }

    fn cache_key_callback(&self, session: &Session, ctx: &mut Box<RequestCtx>) -> Result<CacheKey> {
        match (ctx.route(), &ctx.cache) {
            (Some(route), Some(cache)) => Ok(caching::key(session, route, cache)),
            _ => Error::e_explain(ErrorType::InternalError, "cache key without a cached route"),
        }
    }

    /// `Cache-Control: no-cache` (or `max-age=0`) from the client makes a
    /// stored response revalidate first.
    async fn cache_hit_filter(
        &self,
        session: &mut Session,
        _meta: &CacheMeta,
        _hit_handler: &mut HitHandler,
        _is_fresh: bool,
        ctx: &mut Box<RequestCtx>,
    ) -> Result<Option<ForcedFreshness>> {
        trace::cache_result(ctx, "hit");
        let revalidate = crate::policy::cache::request_wants_revalidation(session.req_header());
        Ok(revalidate.then_some(ForcedFreshness::ForceExpired))
    }

    fn response_cache_filter(
        &self,
        session: &Session,
        resp: &ResponseHeader,
        ctx: &mut Box<RequestCtx>,
    ) -> Result<RespCacheable> {
        let route = ctx.snapshot.as_deref().zip(ctx.matched.as_ref());
        Ok(match (route, &mut ctx.cache) {
            (Some((snap, m)), Some(cache)) => {
                caching::response_cacheable(session, resp, &snap.routes[m.route], cache)
            }
            _ => RespCacheable::Uncacheable(pingora::cache::NoCacheReason::InternalError),
        })
    }

    fn cache_vary_filter(
        &self,
        meta: &CacheMeta,
        ctx: &mut Box<RequestCtx>,
        req: &RequestHeader,
    ) -> Option<HashBinary> {
        caching::variance(meta, req, ctx.compress.as_ref())
    }

    /// Stale-while-revalidate within the stored window (Pingora checks it),
    /// and stale-if-error on upstream failures.
    fn should_serve_stale(
        &self,
        _session: &mut Session,
        _ctx: &mut Box<RequestCtx>,
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
        end_of_stream: bool,
        ctx: &mut Box<RequestCtx>,
    ) -> Result<()> {
        if ctx.upstream.count <= 1 {
            self.mirrors
                .on_body(&mut ctx.mirror, body.as_ref(), end_of_stream);
        }
        let (Some(b), Some(snap)) = (body.as_ref(), ctx.snapshot.as_ref()) else {
            return Ok(());
        };
        ctx.body_bytes += b.len() as u64;
        if ctx.body_bytes <= snap.config.server.limits.max_body {
            return Ok(());
        }
        session.set_keepalive(None);
        Err(stop(
            ctx,
            GatewayError::PayloadTooLarge,
            "request body over max_body",
        ))
    }

    async fn upstream_peer(
        &self,
        session: &mut Session,
        ctx: &mut Box<RequestCtx>,
    ) -> Result<Box<HttpPeer>> {
        match select::peer(session, ctx).await {
            Ok(peer) => Ok(peer),
            Err(e) => Err(stop(ctx, e, "no upstream target")),
        }
    }

    fn fail_to_connect(
        &self,
        session: &mut Session,
        _peer: &HttpPeer,
        ctx: &mut Box<RequestCtx>,
        e: Box<Error>,
    ) -> Box<Error> {
        select::connect_failed(session, ctx, e)
    }

    fn error_while_proxy(
        &self,
        peer: &HttpPeer,
        session: &mut Session,
        e: Box<Error>,
        ctx: &mut Box<RequestCtx>,
        client_reused: bool,
    ) -> Box<Error> {
        let e = e.more_context(format!("Peer: {peer}"));
        select::proxy_failed(session, ctx, e, client_reused)
    }

    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        up: &mut RequestHeader,
        ctx: &mut Box<RequestCtx>,
    ) -> Result<()> {
        upstream_request::prepare(session, up, ctx)?;
        if let (Some(m), 1) = (&mut ctx.mirror, ctx.upstream.count) {
            m.head(up);
        }
        Ok(())
    }

    async fn upstream_response_filter(
        &self,
        session: &mut Session,
        resp: &mut ResponseHeader,
        ctx: &mut Box<RequestCtx>,
    ) -> Result<()> {
        select::response_head(session, ctx, resp)?;
        if resp.status == http::StatusCode::SWITCHING_PROTOCOLS {
            let tunnels = &self.state.metrics.tunnels_open;
            tunnels.inc();
            ctx.tunnel = Some(InflightGuard(tunnels.clone()));
        }
        if let Some(slot) = &mut ctx.compress {
            let route = ctx.snapshot.as_ref().zip(ctx.matched.as_ref());
            if let Some(cfg) = route.and_then(|(s, m)| s.routes[m.route].compress.as_ref()) {
                let head = session.req_header().method == http::Method::HEAD;
                compress::response_head(cfg, slot, head, resp)?;
            }
        }
        Ok(())
    }

    fn upstream_response_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<Bytes>,
        end_of_stream: bool,
        ctx: &mut Box<RequestCtx>,
    ) -> Result<Option<Duration>> {
        if let Some(slot) = &mut ctx.compress {
            compress::body(slot, body, end_of_stream)?;
        }
        if end_of_stream {
            ctx.upstream.end = Some(Instant::now());
        }
        Ok(None)
    }

    async fn response_filter(
        &self,
        session: &mut Session,
        resp: &mut ResponseHeader,
        ctx: &mut Box<RequestCtx>,
    ) -> Result<()> {
        pipeline::response(session, resp, ctx, Source::Upstream)
    }

    async fn logging(&self, session: &mut Session, _e: Option<&Error>, ctx: &mut Box<RequestCtx>) {
        pipeline::log(&self.state, session, ctx);
    }

    /// Decisions gatehouse made itself (no healthy target) and clients that
    /// went away are not worth an error-log line each; they are counted.
    /// Refused client requests (limits, framing) are counted in metrics and
    /// the access log, not worth an error line each.
    fn suppress_error_log(&self, _session: &Session, ctx: &Box<RequestCtx>, e: &Error) -> bool {
        matches!(
            ctx.error,
            Some(
                GatewayError::NoHealthyUpstream
                    | GatewayError::PayloadTooLarge
                    | GatewayError::HeadersTooLarge
                    | GatewayError::UriTooLong
                    | GatewayError::RequestTimeout
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

    /// Every error answer, unless the response has already started (then
    /// nothing more can be said) or the client is gone.
    async fn fail_to_proxy(
        &self,
        session: &mut Session,
        e: &Error,
        ctx: &mut Box<RequestCtx>,
    ) -> FailToProxy {
        let Some(err) = ctx.error.take().or_else(|| GatewayError::from_pingora(e)) else {
            return FailToProxy {
                error_code: 0,
                can_reuse_downstream: false,
            };
        };
        if session.response_written().is_some() {
            // The head (and maybe some body) may still sit in the client
            // stream's write buffer: send it, then close, so the client sees
            // a response cut short rather than no response at all.
            session.as_downstream_mut().shutdown().await;
        } else {
            if ctx.request_id.is_empty() {
                ctx.request_id = crate::http::new_request_id();
            }
            session.set_keepalive(None);
            if let Err(werr) = respond(session, ctx, &err).await {
                log::debug!("could not send error response: {werr}");
            }
        }
        let code = err.status();
        ctx.error = Some(err);
        FailToProxy {
            error_code: code,
            can_reuse_downstream: false,
        }
    }
}
