//! Forward auth against a real auth service on loopback that answers 200,
//! 401, 403 or 500, is slow, or is down.

use crate::support::*;
use std::time::{Duration, Instant};

fn gw(app: &Upstream, auth: &Upstream, cache: &str) -> Gateway {
    gateway(&format!(
        r#"
server: {{ listen: ["{{listen}}"] }}
admin: {{ listen: "{{admin}}" }}
upstreams: {{ app: {{ targets: ["{}"] }} }}
auth:
  sso:
    type: forward
    url: http://{}/check
    timeout: 300ms
    send_headers: [Authorization, Cookie]
    copy_headers: [X-User-Id, X-User-Roles]
{cache}
routes:
  - {{ name: app, match: {{ path_prefix: /app }}, upstream: app, auth: sso }}
"#,
        app.addr, auth.addr
    ))
}

fn counted(gw: &Gateway, result: &str) -> f64 {
    metric(
        &scrape(gw),
        "gatehouse_forward_auth_total",
        &[("provider", "sso"), ("result", result)],
    )
}

#[test]
fn a_2xx_allows_and_its_copy_headers_replace_the_clients() {
    let (app, auth) = (Upstream::start("app"), Upstream::start("auth"));
    auth.add_response_header("X-User-Id", "u-42");
    auth.add_response_header("X-User-Roles", "admin");
    let gw = gw(&app, &auth, "");
    let r = raw(
        gw.addr,
        b"POST /app/orders?id=7 HTTP/1.1\r\nHost: shop.example\r\nAuthorization: Bearer t\r\nCookie: s=1\r\nX-User-Id: forged\r\nX-Other: o\r\nContent-Length: 4\r\nConnection: close\r\n\r\nbody",
    )
    .unwrap();
    assert_eq!(r.status, 200);
    let asked = auth.last();
    assert_eq!(
        (asked.method.as_str(), asked.target.as_str()),
        ("GET", "/check")
    );
    assert_eq!(asked.header("authorization"), Some("Bearer t"));
    assert_eq!(asked.header("cookie"), Some("s=1"));
    assert_eq!(asked.header("x-forwarded-method"), Some("POST"));
    assert_eq!(asked.header("x-forwarded-uri"), Some("/app/orders?id=7"));
    assert_eq!(asked.header("x-forwarded-host"), Some("shop.example"));
    assert_eq!(asked.header("x-forwarded-for"), Some("127.0.0.1"));
    assert_eq!(asked.header("x-other"), None, "only send_headers go");
    assert!(
        asked.body.is_empty(),
        "bodies are never sent to the auth service"
    );
    let seen = app.last();
    assert_eq!(
        seen.header_all("x-user-id"),
        vec!["u-42"],
        "the client's copy is replaced"
    );
    assert_eq!(seen.header("x-user-roles"), Some("admin"));
    assert_eq!(seen.body, b"body");
    assert_eq!(counted(&gw, "allow"), 1.0);
}

#[test]
fn answers_401_and_403_are_passed_on_and_everything_else_fails_closed() {
    let (app, auth) = (Upstream::start("app"), Upstream::start("auth"));
    auth.add_response_header("WWW-Authenticate", "Bearer realm=\"sso\"");
    let gw = gw(&app, &auth, "");
    for (status, expect) in [(401, 401), (403, 403), (500, 503), (302, 503), (404, 503)] {
        auth.set_status(status);
        let r = get_raw(gw.addr, "/app/x", "");
        assert_eq!(r.status, expect, "auth service answered {status}");
        assert_eq!(r.header("content-type"), Some("application/problem+json"));
        if expect != 503 {
            assert_eq!(
                r.header("www-authenticate"),
                Some("Bearer realm=\"sso\""),
                "{status}"
            );
        }
    }
    // Slow (over the 300 ms timeout), then down: 503 as well.
    auth.set_status(200);
    auth.set_delay(Duration::from_secs(2));
    let t = Instant::now();
    assert_eq!(get_raw(gw.addr, "/app/x", "").status, 503);
    assert!(
        t.elapsed() < Duration::from_millis(1500),
        "the timeout is hard: {:?}",
        t.elapsed()
    );
    auth.set_delay(Duration::ZERO);
    auth.stop();
    assert_eq!(get_raw(gw.addr, "/app/x", "").status, 503);
    assert_eq!(app.hits(), 0, "nothing reached the upstream");
    assert_eq!(counted(&gw, "deny"), 2.0);
    assert!(counted(&gw, "error") >= 5.0);
}

#[test]
fn the_cache_keeps_2xx_answers_by_what_was_sent_over_a_pooled_connection() {
    let (app, auth) = (Upstream::start("app"), Upstream::start("auth"));
    auth.add_response_header("X-User-Id", "u-1");
    let gw = gw(&app, &auth, "    cache: 30s\n");
    for _ in 0..5 {
        assert_eq!(get_raw(gw.addr, "/app/x", "Cookie: s=1\r\n").status, 200);
    }
    assert_eq!(auth.hits(), 1, "four answers came from the cache");
    assert_eq!(app.last().header("x-user-id"), Some("u-1"));
    // Other credentials (or another target) are a different key.
    assert_eq!(get_raw(gw.addr, "/app/x", "Cookie: s=2\r\n").status, 200);
    assert_eq!(get_raw(gw.addr, "/app/y", "Cookie: s=1\r\n").status, 200);
    assert_eq!(auth.hits(), 3);
    assert_eq!(
        auth.connections(),
        1,
        "one pooled connection to the auth service"
    );
    assert_eq!(counted(&gw, "cached"), 4.0);
    // Denials are never cached.
    auth.set_status(401);
    for _ in 0..2 {
        assert_eq!(get_raw(gw.addr, "/app/z", "Cookie: s=3\r\n").status, 401);
    }
    assert_eq!(auth.hits(), 5);
}
