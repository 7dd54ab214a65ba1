//! Tokens for the auth tests: signed with the fixture keys, or forged.

use super::{fixture, now};

/// Signs `claims` with `alg`; `key` is an HMAC secret for HS*, else the
/// name of a private-key fixture (`rsa1`, `ec256`, `ec384`, `ed25519`).
pub fn mint(
    alg: jsonwebtoken::Algorithm,
    key: &str,
    claims: serde_json::Value,
    kid: Option<&str>,
) -> String {
    use jsonwebtoken::{Algorithm::*, EncodingKey};
    let pem = || std::fs::read(fixture(&format!("{key}.key.pem"))).unwrap();
    let k = match alg {
        HS256 | HS384 | HS512 => EncodingKey::from_secret(key.as_bytes()).unwrap(),
        RS256 | RS384 | RS512 | PS256 | PS384 | PS512 => EncodingKey::from_rsa_pem(&pem()).unwrap(),
        ES256 | ES384 => EncodingKey::from_ec_pem(&pem()).unwrap(),
        EdDSA => EncodingKey::from_ed_pem(&pem()).unwrap(),
        other => panic!("no test key for {other:?}"),
    };
    let mut header = jsonwebtoken::Header::new(alg);
    header.kid = kid.map(str::to_string);
    jsonwebtoken::encode(&header, &claims, &k).unwrap()
}

/// Claims valid for an hour with the given subject.
pub fn claims(sub: &str) -> serde_json::Value {
    serde_json::json!({"sub": sub, "exp": now() + 3600, "iat": now()})
}

/// A token assembled by hand (header and payload JSON, raw signature).
pub fn forge(header: &str, payload: &str, signature: &str) -> String {
    use base64::Engine;
    let e = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
    format!("{}.{}.{signature}", e(header), e(payload))
}
