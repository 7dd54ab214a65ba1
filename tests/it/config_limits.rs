//! Validation of `rate_limits`, `redis` and route `rate_limit`.

fn errors(text: &str) -> Vec<String> {
    match gatehouse::config::load_str(text) {
        Ok(_) => Vec::new(),
        Err(e) => e.errors(),
    }
}

fn with(limits: &str, redis: &str, route_limit: &str) -> Vec<String> {
    errors(&format!(
        "upstreams: {{ u: {{ targets: [\"127.0.0.1:1\"] }} }}\nrate_limits:\n{limits}\n{redis}\nroutes:\n  - {{ name: r, upstream: u, rate_limit: {route_limit} }}\n"
    ))
}

fn assert_has(errs: &[String], expected: &str) {
    assert!(
        errs.iter().any(|e| e.contains(expected)),
        "expected `{expected}` in {errs:#?}"
    );
}

#[test]
fn valid_limits() {
    assert!(with(
        "  a: { requests: 5, per: 1m }\n  b: { requests: 1, per: 1s, key: \"header:X-K\" }",
        "",
        "[a, b]"
    )
    .is_empty());
    assert!(with(
        "  a: { requests: 5, per: 1m, backend: redis }",
        "redis: { url: \"redis://127.0.0.1:6379\" }",
        "a"
    )
    .is_empty());
}

#[test]
fn rejected_limits_name_their_key() {
    // The name is quoted in `RateLimit-Policy`: a quote cannot be in it.
    let errs = errors(
        "upstreams: { u: { targets: [\"127.0.0.1:1\"] } }\nrate_limits:\n  'a\"b': { requests: 1, per: 1m }\n",
    );
    assert_has(&errs, "a limit name is printable ASCII");
    assert_has(
        &with("  a: { requests: 0, per: 1m }", "", "a"),
        "rate_limits.a.requests: must be at least 1",
    );
    assert_has(
        &with("  a: { requests: 1, per: 5 }", "", "a"),
        "rate_limits.a.per: duration `5` needs a unit",
    );
    assert_has(
        &with("  a: { requests: 1, per: 100ms }", "", "a"),
        "rate_limits.a.per: must be at least 1s",
    );
    assert_has(
        &with("  a: { requests: 1, per: 1m, key: ip }", "", "a"),
        "rate_limits.a.key: unknown key `ip`",
    );
    assert_has(
        &with("  a: { requests: 1, per: 1m, backend: redis }", "", "a"),
        "rate_limits.a.backend: `backend: redis` needs a top-level `redis` section",
    );
    assert_has(
        &with("  a: { requests: 1, per: 1m }", "", "nope"),
        "routes[0].rate_limit: rate limit `nope` is not defined",
    );
    assert_has(
        &with(
            "  a: { requests: 1, per: 1m }",
            "redis: { url: \"http://x\", on_error: maybe }",
            "a",
        ),
        "redis.url: invalid URL",
    );
    assert_has(
        &with(
            "  a: { requests: 1, per: 1m }",
            "redis: { url: \"redis://x:1\", on_error: maybe }",
            "a",
        ),
        "redis.on_error: unknown value `maybe`",
    );
}

#[test]
fn redis_password_is_redacted() {
    let cfg = gatehouse::config::load_str(
        "redis: { url: \"redis://user:hunter2@127.0.0.1:6379/0\" }\nrate_limits: { a: { requests: 1, per: 1m, backend: redis } }\nupstreams: { u: { targets: [\"127.0.0.1:1\"] } }\nroutes: [{ name: r, upstream: u }]\n",
    )
    .unwrap();
    let dump = gatehouse::config::redacted_json(&cfg).to_string();
    assert!(
        !dump.contains("hunter2") && dump.contains("redis://<redacted>@127.0.0.1:6379/0"),
        "{dump}"
    );
    assert!(!format!("{cfg:?}").contains("hunter2"));
}
