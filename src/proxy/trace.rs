//! Tracing glue (the `trace` ctx slice): which requests are traced, the
//! child spans the pipeline marks, the upstream's `traceparent`, and the
//! hand-over to the exporter at the end. Untraced requests pay one branch
//! per mark; with `sample: 0` no span, clock read or random draw happens.

use super::ctx::RequestCtx;
use crate::observability::tracing::{self as otel, Attr, TraceCtx};
use crate::runtime::Snapshot;
use pingora::http::RequestHeader;
use std::time::Instant;

/// `early_request_filter`: decides whether this request is traced.
pub(super) fn begin(snap: &Snapshot, req: &RequestHeader, cx: &mut RequestCtx) {
    let Some(t) = &snap.tracer else { return };
    let header = req.headers.get("traceparent").map(|v| v.as_bytes());
    if let Some((trace_id, parent)) = otel::decide(header, t.config.sample, fastrand::f64) {
        cx.trace = Some(Box::new(TraceCtx::new(trace_id, parent, cx.start)));
    }
}

/// The start of a span, on traced requests only.
pub(super) fn mark(trace: &Option<Box<TraceCtx>>) -> Option<Instant> {
    trace.as_ref().map(|_| Instant::now())
}

/// A finished child span (auth, rate limiting) that began at `start`.
pub(super) fn span(
    trace: &mut Option<Box<TraceCtx>>,
    name: &str,
    start: Option<Instant>,
    error: bool,
) {
    if let (Some(t), Some(start)) = (trace, start) {
        t.child(name, start, Vec::new(), error);
    }
}

/// The cache lookup starts (`request_cache_filter`).
pub(super) fn cache_lookup(cx: &mut RequestCtx) {
    if let Some(t) = &mut cx.trace {
        t.cache_lookup = Some(Instant::now());
    }
}

/// The cache lookup ended: a hit, or (when the upstream is asked) a miss.
pub(super) fn cache_result(cx: &mut RequestCtx, result: &'static str) {
    let Some(t) = &mut cx.trace else { return };
    if let Some(start) = t.cache_lookup.take() {
        let attrs = vec![("gatehouse.cache.result", Attr::Str(result.into()))];
        t.child("cache lookup", start, attrs, false);
    }
}

/// An upstream attempt to `addr` begins (`upstream_peer`).
pub(super) fn attempt(cx: &mut RequestCtx, addr: std::net::SocketAddr) {
    cache_result(cx, "miss");
    if let Some(t) = &mut cx.trace {
        t.start_attempt(addr);
    }
}

/// The attempt answered with `status`, or failed (`status: None`).
pub(super) fn attempt_done(cx: &mut RequestCtx, status: Option<u16>) {
    if let Some(t) = &mut cx.trace {
        t.end_attempt(status, status.is_none());
    }
}

/// The upstream of a traced request continues this trace from the attempt
/// span; an untraced request's `traceparent` passes through untouched.
pub(super) fn upstream_header(cx: &RequestCtx, up: &mut RequestHeader) -> pingora::Result<()> {
    let Some(t) = &cx.trace else { return Ok(()) };
    let span = t.attempt.as_ref().map_or(t.server, |a| a.span_id);
    up.insert_header("traceparent", otel::traceparent(&t.trace_id, &span))
}

/// The route's path pattern, as `http.route` wants it.
fn route_pattern(snap: &Snapshot, route: usize) -> Option<String> {
    let m = &snap.config.routes.get(route)?.matcher;
    m.path
        .clone()
        .or_else(|| {
            m.path_prefix
                .as_ref()
                .map(|p| format!("{}/*", p.trim_end_matches('/')))
        })
        .or_else(|| m.path_regex.as_ref().map(|r| r.as_str().to_string()))
}

/// `logging`: the server span closes and every span goes to the exporter;
/// returns the trace id for the access log.
pub(super) fn finish(
    snap: &Snapshot,
    req: &RequestHeader,
    cx: &mut RequestCtx,
    status: u16,
) -> Option<String> {
    let t = cx.trace.take()?;
    let tracer = snap.tracer.as_ref()?;
    let route = cx.matched.as_ref().map(|m| m.route);
    let pattern = route.and_then(|r| route_pattern(snap, r));
    let path = cx
        .normalized_path()
        .unwrap_or_else(|| req.uri.path())
        .to_string();
    let name = match &pattern {
        Some(p) => format!("{} {p}", req.method),
        None => req.method.to_string(),
    };
    let mut attrs = vec![
        ("http.request.method", Attr::Str(req.method.to_string())),
        ("url.path", Attr::Str(path)),
        ("http.response.status_code", Attr::Int(i64::from(status))),
        ("gatehouse.request_id", Attr::Str(cx.request_id.clone())),
    ];
    if let Some(ip) = cx.client.ip {
        attrs.push(("client.address", Attr::Str(crate::netfmt::ip_text(ip))));
    }
    if let (Some(p), Some(r)) = (pattern, route.and_then(|r| snap.routes.get(r))) {
        attrs.push(("http.route", Attr::Str(p)));
        attrs.push(("gatehouse.route", Attr::Str(r.name.to_string())));
    }
    let trace_id = t.trace_id;
    tracer.submit(trace_id, t.finish(name, attrs, status));
    Some(otel::hex(&trace_id))
}
