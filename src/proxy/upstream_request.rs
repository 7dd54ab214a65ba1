//! The request head sent upstream: target, `X-Forwarded-*`, request id,
//! the route's header transforms, and verified identity headers last.

use super::ctx::RequestCtx;
use crate::http::names;
use crate::policy::headers;
use http::HeaderValue;
use pingora::http::RequestHeader;
use pingora::proxy::Session;
use pingora::Result;

pub(super) fn prepare(
    session: &Session,
    up: &mut RequestHeader,
    ctx: &mut RequestCtx,
) -> Result<()> {
    if let Some(uri) = ctx.matched.as_mut().and_then(|m| m.upstream_uri.take()) {
        up.set_uri(uri);
    }
    // X-Forwarded-For: the chain so far plus the peer.
    if let Some(peer) = ctx.client.peer {
        let mut xff = String::with_capacity(48);
        for v in session.req_header().headers.get_all(names::X_FORWARDED_FOR) {
            if let Ok(v) = v.to_str() {
                xff.push_str(v);
                xff.push_str(", ");
            }
        }
        crate::netfmt::push_ip(&mut xff, peer);
        up.insert_header("x-forwarded-for", xff)?;
    }
    // Proto and Host are believed only from trusted proxies.
    let req = session.req_header();
    if !(ctx.client.trusted
        && ctx.cache.is_none()
        && req.headers.contains_key(names::X_FORWARDED_PROTO))
    {
        up.insert_header(
            "x-forwarded-proto",
            HeaderValue::from_static(crate::http::scheme(session)),
        )?;
    }
    if !(ctx.client.trusted
        && ctx.cache.is_none()
        && req.headers.contains_key(names::X_FORWARDED_HOST))
    {
        match crate::http::request_host(req) {
            Some(h) => up.insert_header("x-forwarded-host", h.to_string())?,
            None => {
                up.remove_header(&names::X_FORWARDED_HOST);
            }
        }
    }
    up.insert_header("x-request-id", ctx.request_id.as_str())?;
    super::trace::upstream_header(ctx, up)?;
    if let Some((route, vars)) = ctx.route_and_vars() {
        if let Some(host) = &route.pool(ctx.upstream.side).config.host {
            up.insert_header(http::header::HOST, host.as_str())?;
        }
        headers::apply_request(&route.request_headers, up, &vars)?;
        // Cached and compressed: gatehouse makes every stored variant, so
        // the upstream answers in identity.
        if route.compress.is_some() && ctx.cache.is_some() {
            up.remove_header(&http::header::ACCEPT_ENCODING);
        }
    }
    // Last: identity from verified credentials wins over everything.
    if let Some(identity) = &ctx.identity {
        for (name, value) in &identity.headers {
            up.insert_header(name.clone(), value.clone())?;
        }
    }
    Ok(())
}
