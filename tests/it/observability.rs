//! Metrics, access log, admin API.

use crate::support::*;
use std::collections::HashSet;

/// Fields drop in order: the gateway stops before its log directory goes.
struct Env {
    gw: Gateway,
    up: Upstream,
    dir: tempfile::TempDir,
}

fn setup(extra: &str) -> Env {
    let up = Upstream::start("svc");
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    let gw = gateway(&format!(
        r#"
server: {{ listen: ["{{listen}}"] }}
admin: {{ listen: "{{admin}}", token: "s3cr3t-admin-token" }}
logging: {{ access_log: "{}" {extra} }}
upstreams:
  svc: {{ targets: ["{}"] }}
routes:
  - {{ name: api, match: {{ path_prefix: /api }}, upstream: svc, strip_prefix: /api }}
  - {{ name: post_only, match: {{ path: /submit, methods: [POST] }}, upstream: svc }}
"#,
        log.display(),
        up.addr
    ));
    Env { gw, up, dir }
}

/// The access-log lines once there are `n` (records are queued in the
/// `logging` phase, just after the client got its response).
fn access_lines(env: &Env, n: usize) -> Vec<String> {
    let read = || {
        env.gw.state.access_log.flush();
        std::fs::read_to_string(env.dir.path().join("access.log"))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    eventually(std::time::Duration::from_secs(5), || read().len() >= n);
    read()
}

#[test]
fn every_spec_family_is_exposed_and_counts_move() {
    let env = setup("");
    let (up, gw) = (&env.up, &env.gw);
    let before = scrape(gw);
    for _ in 0..3 {
        assert_eq!(client().get(gw.url("/api/x")).send().unwrap().status(), 200);
    }
    client().get(gw.url("/nope")).send().unwrap();
    let after = scrape(gw);
    let families: HashSet<&str> = after.iter().map(|s| s.name.as_str()).collect();
    for f in [
        "gatehouse_requests_total",
        "gatehouse_request_duration_seconds_bucket",
        "gatehouse_request_duration_seconds_count",
        "gatehouse_upstream_duration_seconds_bucket",
        "gatehouse_upstream_healthy",
        "gatehouse_upstream_requests_total",
        "gatehouse_config_reloads_total",
        "gatehouse_inflight_requests",
        "gatehouse_build_info",
        "process_resident_memory_bytes",
    ] {
        assert!(families.contains(f), "{f} missing");
    }
    let key = [("route", "api"), ("method", "GET"), ("status", "200")];
    assert_eq!(
        metric(&after, "gatehouse_requests_total", &key)
            - metric(&before, "gatehouse_requests_total", &key),
        3.0
    );
    assert_eq!(
        metric(
            &after,
            "gatehouse_requests_total",
            &[("route", "unmatched"), ("status", "404")]
        ),
        1.0
    );
    assert_eq!(
        metric(
            &after,
            "gatehouse_request_duration_seconds_count",
            &[("route", "api")]
        ),
        3.0
    );
    assert_eq!(
        metric(
            &after,
            "gatehouse_upstream_duration_seconds_count",
            &[("upstream", "svc")]
        ),
        3.0
    );
    let target = up.addr.to_string();
    assert_eq!(
        metric(
            &after,
            "gatehouse_upstream_requests_total",
            &[("upstream", "svc"), ("target", &target), ("status", "200")]
        ),
        3.0
    );
    assert_eq!(
        metric(
            &after,
            "gatehouse_upstream_healthy",
            &[("upstream", "svc"), ("target", &target)]
        ),
        1.0
    );
    assert_eq!(metric(&after, "gatehouse_inflight_requests", &[]), 0.0);
    // Histogram buckets resolve 100 µs to 30 s.
    let les: HashSet<&str> = after
        .iter()
        .filter(|s| s.name == "gatehouse_request_duration_seconds_bucket")
        .filter_map(|s| s.label("le"))
        .collect();
    assert!(les.contains("0.0001") && les.contains("30"), "{les:?}");
}

#[test]
fn label_cardinality_stays_flat() {
    let env = setup("");
    let gw = &env.gw;
    let c = client();
    for i in 0..20 {
        c.get(gw.url(&format!("/warmup/{i}"))).send().unwrap();
    }
    c.post(gw.url("/submit")).send().unwrap();
    c.get(gw.url("/submit")).send().unwrap();
    let series = |s: &[Sample]| {
        s.iter()
            .filter(|s| s.name == "gatehouse_requests_total")
            .count()
    };
    let before = series(&scrape(gw));
    for i in 0..200 {
        let path = format!("/random/{i}/{}", i * 7919);
        raw(
            gw.addr,
            format!("GET {path} HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n").as_bytes(),
        );
        let method = ["BREW", "PROPFIND", "X-CUSTOM", "get", "MKCOL"][i % 5];
        raw(
            gw.addr,
            format!("{method} /submit HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n").as_bytes(),
        );
    }
    let after = scrape(gw);
    let added = series(&after) - before;
    assert!(
        added <= 2,
        "200 random paths and odd methods added {added} series"
    );
    assert!(after
        .iter()
        .all(|s| !s.labels.iter().any(|(_, v)| v.contains("/random"))));
    assert!(metric(&after, "gatehouse_requests_total", &[("method", "OTHER")]) >= 200.0);
    assert!(after
        .iter()
        .all(|s| s.label("method").is_none_or(|m| m != "BREW" && m != "get")));
}

#[test]
fn access_log_lines_carry_the_spec_fields() {
    let env = setup("");
    let (up, gw) = (&env.up, &env.gw);
    let r = get_raw(
        gw.addr,
        "/api//users/../orders/7?secret=1",
        "X-Request-Id: log-test-1\r\nAuthorization: Bearer tok.en.value\r\n",
    );
    assert_eq!(r.status, 200);
    get_raw(gw.addr, "/missing", "X-Request-Id: log-test-2\r\n");
    let lines = access_lines(&env, 2);
    assert_eq!(lines.len(), 2, "{lines:?}");
    // A line is written after its response went out, so two requests' lines
    // may land in either order: pick each by its request id.
    let by_id = |id: &str| -> serde_json::Value {
        let v = lines
            .iter()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .find(|v| v["request_id"] == id);
        v.unwrap_or_else(|| panic!("no line for {id}: {lines:?}"))
    };
    let v = by_id("log-test-1");
    let keys: HashSet<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    let want: HashSet<&str> = [
        "ts",
        "request_id",
        "client_ip",
        "method",
        "path",
        "status",
        "route",
        "upstream",
        "target",
        "duration_ms",
        "upstream_ms",
        "bytes_sent",
        "cache",
        "user",
    ]
    .into();
    assert_eq!(keys, want);
    assert_eq!(v["request_id"], "log-test-1");
    assert_eq!(v["client_ip"], "127.0.0.1");
    assert_eq!(v["method"], "GET");
    assert_eq!(v["path"], "/api/orders/7", "normalised, without the query");
    assert_eq!(v["status"], 200);
    assert_eq!(v["route"], "api");
    assert_eq!(v["upstream"], "svc");
    assert_eq!(v["target"], up.addr.to_string());
    assert!(v["duration_ms"].as_f64().unwrap() >= 0.0);
    assert!(v["upstream_ms"].as_f64().unwrap() >= 0.0);
    assert_eq!(v["bytes_sent"], r.body.len());
    assert!(v["ts"].as_str().unwrap().ends_with('Z'));
    let v = by_id("log-test-2");
    assert_eq!(v["status"], 404);
    assert_eq!(v["route"], serde_json::Value::Null);
    assert_eq!(v["target"], serde_json::Value::Null);
    let all = lines.join("\n");
    assert!(
        !all.contains("tok.en.value") && !all.contains("secret=1"),
        "{all}"
    );
}

#[test]
fn combined_format() {
    let env = setup(", format: combined");
    let gw = &env.gw;
    get_raw(
        gw.addr,
        "/api/a",
        "User-Agent: tester/1.0\r\nReferer: http://r.example/\r\n",
    );
    let lines = access_lines(&env, 1);
    assert_eq!(lines.len(), 1);
    let l = &lines[0];
    assert!(l.starts_with("127.0.0.1 - - ["), "{l}");
    assert!(l.contains("\"GET /api/a HTTP/1.1\" 200 "), "{l}");
    assert!(l.ends_with("\"http://r.example/\" \"tester/1.0\""), "{l}");
}

#[test]
fn admin_api_lists_upstreams_and_redacts_config() {
    let env = setup("");
    let (up, gw) = (&env.up, &env.gw);
    let c = client();
    let v = gw.admin_json("/upstreams");
    let t = &v["svc"]["targets"][0];
    assert_eq!(t["addr"], up.addr.to_string());
    assert_eq!(t["healthy"], true);
    assert_eq!(t["weight"], 1);
    assert_eq!(t["inflight"], 0);
    let text = c
        .get(gw.admin_url("/config"))
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(!text.contains("s3cr3t-admin-token"), "{text}");
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["admin"]["token"], "<redacted>");
    assert_eq!(v["routes"][0]["name"], "api");
    let r = c.get(gw.admin_url("/nope")).send().unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(r.headers()["content-type"], "application/problem+json");
    let r = c.post(gw.admin_url("/metrics")).send().unwrap();
    assert_eq!(r.status(), 405);
}

