//! Validation of the Part 2 upstream keys (DNS, resilience) and of route
//! `split` / `split_key` / `mirror`: every error names its key and line.

fn errors(text: &str) -> Vec<String> {
    match gatehouse::config::load_str(text) {
        Ok(_) => Vec::new(),
        Err(e) => e.errors(),
    }
}

fn assert_has(errs: &[String], expected: &str) {
    assert!(
        errs.iter().any(|e| e.contains(expected)),
        "expected `{expected}` in {errs:#?}"
    );
}

const UPSTREAMS: &str =
    "upstreams:\n  a: { targets: [\"127.0.0.1:1\"] }\n  b: { targets: [\"127.0.0.1:2\"] }\n";

fn route(keys: &str) -> Vec<String> {
    errors(&format!("{UPSTREAMS}routes:\n  - name: r\n{keys}"))
}

fn upstream(keys: &str) -> Vec<String> {
    errors(&format!(
        "upstreams:\n  u:\n    targets: [\"127.0.0.1:1\"]\n{keys}routes:\n  - {{ name: r, upstream: u }}\n"
    ))
}

#[test]
fn valid_part2_keys() {
    let ok = errors(
        "server: { resolver: [\"127.0.0.1:5353\", \"10.0.0.2\"] }\nupstreams:\n  users:\n    targets: [\"users.internal:8080\", \"10.0.0.7:8080\"]\n    resolve: 10s\n    balance: least_request\n    retries: 2\n    retry_on: [connect, reset, timeout, 502, 503, 504]\n    retry_methods: all\n    retry_budget: 20%\n    max_inflight: 512\n    passive_health: { consecutive_failures: 5, eject_for: 30s, max_ejected: 50% }\n  search: { srv: _http._tcp.search.internal, resolve: 30s }\n  shadow: { targets: [\"127.0.0.1:9\"] }\nroutes:\n  - name: checkout\n    split:\n      - { upstream: users, weight: 90 }\n      - { upstream: search, weight: 10 }\n    split_key: header:X-User-Id\n    mirror: { upstream: shadow, percent: 5 }\n",
    );
    assert!(ok.is_empty(), "{ok:#?}");
}

#[test]
fn split_errors() {
    let both = route("    upstream: a\n    split: [{ upstream: b, weight: 1 }]\n");
    assert_has(&both, "routes[0].split");
    assert_has(&both, "not both");
    let unknown = route("    split: [{ upstream: a, weight: 1 }, { upstream: nope, weight: 1 }]\n");
    assert_has(&unknown, "routes[0].split[1].upstream");
    assert_has(&unknown, "upstream `nope` is not defined");
    let zero = route("    split: [{ upstream: a, weight: 0 }, { upstream: b, weight: 0 }]\n");
    assert_has(&zero, "at least one split weight must be above 0");
    let neither = route("    match: { path: /x }\n");
    assert_has(&neither, "a route needs `upstream` (or `split`)");
    // A key with no effect is a warning, not an error.
    let cfg = gatehouse::config::load_str(&format!(
        "{UPSTREAMS}routes:\n  - name: r\n    upstream: a\n    split_key: header:X-U\n"
    ))
    .unwrap();
    let w: Vec<String> = cfg.warnings.iter().map(|w| w.to_string()).collect();
    assert!(
        w.iter().any(|w| w.contains("routes[0].split_key")
            && w.contains("no effect")
            && w.contains("line 7")),
        "{w:?}"
    );
}

#[test]
fn mirror_errors() {
    let unknown = route("    upstream: a\n    mirror: { upstream: ghost, percent: 5 }\n");
    assert_has(&unknown, "routes[0].mirror.upstream");
    let pct = route("    upstream: a\n    mirror: { upstream: b, percent: 150% }\n");
    assert_has(&pct, "routes[0].mirror.percent");
}

