//! Header transforms, CORS and WebSocket through the real gateway.

use crate::support::*;
use std::io::{BufReader, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

const SECRET: &str = "transform-test-secret-0123456789abcdef";

fn env() -> (Gateway, Upstream) {
    let up = Upstream::start("svc");
    up.add_response_header("server", "origin/1.0");
    up.add_response_header("x-powered-by", "php");
    let gw = gateway(&format!(
        r#"
server: {{ listen: ["{{listen}}"] }}
upstreams: {{ svc: {{ targets: ["{}"] }} }}
auth:
  hs: {{ type: jwt, algorithms: [HS256], secret: "{SECRET}", forward_claims: {{ sub: X-User-Id }} }}
rate_limits:
  ws3: {{ requests: 3, per: 1m }}
routes:
  - name: orders
    match: {{ path_prefix: /orders }}
    upstream: svc
    auth: hs
    request_headers:
      set: {{ X-Gateway: gatehouse, X-Trace: "${{request_id}}", X-Who: "${{claim.sub}}@${{client_ip}}", X-User-Id: "overridden" }}
      add: {{ X-Route: "${{route}}" }}
      remove: [Cookie]
    response_headers:
      set: {{ X-Served-By: "gatehouse/${{route}}" }}
      remove: [Server, X-Powered-By]
  - name: api
    match: {{ path_prefix: /api }}
    upstream: svc
    auth: hs
    cors:
      allow_origins: ["https://app.example.com"]
      allow_methods: [GET, PUT]
      allow_headers: [Authorization, Content-Type]
      expose_headers: [X-Total]
      allow_credentials: true
      max_age: 10m
  - name: open
    match: {{ path_prefix: /open }}
    upstream: svc
    cors: {{ allow_origins: ["*"] }}
  - {{ name: ws, match: {{ path_prefix: /ws }}, upstream: svc, websocket: true, auth: hs, rate_limit: ws3 }}
  - {{ name: nows, match: {{ path_prefix: /nows }}, upstream: svc }}
"#,
        up.addr
    ));
    (gw, up)
}

fn token() -> String {
    mint(jsonwebtoken::Algorithm::HS256, SECRET, claims("ada"), None)
}

#[test]
fn request_and_response_transforms() {
    let (gw, up) = env();
    let r = get_raw(
        gw.addr,
        "/orders/1",
        &format!(
            "Authorization: Bearer {}\r\nCookie: sid=secret\r\nX-Request-Id: rid-42\r\n",
            token()
        ),
    );
    assert_eq!(r.status, 200);
    let seen = up.last();
    assert_eq!(seen.header("x-gateway"), Some("gatehouse"));
    assert_eq!(seen.header("x-trace"), Some("rid-42"));
    assert_eq!(seen.header("x-who"), Some("ada@127.0.0.1"));
    assert_eq!(seen.header("x-route"), Some("orders"));
    assert_eq!(seen.header("cookie"), None);
    // Identity headers come from the token, whatever a transform says.
    assert_eq!(seen.header_all("x-user-id"), vec!["ada"]);
    assert_eq!(r.header("server"), None);
    assert_eq!(r.header("x-powered-by"), None);
    assert_eq!(r.header("x-served-by"), Some("gatehouse/orders"));
}

#[test]
fn preflight_is_answered_at_the_gateway() {
    let (gw, up) = env();
    let r = raw(
        gw.addr,
        b"OPTIONS /api/items HTTP/1.1\r\nHost: h\r\nOrigin: https://app.example.com\r\nAccess-Control-Request-Method: PUT\r\nAccess-Control-Request-Headers: content-type\r\nConnection: close\r\n\r\n",
    )
    .unwrap();
    assert_eq!(r.status, 204, "no credentials needed for a preflight");
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("https://app.example.com")
    );
    assert_eq!(r.header("access-control-allow-methods"), Some("GET, PUT"));
    assert_eq!(
        r.header("access-control-allow-headers"),
        Some("authorization, content-type")
    );
    assert_eq!(r.header("access-control-allow-credentials"), Some("true"));
    assert_eq!(r.header("access-control-max-age"), Some("600"));
    assert_eq!(r.header("vary"), Some("Origin"));
    assert_eq!(up.hits(), 0, "preflights never reach the upstream");
    let r = raw(
        gw.addr,
        b"OPTIONS /api/items HTTP/1.1\r\nHost: h\r\nOrigin: https://evil.example.com\r\nAccess-Control-Request-Method: PUT\r\nConnection: close\r\n\r\n",
    )
    .unwrap();
    assert_eq!(r.status, 403);
    assert_eq!(r.header("access-control-allow-origin"), None);
    assert_eq!(up.hits(), 0);
}

