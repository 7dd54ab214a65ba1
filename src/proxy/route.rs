//! Routing one request: normalise, match, and work out the upstream target.

use super::errors::GatewayError;
use super::forward;
use crate::config::RouteConfig;
use crate::http::normalize_host;
use crate::http::normalize_path;
use crate::router::{RouteOutcome, RouteRequest, Router};
use crate::runtime::Snapshot;
use pingora::http::RequestHeader;

/// What routing decided (the ctx slice of this module), owned so the
/// session can be mutated afterwards.
pub(crate) struct Matched {
    /// Index into `Snapshot::routes`.
    pub route: usize,
    /// The normalised path when it differs from the request's path.
    pub normalized: Option<String>,
    /// The request target to send upstream when it differs from the client's.
    pub upstream_uri: Option<http::Uri>,
}

/// Routes `req` as if its method were `method` (a CORS preflight is routed
/// on the method it asks about).
/// `http://...` or `https://...` (any case): an absolute-form target.
fn is_absolute_form(raw: &[u8]) -> bool {
    let starts = |p: &[u8]| {
        raw.get(..p.len())
            .is_some_and(|h| h.eq_ignore_ascii_case(p))
    };
    starts(b"http://") || starts(b"https://")
}

pub(super) fn route_request(
    snap: &Snapshot,
    req: &RequestHeader,
    method: &http::Method,
) -> Result<Matched, GatewayError> {
    if snap.awaiting_config() {
        return Err(GatewayError::NoConfiguration);
    }
    route_in(&snap.router, &snap.config.routes, req, method)
}

/// [`route_request`] over a router and the routes it was built from
/// (`explain` has no snapshot: building one starts health checks).
pub(super) fn route_in(
    router: &Router,
    routes: &[RouteConfig],
    req: &RequestHeader,
    method: &http::Method,
) -> Result<Matched, GatewayError> {
    let raw_path = req.uri.path();
    let path = normalize_path(raw_path).map_err(GatewayError::BadPath)?;
    let host = crate::http::request_host(req).map(normalize_host);
    let rreq = RouteRequest {
        host: host.as_deref(),
        path: &path,
        method,
        headers: &req.headers,
    };
    let id = match router.find(&rreq) {
        RouteOutcome::Matched(id) => id,
        RouteOutcome::NotFound => return Err(GatewayError::NotFound),
        RouteOutcome::MethodNotAllowed(m) => return Err(GatewayError::MethodNotAllowed(m)),
    };
    let route = &routes[id];
    let up_path = forward::upstream_path(
        &path,
        route.strip_prefix.as_deref(),
        route.add_prefix.as_deref(),
    );
    // Rewrite the target when the path changed or the client used absolute
    // form (Pingora keeps scheme and authority off `uri` but sends the raw
    // target upstream unless it is replaced; it has already checked that
    // `Host` equals the authority, RFC 9112 §3.2.2).
    let upstream_uri =
        if up_path != raw_path || req.uri.scheme().is_some() || is_absolute_form(req.raw_path()) {
            let target = match req.uri.query() {
                Some(q) => format!("{up_path}?{q}"),
                None => up_path.into_owned(),
            };
            Some(
                target
                    .parse::<http::Uri>()
                    .map_err(|_| GatewayError::BadRequest("The request target is invalid."))?,
            )
        } else {
            None
        };
    Ok(Matched {
        route: id,
        normalized: match path {
            std::borrow::Cow::Owned(p) => Some(p),
            std::borrow::Cow::Borrowed(_) => None,
        },
        upstream_uri,
    })
}
