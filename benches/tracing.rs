//! The request-path cost of tracing one request (criterion): a server span
//! with the SPEC's seven attributes, auth and rate-limit children and one
//! upstream attempt, handed to the exporter. gatehouse's own spans and
//! queue, next to the OpenTelemetry SDK doing the same with its batch span
//! processor (to an exporter that discards). Also the export side: encoding
//! a 512-span OTLP request. `cargo bench --bench tracing`

// A benchmark harness: failing set-up should stop it loudly.
#![allow(clippy::unwrap_used)]

use criterion::{criterion_group, criterion_main, Criterion};
use gatehouse::bench::{Attr, TraceCtx, Tracer};
use opentelemetry::trace::{
    Span as _, SpanKind, TraceContextExt, Tracer as _, TracerProvider as _,
};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{SdkTracerProvider, SpanData, SpanExporter};
use std::hint::black_box;
use std::time::{Duration, Instant};

fn config() -> gatehouse::config::TracingConfig {
    gatehouse::config::TracingConfig {
        otlp: "http://127.0.0.1:1/v1/traces".into(),
        service_name: "bench".into(),
        sample: 1.0,
        timeout: Duration::from_secs(1),
    }
}

fn ours(c: &mut Criterion) {
    let dropped = prometheus::IntCounter::new("d", "d").unwrap();
    let t = Tracer::new(&config(), dropped);
    let addr: std::net::SocketAddr = "127.0.0.1:5003".parse().unwrap();
    let mut n = 0u64;
    c.bench_function("tracing/gatehouse: one request's spans", |b| {
        b.iter(|| {
            let start = Instant::now();
            let mut cx = TraceCtx::new([7; 16], None, start);
            cx.child("auth", start, Vec::new(), false);
            cx.child("rate_limit", start, Vec::new(), false);
            cx.start_attempt(addr);
            cx.end_attempt(Some(200), false);
            let attrs = vec![
                ("http.request.method", Attr::Str("GET".into())),
                ("url.path", Attr::Str("/api/orders/7".into())),
                ("http.response.status_code", Attr::Int(200)),
                (
                    "gatehouse.request_id",
                    Attr::Str("5f1c2a8e-8c1b-4f7e-9d1e-2b3c4d5e6f70".into()),
                ),
                ("client.address", Attr::Str("203.0.113.7".into())),
                ("http.route", Attr::Str("/api/orders/*".into())),
                ("gatehouse.route", Attr::Str("orders".into())),
            ];
            t.submit([7; 16], cx.finish("GET /api/orders/*".into(), attrs, 200));
            // Keep the queue from filling (submit would then only drop);
            // the export side is measured below.
            n += 1;
            if n.is_multiple_of(512) {
                t.discard_queue();
            }
        })
    });
    c.bench_function("tracing/gatehouse: encode a 512-span export", |b| {
        b.iter_batched(
            || {
                for _ in 0..128 {
                    let start = Instant::now();
                    let mut cx = TraceCtx::new([7; 16], None, start);
                    cx.child("auth", start, Vec::new(), false);
                    cx.child("rate_limit", start, Vec::new(), false);
                    cx.start_attempt(addr);
                    t.submit(
                        [7; 16],
                        cx.finish("GET /api/orders/*".into(), Vec::new(), 200),
                    );
                }
            },
            |()| black_box(t.encode_batch()),
            criterion::BatchSize::SmallInput,
        )
    });
}

#[derive(Debug)]
struct Discard;

impl SpanExporter for Discard {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        black_box(batch);
        Ok(())
    }
}

fn sdk(c: &mut Criterion) {
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(Discard)
        .build();
    let tracer = provider.tracer("bench");
    c.bench_function("tracing/opentelemetry-sdk: one request's spans", |b| {
        b.iter(|| {
            let server = tracer
                .span_builder("GET /api/orders/*")
                .with_kind(SpanKind::Server)
                .start(&tracer);
            let cx = Context::new().with_span(server);
            for name in ["auth", "rate_limit"] {
                tracer.start_with_context(name, &cx).end();
            }
            let mut attempt = tracer
                .span_builder("upstream attempt")
                .with_kind(SpanKind::Client)
                .with_attributes([
                    KeyValue::new("server.address", "127.0.0.1"),
                    KeyValue::new("server.port", 5003i64),
                ])
                .start_with_context(&tracer, &cx);
            attempt.set_attribute(KeyValue::new("http.response.status_code", 200i64));
            attempt.end();
            let span = cx.span();
            span.set_attributes([
                KeyValue::new("http.request.method", "GET"),
                KeyValue::new("url.path", "/api/orders/7".to_string()),
                KeyValue::new("http.response.status_code", 200i64),
                KeyValue::new(
                    "gatehouse.request_id",
                    "5f1c2a8e-8c1b-4f7e-9d1e-2b3c4d5e6f70".to_string(),
                ),
                KeyValue::new("client.address", "203.0.113.7".to_string()),
                KeyValue::new("http.route", "/api/orders/*".to_string()),
                KeyValue::new("gatehouse.route", "orders"),
            ]);
            span.end();
        })
    });
    let _ = provider.shutdown();
}

criterion_group!(benches, ours, sdk);
criterion_main!(benches);
