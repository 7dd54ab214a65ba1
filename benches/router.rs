//! Route lookup and path normalisation cost (criterion).
//! `cargo bench --bench router`

// A benchmark harness: failing set-up should stop it loudly.
#![allow(clippy::unwrap_used)]

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use gatehouse::bench::normalize_path;
use gatehouse::bench::{RouteRequest, Router};
use http::{HeaderMap, Method};
use std::hint::black_box;

/// A mix of exact, prefix and (one in 50) regex routes.
fn config(n: usize) -> String {
    let mut s = String::from("upstreams:\n  u:\n    targets: [\"127.0.0.1:1\"]\nroutes:\n");
    for i in 0..n {
        let m = match i % 50 {
            0 => format!("{{ path_regex: '^/re{i}/[0-9]+$' }}"),
            1..=10 => format!("{{ path: /svc{i}/exact }}"),
            _ => format!("{{ path_prefix: /svc{i}/api }}"),
        };
        s.push_str(&format!("  - {{ name: r{i}, upstream: u, match: {m} }}\n"));
    }
    s
}

fn lookup(c: &mut Criterion) {
    let mut g = c.benchmark_group("route_lookup");
    for n in [3usize, 100, 10_000] {
        let cfg = gatehouse::config::load_str(&config(n)).unwrap();
        let router = Router::new(&cfg.routes);
        let headers = HeaderMap::new();
        let method = Method::GET;
        let path = format!("/svc{}/api/users/42", n - 1);
        g.bench_with_input(BenchmarkId::new("prefix_hit", n), &n, |b, _| {
            b.iter(|| {
                let req = RouteRequest {
                    host: Some("api.example.com"),
                    path: black_box(&path),
                    method: &method,
                    headers: &headers,
                };
                black_box(router.find(&req))
            })
        });
        let exact = format!(
            "/svc{}/exact",
            (1..=10)
                .map(|k| n.saturating_sub(50) / 50 * 50 + k)
                .find(|&k| k < n)
                .unwrap_or(1)
        );
        g.bench_with_input(BenchmarkId::new("exact_hit", n), &n, |b, _| {
            b.iter(|| {
                let req = RouteRequest {
                    host: None,
                    path: black_box(&exact),
                    method: &method,
                    headers: &headers,
                };
                black_box(router.find(&req))
            })
        });
        if n >= 50 {
            let re = format!("/re{}/123", (n - 1) / 50 * 50);
            g.bench_with_input(BenchmarkId::new("regex_hit", n), &n, |b, _| {
                b.iter(|| {
                    let req = RouteRequest {
                        host: None,
                        path: black_box(&re),
                        method: &method,
                        headers: &headers,
                    };
                    black_box(router.find(&req))
                })
            });
        }
        g.bench_with_input(BenchmarkId::new("miss", n), &n, |b, _| {
            b.iter(|| {
                let req = RouteRequest {
                    host: None,
                    path: black_box("/nothing/here"),
                    method: &method,
                    headers: &headers,
                };
                black_box(router.find(&req))
            })
        });
    }
    g.finish();
}

fn normalise(c: &mut Criterion) {
    let mut g = c.benchmark_group("normalize_path");
    g.bench_function("clean", |b| {
        b.iter(|| black_box(normalize_path(black_box("/api/users/42/orders"))))
    });
    g.bench_function("dirty", |b| {
        b.iter(|| {
            black_box(normalize_path(black_box(
                "/api//public/../users/%7e42/./orders",
            )))
        })
    });
    g.finish();
}

criterion_group!(benches, lookup, normalise);
criterion_main!(benches);
