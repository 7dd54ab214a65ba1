//! Routing, normalisation and forwarding through a real gateway.

use crate::support::*;

fn two_route_gateway(users: &Upstream, orders: &Upstream) -> Gateway {
    gateway(&format!(
        r#"
server: {{ listen: ["{{listen}}"], threads: 1 }}
upstreams:
  users: {{ targets: ["{}"] }}
  orders: {{ targets: ["{}"] }}
routes:
  - name: users
    match: {{ path_prefix: /api/users }}
    upstream: users
    strip_prefix: /api
  - name: public
    match: {{ path_prefix: /api/public, methods: [GET, HEAD] }}
    upstream: users
  - name: v2
    match: {{ path_prefix: /api/orders, headers: {{ X-Api-Version: "2" }} }}
    upstream: users
  - name: orders
    match: {{ path_prefix: /api/orders }}
    upstream: orders
    strip_prefix: /api
  - name: tenant
    match: {{ path_prefix: /, host: "*.tenant.example" }}
    upstream: users
    add_prefix: /tenant
"#,
        users.addr, orders.addr
    ))
}

#[test]
fn routes_strip_prefix_and_keep_query() {
    let users = Upstream::start("users");
    let orders = Upstream::start("orders");
    let gw = two_route_gateway(&users, &orders);
    let r = client()
        .get(gw.url("/api/users/7?fields=a,b&x=%20"))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-upstream"], "users");
    assert_eq!(users.last().target, "/users/7?fields=a,b&x=%20");

    let r = client().get(gw.url("/api/orders")).send().unwrap();
    assert_eq!(r.headers()["x-upstream"], "orders");
    assert_eq!(orders.last().target, "/orders");

    // Segment-aware prefix: /api/usersX is not /api/users.
    let r = client().get(gw.url("/api/usersX")).send().unwrap();
    assert_eq!(r.status(), 404);
}

#[test]
fn header_and_host_conditions() {
    let users = Upstream::start("users");
    let orders = Upstream::start("orders");
    let gw = two_route_gateway(&users, &orders);
    // Equal prefixes: the header route (first in file order) only when its header matches.
    let r = client()
        .get(gw.url("/api/orders/1"))
        .header("X-Api-Version", "2")
        .send()
        .unwrap();
    assert_eq!(r.headers()["x-upstream"], "users");
    assert_eq!(users.last().target, "/api/orders/1");
    let r = client()
        .get(gw.url("/api/orders/1"))
        .header("X-Api-Version", "3")
        .send()
        .unwrap();
    assert_eq!(r.headers()["x-upstream"], "orders");

    // Wildcard host, any depth, case and port ignored.
    let r = raw(
        gw.addr,
        b"GET /x?q=1 HTTP/1.1\r\nHost: a.b.TENANT.example:8080\r\nConnection: close\r\n\r\n",
    )
    .unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(users.last().target, "/tenant/x?q=1");
    let r = raw(
        gw.addr,
        b"GET /x HTTP/1.1\r\nHost: tenant.example\r\nConnection: close\r\n\r\n",
    )
    .unwrap();
    assert_eq!(r.status, 404, "the wildcard does not match the apex");
}

#[test]
fn not_found_and_method_not_allowed_are_problem_json() {
    let users = Upstream::start("users");
    let orders = Upstream::start("orders");
    let gw = two_route_gateway(&users, &orders);
    let r = client().get(gw.url("/nowhere")).send().unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(r.headers()["content-type"], "application/problem+json");
    let id = r.headers()["x-request-id"].to_str().unwrap().to_string();
    let body: serde_json::Value = r.json().unwrap();
    assert_eq!(body["status"], 404);
    assert_eq!(body["title"], "Not Found");
    assert!(body["type"]
        .as_str()
        .unwrap()
        .starts_with("urn:gatehouse:problem:"));
    assert!(body["detail"].is_string());
    assert_eq!(body["request_id"], id.as_str());

    let r = client()
        .post(gw.url("/api/public/x"))
        .body("{}")
        .send()
        .unwrap();
    assert_eq!(r.status(), 405);
    assert_eq!(r.headers()["allow"], "GET, HEAD");
    assert_eq!(r.headers()["content-type"], "application/problem+json");
    assert_eq!(users.hits(), 0, "nothing reached an upstream");
}

