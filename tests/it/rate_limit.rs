//! Local rate limiting through the real gateway.

use crate::support::*;
use std::time::Duration;

fn env(limits: &str, route_extra: &str, server_extra: &str) -> (Gateway, Upstream) {
    let up = Upstream::start("svc");
    let gw = gateway(&format!(
        r#"
server: {{ listen: ["{{listen}}"] {server_extra} }}
admin: {{ listen: "{{admin}}" }}
upstreams: {{ svc: {{ targets: ["{}"] }} }}
auth:
  hs: {{ type: jwt, algorithms: [HS256], secret: "{SECRET}" }}
rate_limits:
{limits}
routes:
  - {{ name: limited, match: {{ path_prefix: /limited }}, upstream: svc, {route_extra} }}
  - {{ name: free, match: {{ path_prefix: /free }}, upstream: svc }}
"#,
        up.addr
    ));
    (gw, up)
}

const SECRET: &str = "rate-limit-test-secret-0123456789abcdef";

#[test]
fn a_burst_gets_exactly_the_limit_then_429() {
    let (gw, up) = env("  ten: { requests: 10, per: 1m }", "rate_limit: ten", "");
    let mut ok = 0;
    for i in 0..30 {
        let r = get_raw(gw.addr, "/limited/x", "");
        assert_eq!(r.header("x-ratelimit-limit"), Some("10"));
        let reset: u64 = r.header("x-ratelimit-reset").unwrap().parse().unwrap();
        assert!((1..=60).contains(&reset), "{reset}");
        assert_eq!(r.header("ratelimit-policy"), Some("\"ten\";q=10;w=60"));
        if r.status == 200 {
            ok += 1;
            assert_eq!(
                r.header("x-ratelimit-remaining"),
                Some((10 - ok).to_string().as_str()),
                "request {i}"
            );
        } else {
            assert_eq!(r.status, 429, "request {i}");
            assert_eq!(r.header("x-ratelimit-remaining"), Some("0"));
            let retry: u64 = r.header("retry-after").unwrap().parse().unwrap();
            assert!(retry >= 1);
            assert_eq!(r.header("content-type"), Some("application/problem+json"));
            assert_eq!(r.json()["type"], "urn:gatehouse:problem:rate-limited");
            assert!(r.header("ratelimit").unwrap().starts_with("\"ten\";r=0;t="));
        }
    }
    assert_eq!(ok, 10);
    assert_eq!(up.hits(), 10);
    // Other routes are not limited and carry no rate-limit headers.
    let r = get_raw(gw.addr, "/free", "");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-ratelimit-limit"), None);
    let m = scrape(&gw);
    assert_eq!(
        metric(
            &m,
            "gatehouse_rate_limited_total",
            &[("route", "limited"), ("limit", "ten")]
        ),
        20.0
    );
}

#[test]
fn keys_isolate_clients() {
    let (gw, _up) = env(
        "  per_tenant: { requests: 3, per: 1m, key: \"header:X-Tenant\" }",
        "rate_limit: per_tenant",
        "",
    );
    for _ in 0..3 {
        assert_eq!(get_raw(gw.addr, "/limited", "X-Tenant: a\r\n").status, 200);
    }
    assert_eq!(get_raw(gw.addr, "/limited", "X-Tenant: a\r\n").status, 429);
    assert_eq!(get_raw(gw.addr, "/limited", "X-Tenant: b\r\n").status, 200);
    // Without the header: the client IP (its own bucket).
    assert_eq!(get_raw(gw.addr, "/limited", "").status, 200);
}

