//! Prometheus metrics of one gateway, in its own registry (no global state).
//!
//! Label values are bounded by the config: route and upstream names,
//! configured targets, numeric status codes, the standard methods (anything
//! else is `OTHER`) and `route="unmatched"` for requests no route took.

use super::window::Window;
use http::Method;
use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};
use std::sync::Arc;

/// A metric family: name, help, label names.
type Spec = (&'static str, &'static str, &'static [&'static str]);

const REQUESTS: Spec = (
    "gatehouse_requests_total",
    "Requests answered",
    &["route", "method", "status"],
);
const REQUEST_DURATION: Spec = (
    "gatehouse_request_duration_seconds",
    "Time from request head to the end of the response",
    &["route"],
);
const UPSTREAM_DURATION: Spec = (
    "gatehouse_upstream_duration_seconds",
    "Time from choosing a target to the end of the upstream response",
    &["upstream"],
);
const UPSTREAM_REQUESTS: Spec = (
    "gatehouse_upstream_requests_total",
    "Requests sent upstream, by final target and status",
    &["upstream", "target", "status"],
);
const UPSTREAM_HEALTHY: Spec = (
    "gatehouse_upstream_healthy",
    "1 if the target is in rotation, else 0",
    &["upstream", "target"],
);
const AUTH_FAILURES: Spec = (
    "gatehouse_auth_failures_total",
    "Rejected credentials",
    &["route", "reason"],
);
const RATE_LIMITED: Spec = (
    "gatehouse_rate_limited_total",
    "Requests over a rate limit",
    &["route", "limit"],
);
const ACCESS_DENIED: Spec = (
    "gatehouse_access_denied_total",
    "Requests refused by a route's allow_ips / deny_ips",
    &["route"],
);
const FORWARD_AUTH: Spec = (
    "gatehouse_forward_auth_total",
    "Forward-auth answers by result (allow, deny, error, cached)",
    &["provider", "result"],
);
const CACHE_LOOKUPS: Spec = (
    "gatehouse_cache_lookups_total",
    "Cache lookups by result",
    &["route", "result"],
);
const CONFIG_RELOADS: Spec = (
    "gatehouse_config_reloads_total",
    "Config reloads by result",
    &["result"],
);
const REDIS_ERRORS: Spec = (
    "gatehouse_redis_errors_total",
    "Failed or timed-out Redis calls",
    &[],
);
const TRACE_DROPPED: Spec = (
    "gatehouse_trace_spans_dropped_total",
    "Spans dropped: the export queue was full or the collector failed",
    &[],
);
const CONFIG_REVISION: Spec = (
    "gatehouse_config_revision",
    "Cluster mode: the etcd revision of the config this node applied (0: none yet)",
    &[],
);
const CLUSTER_IN_SYNC: Spec = (
    "gatehouse_cluster_in_sync",
    "Cluster mode: 1 when every live node applied the current revision without error",
    &[],
);
const TUNNELS_OPEN: Spec = (
    "gatehouse_tunnels_open",
    "Upgraded connections (WebSocket) open in this process",
    &[],
);
const OLD_TUNNELS: Spec = (
    "gatehouse_upgrade_old_process_tunnels",
    "Upgraded connections still held by the old process of a -u handoff",
    &[],
);
const INFLIGHT: Spec = ("gatehouse_inflight_requests", "Requests in progress", &[]);
const ACCESS_LOG_DROPPED: Spec = (
    "gatehouse_access_log_dropped_total",
    "Access-log lines dropped because the writer fell behind",
    &[],
);
const BUILD_INFO: Spec = ("gatehouse_build_info", "Build information", &["version"]);
const CACHE_BYTES: Spec = (
    "gatehouse_cache_bytes",
    "Bytes held by the response cache, fills in progress included",
    &[],
);
const DNS_FAILURES: Spec = (
    "gatehouse_dns_failures_total",
    "Failed or empty DNS answers for an upstream's names (the last good set stays)",
    &["upstream"],
);
const EJECTIONS: Spec = (
    "gatehouse_upstream_ejections_total",
    "Targets ejected by passive health",
    &["upstream"],
);
const RETRIES: Spec = (
    "gatehouse_upstream_retries_total",
    "Retries to an upstream, by the failure that caused them",
    &["upstream", "reason"],
);
const BUDGET_EXHAUSTED: Spec = (
    "gatehouse_upstream_retry_budget_exhausted_total",
    "Retries refused because the retry budget was spent",
    &["upstream"],
);
const OVERLOADED: Spec = (
    "gatehouse_upstream_overloaded_total",
    "Requests answered 503 because the upstream had max_inflight requests",
    &["upstream"],
);
const MIRROR_DROPPED: Spec = (
    "gatehouse_mirror_dropped_total",
    "Mirrored copies dropped because 64 were already in flight",
    &["upstream"],
);
const CONNECTIONS_OPEN: Spec = (
    "gatehouse_connections_open",
    "Client connections open on the proxy listeners",
    &[],
);
const CONNECTIONS_REJECTED: Spec = (
    "gatehouse_connections_rejected_total",
    "Client connections closed at accept because max_connections were open",
    &[],
);
const CACHE_ENTRIES: Spec = ("gatehouse_cache_entries", "Responses in the cache", &[]);

