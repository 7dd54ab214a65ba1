//! OpenTelemetry tracing against a real OTLP/HTTP receiver that decodes the
//! official protobuf messages.

use crate::support::*;
use opentelemetry_proto::tonic::common::v1::any_value::Value as Any;
use opentelemetry_proto::tonic::trace::v1::{span::SpanKind, status::StatusCode, Span};
use std::time::Duration;

const CLIENT_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CLIENT_SPAN: &str = "00f067aa0ba902b7";

fn hexs(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn attr(s: &Span, key: &str) -> Option<String> {
    let v = s
        .attributes
        .iter()
        .find(|kv| kv.key == key)?
        .value
        .as_ref()?;
    match v.value.as_ref()? {
        Any::StringValue(x) => Some(x.clone()),
        Any::IntValue(i) => Some(i.to_string()),
        other => Some(format!("{other:?}")),
    }
}

fn is_error(s: &Span) -> bool {
    s.status
        .as_ref()
        .is_some_and(|st| st.code == StatusCode::Error as i32)
}

struct Env {
    gw: Gateway,
    up: Upstream,
    bad: Upstream,
    otlp: Otlp,
    dir: tempfile::TempDir,
}

fn setup(sample: &str) -> Env {
    let (up, bad, otlp) = (
        Upstream::start("svc"),
        Upstream::start("bad"),
        Otlp::start(),
    );
    bad.set_status(503);
    let dir = tempfile::tempdir().unwrap();
    let gw = gateway(&format!(
        r#"
server: {{ listen: ["{{listen}}"] }}
admin: {{ listen: "{{admin}}" }}
logging: {{ access_log: "{log}" }}
tracing: {{ otlp: "{url}", service_name: edge, sample: {sample}, timeout: 1s }}
auth:
  keys: {{ type: api_key, header: X-API-Key, keys: [{{ id: app, key: "k-123" }}] }}
rate_limits:
  per_ip: {{ requests: 100000, per: 1m }}
upstreams:
  svc: {{ targets: ["{up}"] }}
  flaky: {{ targets: ["{bad}", "{up}"], retries: 1, retry_on: [503] }}
routes:
  - {{ name: api, match: {{ path_prefix: /api }}, upstream: svc, auth: keys, rate_limit: per_ip }}
  - {{ name: cached, match: {{ path_prefix: /c }}, upstream: svc, cache: true }}
  - {{ name: retry, match: {{ path: /retry }}, upstream: flaky }}
  - {{ name: plain, match: {{ path_prefix: / }}, upstream: svc }}
"#,
        log = dir.path().join("access.log").display(),
        url = otlp.url(),
        up = up.addr,
        bad = bad.addr,
    ));
    Env {
        gw,
        up,
        bad,
        otlp,
        dir,
    }
}

/// The spans of one trace once its server span arrived.
fn trace_spans(otlp: &Otlp, trace: &str) -> Vec<Span> {
    let done = |s: &Vec<(String, Span)>| {
        s.iter()
            .any(|(_, sp)| hexs(&sp.trace_id) == trace && sp.kind == SpanKind::Server as i32)
    };
    assert!(
        eventually(Duration::from_secs(10), || done(&otlp.spans())),
        "no server span for {trace}"
    );
    otlp.spans()
        .into_iter()
        .filter(|(_, s)| hexs(&s.trace_id) == trace)
        .map(|(_, s)| s)
        .collect()
}

#[test]
fn a_sampled_client_trace_is_joined_with_phase_and_attempt_spans() {
    let env = setup("0");
    let r = client()
        .get(env.gw.url("/api/orders/7?x=1"))
        .header("traceparent", format!("00-{CLIENT_TRACE}-{CLIENT_SPAN}-01"))
        .header("tracestate", "vendor=abc")
        .header("x-api-key", "k-123")
        .header("x-request-id", "trace-req-1")
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let spans = trace_spans(&env.otlp, CLIENT_TRACE);
    let server = spans
        .iter()
        .find(|s| s.kind == SpanKind::Server as i32)
        .unwrap();
    assert_eq!(
        hexs(&server.parent_span_id),
        CLIENT_SPAN,
        "joins the client's trace"
    );
    assert_eq!(server.name, "GET /api/*");
    for (k, v) in [
        ("http.request.method", "GET"),
        ("url.path", "/api/orders/7"),
        ("http.route", "/api/*"),
        ("gatehouse.route", "api"),
        ("http.response.status_code", "200"),
        ("client.address", "127.0.0.1"),
        ("gatehouse.request_id", "trace-req-1"),
    ] {
        assert_eq!(attr(server, k).as_deref(), Some(v), "{k}");
    }
    assert!(!is_error(server));
    let child = |name: &str| {
        spans
            .iter()
            .find(|s| s.name == name)
            .unwrap_or_else(|| panic!("no {name} span in {spans:?}"))
    };
    for name in ["auth", "rate_limit", "upstream attempt"] {
        let c = child(name);
        assert_eq!(
            c.parent_span_id, server.span_id,
            "{name} is a child of the server span"
        );
        assert!(c.start_time_unix_nano >= server.start_time_unix_nano);
        assert!(c.end_time_unix_nano <= server.end_time_unix_nano);
    }
    let attempt = child("upstream attempt");
    assert_eq!(attempt.kind, SpanKind::Client as i32);
    assert_eq!(
        attr(attempt, "server.address").as_deref(),
        Some("127.0.0.1")
    );
    assert_eq!(
        attr(attempt, "server.port"),
        Some(env.up.addr.port().to_string())
    );
    // The upstream continues the trace from the attempt span.
    let seen = env.up.last();
    assert_eq!(
        seen.header("traceparent"),
        Some(format!("00-{CLIENT_TRACE}-{}-01", hexs(&attempt.span_id)).as_str())
    );
    assert_eq!(seen.header("tracestate"), Some("vendor=abc"));
    // The access log names the trace.
    let log = env.dir.path().join("access.log");
    let line = || {
        env.gw.state.access_log.flush();
        std::fs::read_to_string(&log).unwrap_or_default()
    };
    assert!(eventually(Duration::from_secs(5), || line().contains("trace-req-1")));
    let rec: serde_json::Value = serde_json::from_str(line().lines().next().unwrap()).unwrap();
    assert_eq!(rec["trace_id"], CLIENT_TRACE);
}

#[test]
fn an_unsampled_traceparent_passes_through_untraced() {
    let env = setup("1");
    let tp = format!("00-{CLIENT_TRACE}-{CLIENT_SPAN}-00");
    let r = client()
        .get(env.gw.url("/x"))
        .header("traceparent", &tp)
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(env.up.last().header("traceparent"), Some(tp.as_str()));
    // A traced request afterwards arrives; the untraced one never does.
    client().get(env.gw.url("/y")).send().unwrap();
    assert!(eventually(Duration::from_secs(10), || !env
        .otlp
        .spans()
        .is_empty()));
    std::thread::sleep(Duration::from_millis(700));
    assert!(env
        .otlp
        .spans()
        .iter()
        .all(|(svc, s)| hexs(&s.trace_id) != CLIENT_TRACE && svc == "edge"));
}

#[test]
fn retries_show_as_attempts_and_5xx_is_an_error_but_4xx_is_not() {
    let env = setup("1");
    let c = client();
    // Round robin over [bad, good]: within two requests one starts on bad.
    for _ in 0..2 {
        assert_eq!(c.get(env.gw.url("/retry")).send().unwrap().status(), 200);
    }
    assert_eq!(c.get(env.gw.url("/api/x")).send().unwrap().status(), 401);
    env.up.set_status(500);
    assert_eq!(c.get(env.gw.url("/boom")).send().unwrap().status(), 500);
    let servers = || -> Vec<Span> {
        env.otlp
            .spans()
            .into_iter()
            .map(|(_, s)| s)
            .filter(|s| s.kind == SpanKind::Server as i32)
            .collect()
    };
    assert!(eventually(Duration::from_secs(10), || servers().len() == 4));
    let all: Vec<Span> = env.otlp.spans().into_iter().map(|(_, s)| s).collect();
    let by_route = |r: &str| -> Vec<&Span> { servers_of(&all, r) };
    let retried = by_route("retry").into_iter().find_map(|server| {
        let attempts: Vec<&Span> = all
            .iter()
            .filter(|s| s.parent_span_id == server.span_id && s.name == "upstream attempt")
            .collect();
        (attempts.len() == 2).then_some(attempts)
    });
    let mut attempts = retried.expect("one request was retried");
    attempts.sort_by_key(|s| s.start_time_unix_nano);
    assert!(is_error(attempts[0]) && !is_error(attempts[1]));
    assert_eq!(
        attr(attempts[0], "server.port"),
        Some(env.bad.addr.port().to_string())
    );
    assert_eq!(
        attr(attempts[0], "http.response.status_code").as_deref(),
        Some("503")
    );
    let denied = by_route("api")[0];
    assert_eq!(
        attr(denied, "http.response.status_code").as_deref(),
        Some("401")
    );
    assert!(!is_error(denied), "4xx is not an error");
    assert!(all.iter().any(|s| s.name == "auth" && is_error(s)));
    let boom = by_route("plain")[0];
    assert!(is_error(boom), "5xx is an error");
}

fn servers_of<'a>(all: &'a [Span], route: &str) -> Vec<&'a Span> {
    all.iter()
        .filter(|s| {
            s.kind == SpanKind::Server as i32
                && attr(s, "gatehouse.route").as_deref() == Some(route)
        })
        .collect()
}

