//! `gatehouse explain` (the real binary) and `POST /explain`, and a
//! property test: explain's route is the route the running proxy logs.

use crate::support::*;
use serde_json::Value;
use std::process::Command;

const CONFIG: &str = r#"
server: { listen: ["127.0.0.1:1"] }
upstreams:
  orders: { targets: ["127.0.0.1:9001", "127.0.0.1:9002"], balance: least_request }
  users: { targets: ["127.0.0.1:9003"] }
auth:
  users: { type: jwt, secret: "a-jwt-secret-that-is-32-bytes-long!", algorithms: [HS256], forward_claims: { sub: X-User-Id } }
rate_limits:
  api: { requests: 100, per: 1m, key: consumer }
  tenants: { requests: 10, per: 1s, key: "header:x-tenant" }
routes:
  - name: orders
    match: { host: api.example.com, path_prefix: /api/orders, methods: [GET, POST] }
    upstream: orders
    strip_prefix: /api
    auth: { provider: users, scopes: ["orders:read"] }
    rate_limit: [api]
    cache: { ttl: 30s }
  - name: admin
    match: { host: "*.admin.example.com", path_prefix: /api }
    upstream: users
  - name: tenants
    match: { path_prefix: /api/users, headers: { x-tenant: acme } }
    upstream: users
    rate_limit: [tenants]
    request_headers: { set: { x-via: gatehouse } }
    compress: { algorithms: [gzip] }
  - name: report
    match: { path_regex: "^/reports/[0-9]+$" }
    upstream: users
  - name: health
    match: { path: /healthz }
    upstream: users
  - name: rest
    match: { path_prefix: /static }
    upstream: users
"#;

fn config() -> tempfile::NamedTempFile {
    let f = tempfile::Builder::new().suffix(".yaml").tempfile().unwrap();
    std::fs::write(f.path(), CONFIG).unwrap();
    f
}

/// Runs `explain` on the real binary: (exit code, stdout, stderr).
fn run(conf: &std::path::Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_gatehouse"))
        .arg("-c")
        .arg(conf)
        .arg("explain")
        .args(args)
        .output()
        .unwrap();
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (
        out.status.code().unwrap_or(-1),
        text(&out.stdout),
        text(&out.stderr),
    )
}

fn json(conf: &std::path::Path, args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.push("--json");
    let (code, out, err) = run(conf, &all);
    assert_eq!(code, 0, "{err}");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
}

fn steps(doc: &Value) -> Vec<&str> {
    doc["policies"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["step"].as_str().unwrap())
        .collect()
}

/// The `not_matched` entry of `route`: its reason.
fn miss<'a>(doc: &'a Value, route: &str) -> &'a str {
    doc["not_matched"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["route"] == route)
        .unwrap_or_else(|| panic!("{route} not listed: {doc}"))["reason"]
        .as_str()
        .unwrap()
}

#[test]
fn explain_reports_prefix_host_and_policies() {
    let f = config();
    let url = "GET https://api.example.com/api/orders/7?x=1";
    let d = json(f.path(), &[url]);
    assert_eq!(d["route"], "orders");
    assert_eq!(d["status"], 401, "no token: {d}");
    assert_eq!(d["path"], "/api/orders/7");
    assert_eq!(d["upstream_path"], "/orders/7?x=1");
    assert_eq!(steps(&d), ["cache", "auth", "rate_limit"]);
    assert_eq!(d["policies"][0]["key"]["host"], "api.example.com");
    assert_eq!(d["policies"][0]["key"]["scheme"], "https");
    assert_eq!(d["policies"][1]["providers"][0]["type"], "jwt");
    assert_eq!(d["policies"][2]["key"], "consumer");
    assert_eq!(d["upstream"][0]["balance"], "least_request");
    assert_eq!(d["upstream"][0]["targets"][1]["addr"], "127.0.0.1:9002");
    assert_eq!(miss(&d, "admin"), "host");
    let d = json(f.path(), &[url, "-H", "Authorization: Bearer x.y.z"]);
    assert_eq!(d["status"], 200);
    assert_eq!(d["policies"][1]["providers"][0]["present"], true);
    // For a person: aligned, short.
    let (code, text, _) = run(f.path(), &[url]);
    assert_eq!(code, 0);
    assert!(
        text.contains("  route          orders (host api.example.com, longest prefix /api/orders"),
        "{text}"
    );
    assert!(text.contains("  upstream path  /orders/7?x=1"), "{text}");
    assert!(text.contains("  2. auth"), "{text}");
    assert!(
        text.contains("  admin          host        wants host *.admin.example.com"),
        "{text}"
    );
}