/// Every metric family gatehouse registers (besides `process_*`).
pub const FAMILIES: &[&str] = &[
    REQUESTS.0,
    REQUEST_DURATION.0,
    UPSTREAM_DURATION.0,
    UPSTREAM_REQUESTS.0,
    UPSTREAM_HEALTHY.0,
    AUTH_FAILURES.0,
    RATE_LIMITED.0,
    CACHE_LOOKUPS.0,
    CONFIG_RELOADS.0,
    REDIS_ERRORS.0,
    TRACE_DROPPED.0,
    INFLIGHT.0,
    ACCESS_LOG_DROPPED.0,
    BUILD_INFO.0,
    CACHE_BYTES.0,
    CACHE_ENTRIES.0,
    DNS_FAILURES.0,
    EJECTIONS.0,
    RETRIES.0,
    BUDGET_EXHAUSTED.0,
    OVERLOADED.0,
    MIRROR_DROPPED.0,
    CONNECTIONS_OPEN.0,
    CONNECTIONS_REJECTED.0,
    ACCESS_DENIED.0,
    FORWARD_AUTH.0,
    CONFIG_REVISION.0,
    CLUSTER_IN_SYNC.0,
    TUNNELS_OPEN.0,
    OLD_TUNNELS.0,
];

/// 100 µs to 30 s.
const BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0, 30.0,
];

pub struct Metrics {
    registry: Registry,
    /// Rolling windows by route name (the console).
    windows: std::sync::Mutex<std::collections::HashMap<String, Arc<Window>>>,
    pub requests: IntCounterVec,
    pub request_duration: HistogramVec,
    pub upstream_duration: HistogramVec,
    pub upstream_requests: IntCounterVec,
    pub upstream_healthy: IntGaugeVec,
    pub auth_failures: IntCounterVec,
    pub rate_limited: IntCounterVec,
    pub cache_lookups: IntCounterVec,
    pub config_reloads: IntCounterVec,
    pub redis_errors: IntCounter,
    pub trace_dropped: IntCounter,
    pub inflight: IntGauge,
    pub access_log_dropped: IntCounter,
    pub cache_bytes: IntGauge,
    pub cache_entries: IntGauge,
    pub connections_open: IntGauge,
    pub connections_rejected: IntCounter,
    pub config_revision: IntGauge,
    pub cluster_in_sync: IntGauge,
    pub tunnels_open: IntGauge,
    pub old_tunnels: IntGauge,
    access_denied: IntCounterVec,
    forward_auth: IntCounterVec,
    upstream_families: [IntCounterVec; 5],
    retries: IntCounterVec,
    statuses: Vec<String>,
}

/// The counters of one upstream, resolved when its pool is built.
pub struct UpstreamMetrics {
    pub dns_failures: IntCounter,
    pub ejections: IntCounter,
    /// In the order of `retry_reasons` given to [`Metrics::upstream`].
    pub retries: Box<[IntCounter]>,
    pub budget_exhausted: IntCounter,
    pub overloaded: IntCounter,
    pub mirror_dropped: IntCounter,
    pub duration: Histogram,
}