#[test]
fn simple_requests_get_allow_origin_only_for_allowed_origins() {
    let (gw, _up) = env();
    let auth = format!("Authorization: Bearer {}\r\n", token());
    let r = get_raw(
        gw.addr,
        "/api/x",
        &format!("{auth}Origin: https://app.example.com\r\n"),
    );
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("https://app.example.com")
    );
    assert_eq!(r.header("access-control-allow-credentials"), Some("true"));
    assert_eq!(r.header("access-control-expose-headers"), Some("x-total"));
    assert!(r
        .headers
        .iter()
        .any(|(k, v)| k.eq_ignore_ascii_case("vary") && v.contains("Origin")));
    let r = get_raw(
        gw.addr,
        "/api/x",
        &format!("{auth}Origin: https://evil.example.com\r\n"),
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.header("access-control-allow-origin"), None);
    // An error on a CORS route is readable by the allowed origin.
    let r = get_raw(gw.addr, "/api/x", "Origin: https://app.example.com\r\n");
    assert_eq!(r.status, 401);
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("https://app.example.com")
    );
    // `*` without credentials.
    let r = get_raw(gw.addr, "/open/x", "Origin: https://anyone.example\r\n");
    assert_eq!(r.header("access-control-allow-origin"), Some("*"));
}

/// Minimal WebSocket client handshake; returns the open stream.
fn ws_connect(gw: &Gateway, path: &str, extra: &str) -> (TcpStream, RawResponse) {
    let mut s = TcpStream::connect(gw.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n{extra}\r\n"
    );
    s.write_all(req.as_bytes()).unwrap();
    let mut r = BufReader::new(s.try_clone().unwrap());
    let head = read_response(&mut r).unwrap();
    (s, head)
}

#[test]
fn websocket_echo_through_the_gateway() {
    let (gw, _up) = env();
    let (mut s, head) = ws_connect(
        &gw,
        "/ws/chat",
        &format!("Authorization: Bearer {}\r\n", token()),
    );
    assert_eq!(head.status, 101, "{:?}", head.headers);
    assert_eq!(
        head.header("sec-websocket-accept"),
        Some("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")
    );
    // A masked text frame "hello"; the echo server sends the bytes back.
    let frame = [
        0x81u8,
        0x85,
        1,
        2,
        3,
        4,
        b'h' ^ 1,
        b'e' ^ 2,
        b'l' ^ 3,
        b'l' ^ 4,
        b'o' ^ 1,
    ];
    s.write_all(&frame).unwrap();
    let mut back = [0u8; 11];
    s.read_exact(&mut back).unwrap();
    assert_eq!(back, frame);
    // The handshake goes through auth like any request.
    let (_, head) = ws_connect(&gw, "/ws/chat", "");
    assert_eq!(head.status, 401);
}

/// The upstream answers the 101 at once, so it is often read before Pingora
/// has passed on the handshake's empty body: every tunnel must still carry
/// bytes both ways (cloudflare/pingora#946; `upstream/upgrade.rs`).
#[test]
fn websocket_tunnels_survive_an_instant_101() {
    let up = Upstream::start("svc");
    let gw = gateway_to(up.addr, ", websocket: true");
    let frame = [0x81u8, 0x82, 9, 9, 9, 9, b'o' ^ 9, b'k' ^ 9];
    let mut broken = 0;
    for _ in 0..500 {
        let (mut s, head) = ws_connect(&gw, "/ws", "");
        assert_eq!(head.status, 101);
        s.write_all(&frame).unwrap();
        let mut back = [0u8; 8];
        match s.read_exact(&mut back) {
            Ok(()) => assert_eq!(back, frame),
            Err(_) => broken += 1,
        }
    }
    assert_eq!(broken, 0, "tunnels closed right after their 101");
}

#[test]
fn websocket_handshakes_are_rate_limited() {
    let (gw, _up) = env();
    let auth = format!("Authorization: Bearer {}\r\n", token());
    let mut open = Vec::new();
    for i in 0..3 {
        let (s, head) = ws_connect(&gw, "/ws/chat", &auth);
        assert_eq!(head.status, 101, "handshake {i}");
        open.push(s);
    }
    let (_, head) = ws_connect(&gw, "/ws/chat", &auth);
    assert_eq!(head.status, 429);
    assert_eq!(head.header("x-ratelimit-remaining"), Some("0"));
    assert!(head.header("retry-after").is_some());
}

#[test]
fn websocket_is_off_unless_the_route_allows_it() {
    let (gw, up) = env();
    let (_, head) = ws_connect(&gw, "/nows/chat", "");
    assert_ne!(head.status, 101);
    assert_eq!(
        up.last().header("upgrade"),
        None,
        "the upgrade was not forwarded"
    );
}

#[test]
fn config_dump_shows_transforms_but_not_injected_credentials() {
    let cfg = gatehouse::config::load_str(
        r#"
server: { listen: ["127.0.0.1:1"] }
upstreams: { svc: { targets: ["127.0.0.1:2"] } }
routes:
  - name: r
    upstream: svc
    websocket: true
    request_headers:
      set: { Authorization: "Bearer upstream-secret-value", X-Trace: "${request_id}/${claim.sub}" }
    cors: { allow_origins: ["https://app.example.com"] }
"#,
    )
    .unwrap();
    let dump = gatehouse::config::redacted_json(&cfg);
    let text = dump.to_string();
    assert!(!text.contains("upstream-secret-value"), "{text}");
    let r = &dump["routes"][0];
    assert_eq!(r["websocket"], true);
    assert_eq!(
        r["request_headers"]["set"],
        serde_json::json!([
            ["authorization", "<redacted>"],
            ["x-trace", "${request_id}/${claim.sub}"]
        ])
    );
    assert_eq!(r["cors"]["allow_origins"][0], "https://app.example.com");
    assert_eq!(dump["server"]["max_body"], 10 * 1024 * 1024);
}