#[test]
fn explain_reports_each_kind_of_match() {
    let f = config();
    let d = json(f.path(), &["GET https://eu.admin.example.com/api/orders/1"]);
    assert_eq!(d["route"], "admin", "wildcard host: {d}");
    assert_eq!(miss(&d, "orders"), "host");
    let d = json(
        f.path(),
        &[
            "GET http://h.test/api/users/1",
            "-H",
            "X-Tenant: acme",
            "-H",
            "Accept-Encoding: gzip",
        ],
    );
    assert_eq!(d["route"], "tenants", "header match: {d}");
    assert_eq!(steps(&d), ["rate_limit", "compress", "request_headers"]);
    assert_eq!(d["policies"][0]["counts_by"], "x-tenant: acme");
    assert_eq!(d["policies"][1]["for_this_request"], "gzip");
    let d = json(f.path(), &["GET /reports/42", "-H", "Host: h.test"]);
    assert_eq!(d["route"], "report", "regex: {d}");
    let d = json(f.path(), &["GET http://h.test/healthz"]);
    assert_eq!(d["route"], "health", "exact: {d}");
    assert_eq!(d["upstream_path"], "/healthz");
    // Normalised before matching, as the proxy does.
    let d = json(f.path(), &["GET http://h.test/static/a/../b//c"]);
    assert_eq!(d["route"], "rest");
    assert_eq!(d["path"], "/static/b/c");
}

#[test]
fn explain_reports_misses_with_reasons() {
    let f = config();
    let d = json(f.path(), &["GET http://h.test/api/users/1"]);
    assert_eq!(d["route"], Value::Null);
    assert_eq!(d["status"], 404);
    assert_eq!(miss(&d, "tenants"), "header");
    assert_eq!(d["upstream_path"], Value::Null);
    let d = json(f.path(), &["DELETE https://api.example.com/api/orders/1"]);
    assert_eq!(d["status"], 405);
    assert_eq!(miss(&d, "orders"), "method");
    let d = json(f.path(), &["GET http://h.test/reports/x"]);
    assert_eq!(d["status"], 404);
    assert_eq!(miss(&d, "report"), "path");
    assert_eq!(d["not_matched"][0]["route"], "report", "nearest first: {d}");
    // The path normaliser refuses to climb above the root: 400.
    let d = json(f.path(), &["GET http://h.test/../../etc/passwd"]);
    assert_eq!(d["status"], 400, "{d}");
    assert_eq!(d["route"], Value::Null);
    // Two Authorization headers are ambiguous, as on a listener.
    let d = json(
        f.path(),
        &[
            "GET http://h.test/healthz",
            "-H",
            "Authorization: a",
            "-H",
            "Authorization: b",
        ],
    );
    assert_eq!(d["status"], 400);
}

#[test]
fn explain_refuses_what_it_cannot_parse() {
    let f = config();
    for args in [
        vec!["GET"],
        vec!["GET ftp://h.test/x"],
        vec!["G@T http://h.test/"],
        vec!["GET http://h.test/ extra words"],
        vec!["GET http://h.test/", "-H", "no colon"],
    ] {
        let (code, out, err) = run(f.path(), &args);
        assert_eq!(code, 1, "{args:?}: {out}");
        assert!(err.starts_with("explain: "), "{args:?}: {err}");
        assert!(!err.contains("panicked"));
    }
}

#[test]
fn admin_explain_answers_for_the_running_config_with_the_token() {
    let up = Upstream::start("svc");
    let gw = gateway(&format!(
        r#"
server: {{ listen: ["{{listen}}"] }}
admin: {{ listen: "{{admin}}", token: "explain-token" }}
upstreams: {{ svc: {{ targets: ["{}"] }} }}
routes:
  - {{ name: api, match: {{ path_prefix: /api }}, upstream: svc, strip_prefix: /api }}
"#,
        up.addr
    ));
    let body = serde_json::json!({"method": "GET", "url": "http://h.test/api/x?q=1", "headers": {"accept": "*/*"}});
    let post = |token: Option<&str>, body: String| {
        let mut r = client().post(gw.admin_url("/explain")).body(body);
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        r.send().unwrap()
    };
    assert_eq!(post(None, body.to_string()).status(), 401);
    let r = post(Some("explain-token"), body.to_string());
    assert_eq!(r.status(), 200);
    let d: Value = r.json().unwrap();
    assert_eq!(d["route"], "api");
    assert_eq!(d["status"], 200);
    assert_eq!(d["upstream_path"], "/x?q=1");
    let r = post(Some("explain-token"), "{\"method\": \"GET\"}".into());
    assert_eq!(r.status(), 400);
    let r = post(
        Some("explain-token"),
        serde_json::json!({"method": "GET", "url": "nope"}).to_string(),
    );
    assert_eq!(r.status(), 400);
    assert!(r.text().unwrap().contains("nope"));
}

