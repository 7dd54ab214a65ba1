//! The policy pipeline: the only place that states in which order a
//! request's policies run, and how every response is decorated.
//!
//! To add a policy: give it a module (its decision logic in `policy/`, its
//! ctx slice and Pingora glue next to it), one step below, and its config.
//! The ProxyHttp hooks in `mod.rs` only dispatch here.

use super::ctx::RequestCtx;
use super::errors::GatewayError;
use super::{caching, forward, heads, observe, policies, route};
use crate::http::names;
use crate::policy::{cors, headers};
use crate::runtime::GatewayState;
use pingora::http::ResponseHeader;
use pingora::proxy::Session;

/// What the request phase decided.
pub(super) enum Answer {
    /// Go on to the cache and the upstream.
    Continue,
    /// Answered by gatehouse (a CORS preflight): decorate and send this.
    Respond(Box<ResponseHeader>),
    /// A fresh cache hit (`caching::fresh_hit`): decorate as a proxied
    /// response and send it with this body.
    Cached(Box<ResponseHeader>, bytes::Bytes),
}

/// Where a response comes from, for [`response`].
pub(super) enum Source {
    /// Proxied, or served from the cache.
    Upstream,
    /// gatehouse's answer to a CORS preflight.
    Preflight,
    /// gatehouse's own error (problem+json).
    Gateway,
}

/// `request_filter`: every step in order; the first refusal ends it.
pub(super) async fn request(
    state: &GatewayState,
    session: &mut Session,
    cx: &mut RequestCtx,
) -> Result<Answer, GatewayError> {
    let snap = cx.snapshot.as_deref().ok_or(GatewayError::Internal)?;
    // 1. Before any policy: ambiguous credentials, `_` header names and
    //    `Connection` tricks are dealt with; a client can never supply its
    //    own identity.
    forward::sanitize(
        session.req_header_mut(),
        snap.config.server.underscores_in_headers,
    )?;
    forward::strip_identity_headers(session.req_header_mut(), &snap.identity_headers);
    // 2. Route on the normalised path (404/405/400). A CORS preflight is
    //    routed on the method it asks about.
    let req = session.req_header();
    let preflight = cors::preflight_method(&req.method, &req.headers);
    let matched = route::route_request(snap, req, preflight.as_ref().unwrap_or(&req.method))?;
    let route = &snap.routes[matched.route];
    cx.matched = Some(matched);
    // 2b. IP rules, before anything else the route does: 403, nothing sent.
    if let Some(rules) = &route.ip_rules {
        if !rules.allows(cx.client.ip) {
            if let Some(c) = route
                .metrics
                .as_ref()
                .and_then(|m| m.access_denied.as_ref())
            {
                c.inc();
            }
            return Err(GatewayError::AccessDenied);
        }
    }
    // The idle timeout, on a connection that stays open: not after
    // `Connection: close`, an HTTP/1.0 request without keep-alive, or once
    // the process is shutting down (Pingora turned it off then).
    if session.get_keepalive().is_some() {
        session.set_keepalive(Some(snap.config.server.idle_timeout.as_secs().max(1)));
    }
    // 3. CORS preflight: answered here (204, or 403 for an origin the
    //    route does not allow), never proxied, no credentials needed.
    if let (Some(_), Some(cfg)) = (&preflight, &route.cors) {
        if !cors::allowed(
            cfg,
            cors::origin(&session.req_header().headers).unwrap_or(""),
        ) {
            return Err(GatewayError::CorsRejected);
        }
        let mut resp = ResponseHeader::build(204, Some(8)).map_err(|_| GatewayError::Internal)?;
        let _ = resp.insert_header(http::header::CONTENT_LENGTH, "0");
        return Ok(Answer::Respond(Box::new(resp)));
    }
    // 4. Cache preparation on cached routes: unkeyed override headers go,
    //    the request is tagged for its key and for invalidation.
    let normalized = cx.matched.as_ref().and_then(|m| m.normalized.as_deref());
    cx.cache = caching::prepare(session.req_header_mut(), normalized, route);
    // Steps 5 and 6 are awaited only on routes that have them: an async
    // call builds and drops a future even when it has nothing to do.
    // 5. Authentication. Its refusal waits for step 6.
    let req = session.req_header();
    let headers = &req.headers;
    let mut denied = None;
    if route.auth.is_some() {
        let t0 = super::trace::mark(&cx.trace);
        let target = req.uri.path_and_query().map_or("/", |pq| pq.as_str());
        let auth_req = crate::policy::auth::AuthRequest {
            headers,
            method: &req.method,
            uri: target,
            host: crate::http::request_host(req),
            client_ip: cx.client.ip,
            client_cert: session
                .digest()
                .and_then(|d| d.ssl_digest.as_ref())
                .and_then(|t| t.extension.get::<crate::tls::client::ClientCert>()),
        };
        match policies::authenticate(route, &auth_req).await {
            Ok(identity) => cx.identity = identity,
            Err(d) => denied = Some(d),
        }
        super::trace::span(&mut cx.trace, "auth", t0, denied.is_some());
    }
    // 6. Rate limits count every request, authenticated or not (then by
    //    client IP), so credential guessing is limited too; over a limit
    //    the answer is 429 even when the credentials were also bad.
    if !route.rate_limits.is_empty() {
        let t0 = super::trace::mark(&cx.trace);
        let client = cx.client.ip;
        let identity = cx.identity.as_ref();
        let counted = policies::limit(state, route, headers, identity, client, &mut cx.limit).await;
        super::trace::span(&mut cx.trace, "rate_limit", t0, counted.is_err());
        counted?;
    }
    if let Some(d) = denied {
        return Err(GatewayError::Auth(d));
    }
    // 7. Mirror: a share of the accepted requests is copied (`mirror.rs`).
    if let Some((pool, percent)) = &route.mirror {
        if crate::policy::split::sampled(*percent) {
            cx.mirror = Some(super::mirror::MirrorCtx::new(pool.clone()));
        }
    }
    // 8. Compression: the coding this client gets (`compress.rs`); the
    //    upstream response is encoded before the cache stores it.
    if let Some(cfg) = &route.compress {
        cx.compress = Some(super::compress::request(cfg, headers));
    }
    // 9. A fresh hit that needs none of Pingora's cache machinery is
    //    answered from the store here (`caching::fresh_hit`); every other
    //    request on a cached route goes on to Pingora's cache phases.
    if let Some(cache) = &mut cx.cache {
        let compress = cx.compress.as_ref();
        if let Some((head, body)) = caching::fresh_hit(state, session, route, cache, compress) {
            super::trace::cache_lookup(cx);
            super::trace::cache_result(cx, "hit");
            return Ok(Answer::Cached(head, body));
        }
    }
    Ok(Answer::Continue)
}

