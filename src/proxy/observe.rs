//! The `logging` phase: metrics and the access-log record for one request.

use super::ctx::RequestCtx;
use crate::observability::access_log::AccessRecord;
use crate::observability::metrics::method_label;
use crate::runtime::{GatewayState, Route};
use pingora::proxy::Session;
use std::time::{Duration, Instant, SystemTime};

/// nginx's "client closed request": nothing was sent back.
const CLIENT_CLOSED: u16 = 499;

/// What one finished request is measured by.
struct Finished<'a> {
    route: Option<&'a Route>,
    status: u16,
    duration: Duration,
    upstream_elapsed: Option<Duration>,
    /// The wall clock at the end (one read for the window and the log).
    wall: SystemTime,
}

/// Runs last for a request, so it takes the snapshot out of the ctx
/// rather than cloning the `Arc` to borrow around it.
pub(super) fn record(state: &GatewayState, session: &Session, cx: &mut RequestCtx) {
    let Some(snap) = cx.snapshot.take() else {
        return;
    };
    let status = session
        .response_written()
        .map(|r| r.status.as_u16())
        .or_else(|| cx.error.as_ref().map(|e| e.status()))
        .unwrap_or(CLIENT_CLOSED);
    let now = Instant::now();
    let up = &cx.upstream;
    let done = Finished {
        route: cx.matched.as_ref().and_then(|m| snap.routes.get(m.route)),
        status,
        duration: now.duration_since(cx.start),
        upstream_elapsed: up.start.map(|s| up.end.unwrap_or(now).duration_since(s)),
        wall: SystemTime::now(),
    };
    if snap.config.admin.is_some() {
        metrics(state, session, cx, &done);
    }
    let trace_id = super::trace::finish(&snap, session.req_header(), cx, status);
    if state.access_log.enabled() {
        let mut record = access_record(state, session, cx, &done);
        record.trace_id = trace_id;
        state.access_log.log(record);
    }
}

fn metrics(state: &GatewayState, session: &Session, cx: &RequestCtx, done: &Finished<'_>) {
    let m = &state.metrics;
    let req = session.req_header();
    let route_label = done.route.map_or("unmatched", |r| &*r.name);
    m.requests
        .with_label_values(&[
            route_label,
            method_label(&req.method),
            m.status(done.status),
        ])
        .inc();
    let route_metrics = done.route.and_then(|r| r.metrics.as_ref());
    match route_metrics {
        Some(rm) => {
            rm.duration.observe(done.duration.as_secs_f64());
            rm.window
                .record(done.wall, done.duration, done.status >= 500);
        }
        None => m
            .request_duration
            .with_label_values(&[route_label])
            .observe(done.duration.as_secs_f64()),
    }
    let up = &cx.upstream;
    let (Some(r), Some(_), Some(target)) = (done.route, route_metrics, up.target) else {
        return;
    };
    let up_status = up.status.unwrap_or(done.status);
    let rendered;
    let target_label = match &up.guard {
        Some(g) => g.label(),
        None => {
            rendered = crate::netfmt::socket_addr_text(target);
            &rendered
        }
    };
    let pool = r.pool(up.side);
    m.upstream_requests
        .with_label_values(&[&*pool.name, target_label, m.status(up_status)])
        .inc();
    if let (Some(el), Some(_)) = (done.upstream_elapsed, up.status) {
        pool.metrics.duration.observe(el.as_secs_f64());
    }
}

fn access_record(
    state: &GatewayState,
    session: &Session,
    cx: &mut RequestCtx,
    done: &Finished<'_>,
) -> AccessRecord {
    let req = session.req_header();
    let combined = state.access_log.wants_combined_fields();
    let header = |n: &str| {
        combined
            .then(|| {
                req.headers
                    .get(n)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string)
            })
            .flatten()
    };
    let target = cx.upstream.target;
    AccessRecord {
        ts: done.wall - done.duration,
        request_id: std::mem::take(&mut cx.request_id),
        client_ip: cx.client.ip,
        method: req.method.clone(),
        path: cx
            .matched
            .as_mut()
            .and_then(|m| m.normalized.take())
            .unwrap_or_else(|| req.uri.path().to_string()),
        status: done.status,
        route: done.route.map(|r| r.name.clone()),
        upstream: done
            .route
            .filter(|_| target.is_some())
            .map(|r| r.pool(cx.upstream.side).name.clone()),
        target,
        duration_ms: done.duration.as_secs_f64() * 1000.0,
        upstream_ms: done.upstream_elapsed.map(|d| d.as_secs_f64() * 1000.0),
        bytes_sent: session.body_bytes_sent() as u64,
        cache: cx
            .cache
            .as_ref()
            .and_then(|c| c.outcome)
            .map(|o| o.result().label()),
        user: cx.identity.as_mut().and_then(|i| i.user.take()),
        trace_id: None,
        protocol: match req.version {
            http::Version::HTTP_10 => "HTTP/1.0",
            http::Version::HTTP_2 => "HTTP/2.0",
            _ => "HTTP/1.1",
        },
        referer: header("referer"),
        user_agent: header("user-agent"),
    }
}