/// A small generated config: hosts, path kinds, methods and headers mixed.
fn generated_config(rng: &mut fastrand::Rng, upstream: std::net::SocketAddr, log: &str) -> String {
    let mut routes = String::new();
    for i in 0..12 {
        let mut m = Vec::new();
        match rng.u8(0..3) {
            0 => m.push("host: a.test".to_string()),
            1 => m.push("host: \"*.b.test\"".to_string()),
            _ => {}
        }
        let seg = ["x", "y", "r"][rng.usize(0..3)];
        match rng.u8(0..4) {
            0 => m.push(format!("path: /{seg}/{}", rng.u8(1..3))),
            1 => m.push(format!("path_prefix: /{seg}")),
            2 => m.push(format!("path_regex: \"^/{seg}/[0-9]+$\"")),
            _ => {}
        }
        if rng.bool() {
            m.push("methods: [GET]".into());
        }
        if rng.u8(0..4) == 0 {
            m.push("headers: { x-k: v }".into());
        }
        routes.push_str(&format!(
            "  - {{ name: r{i}, match: {{ {} }}, upstream: svc }}\n",
            m.join(", ")
        ));
    }
    format!(
        "server: {{ listen: [\"{{listen}}\"] }}\nadmin: {{ listen: \"{{admin}}\" }}\n\
         logging: {{ access_log: \"{log}\" }}\nupstreams: {{ svc: {{ targets: [\"{upstream}\"] }} }}\nroutes:\n{routes}"
    )
}

fn random_request(rng: &mut fastrand::Rng) -> (String, String, String, bool) {
    let method = ["GET", "POST", "DELETE"][rng.usize(0..3)].to_string();
    let host = ["a.test", "c.b.test", "b.test", "z.test"][rng.usize(0..4)].to_string();
    let parts = ["x", "y", "r", "1", "2", "77", ".", "..", "", "%78", "Y"];
    let n = rng.usize(0..4);
    let path: String = (0..n)
        .map(|_| format!("/{}", parts[rng.usize(0..parts.len())]))
        .collect();
    let path = if path.is_empty() {
        "/".to_string()
    } else {
        path
    };
    (method, host, path, rng.bool())
}

/// For random requests over a generated config, `POST /explain` names the
/// route the proxy logs (or neither names one).
#[test]
fn explain_agrees_with_the_proxy() {
    let up = Upstream::start("svc");
    for seed in [7u64, 1234, 99_999] {
        let mut rng = fastrand::Rng::with_seed(seed);
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("access.log");
        let yaml = generated_config(&mut rng, up.addr, log.to_str().unwrap());
        let gw = gateway(&yaml);
        let mut expected = Vec::new();
        for i in 0..60 {
            let (method, host, path, header) = random_request(&mut rng);
            let id = format!("explain-{seed}-{i}");
            let extra = if header { "x-k: v\r\n" } else { "" };
            let raw_req = format!(
                "{method} {path} HTTP/1.1\r\nHost: {host}\r\nX-Request-Id: {id}\r\n{extra}Content-Length: 0\r\nConnection: close\r\n\r\n"
            );
            raw(gw.addr, raw_req.as_bytes()).expect("a response");
            let mut headers = serde_json::Map::new();
            if header {
                headers.insert("x-k".into(), "v".into());
            }
            let body = serde_json::json!({"method": method, "url": format!("http://{host}{path}"), "headers": headers});
            let d: Value = client()
                .post(gw.admin_url("/explain"))
                .body(body.to_string())
                .send()
                .unwrap()
                .json()
                .unwrap();
            expected.push((id, d["route"].clone(), format!("{method} {host}{path}")));
        }
        let read = || {
            gw.state.access_log.flush();
            std::fs::read_to_string(&log).unwrap_or_default()
        };
        assert!(eventually(std::time::Duration::from_secs(5), || read()
            .lines()
            .count()
            >= 60));
        let logged: std::collections::HashMap<String, Value> = read()
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap())
            .map(|v| {
                (
                    v["request_id"].as_str().unwrap().to_string(),
                    v["route"].clone(),
                )
            })
            .collect();
        // Not vacuous: both outcomes occur.
        let hits = expected.iter().filter(|(_, r, _)| !r.is_null()).count();
        assert!(
            (10..=55).contains(&hits),
            "seed {seed}: {hits} of 60 matched\n{yaml}"
        );
        for (id, route, what) in expected {
            assert_eq!(logged[&id], route, "seed {seed}: {what}\n{yaml}");
        }
    }
}