#[test]
fn cache_lookups_are_spans() {
    let env = setup("1");
    env.up.add_response_header("cache-control", "max-age=60");
    for _ in 0..2 {
        assert_eq!(
            client().get(env.gw.url("/c/1")).send().unwrap().status(),
            200
        );
    }
    let lookups = || -> Vec<String> {
        env.otlp
            .spans()
            .into_iter()
            .filter(|(_, s)| s.name == "cache lookup")
            .filter_map(|(_, s)| attr(&s, "gatehouse.cache.result"))
            .collect()
    };
    assert!(eventually(Duration::from_secs(10), || lookups().len() == 2));
    let mut got = lookups();
    got.sort();
    assert_eq!(got, ["hit", "miss"]);
}

#[test]
fn sampling_follows_the_ratio() {
    let env = setup("0.3");
    let c = client();
    for i in 0..2000 {
        assert_eq!(
            c.get(env.gw.url(&format!("/s/{i}")))
                .send()
                .unwrap()
                .status(),
            200
        );
    }
    let servers = || {
        env.otlp
            .spans()
            .iter()
            .filter(|(_, s)| s.kind == SpanKind::Server as i32)
            .count()
    };
    // The traced ones (and only they) sent the upstream a traceparent;
    // their server spans all arrive.
    let traced = env
        .up
        .requests()
        .iter()
        .filter(|r| r.header("traceparent").is_some())
        .count();
    assert!(
        eventually(Duration::from_secs(10), || servers() == traced),
        "{} of {traced}",
        servers()
    );
    assert!(
        (540..=660).contains(&traced),
        "{traced} of 2000 traced at sample 0.3"
    );
}

#[test]
fn a_stalled_collector_drops_and_counts_without_holding_requests() {
    let env = setup("1");
    env.otlp.stall(true);
    let c = client();
    // 2 spans each (server, attempt): past one in-flight batch plus the queue.
    let n = 2600;
    for i in 0..n {
        assert_eq!(
            c.get(env.gw.url(&format!("/d/{i}")))
                .send()
                .unwrap()
                .status(),
            200
        );
    }
    // The exporter is stuck in a request the collector never answers, and
    // every client request was answered all the same.
    assert!(env.otlp.posts() >= 1);
    let dropped = || metric(&scrape(&env.gw), "gatehouse_trace_spans_dropped_total", &[]);
    // Nothing is exported, so all but what fits in the queue and the
    // batch in flight is dropped.
    let floor = (2 * n - tracing_limits::QUEUE - tracing_limits::BATCH) as f64;
    assert!(
        eventually(Duration::from_secs(10), || dropped() >= floor),
        "dropped {}",
        dropped()
    );
}

/// The exporter's bounds (`observability/tracing.rs`).
mod tracing_limits {
    pub const QUEUE: usize = 4096;
    pub const BATCH: usize = 512;
}
