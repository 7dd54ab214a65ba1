//! The console: `GET /` is one HTML page (its CSS and JS inline, nothing
//! from elsewhere) that polls `GET /console.json` once a second. The live
//! numbers come from each route's rolling window (`observability/window`),
//! fed by the same `logging` code as the Prometheus metrics.

use crate::config::{Choice, HostMatch, RouteConfig, RouteUpstream};
use crate::runtime::Snapshot;
use serde_json::{json, Value};
use std::time::SystemTime;

pub(super) const PAGE: &str = include_str!("console.html");

/// What the route matches, in a few words.
fn matches(r: &RouteConfig) -> String {
    let m = &r.matcher;
    let mut parts = Vec::new();
    match &m.host {
        Some(HostMatch::Exact(h)) => parts.push(h.clone()),
        Some(HostMatch::Wildcard(h)) => parts.push(format!("*.{h}")),
        None => {}
    }
    if let Some(p) = &m.path {
        parts.push(format!("= {p}"));
    }
    if let Some(p) = &m.path_prefix {
        parts.push(format!("{}/*", p.trim_end_matches('/')));
    }
    if let Some(re) = &m.path_regex {
        parts.push(format!("~ {}", re.as_str()));
    }
    if !m.methods.is_empty() {
        let ms: Vec<&str> = m.methods.iter().map(http::Method::as_str).collect();
        parts.push(ms.join(","));
    }
    for (n, v) in &m.headers {
        parts.push(format!("{n}: {}", v.to_str().unwrap_or("?")));
    }
    if parts.is_empty() {
        "everything".into()
    } else {
        parts.join("  ")
    }
}

fn upstream_of(r: &RouteConfig) -> String {
    match &r.upstream {
        RouteUpstream::One(n) => n.clone(),
        RouteUpstream::Split(sides) => {
            let total: u32 = sides.iter().map(|(_, w)| w).sum::<u32>().max(1);
            let parts: Vec<String> = sides
                .iter()
                .map(|(n, w)| format!("{n} {}%", w * 100 / total))
                .collect();
            parts.join(" / ")
        }
    }
}

fn round(v: f64, digits: i32) -> f64 {
    let f = 10f64.powi(digits);
    (v * f).round() / f
}

/// The console's live document for the running snapshot.
pub(super) fn data(snap: &Snapshot, upstreams: Value, cluster: Value) -> Value {
    let now = SystemTime::now();
    let mut totals = (0u64, 0u64);
    let routes: Vec<Value> = snap
        .config
        .routes
        .iter()
        .zip(&snap.routes)
        .map(|(cfg, route)| {
            let s = route.metrics.as_ref().map(|m| m.window.summary(now));
            let (requests, errors) = s.as_ref().map_or((0, 0), |s| (s.requests, s.errors));
            totals.0 += requests;
            totals.1 += errors;
            json!({
                "name": cfg.name,
                "match": matches(cfg),
                "upstream": upstream_of(cfg),
                "requests": requests,
                "rate": s.as_ref().map_or(0.0, |s| round(s.rate, 2)),
                "error_rate": if requests == 0 { 0.0 } else { round(errors as f64 / requests as f64, 4) },
                "p50_ms": s.as_ref().and_then(|s| s.p50_ms).map(|v| round(v, 2)),
                "p99_ms": s.as_ref().and_then(|s| s.p99_ms).map(|v| round(v, 2)),
            })
        })
        .collect();
    let ups: Vec<Value> = snap
        .upstreams
        .iter()
        .map(|(name, pool)| {
            let mut v = upstreams[name].clone();
            v["name"] = name.clone().into();
            v["balance"] = pool.config.balance.name().into();
            v
        })
        .collect();
    json!({
        "version": env!("CARGO_PKG_VERSION"),
        "generation": snap.generation,
        "revision": cluster.get("revision").cloned().unwrap_or(Value::Null),
        "cluster": cluster,
        "requests": totals.0,
        "errors": totals.1,
        "routes": routes,
        "upstreams": ups,
    })
}
