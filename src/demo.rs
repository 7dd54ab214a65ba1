//! `gatehouse --demo`: the gateway on 127.0.0.1:8080 in front of four
//! built-in services (users with two instances, products, orders, and a
//! catalog in two versions behind a traffic split) running in the same
//! process on free loopback ports, with an embedded config.

use crate::app::{self, StartOptions};
use crate::config;
use async_trait::async_trait;
use http::{Response, StatusCode};
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;
use pingora::services::listening::Service;

/// The demo config; `{USERS_A}` etc. are replaced by the services' ports.
pub(crate) const DEMO_CONFIG: &str = r#"
server:
  listen: ["127.0.0.1:8080"]
  threads: 1
  grace_period: 1s
admin:
  listen: "127.0.0.1:9090"
logging:
  level: info
upstreams:
  users:
    targets: ["127.0.0.1:{USERS_A}", "127.0.0.1:{USERS_B}"]
    health_check: { path: /health, interval: 2s }
  products:
    targets: ["127.0.0.1:{PRODUCTS}"]
    health_check: { path: /health, interval: 2s }
  orders:
    targets: ["127.0.0.1:{ORDERS}"]
  catalog-v1:
    targets: ["127.0.0.1:{CATALOG_V1}"]
    retry_on: [connect, reset, timeout, 502, 503, 504]
    passive_health: { consecutive_failures: 5, eject_for: 10s }
  catalog-v2:
    targets: ["127.0.0.1:{CATALOG_V2}"]
    retry_on: [connect, reset, timeout, 502, 503, 504]
    passive_health: { consecutive_failures: 5, eject_for: 10s }
auth:
  demo:
    type: jwt
    algorithms: [HS256]
    secret: "{SECRET}"
    issuer: https://demo.gatehouse.local
    audience: [shop-api]
    forward_claims: { sub: X-User-Id, scope: X-User-Scopes }
  admin:
    type: basic
    users:
      - { name: admin, hash: "{ADMIN_HASH}" }
    forward_id: X-User-Id
routes:
  - name: users
    match: { path_prefix: /api/users }
    upstream: users
    strip_prefix: /api
  - name: products
    match: { path_prefix: /api/products, methods: [GET, HEAD] }
    upstream: products
    strip_prefix: /api
    cache: true
    compress: true
  - name: orders
    match: { path_prefix: /api/orders }
    upstream: orders
    strip_prefix: /api
    auth: { provider: demo, scopes: ["orders:read"] }
  - name: admin
    match: { path_prefix: /api/admin }
    upstream: users
    strip_prefix: /api
    allow_ips: ["127.0.0.1", "::1"]
    auth: admin
  - name: catalog
    match: { path_prefix: /api/catalog }
    split:
      - { upstream: catalog-v1, weight: 90 }
      - { upstream: catalog-v2, weight: 10 }
    split_key: header:X-User-Id
    strip_prefix: /api
"#;

/// The demo's HS256 secret. It is printed and public: demo use only.
pub(crate) const DEMO_SECRET: &str = "gatehouse-demo-secret-not-for-production-use!";

/// A demo token for `sub` with `scope`, valid for a day.
pub(crate) fn demo_token(sub: &str, scope: &str) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    let claims = serde_json::json!({
        "sub": sub,
        "scope": scope,
        "iss": "https://demo.gatehouse.local",
        "aud": "shop-api",
        "iat": now,
        "exp": now + 86_400,
    });
    let header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    jsonwebtoken::EncodingKey::from_secret(DEMO_SECRET.as_bytes())
        .and_then(|key| jsonwebtoken::encode(&header, &claims, &key))
        .unwrap_or_default()
}

/// One demo service instance; answers JSON describing what it received.
pub(crate) struct DemoService {
    pub service: &'static str,
    pub instance: &'static str,
}

