//! The `logging` phase: metrics and the access-log record for one request.

use super::ctx::RequestCtx;
use crate::observability::access_log::AccessRecord;
use crate::observability::metrics::method_label;
use crate::runtime::GatewayState;
use pingora::proxy::Session;
use std::time::{Instant, SystemTime};

/// nginx's "client closed request": nothing was sent back.
const CLIENT_CLOSED: u16 = 499;

pub fn record(state: &GatewayState, session: &Session, ctx: &mut RequestCtx) {
    let Some(snap) = ctx.snapshot.clone() else {
        return;
    };
    let status = session
        .response_written()
        .map(|r| r.status.as_u16())
        .or_else(|| ctx.error.as_ref().map(|e| e.status()))
        .unwrap_or(CLIENT_CLOSED);
    let now = Instant::now();
    let duration = now.duration_since(ctx.start);
    let upstream_elapsed = ctx
        .upstream_start
        .map(|s| ctx.upstream_end.unwrap_or(now).duration_since(s));
    let route = ctx.route.and_then(|i| snap.routes.get(i));
    let req = session.req_header();

    if snap.config.admin.is_some() {
        let m = &state.metrics;
        let route_label = route.map_or("unmatched", |r| &*r.name);
        m.requests
            .with_label_values(&[route_label, method_label(&req.method), m.status(status)])
            .inc();
        let route_metrics =
            route.map(|r| r.metrics.get_or_init(|| m.route(&r.name, &r.upstream.name)));
        match route_metrics {
            Some(rm) => rm.duration.observe(duration.as_secs_f64()),
            None => m
                .request_duration
                .with_label_values(&[route_label])
                .observe(duration.as_secs_f64()),
        }
        if let (Some(r), Some(rm), Some(target)) = (route, route_metrics, ctx.target) {
            let up_status = ctx.upstream_status.unwrap_or(status);
            let rendered;
            let target_label = match &ctx.target_guard {
                Some(g) => g.label(),
                None => {
                    rendered = crate::netfmt::socket_addr_text(target);
                    &rendered
                }
            };
            m.upstream_requests
                .with_label_values(&[&*r.upstream.name, target_label, m.status(up_status)])
                .inc();
            if let (Some(el), Some(_)) = (upstream_elapsed, ctx.upstream_status) {
                rm.upstream_duration.observe(el.as_secs_f64());
            }
        }
    }

    if state.access_log.enabled() {
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
        state.access_log.log(AccessRecord {
            ts: SystemTime::now() - duration,
            request_id: std::mem::take(&mut ctx.request_id),
            client_ip: ctx.client_ip,
            method: req.method.clone(),
            path: ctx
                .normalized_path
                .take()
                .unwrap_or_else(|| req.uri.path().to_string()),
            status,
            route: route.map(|r| r.name.clone()),
            upstream: route
                .filter(|_| ctx.target.is_some())
                .map(|r| r.upstream.name.clone()),
            target: ctx.target,
            duration_ms: duration.as_secs_f64() * 1000.0,
            upstream_ms: upstream_elapsed.map(|d| d.as_secs_f64() * 1000.0),
            bytes_sent: session.body_bytes_sent() as u64,
            cache: ctx.cache_outcome.map(|o| o.label()),
            user: ctx.user.take(),
            protocol: match req.version {
                http::Version::HTTP_10 => "HTTP/1.0",
                http::Version::HTTP_2 => "HTTP/2.0",
                _ => "HTTP/1.1",
            },
            referer: header("referer"),
            user_agent: header("user-agent"),
        });
    }
}