/// The children one route records into, resolved when its snapshot is
/// built: `with_label_values` hashes the labels and takes the family's lock
/// on every call. Resolving them also makes every series of the route
/// visible at 0 before its first event.
pub struct RouteMetrics {
    pub duration: Histogram,
    /// By failure reason, in the order of the labels given (none without auth).
    pub auth: Box<[IntCounter]>,
    /// By cache result, in the order of the labels given (none when not cached).
    pub cache: Box<[IntCounter]>,
    /// One per rate limit of the route, in the route's order.
    pub limited: Box<[IntCounter]>,
    /// Refusals by the route's IP rules (`None` without them).
    pub access_denied: Option<IntCounter>,
    /// The console's last minute of this route (kept across reloads).
    pub(crate) window: Arc<Window>,
}

/// What [`Metrics::route`] resolves for one route.
pub struct RouteLabels<'a> {
    pub route: &'a str,
    pub auth_reasons: &'a [&'a str],
    pub cache_results: &'a [&'a str],
    pub limits: &'a [&'a str],
    /// The route has `allow_ips` / `deny_ips`.
    pub ip_rules: bool,
}

/// Registers `m` (names are constants, so neither step can fail).
fn register<M: prometheus::core::Collector + Clone + 'static>(r: &Registry, m: M) -> M {
    r.register(Box::new(m.clone())).expect("unique metric");
    m
}

fn counters(r: &Registry, (name, help, labels): Spec) -> IntCounterVec {
    register(
        r,
        IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric"),
    )
}

fn histograms(r: &Registry, (name, help, labels): Spec) -> HistogramVec {
    let opts = HistogramOpts::new(name, help).buckets(BUCKETS.to_vec());
    register(r, HistogramVec::new(opts, labels).expect("valid metric"))
}

fn gauges(r: &Registry, (name, help, labels): Spec) -> IntGaugeVec {
    register(
        r,
        IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric"),
    )
}

fn counter(r: &Registry, (name, help, _): Spec) -> IntCounter {
    register(r, IntCounter::new(name, help).expect("valid metric"))
}

fn gauge(r: &Registry, (name, help, _): Spec) -> IntGauge {
    register(r, IntGauge::new(name, help).expect("valid metric"))
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let r = Registry::new();
        gauges(&r, BUILD_INFO)
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);
        #[cfg(target_os = "linux")]
        {
            let pc = prometheus::process_collector::ProcessCollector::for_self();
            let _ = r.register(Box::new(pc));
        }
        let m = Metrics {
            requests: counters(&r, REQUESTS),
            request_duration: histograms(&r, REQUEST_DURATION),
            upstream_duration: histograms(&r, UPSTREAM_DURATION),
            upstream_requests: counters(&r, UPSTREAM_REQUESTS),
            upstream_healthy: gauges(&r, UPSTREAM_HEALTHY),
            auth_failures: counters(&r, AUTH_FAILURES),
            rate_limited: counters(&r, RATE_LIMITED),
            cache_lookups: counters(&r, CACHE_LOOKUPS),
            config_reloads: counters(&r, CONFIG_RELOADS),
            redis_errors: counter(&r, REDIS_ERRORS),
            trace_dropped: counter(&r, TRACE_DROPPED),
            inflight: gauge(&r, INFLIGHT),
            access_log_dropped: counter(&r, ACCESS_LOG_DROPPED),
            cache_bytes: gauge(&r, CACHE_BYTES),
            cache_entries: gauge(&r, CACHE_ENTRIES),
            connections_open: gauge(&r, CONNECTIONS_OPEN),
            connections_rejected: counter(&r, CONNECTIONS_REJECTED),
            config_revision: gauge(&r, CONFIG_REVISION),
            cluster_in_sync: gauge(&r, CLUSTER_IN_SYNC),
            tunnels_open: gauge(&r, TUNNELS_OPEN),
            old_tunnels: gauge(&r, OLD_TUNNELS),
            access_denied: counters(&r, ACCESS_DENIED),
            forward_auth: counters(&r, FORWARD_AUTH),
            upstream_families: [
                DNS_FAILURES,
                EJECTIONS,
                BUDGET_EXHAUSTED,
                OVERLOADED,
                MIRROR_DROPPED,
            ]
            .map(|spec| counters(&r, spec)),
            retries: counters(&r, RETRIES),
            statuses: (0..600).map(|s: u16| s.to_string()).collect(),
            registry: r,
            windows: Default::default(),
        };
        for result in ["ok", "error"] {
            m.config_reloads.with_label_values(&[result]);
        }
        m
    }

    /// The children of one route.
    pub fn route(&self, l: &RouteLabels<'_>) -> RouteMetrics {
        let by = |family: &IntCounterVec, values: &[&str]| -> Box<[IntCounter]> {
            values
                .iter()
                .map(|v| family.with_label_values(&[l.route, v]))
                .collect()
        };
        RouteMetrics {
            duration: self.request_duration.with_label_values(&[l.route]),
            auth: by(&self.auth_failures, l.auth_reasons),
            cache: by(&self.cache_lookups, l.cache_results),
            limited: by(&self.rate_limited, l.limits),
            access_denied: l
                .ip_rules
                .then(|| self.access_denied.with_label_values(&[l.route])),
            window: self.window(l.route),
        }
    }

    /// The rolling window of route `name`; windows no snapshot holds any
    /// more (removed routes) are let go here.
    fn window(&self, name: &str) -> Arc<Window> {
        let mut w = self.windows.lock().unwrap_or_else(|e| e.into_inner());
        w.retain(|_, v| Arc::strong_count(v) > 1);
        w.entry(name.to_string())
            .or_insert_with(|| Arc::new(Window::new()))
            .clone()
    }

    /// The counters of upstream `name` (every series visible at 0).
    pub fn upstream(&self, name: &str, retry_reasons: &[&str]) -> UpstreamMetrics {
        let [dns, eject, budget, over, mirror] = &self.upstream_families;
        let one = |f: &IntCounterVec| f.with_label_values(&[name]);
        UpstreamMetrics {
            dns_failures: one(dns),
            ejections: one(eject),
            retries: retry_reasons
                .iter()
                .map(|r| self.retries.with_label_values(&[name, r]))
                .collect(),
            budget_exhausted: one(budget),
            overloaded: one(over),
            mirror_dropped: one(mirror),
            duration: self.upstream_duration.with_label_values(&[name]),
        }
    }

    /// The answer counters of forward-auth provider `name`: allow, deny,
    /// error, cached.
    pub fn forward_auth(&self, name: &str) -> [IntCounter; 4] {
        ["allow", "deny", "error", "cached"]
            .map(|r| self.forward_auth.with_label_values(&[name, r]))
    }

    /// `code` as label text, without formatting it per request.
    pub fn status(&self, code: u16) -> &str {
        self.statuses.get(code as usize).map_or("0", String::as_str)
    }

    /// Prometheus text exposition of everything recorded so far.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8(buf).unwrap_or_default()
    }
}