fn demo_body(
    service: &str,
    instance: &str,
    path: &str,
    session: &ServerSession,
) -> serde_json::Value {
    let req = session.req_header();
    let header = |n: &str| {
        req.headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let data = match (service, path) {
        ("users", "/users") => {
            serde_json::json!([{"id": 1, "name": "Ada"}, {"id": 2, "name": "Linus"}])
        }
        ("users", p) if p.starts_with("/users/") => {
            serde_json::json!({"id": p[7..], "name": "Ada"})
        }
        ("products", p) if p.starts_with("/products") => {
            serde_json::json!([{"sku": "tea-1", "price": 4.5}, {"sku": "mug-2", "price": 9.0}])
        }
        ("orders", p) if p.starts_with("/orders") => {
            serde_json::json!([{"id": 7, "status": "shipped"}])
        }
        ("catalog", p) if p.starts_with("/catalog") => {
            serde_json::json!([{"sku": "tea-1", "name": "Green tea"}])
        }
        _ => serde_json::Value::Null,
    };
    serde_json::json!({
        "service": service,
        "instance": instance,
        "method": req.method.as_str(),
        "path": path,
        "query": req.uri.query(),
        "request_id": header("x-request-id"),
        "forwarded_for": header("x-forwarded-for"),
        "user": header("x-user-id"),
        "data": data,
    })
}

#[async_trait]
impl ServeHttp for DemoService {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let path = session.req_header().uri.path().to_string();
        // Drain any request body so the connection can be reused.
        while let Ok(Some(_)) = session.read_request_body().await {}
        let (status, body) = if path == "/health" {
            (StatusCode::OK, serde_json::json!({"status": "ok"}))
        } else {
            (
                StatusCode::OK,
                demo_body(self.service, self.instance, &path, session),
            )
        };
        let body = serde_json::to_vec_pretty(&body).unwrap_or_default();
        let mut b = Response::builder()
            .status(status)
            .header(http::header::CONTENT_TYPE, "application/json")
            .header(http::header::CONTENT_LENGTH, body.len());
        if self.service == "products" {
            b = b.header(http::header::CACHE_CONTROL, "public, max-age=30");
        }
        b.body(body).expect("static response parts")
    }
}

/// The demo's Basic-auth user: `admin` / [`DEMO_ADMIN_PASSWORD`], hashed
/// at start (argon2id; the password is printed and public: demo use only).
pub(crate) const DEMO_ADMIN_PASSWORD: &str = "demo-admin";

fn admin_hash() -> String {
    use argon2::password_hash::{PasswordHasher, SaltString};
    let salt: Vec<u8> = (0..16).map(|_| fastrand::u8(..)).collect();
    SaltString::encode_b64(&salt)
        .ok()
        .and_then(|salt| {
            argon2::Argon2::default()
                .hash_password(DEMO_ADMIN_PASSWORD.as_bytes(), &salt)
                .ok()
                .map(|h| h.to_string())
        })
        .unwrap_or_default()
}

fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Runs the demo in the foreground; returns the exit code.
/// `otlp`: trace every demo request to this collector (tracing is off
/// without it).
pub(crate) fn run(otlp: Option<&str>) -> i32 {
    let services: [(&str, &str, &str); 6] = [
        ("{USERS_A}", "users", "users-a"),
        ("{USERS_B}", "users", "users-b"),
        ("{PRODUCTS}", "products", "products-1"),
        ("{ORDERS}", "orders", "orders-1"),
        ("{CATALOG_V1}", "catalog", "catalog-v1"),
        ("{CATALOG_V2}", "catalog", "catalog-v2"),
    ];
    let mut text = DEMO_CONFIG
        .replace("{SECRET}", DEMO_SECRET)
        .replace("{ADMIN_HASH}", &admin_hash());
    let mut ports = Vec::new();
    for (placeholder, _, _) in &services {
        match free_port() {
            Ok(p) => {
                text = text.replace(placeholder, &p.to_string());
                ports.push(p);
            }
            Err(e) => {
                eprintln!("demo: cannot find a free loopback port: {e}");
                return 1;
            }
        }
    }
    if let Some(url) = otlp {
        text.push_str(&format!(
            "tracing: {{ otlp: {}, service_name: gatehouse-demo, sample: 1 }}\n",
            serde_json::Value::from(url)
        ));
    }
    let cfg = match config::load_str(&text) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("demo config is invalid (this is a bug):\n{e}");
            return 1;
        }
    };
    crate::logging::init(cfg.logging.level);
    let mut app = match app::build(cfg, StartOptions::default()) {
        Ok(app) => app,
        Err(e) => {
            eprintln!("demo: {e}");
            return 1;
        }
    };
    for ((_, service, instance), port) in services.iter().zip(&ports) {
        let mut svc = Service::new(
            format!("demo {instance}"),
            DemoService { service, instance },
        );
        svc.add_tcp(&format!("127.0.0.1:{port}"));
        svc.threads = Some(1);
        app.server.add_service(svc);
    }
    println!("{}", banner(otlp));
    app.run_with_signals();
    0
}