#[test]
fn claims_and_consumers_isolate_users() {
    let (gw, _up) = env(
        "  per_user: { requests: 2, per: 1m, key: \"claim:sub\" }\n  per_consumer: { requests: 5, per: 1m, key: consumer }",
        "auth: hs, rate_limit: [per_user, per_consumer]",
        "",
    );
    let alice = mint(
        jsonwebtoken::Algorithm::HS256,
        SECRET,
        claims("alice"),
        None,
    );
    let bob = mint(jsonwebtoken::Algorithm::HS256, SECRET, claims("bob"), None);
    let get = |t: &str| {
        get_raw(
            gw.addr,
            "/limited",
            &format!("Authorization: Bearer {t}\r\n"),
        )
    };
    assert_eq!(get(&alice).status, 200);
    let r = get(&alice);
    assert_eq!(r.status, 200);
    // The most restrictive limit is reported: per_user has 0 left.
    assert_eq!(r.header("x-ratelimit-limit"), Some("2"));
    assert_eq!(r.header("x-ratelimit-remaining"), Some("0"));
    assert_eq!(get(&alice).status, 429);
    assert_eq!(get(&bob).status, 200);
}

#[test]
fn the_window_resets() {
    let (gw, _up) = env("  two: { requests: 2, per: 1s }", "rate_limit: two", "");
    assert_eq!(get_raw(gw.addr, "/limited", "").status, 200);
    assert_eq!(get_raw(gw.addr, "/limited", "").status, 200);
    let r = get_raw(gw.addr, "/limited", "");
    assert_eq!(r.status, 429);
    assert_eq!(r.header("retry-after"), Some("1"));
    std::thread::sleep(Duration::from_millis(1100));
    assert_eq!(get_raw(gw.addr, "/limited", "").status, 200);
}

#[test]
fn spoofed_forwarded_for_does_not_change_the_key() {
    let (gw, _up) = env("  three: { requests: 3, per: 1m }", "rate_limit: three", "");
    for i in 0..3 {
        assert_eq!(
            get_raw(
                gw.addr,
                "/limited",
                &format!("X-Forwarded-For: 10.0.0.{i}\r\n")
            )
            .status,
            200
        );
    }
    assert_eq!(
        get_raw(gw.addr, "/limited", "X-Forwarded-For: 10.9.9.9\r\n").status,
        429
    );
}

#[test]
fn trusted_proxies_forwarded_for_is_the_key() {
    let (gw, _up) = env(
        "  one: { requests: 1, per: 1m }",
        "rate_limit: one",
        ", trusted_proxies: [\"127.0.0.1\"]",
    );
    assert_eq!(
        get_raw(gw.addr, "/limited", "X-Forwarded-For: 203.0.113.1\r\n").status,
        200
    );
    assert_eq!(
        get_raw(gw.addr, "/limited", "X-Forwarded-For: 203.0.113.1\r\n").status,
        429
    );
    assert_eq!(
        get_raw(gw.addr, "/limited", "X-Forwarded-For: 203.0.113.2\r\n").status,
        200
    );
}

#[test]
fn unauthenticated_requests_count_and_show_the_limit() {
    let (gw, _up) = env(
        "  three: { requests: 3, per: 1m }",
        "auth: hs, rate_limit: three",
        "",
    );
    for remaining in ["2", "1", "0"] {
        let r = get_raw(gw.addr, "/limited", "Authorization: Bearer wrong\r\n");
        assert_eq!(r.status, 401);
        assert_eq!(r.header("x-ratelimit-remaining"), Some(remaining));
    }
    // Over the limit the answer is 429, whatever the credentials.
    let good = mint(jsonwebtoken::Algorithm::HS256, SECRET, claims("x"), None);
    assert_eq!(
        get_raw(
            gw.addr,
            "/limited",
            &format!("Authorization: Bearer {good}\r\n")
        )
        .status,
        429
    );
}

#[test]
fn concurrent_bursts_never_exceed_the_limit() {
    let (gw, up) = env(
        "  fifty: { requests: 50, per: 1m }",
        "rate_limit: fifty",
        "",
    );
    let addr = gw.addr;
    let threads: Vec<_> = (0..8)
        .map(|_| {
            std::thread::spawn(move || {
                (0..25)
                    .filter(|_| get_raw(addr, "/limited", "").status == 200)
                    .count()
            })
        })
        .collect();
    let ok: usize = threads.into_iter().map(|t| t.join().unwrap()).sum();
    assert_eq!(ok, 50);
    assert_eq!(up.hits(), 50);
}