/// Every response head, proxied or generated, passes here once before it
/// is sent: the only place that adds what a request earned.
pub(super) fn response(
    session: &Session,
    resp: &mut ResponseHeader,
    cx: &mut RequestCtx,
    source: Source,
) -> pingora::Result<()> {
    // 1. The request id and 2. the reported rate limit (a 401 on a
    //    limited route shows it too), into the head's own map.
    let (mut parts, reason) = heads::response_parts(resp);
    let more = (if cx.limit.is_some() { 7 } else { 1 }) + usize::from(cx.cache.is_some());
    heads::reserve(&mut parts.headers, more)?;
    if !cx.request_id.is_empty() {
        let id = heads::value(&cx.request_id)?;
        heads::put(&mut parts.headers, names::X_REQUEST_ID, id)?;
    }
    if let Some(limit) = &cx.limit {
        limit.add_to(&mut parts.headers);
    }
    // 3. Cache-Status, on cached routes.
    if let Some(cache) = &mut cx.cache {
        let status = parts.status.as_u16();
        caching::decorate(session, status, &mut parts.headers, cache, &source)?;
    }
    *resp = heads::response_from(parts, reason)?;
    let Some((route, vars)) = cx.route_and_vars() else {
        return Ok(());
    };
    // 4. The route's response transforms: proxied responses only; the
    //    gateway's own answers are not transformed. Hop-by-hop headers
    //    the upstream named in `Connection` go first.
    if let Source::Upstream = source {
        forward::strip_response_hop_by_hop(resp);
        headers::apply_response(&route.response_headers, resp, &vars)?;
    }
    // 5. CORS: a browser can only read an answer (an error too) that the
    //    route allows; `Vary: Origin` keeps caches from mixing origins.
    if let Some(cfg) = &route.cors {
        let origin = cors::origin(&session.req_header().headers);
        let set = match source {
            Source::Preflight => cors::preflight_headers(cfg, origin.unwrap_or("")),
            _ => cors::response_headers(cfg, origin),
        };
        for (name, value) in set {
            resp.insert_header(name, value)?;
        }
        if !matches!(source, Source::Preflight) {
            resp.append_header(http::header::VARY, "Origin")?;
        }
    }
    Ok(())
}

/// `logging`, after the response: cache bookkeeping (lookup counts,
/// invalidation after unsafe methods), then metrics and the access log.
pub(super) fn log(state: &GatewayState, session: &Session, cx: &mut RequestCtx) {
    if let (Some(route), Some(cache)) = (cx.route(), &cx.cache) {
        let status = session.response_written().map_or(0, |r| r.status.as_u16());
        caching::finish(state, route, cache, status);
    }
    observe::record(state, session, cx);
    cx.upstream.guard = None;
}