/// Which token a suggested command sends.
#[derive(Clone, Copy)]
pub(crate) enum DemoToken {
    None,
    Full,
    NoScope,
    /// `X-User-Id: 42`, the catalog split's sticky key.
    User,
    /// Basic credentials of the demo admin.
    Admin,
}

/// The requests the banner suggests: (method, path, token, what it shows).
pub(crate) const TRY: &[(&str, &str, DemoToken, &str)] = &[
    (
        "GET",
        "/api/users",
        DemoToken::None,
        "routed to users, round robin across 2 instances",
    ),
    (
        "GET",
        "/api/users/1?fields=name",
        DemoToken::None,
        "prefix /api stripped, query kept",
    ),
    (
        "GET",
        "/api/products",
        DemoToken::None,
        "products, cached: run twice, see Cache-Status and Age",
    ),
    ("POST", "/api/products", DemoToken::None, "405 problem+json"),
    ("GET", "/api/nothing", DemoToken::None, "404 problem+json"),
    (
        "GET",
        "/api/users/../products",
        DemoToken::None,
        "normalised to /api/products",
    ),
    (
        "GET",
        "/api/orders",
        DemoToken::None,
        "401: orders needs a JWT",
    ),
    (
        "GET",
        "/api/orders",
        DemoToken::NoScope,
        "403: valid token without orders:read",
    ),
    (
        "GET",
        "/api/orders",
        DemoToken::Full,
        "200: X-User-Id forwarded from the token",
    ),
    (
        "GET",
        "/api/admin",
        DemoToken::None,
        "401: admin needs Basic auth (and a loopback client IP)",
    ),
    (
        "GET",
        "/api/admin",
        DemoToken::Admin,
        "200: Basic auth as admin, X-User-Id: admin forwarded",
    ),
    (
        "GET",
        "/api/catalog",
        DemoToken::User,
        "split 90/10 between catalog v1 and v2; one X-User-Id, one version",
    ),
];

fn banner(otlp: Option<&str>) -> String {
    let mut lines = vec![
        "gatehouse demo: gateway on 127.0.0.1:8080, admin on 127.0.0.1:9090".to_string(),
        "console: http://127.0.0.1:9090/".to_string(),
        match otlp {
            Some(url) => format!("tracing: every request, exported to {url}"),
            None => {
                "tracing: off (--demo --otlp URL sends traces to a local collector)".to_string()
            }
        },
        "services: users (2 instances), products, orders, catalog (v1 and v2, split 90/10)"
            .to_string(),
        String::new(),
        "Try:".to_string(),
    ];
    let full = demo_token("demo-user", "orders:read orders:write");
    let limited = demo_token("demo-user", "profile");
    lines.insert(
        4,
        format!("demo JWT (HS256, sub=demo-user, scope=\"orders:read orders:write\"):\n  {full}"),
    );
    for (method, path, token, what) in TRY {
        let m = if *method == "GET" {
            String::new()
        } else {
            format!("-X {method} ")
        };
        let h = match token {
            DemoToken::None => String::new(),
            DemoToken::Full => format!("-H 'Authorization: Bearer {full}' "),
            DemoToken::NoScope => format!("-H 'Authorization: Bearer {limited}' "),
            DemoToken::User => "-H 'X-User-Id: 42' ".to_string(),
            DemoToken::Admin => {
                use base64::Engine;
                let b64 = base64::engine::general_purpose::STANDARD
                    .encode(format!("admin:{DEMO_ADMIN_PASSWORD}"));
                format!("-H 'Authorization: Basic {b64}' ")
            }
        };
        let cmd = format!("curl -i --path-as-is {h}{m}http://127.0.0.1:8080{path}");
        lines.push(format!("  {cmd:<64} # {what}"));
    }
    lines.push(format!(
        "  {:<64} # readiness",
        "curl -i http://127.0.0.1:9090/ready"
    ));
    lines.push(String::new());
    lines.push("Ctrl-C stops the demo.".to_string());
    lines.join("\n")
}