#[test]
fn normalisation_attacks_route_on_the_normalised_path() {
    let users = Upstream::start("users");
    let orders = Upstream::start("orders");
    let gw = two_route_gateway(&users, &orders);
    // Each of these climbs out of /api/public into /api/orders: it must be
    // routed (and forwarded) as /api/orders, never served by the public route.
    for path in [
        "/api/public/../orders/9",
        "/api/public/%2e%2e/orders/9",
        "/api/public/%2E%2E/orders/9",
        "/api/public/.%2e/orders/9",
        "//api//public/..//orders/9",
        "/api/public/./../orders/./9",
    ] {
        let r = get_raw(gw.addr, path, "");
        assert_eq!(r.status, 200, "{path}");
        assert_eq!(r.header("x-upstream"), Some("orders"), "{path}");
        assert_eq!(orders.last().target, "/orders/9", "{path}");
    }
    assert_eq!(users.hits(), 0);
    // Unreserved characters are decoded before matching.
    let r = get_raw(gw.addr, "/api/%75sers/%7e1", "");
    assert_eq!(r.header("x-upstream"), Some("users"));
    assert_eq!(users.last().target, "/users/~1");
}

#[test]
fn dangerous_paths_are_rejected_with_400() {
    let users = Upstream::start("users");
    let orders = Upstream::start("orders");
    let gw = two_route_gateway(&users, &orders);
    for path in [
        "/..",
        "/api/../../etc/passwd",
        "/api/public%2F..%2Forders",
        "/api/public/..%5Corders",
        "/api/public/..;/orders",
        "/api/%c0%ae%c0%ae/orders",
        "/api/users%00",
        "/api/users/%zz",
    ] {
        let r = get_raw(gw.addr, path, "");
        assert_eq!(r.status, 400, "{path}");
        assert_eq!(
            r.header("content-type"),
            Some("application/problem+json"),
            "{path}"
        );
    }
    assert_eq!(users.hits() + orders.hits(), 0);
}

#[test]
fn absolute_form_targets_are_forwarded_in_origin_form() {
    let users = Upstream::start("users");
    let orders = Upstream::start("orders");
    let gw = two_route_gateway(&users, &orders);
    let r = raw(
        gw.addr,
        b"GET http://internal.example/api/users/1 HTTP/1.1\r\nHost: internal.example\r\nConnection: close\r\n\r\n",
    )
    .unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(users.last().target, "/users/1");
}

#[test]
fn forwarding_headers() {
    let users = Upstream::start("users");
    let orders = Upstream::start("orders");
    let gw = two_route_gateway(&users, &orders);
    let r = get_raw(
        gw.addr,
        "/api/users/1",
        "X-Forwarded-For: 203.0.113.5\r\nX-Forwarded-Proto: https\r\nX-Forwarded-Host: evil.example\r\n\
         traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\r\ntracestate: a=1\r\n",
    );
    assert_eq!(r.status, 200);
    let seen = users.last();
    assert_eq!(
        seen.header("x-forwarded-for"),
        Some("203.0.113.5, 127.0.0.1")
    );
    // The peer is not a trusted proxy: proto and host are set, not believed.
    assert_eq!(seen.header("x-forwarded-proto"), Some("http"));
    assert_eq!(seen.header("x-forwarded-host"), Some("test.local"));
    assert_eq!(seen.header_all("x-forwarded-host").len(), 1);
    assert_eq!(
        seen.header("traceparent"),
        Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
    );
    assert_eq!(seen.header("tracestate"), Some("a=1"));
    assert_eq!(seen.header("host"), Some("test.local"));
}

#[test]
fn trusted_proxies_keep_forwarded_proto_and_host() {
    let up = Upstream::start("u");
    let gw = gateway(&format!(
        "server: {{ listen: [\"{{listen}}\"], trusted_proxies: [\"127.0.0.0/8\"] }}\n\
         upstreams: {{ u: {{ targets: [\"{}\"] }} }}\nroutes: [{{ name: all, upstream: u }}]\n",
        up.addr
    ));
    get_raw(gw.addr, "/", "X-Forwarded-For: 198.51.100.1\r\nX-Forwarded-Proto: https\r\nX-Forwarded-Host: shop.example\r\n");
    let seen = up.last();
    assert_eq!(
        seen.header("x-forwarded-for"),
        Some("198.51.100.1, 127.0.0.1")
    );
    assert_eq!(seen.header("x-forwarded-proto"), Some("https"));
    assert_eq!(seen.header("x-forwarded-host"), Some("shop.example"));
}