#[test]
fn resilience_errors() {
    let e = upstream("    passive_health: { max_ejected: 120% }\n");
    assert_has(&e, "upstreams.u.passive_health.max_ejected");
    assert_has(&e, "between 0% and 100%");
    let e = upstream("    retry_on: [connect, 500]\n");
    assert_has(&e, "upstreams.u.retry_on[1]");
    assert_has(&e, "unknown retry_on reason `500`");
    assert_has(
        &upstream("    retry_methods: some\n"),
        "unknown retry_methods `some`",
    );
    assert_has(
        &upstream("    max_inflight: 0\n"),
        "upstreams.u.max_inflight",
    );
    assert_has(&upstream("    balance: fastest\n"), "least_request");
    assert_has(
        &upstream("    passive_health: { consecutive_failures: 0 }\n"),
        "consecutive_failures",
    );
    assert_has(&upstream("    resolve: soon\n"), "upstreams.u.resolve");
}

#[test]
fn dns_errors() {
    let both = errors("upstreams:\n  u: { srv: _x._tcp.a, targets: [\"127.0.0.1:1\"] }\nroutes:\n  - { name: r, upstream: u }\n");
    assert_has(&both, "leave out `targets`");
    let bad = errors("upstreams:\n  u: { targets: [\"bad_host!:80\", \"nohost\"] }\nroutes:\n  - { name: r, upstream: u }\n");
    assert_has(&bad, "upstreams.u.targets[0]");
    assert_has(&bad, "upstreams.u.targets[1]");
    let res = errors("server: { resolver: [\"dns.example\"] }\n");
    assert_has(&res, "server.resolver[0]");
    // Host names are not resolved while validating: this one cannot exist.
    assert!(errors("upstreams:\n  u: { targets: [\"never-resolves.invalid:80\"] }\nroutes:\n  - { name: r, upstream: u }\n").is_empty());
}

#[test]
fn errors_carry_lines() {
    let e = gatehouse::config::load_str(&format!(
        "{UPSTREAMS}routes:\n  - name: r\n    split:\n      - {{ upstream: ghost, weight: 1 }}\n"
    ))
    .unwrap_err()
    .to_string();
    assert!(e.contains("line 7"), "{e}");
}

#[test]
fn a_bare_integer_cors_max_age_means_seconds() {
    let cfg = gatehouse::config::load_str(&format!(
        "{UPSTREAMS}routes:\n  - name: r\n    upstream: a\n    cors: {{ allow_origins: [\"https://a.example\"], max_age: 600 }}\n"
    ))
    .unwrap();
    assert_eq!(
        cfg.routes[0].cors.as_ref().unwrap().max_age,
        std::time::Duration::from_secs(600)
    );
    // Every other duration still needs its unit.
    let e = errors("upstreams:\n  u: { targets: [\"127.0.0.1:1\"], connect_timeout: 5 }\nroutes:\n  - { name: r, upstream: u }\n");
    assert_has(&e, "needs a unit");
}

/// `tests/fixtures/spec-example.yaml` is the example of SPEC.md "Config
/// file", verbatim. Only its certificate paths are pointed at a real pair,
/// and its elided `sha256: "9f86d08...e0f"` is written out in full.
#[test]
fn the_spec_example_passes_the_config_check() {
    let dir = tempfile::tempdir().unwrap();
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    std::fs::write(dir.path().join("cert.pem"), cert.cert.pem()).unwrap();
    std::fs::write(dir.path().join("key.pem"), cert.signing_key.serialize_pem()).unwrap();
    let text = include_str!("../fixtures/spec-example.yaml")
        .replace("/etc/gatehouse/tls/", &format!("{}/", dir.path().display()))
        .replace(
            "9f86d08...e0f",
            "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
        );
    let file = dir.path().join("gatehouse.yaml");
    std::fs::write(&file, text).unwrap();
    let out = crate::support::config_check(&file)
        .env("JWT_SECRET", "a-secret-of-at-least-32-bytes-for-hs256!")
        .env("PARTNER_A_KEY", "partner-a-key")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("config OK"));
    assert!(
        err.contains("warning: upstreams.") && err.contains("hash_key has no effect"),
        "{err}"
    );
}
