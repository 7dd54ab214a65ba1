//! Access control at the edge: `allow_ips` / `deny_ips` on routes.

use crate::support::*;

const SECRET: &str = "access-test-secret-0123456789abcdef0123";

fn gw(up: &Upstream) -> Gateway {
    gateway(&format!(
        r#"
server: {{ listen: ["{{listen}}"], trusted_proxies: ["127.0.0.1"] }}
admin: {{ listen: "{{admin}}" }}
upstreams: {{ ops: {{ targets: ["{}"] }} }}
auth:
  jwt: {{ type: jwt, algorithms: [HS256], secret: "{SECRET}" }}
routes:
  - name: internal
    match: {{ path_prefix: /internal }}
    upstream: ops
    allow_ips: ["10.0.0.0/8", "192.168.1.7", "2001:db8::/32"]
    deny_ips: ["10.0.13.0/24"]
  - name: guarded
    match: {{ path_prefix: /guarded }}
    upstream: ops
    auth: jwt
    rate_limit: tight
    deny_ips: ["203.0.113.0/24"]
  - {{ name: open, match: {{ path_prefix: /open }}, upstream: ops }}
rate_limits:
  tight: {{ requests: 1, per: 1m }}
"#,
        up.addr
    ))
}

fn from(gw: &Gateway, path: &str, ip: &str) -> RawResponse {
    get_raw(gw.addr, path, &format!("X-Forwarded-For: {ip}\r\n"))
}

#[test]
fn allow_and_deny_lists_decide_by_client_ip() {
    let up = Upstream::start("ops");
    let gw = gw(&up);
    for (ip, status) in [
        ("10.1.2.3", 200),
        ("192.168.1.7", 200),
        ("2001:db8::42", 200),
        ("10.0.13.9", 403),
        ("192.168.1.8", 403),
        ("198.51.100.1", 403),
        ("2001:db9::1", 403),
    ] {
        let r = from(&gw, "/internal/x", ip);
        assert_eq!(r.status, status, "{ip}");
        if status == 403 {
            assert_eq!(r.header("content-type"), Some("application/problem+json"));
            assert!(String::from_utf8_lossy(&r.body).contains("access-denied"));
        }
    }
    assert_eq!(up.hits(), 3, "nothing denied was forwarded");
    // Without X-Forwarded-For the client is 127.0.0.1: not in the allow list.
    assert_eq!(get_raw(gw.addr, "/internal/x", "").status, 403);
    assert_eq!(from(&gw, "/open/x", "10.0.13.9").status, 200);
    let m = scrape(&gw);
    assert_eq!(
        metric(
            &m,
            "gatehouse_access_denied_total",
            &[("route", "internal")]
        ),
        5.0
    );
}

#[test]
fn ip_rules_run_before_auth_and_rate_limits() {
    let up = Upstream::start("ops");
    let gw = gw(&up);
    // A denied client gets 403 whatever its credentials, and is not counted
    // by the rate limit (the allowed client below still has its one request).
    for _ in 0..3 {
        assert_eq!(from(&gw, "/guarded/x", "203.0.113.5").status, 403);
    }
    let r = from(&gw, "/guarded/x", "198.51.100.9");
    assert_eq!(r.status, 401, "an allowed client meets auth");
    assert_eq!(up.hits(), 0);
}

#[test]
fn host_must_be_one_valid_header_on_http11() {
    let up = Upstream::start("ops");
    let gw = gw(&up);
    let send = |head: &str| {
        raw(
            gw.addr,
            format!("GET /open/x HTTP/1.1\r\n{head}Connection: close\r\n\r\n").as_bytes(),
        )
        .unwrap()
    };
    assert_eq!(send("Host: a.example\r\n").status, 200);
    for bad in [
        "",
        "Host: a.example\r\nHost: b.example\r\n",
        "Host: a b\r\n",
        "Host: a/b\r\n",
        "Host: user@a.example\r\n",
        "Host: a.example:80x\r\n",
    ] {
        assert_eq!(send(bad).status, 400, "{bad:?}");
    }
    assert_eq!(up.hits(), 1, "never forwarded");
    // HTTP/1.0 may leave Host out.
    let r = raw(gw.addr, b"GET /open/x HTTP/1.0\r\n\r\n").unwrap();
    assert_eq!(r.status, 200);
}

#[test]
fn headers_the_upstream_names_in_connection_do_not_reach_the_client() {
    let up = Upstream::start("ops");
    up.add_response_header("Connection", "X-Internal-Hop, Keep-Alive");
    up.add_response_header("X-Internal-Hop", "secret");
    up.add_response_header("Keep-Alive", "timeout=5");
    up.add_response_header("X-Public", "yes");
    let gw = gw(&up);
    let r = get_raw(gw.addr, "/open/x", "");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-internal-hop"), None);
    assert_eq!(r.header("keep-alive"), None);
    assert_eq!(r.header("x-public"), Some("yes"));
}
