//! The request head sent upstream: target, `X-Forwarded-*`, request id,
//! the route's header transforms, and verified identity headers last.
//! The fixed headers are written into the head's own map (`heads.rs`).

use super::ctx::RequestCtx;
use super::heads::{self, put};
use crate::http::names;
use crate::policy::headers;
use http::{HeaderMap, HeaderName, HeaderValue};
use pingora::http::RequestHeader;
use pingora::proxy::Session;
use pingora::Result;

/// The headers added below on every request: room for them is made once.
const ADDED: usize = 6;

pub(super) fn prepare(
    session: &Session,
    up: &mut RequestHeader,
    ctx: &mut RequestCtx,
) -> Result<()> {
    let (mut parts, extra) = heads::request_parts(up);
    if let Some(uri) = ctx.matched.as_mut().and_then(|m| m.upstream_uri.take()) {
        parts.uri = uri;
    }
    heads::reserve(&mut parts.headers, ADDED)?;
    forwarded(session, &mut parts.headers, ctx)?;
    put(
        &mut parts.headers,
        names::X_REQUEST_ID,
        heads::value(&ctx.request_id)?,
    )?;
    *up = heads::request_from(parts, extra)?;
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

/// `X-Forwarded-For` (the chain so far plus the peer), and `-Proto` and
/// `-Host`, which are believed only from trusted proxies.
fn forwarded(session: &Session, h: &mut HeaderMap, ctx: &RequestCtx) -> Result<()> {
    if let Some(peer) = ctx.client.peer {
        let mut xff = String::with_capacity(48);
        for v in h.get_all(names::X_FORWARDED_FOR) {
            if let Ok(v) = v.to_str() {
                xff.push_str(v);
                xff.push_str(", ");
            }
        }
        crate::netfmt::push_ip(&mut xff, peer);
        put(h, names::X_FORWARDED_FOR, heads::value(&xff)?)?;
    }
    let keep = |name: &HeaderName, h: &HeaderMap| {
        ctx.client.trusted && ctx.cache.is_none() && h.contains_key(name)
    };
    if !keep(&names::X_FORWARDED_PROTO, h) {
        let proto = HeaderValue::from_static(crate::http::scheme(session));
        put(h, names::X_FORWARDED_PROTO, proto)?;
    }
    if !keep(&names::X_FORWARDED_HOST, h) {
        match crate::http::request_host(session.req_header()) {
            Some(host) => {
                put(h, names::X_FORWARDED_HOST, heads::value(host)?)?;
            }
            None => {
                h.remove(names::X_FORWARDED_HOST);
            }
        }
    }
    Ok(())
}
