//! JWT verification cost, with and without the verified-token cache.
//! `cargo bench --bench auth`

// A benchmark harness: failing set-up should stop it loudly.
#![allow(clippy::unwrap_used)]

use criterion::{criterion_group, criterion_main, Criterion};
use gatehouse::bench::JwtProvider;
use gatehouse::config::{Algorithm, JwtConfig, JwtKey};
use std::hint::black_box;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/tests/fixtures/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

fn provider(alg: Algorithm, key: JwtKey, cache: bool) -> JwtProvider {
    JwtProvider::new(&JwtConfig {
        algorithms: vec![alg],
        key,
        issuer: None,
        audience: Vec::new(),
        leeway: Duration::from_secs(30),
        forward_claims: Vec::new(),
        cache_entries: if cache { 10_000 } else { 0 },
        cache_ttl: Duration::from_secs(30),
    })
    .unwrap()
}

fn token(alg: Algorithm, key: &jsonwebtoken::EncodingKey) -> String {
    let exp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 3600;
    let claims = serde_json::json!({"sub": "bench-user", "exp": exp, "scope": "a b c"});
    jsonwebtoken::encode(&jsonwebtoken::Header::new(alg), &claims, key).unwrap()
}

fn bench(c: &mut Criterion) {
    let secret = b"bench-secret-of-sufficient-length-0123456789".to_vec();
    let cases = [
        (
            "HS256",
            Algorithm::HS256,
            JwtKey::Secret(secret.clone()),
            jsonwebtoken::EncodingKey::from_secret(&secret).unwrap(),
        ),
        (
            "RS256",
            Algorithm::RS256,
            JwtKey::PublicKey {
                path: String::new(),
                kind: gatehouse::bench::KeyKind::Rsa,
                pem: fixture("rsa1.pub.pem"),
            },
            jsonwebtoken::EncodingKey::from_rsa_pem(&fixture("rsa1.key.pem")).unwrap(),
        ),
        (
            "ES256",
            Algorithm::ES256,
            JwtKey::PublicKey {
                path: String::new(),
                kind: gatehouse::bench::KeyKind::P256,
                pem: fixture("ec256.pub.pem"),
            },
            jsonwebtoken::EncodingKey::from_ec_pem(&fixture("ec256.key.pem")).unwrap(),
        ),
    ];
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let mut g = c.benchmark_group("jwt_verify");
    for (name, alg, key, enc) in cases {
        let tok = token(alg, &enc);
        let uncached = provider(alg, key.clone(), false);
        g.bench_function(format!("{name}/uncached"), |b| {
            b.iter(|| black_box(uncached.verify_uncached(black_box(&tok)).unwrap()))
        });
        let cached = provider(alg, key, true);
        rt.block_on(cached.verify(&tok)).unwrap();
        g.bench_function(format!("{name}/cached"), |b| {
            b.iter(|| black_box(rt.block_on(cached.verify(black_box(&tok))).unwrap()))
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
