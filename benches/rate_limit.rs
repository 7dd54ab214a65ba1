//! Cost of one local rate-limit check (`cargo bench --bench rate_limit`).

// A benchmark harness: failing set-up should stop it loudly.
#![allow(clippy::unwrap_used)]

use criterion::{criterion_group, criterion_main, Criterion};
use gatehouse::bench::{check, Limit};
use gatehouse::config::{LimitBackend, LimitKey, RateLimitConfig};
use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

fn bench(c: &mut Criterion) {
    let cfg = RateLimitConfig {
        requests: u64::MAX / 2,
        per: Duration::from_secs(60),
        key: LimitKey::ClientIp,
        backend: LimitBackend::Local,
        sync: None,
    };
    let limits = vec![Arc::new(Limit::new("bench", &cfg, None))];
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let mut i = 0u32;
    c.bench_function("rate_limit/local_check", |b| {
        b.iter(|| {
            i = i.wrapping_add(1);
            let ip = std::net::IpAddr::from([10, 0, (i >> 8) as u8, i as u8]);
            let v = rt.block_on(check(&limits, |_, _| false, black_box(Some(ip)), |_, _| {}));
            black_box(v)
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