#[test]
fn request_ids_are_kept_when_sane_and_echoed() {
    let users = Upstream::start("users");
    let orders = Upstream::start("orders");
    let gw = two_route_gateway(&users, &orders);
    let r = get_raw(gw.addr, "/api/users", "X-Request-Id: abc-123.XYZ_9\r\n");
    assert_eq!(r.header("x-request-id"), Some("abc-123.XYZ_9"));
    assert_eq!(users.last().header("x-request-id"), Some("abc-123.XYZ_9"));

    let r = get_raw(
        gw.addr,
        "/api/users",
        "X-Request-Id: bad id with spaces\r\n",
    );
    let id = r.header("x-request-id").unwrap().to_string();
    assert_ne!(id, "bad id with spaces");
    assert_eq!(id.len(), 36);
    assert_eq!(users.last().header("x-request-id"), Some(id.as_str()));

    let long = "a".repeat(129);
    let r = get_raw(gw.addr, "/api/users", &format!("X-Request-Id: {long}\r\n"));
    assert_ne!(r.header("x-request-id"), Some(long.as_str()));

    let r = get_raw(gw.addr, "/api/users", "");
    let a = r.header("x-request-id").unwrap().to_string();
    let r = get_raw(gw.addr, "/api/users", "");
    assert_ne!(r.header("x-request-id").unwrap(), a, "generated ids differ");
}

#[test]
fn hop_by_hop_headers_are_not_forwarded() {
    let users = Upstream::start("users");
    let orders = Upstream::start("orders");
    let gw = two_route_gateway(&users, &orders);
    let r = raw(
        gw.addr,
        b"GET /api/users HTTP/1.1\r\nHost: h\r\nConnection: keep-alive, X-Secret-Hop, X-Request-Id\r\n\
          X-Secret-Hop: 1\r\nKeep-Alive: timeout=5\r\nTE: trailers\r\nProxy-Authorization: Basic eA==\r\n\
          X-Request-Id: keep-me\r\nUpgrade: h2c\r\n\r\n",
    )
    .unwrap();
    assert_eq!(r.status, 200);
    let seen = users.last();
    for h in [
        "x-secret-hop",
        "keep-alive",
        "te",
        "proxy-authorization",
        "upgrade",
    ] {
        assert_eq!(seen.header(h), None, "{h} was forwarded");
    }
    // A Connection header naming a gateway-owned header cannot delete it.
    assert!(seen.header("x-request-id").is_some());
    assert!(seen.header("x-forwarded-for").is_some());
}

/// Persistence follows the request (RFC 9112 9.3): HTTP/1.0 closes unless
/// it asks for keep-alive, `Connection: close` closes.
#[test]
fn http_1_0_and_connection_close_are_not_kept_alive() {
    use std::io::{BufReader, Write};
    let up = Upstream::start("u");
    let gw = gateway_to(up.addr, "");
    let cases: [(&[u8], &str, bool); 3] = [
        (b"GET / HTTP/1.0\r\nHost: h\r\n\r\n", "close", true),
        (
            b"GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
            "close",
            true,
        ),
        (
            b"GET / HTTP/1.0\r\nHost: h\r\nConnection: keep-alive\r\n\r\n",
            "keep-alive",
            false,
        ),
    ];
    for (req, connection, closes) in cases {
        let mut s = std::net::TcpStream::connect(gw.addr).unwrap();
        s.write_all(req).unwrap();
        let mut r = BufReader::new(s.try_clone().unwrap());
        let resp = read_response(&mut r).unwrap();
        assert_eq!(resp.status, 200);
        let what = String::from_utf8_lossy(req);
        assert_eq!(resp.header("connection"), Some(connection), "{what}");
        let closed = closed_within(&mut s, std::time::Duration::from_millis(500));
        assert_eq!(closed, closes, "{what}");
    }
}

#[test]
fn idle_keepalive_connections_are_closed() {
    use std::io::{BufReader, Read, Write};
    let up = Upstream::start("u");
    let gw = gateway(&format!(
        "server: {{ listen: [\"{{listen}}\"], idle_timeout: 1s }}\n\
         upstreams: {{ u: {{ targets: [\"{}\"] }} }}\nroutes: [{{ name: all, upstream: u }}]\n",
        up.addr
    ));
    let mut s = std::net::TcpStream::connect(gw.addr).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n").unwrap();
    let mut r = BufReader::new(s.try_clone().unwrap());
    assert_eq!(read_response(&mut r).unwrap().status, 200);
    // Keep-alive: a second request on the same connection works.
    s.write_all(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n").unwrap();
    assert_eq!(read_response(&mut r).unwrap().status, 200);
    let start = std::time::Instant::now();
    let mut buf = [0u8; 1];
    let n = r.read(&mut buf).unwrap_or(0);
    assert_eq!(n, 0, "the idle connection is closed by the gateway");
    assert!(start.elapsed() < std::time::Duration::from_secs(5));
}
