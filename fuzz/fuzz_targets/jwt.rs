//! The JWT decoding path: header parsing, algorithm allow-list, signature
//! and claim checks. Three shapes of input: a raw token; a token built from
//! fuzzed header/payload JSON and signature bytes; and fuzzed header/payload
//! *correctly signed* with the provider's secret, so the claim checks are
//! reached. Oracles: no panic; anything accepted carries the configured
//! `iss`, an `aud` containing the configured audience and a live `exp`, was
//! signed with an allowed algorithm, and passes jsonwebtoken's own
//! signature check.
#![no_main]
use arbitrary::Arbitrary;
use base64::Engine;
use gatehouse::config::{AuthConfig, Config};
use gatehouse::bench::{parse_header, JwtProvider};
use jsonwebtoken::{Algorithm, EncodingKey};
use libfuzzer_sys::fuzz_target;
use std::path::Path;
use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

const SECRET: &str = "fuzz-secret-0123456789abcdef0123456789abcdef0123456789";

struct Providers {
    hs: JwtProvider,
    rs: JwtProvider,
    jwks: JwtProvider,
}

fn providers() -> &'static Providers {
    static P: OnceLock<Providers> = OnceLock::new();
    P.get_or_init(|| {
        let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures");
        let text = format!(
            "upstreams: {{ u: {{ targets: [\"127.0.0.1:1\"] }} }}\n\
             auth:\n  hs: {{ type: jwt, algorithms: [HS256, HS384], secret: \"{SECRET}\", issuer: \"https://issuer.test\", audience: api, token_cache: {{ entries: 0 }} }}\n\
             \x20 rs: {{ type: jwt, algorithms: [RS256, PS256], public_key: rsa1.pub.pem, token_cache: {{ entries: 0 }} }}\n\
             \x20 jwks: {{ type: jwt, algorithms: [RS256, ES256, EdDSA], jwks: {{ file: jwks.json }}, token_cache: {{ entries: 0 }} }}\n\
             routes: [{{ name: r, upstream: u }}]\n"
        );
        let cfg: Config =
            gatehouse::config::load_with(&text, &fixtures, &|_| None).expect("fuzz config");
        let get = |name: &str| match &cfg.auth[name] {
            AuthConfig::Jwt(j) => JwtProvider::new(j).expect("provider"),
            _ => unreachable!(),
        };
        Providers {
            hs: get("hs"),
            rs: get("rs"),
            jwks: get("jwks"),
        }
    })
}

#[derive(Arbitrary, Debug)]
enum Input {
    Raw(String),
    Parts {
        header: String,
        payload: String,
        signature: Vec<u8>,
    },
    Signed {
        header: String,
        payload: String,
        hs384: bool,
    },
}

fn b64(b: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

fn check_accepted(token: &str, claims: &serde_json::Map<String, serde_json::Value>) {
    let (alg, _) = parse_header(token).expect("accepted tokens parse");
    assert!(
        matches!(alg, Algorithm::HS256 | Algorithm::HS384),
        "{alg:?}"
    );
    assert_eq!(
        claims.get("iss").and_then(|v| v.as_str()),
        Some("https://issuer.test")
    );
    let aud_ok = match claims.get("aud") {
        Some(serde_json::Value::String(a)) => a == "api",
        Some(serde_json::Value::Array(v)) => v.iter().any(|a| a.as_str() == Some("api")),
        _ => false,
    };
    assert!(aud_ok, "{claims:?}");
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as f64;
    let exp = claims
        .get("exp")
        .and_then(|v| v.as_f64())
        .expect("exp required");
    assert!(exp + 30.0 >= now, "expired token accepted: {claims:?}");
    let (message, sig) = token.rsplit_once('.').unwrap();
    let key = jsonwebtoken::DecodingKey::from_secret(SECRET.as_bytes()).unwrap();
    assert!(jsonwebtoken::crypto::verify(sig, message.as_bytes(), &key, alg).unwrap_or(false));
}

fuzz_target!(|input: Input| {
    let p = providers();
    let token = match input {
        Input::Raw(t) => t,
        Input::Parts {
            header,
            payload,
            signature,
        } => format!(
            "{}.{}.{}",
            b64(header.as_bytes()),
            b64(payload.as_bytes()),
            b64(&signature)
        ),
        Input::Signed {
            header,
            payload,
            hs384,
        } => {
            let message = format!("{}.{}", b64(header.as_bytes()), b64(payload.as_bytes()));
            let alg = if hs384 {
                Algorithm::HS384
            } else {
                Algorithm::HS256
            };
            let key = EncodingKey::from_secret(SECRET.as_bytes()).unwrap();
            let sig = jsonwebtoken::crypto::sign(message.as_bytes(), &key, alg).unwrap();
            format!("{message}.{sig}")
        }
    };
    let _ = parse_header(&token);
    if let Ok(claims) = p.hs.verify_uncached(&token) {
        check_accepted(&token, &claims);
    }
    // Nothing a fuzzer can produce is signed by the RSA/EC/Ed keys.
    assert!(p.rs.verify_uncached(&token).is_err());
    assert!(p.jwks.verify_uncached(&token).is_err());
});