/// The method label: standard methods by name, anything else `OTHER`.
pub(crate) fn method_label(m: &Method) -> &'static str {
    match *m {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::OPTIONS => "OPTIONS",
        Method::CONNECT => "CONNECT",
        Method::TRACE => "TRACE",
        _ => "OTHER",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn methods_outside_the_standard_set_are_other() {
        assert_eq!(method_label(&Method::GET), "GET");
        assert_eq!(method_label(&Method::from_bytes(b"BREW").unwrap()), "OTHER");
    }

    #[test]
    fn families_list_matches_the_registry() {
        let m = Metrics::new();
        // Families without any label set are not gathered; touch them.
        m.auth_failures.with_label_values(&["r", "x"]);
        m.rate_limited.with_label_values(&["r", "x"]);
        m.cache_lookups.with_label_values(&["r", "x"]);
        m.requests.with_label_values(&["r", "GET", "200"]);
        m.request_duration.with_label_values(&["r"]);
        m.upstream_duration.with_label_values(&["u"]);
        m.upstream_requests.with_label_values(&["u", "t", "200"]);
        m.upstream_healthy.with_label_values(&["u", "t"]);
        m.upstream("u", &["connect"]);
        m.access_denied.with_label_values(&["r"]);
        m.forward_auth("p");
        let mut registered: Vec<String> = m
            .registry
            .gather()
            .iter()
            .map(|f| f.name().to_string())
            .filter(|n| n.starts_with("gatehouse_"))
            .collect();
        registered.sort();
        let mut listed: Vec<String> = FAMILIES.iter().map(|s| s.to_string()).collect();
        listed.sort();
        assert_eq!(registered, listed);
    }

    #[test]
    fn two_registries_do_not_collide() {
        let a = Metrics::new();
        let b = Metrics::new();
        a.inflight.inc();
        assert_eq!(b.inflight.get(), 0);
        assert_eq!(a.status(404), "404");
    }
}