/// `inflight` of the first target of upstream `svc`, from `GET /upstreams`.
fn target_inflight(gw: &Gateway) -> serde_json::Value {
    gw.admin_json("/upstreams")["svc"]["targets"][0]["inflight"].clone()
}

#[test]
fn upstream_inflight_is_visible_while_a_request_runs() {
    let env = setup("");
    let (up, gw) = (&env.up, &env.gw);
    up.set_delay(std::time::Duration::from_millis(800));
    let url = gw.url("/api/slow");
    let t = std::thread::spawn(move || client().get(url).send().unwrap().status());
    assert!(eventually(std::time::Duration::from_secs(3), || {
        target_inflight(gw) == 1
    }));
    assert!(metric(&scrape(gw), "gatehouse_inflight_requests", &[]) >= 1.0);
    assert_eq!(t.join().unwrap(), 200);
    // The count drops when the request's context ends, just after the
    // client has its response.
    assert!(eventually(std::time::Duration::from_secs(3), || {
        target_inflight(gw) == 0
    }));
}

#[test]
fn admin_writes_need_the_token() {
    let env = setup("");
    let gw = &env.gw;
    let c = client();
    let r = c.post(gw.admin_url("/reload")).send().unwrap();
    assert_eq!(r.status(), 401);
    assert!(r.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .starts_with("Bearer"));
    assert_eq!(r.headers()["content-type"], "application/problem+json");
    let r = c
        .post(gw.admin_url("/reload"))
        .bearer_auth("wrong")
        .send()
        .unwrap();
    assert_eq!(r.status(), 401);
    // With the token the request gets through to the reload itself (this
    // in-process gateway has no file to reload, so that fails and is counted).
    let r = c
        .post(gw.admin_url("/reload"))
        .bearer_auth("s3cr3t-admin-token")
        .send()
        .unwrap();
    assert_eq!(r.status(), 400);
    let body: serde_json::Value = r.json().unwrap();
    assert_eq!(body["type"], "urn:gatehouse:problem:config-invalid");
    assert_eq!(
        metric(
            &scrape(gw),
            "gatehouse_config_reloads_total",
            &[("result", "error")]
        ),
        1.0
    );
}

#[test]
fn admin_endpoints_are_not_on_the_public_listener() {
    let env = setup("");
    let (up, gw) = (&env.up, &env.gw);
    for path in [
        "/metrics",
        "/ready",
        "/config",
        "/upstreams",
        "/health",
        "/reload",
    ] {
        let r = client().get(gw.url(path)).send().unwrap();
        assert_eq!(r.status(), 404, "{path} answered on the public port");
        let r = client().get(gw.url(&format!("/api{path}"))).send().unwrap();
        assert_eq!(r.headers()["x-upstream"], "svc", "{path}");
    }
    assert!(!up
        .requests()
        .iter()
        .any(|r| r.target == "/metrics" && r.header("x-upstream").is_some()));
}
