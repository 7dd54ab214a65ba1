//! Per-request policy work outside routing and auth (criterion):
//! cache-key computation, header transforms, CORS headers, access-log
//! line formatting, request ids, metric recording. `cargo bench --bench policies`

// A benchmark harness: failing set-up should stop it loudly.
#![allow(clippy::unwrap_used)]

use criterion::{criterion_group, criterion_main, Criterion};
use gatehouse::bench::AccessRecord;
use gatehouse::bench::PurgeTag;
use gatehouse::bench::{cors, headers};
use gatehouse::config::{AccessLogFormat, RouteConfig};
use pingora::cache::key::CacheHashKey;
use pingora::http::{RequestHeader, ResponseHeader};
use std::hint::black_box;
use std::sync::Arc;
use std::time::SystemTime;

fn route() -> RouteConfig {
    let cfg = gatehouse::config::load_str(
        r#"
upstreams: { u: { targets: ["127.0.0.1:1"] } }
routes:
  - name: orders
    upstream: u
    request_headers:
      set: { X-Gateway: gatehouse, X-Trace: "${request_id}", X-Customer: "${claim.sub}@${client_ip}" }
      add: { X-Route: "${route}" }
      remove: [Cookie]
    response_headers:
      set: { Strict-Transport-Security: "max-age=31536000" }
      remove: [Server, X-Powered-By]
    cors:
      allow_origins: ["https://app.example.com", "https://admin.example.com"]
      expose_headers: [X-Request-Id]
"#,
    )
    .unwrap();
    cfg.routes[0].clone()
}

fn cache_key(c: &mut Criterion) {
    let tag = PurgeTag {
        host: "api.example.com".into(),
        path: "/api/products/42".into(),
        query: "fields=name,price".into(),
    };
    c.bench_function("cache_key/build_and_hash", |b| {
        b.iter(|| {
            let k = gatehouse::bench::cache_key("http", black_box("products"), black_box(&tag));
            black_box(k.combined_bin())
        })
    });
}

fn transforms(c: &mut Criterion) {
    let r = route();
    let claims: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(r#"{"sub":"user-42","scope":"orders:read"}"#).unwrap();
    let vars = headers::Vars {
        request_id: "5f1c2a8e-8c1b-4f7e-9d1e-2b3c4d5e6f70",
        client_ip: Some("203.0.113.7".parse().unwrap()),
        route: "orders",
        claims: Some(&claims),
    };
    let mut base = RequestHeader::build("GET", b"/orders/7", None).unwrap();
    base.insert_header("host", "api.example.com").unwrap();
    base.insert_header("cookie", "session=abc").unwrap();
    base.insert_header("accept", "application/json").unwrap();
    c.bench_function("header_transforms/request", |b| {
        b.iter_batched(
            || base.clone(),
            |mut h| {
                headers::apply_request(&r.request_headers, &mut h, &vars).unwrap();
                h
            },
            criterion::BatchSize::SmallInput,
        )
    });
    let mut resp = ResponseHeader::build(200, None).unwrap();
    resp.insert_header("server", "origin").unwrap();
    resp.insert_header("content-type", "application/json")
        .unwrap();
    c.bench_function("header_transforms/response", |b| {
        b.iter_batched(
            || resp.clone(),
            |mut h| {
                headers::apply_response(&r.response_headers, &mut h, &vars).unwrap();
                h
            },
            criterion::BatchSize::SmallInput,
        )
    });
    let cfg = r.cors.clone().unwrap();
    c.bench_function("cors/response_headers", |b| {
        b.iter(|| {
            black_box(cors::response_headers(
                &cfg,
                Some(black_box("https://admin.example.com")),
            ))
        })
    });
}

fn access_log(c: &mut Criterion) {
    let rec = AccessRecord {
        ts: SystemTime::now(),
        request_id: "5f1c2a8e-8c1b-4f7e-9d1e-2b3c4d5e6f70".into(),
        client_ip: Some("203.0.113.7".parse().unwrap()),
        method: http::Method::GET,
        path: "/api/orders/7".into(),
        status: 200,
        route: Some(Arc::from("orders")),
        upstream: Some(Arc::from("orders")),
        target: Some("127.0.0.1:5003".parse().unwrap()),
        duration_ms: 1.234,
        upstream_ms: Some(0.987),
        bytes_sent: 512,
        cache: None,
        user: Some("user-42".into()),
        trace_id: None,
        protocol: "HTTP/1.1",
        referer: None,
        user_agent: Some("curl/8.0".into()),
    };
    c.bench_function("access_log/json", |b| {
        b.iter(|| black_box(black_box(&rec).format(AccessLogFormat::Json)))
    });
    c.bench_function("access_log/combined", |b| {
        b.iter(|| black_box(black_box(&rec).format(AccessLogFormat::Combined)))
    });
}

/// Per-request bookkeeping: request id, and recording into a labelled
/// metric family by label lookup versus through a child resolved once.
fn bookkeeping(c: &mut Criterion) {
    c.bench_function("request_id/new", |b| {
        b.iter(gatehouse::bench::new_request_id)
    });
    let m = gatehouse::bench::Metrics::new();
    c.bench_function("metrics/histogram_by_labels", |b| {
        b.iter(|| {
            m.request_duration
                .with_label_values(&[black_box("orders")])
                .observe(black_box(0.0012))
        })
    });
    let child = m.route(&gatehouse::bench::RouteLabels {
        route: "orders",
        auth_reasons: &[],
        cache_results: &[],
        limits: &[],
        ip_rules: false,
    });
    c.bench_function("metrics/histogram_resolved_once", |b| {
        b.iter(|| child.duration.observe(black_box(0.0012)))
    });
    c.bench_function("metrics/requests_counter_by_labels", |b| {
        b.iter(|| {
            m.requests
                .with_label_values(&[black_box("orders"), "GET", m.status(black_box(200))])
                .inc()
        })
    });
}

/// `allow_ips` / `deny_ips` with 10,000 CIDRs each (IPv4 and IPv6 mixed):
/// one binary search per family, against a linear scan of the same list.
fn ip_rules(c: &mut Criterion) {
    use gatehouse::bench::IpRules;
    use ipnet::IpNet;
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
    let nets: Vec<IpNet> = (0..10_000u32)
        .map(|i| {
            let ip = if i % 4 == 0 {
                IpAddr::V6(Ipv6Addr::from(
                    (0x2001_0db8u128 << 96) | (u128::from(i) << 64),
                ))
            } else {
                IpAddr::V4(Ipv4Addr::from(i.wrapping_mul(2_654_435_761)))
            };
            let len = if ip.is_ipv4() { 24 + (i % 9) as u8 } else { 64 };
            IpNet::new(ip, len).unwrap().trunc()
        })
        .collect();
    let rules = IpRules::new(&nets, &nets[..100]).unwrap();
    let hit: IpAddr = nets[5000].addr();
    let miss: IpAddr = "198.51.100.77".parse().unwrap();
    c.bench_function("ip_rules/10k_cidrs_hit", |b| {
        b.iter(|| rules.allows(black_box(Some(hit))))
    });
    c.bench_function("ip_rules/10k_cidrs_miss", |b| {
        b.iter(|| rules.allows(black_box(Some(miss))))
    });
    c.bench_function("ip_rules/10k_cidrs_linear_scan_for_comparison", |b| {
        b.iter(|| nets.iter().any(|n| n.contains(black_box(&miss))))
    });
}

criterion_group!(
    benches,
    cache_key,
    transforms,
    access_log,
    bookkeeping,
    ip_rules
);
criterion_main!(benches);
