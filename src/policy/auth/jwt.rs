//! JWT verification (RFC 7519, with the RFC 8725 rules): the algorithm
//! allow-list is checked before any key is touched, keys are bound to their
//! algorithm family, `exp` is required, `nbf`, `iss` and `aud` enforced.
//! The header is parsed here, strictly, so that `alg: none`, unknown
//! algorithms, duplicate JSON keys and `crit` extensions are refused before
//! any cryptography; `jku`, `x5u` and embedded `jwk` headers are ignored.

use super::jwks::JwksSource;
use super::token_cache::{Claims, TokenCache};
use crate::config::{JwtConfig, JwtKey};
use crate::keys::{KeyError, KeySet};
use base64::Engine;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::de::{self, Deserialize, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde_json::{Map, Value};
use std::collections::HashSet;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

/// Tokens longer than this are refused unread.
pub(crate) const MAX_TOKEN_BYTES: usize = 16 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JwtError {
    Malformed,
    Algorithm,
    Signature,
    Expired,
    NotYetValid,
    Issuer,
    Audience,
    UnknownKey,
    /// The provider has no keys yet (JWKS URL not fetched).
    KeysUnavailable,
}

enum Keys {
    /// A secret or public key; the allow-list was checked to fit it at load.
    Static(DecodingKey),
    Set(Arc<KeySet>),
    Remote(Arc<JwksSource>),
}

pub struct JwtProvider {
    algorithms: Vec<Algorithm>,
    keys: Keys,
    validations: Vec<(Algorithm, Validation)>,
    leeway: Duration,
    cache: Option<TokenCache>,
}

/// Parses a JSON object, refusing duplicate top-level keys (which different
/// parsers resolve differently).
struct UniqueKeys;

impl<'de> Deserialize<'de> for UniqueKeys {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = UniqueKeys;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<UniqueKeys, A::Error> {
                let mut seen = HashSet::new();
                while let Some(k) = map.next_key::<String>()? {
                    if !seen.insert(k) {
                        return Err(de::Error::custom("duplicate key"));
                    }
                    map.next_value::<IgnoredAny>()?;
                }
                Ok(UniqueKeys)
            }
        }
        d.deserialize_map(V)
    }
}

fn b64(part: &str) -> Result<Vec<u8>, JwtError> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| JwtError::Malformed)
}

/// The parts of a token's header that matter: `alg` and `kid`.
pub fn parse_header(token: &str) -> Result<(Algorithm, Option<String>), JwtError> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(JwtError::Malformed);
    }
    // RFC 7515: the three parts are base64url without padding, nothing else.
    let url_safe = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.');
    if !token.bytes().all(url_safe) {
        return Err(JwtError::Malformed);
    }
    let mut parts = token.split('.');
    let (Some(h), Some(p), Some(_s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(JwtError::Malformed);
    };
    let header = b64(h)?;
    serde_json::from_slice::<UniqueKeys>(&header).map_err(|_| JwtError::Malformed)?;
    serde_json::from_slice::<UniqueKeys>(&b64(p)?).map_err(|_| JwtError::Malformed)?;
    let header: Map<String, Value> =
        serde_json::from_slice(&header).map_err(|_| JwtError::Malformed)?;
    if header.contains_key("crit") {
        return Err(JwtError::Malformed);
    }
    let alg = header
        .get("alg")
        .and_then(Value::as_str)
        .ok_or(JwtError::Malformed)?;
    let alg = Algorithm::from_str(alg).map_err(|_| JwtError::Algorithm)?;
    let kid = match header.get("kid") {
        None => None,
        Some(Value::String(k)) => Some(k.clone()),
        Some(_) => return Err(JwtError::Malformed),
    };
    Ok((alg, kid))
}

fn map_error(e: &jsonwebtoken::errors::Error) -> JwtError {
    match e.kind() {
        ErrorKind::InvalidSignature
        | ErrorKind::InvalidEcdsaKey
        | ErrorKind::InvalidEddsaKey
        | ErrorKind::InvalidRsaKey(_)
        | ErrorKind::InvalidKeyFormat => JwtError::Signature,
        ErrorKind::InvalidAlgorithm
        | ErrorKind::MissingAlgorithm
        | ErrorKind::UnsupportedAlgorithm => JwtError::Algorithm,
        ErrorKind::ExpiredSignature => JwtError::Expired,
        ErrorKind::ImmatureSignature => JwtError::NotYetValid,
        ErrorKind::InvalidIssuer => JwtError::Issuer,
        ErrorKind::InvalidAudience => JwtError::Audience,
        ErrorKind::MissingRequiredClaim(c) if c == "iss" => JwtError::Issuer,
        ErrorKind::MissingRequiredClaim(c) if c == "aud" => JwtError::Audience,
        _ => JwtError::Malformed,
    }
}

impl JwtProvider {
    /// Builds a provider from validated config. For `jwks.url` the caller
    /// must run [`JwksSource::run`] for [`JwtProvider::remote`].
    pub fn new(cfg: &JwtConfig) -> Result<JwtProvider, KeyError> {
        let keys = match &cfg.key {
            JwtKey::Secret(s) => Keys::Static(
                DecodingKey::from_secret(s).map_err(|e| KeyError::Secret(e.to_string()))?,
            ),
            JwtKey::PublicKey { kind, pem, .. } => Keys::Static(kind.decoding_key(pem)?),
            JwtKey::JwksFile { json, .. } => Keys::Set(Arc::new(KeySet::from_json(json)?)),
            JwtKey::JwksUrl { url, refresh } => {
                Keys::Remote(Arc::new(JwksSource::new(url, *refresh)))
            }
        };
        let validations = cfg
            .algorithms
            .iter()
            .map(|&alg| {
                let mut v = Validation::new(alg);
                v.leeway = cfg.leeway.as_secs();
                v.validate_nbf = true;
                let mut required = vec!["exp"];
                if let Some(iss) = &cfg.issuer {
                    v.set_issuer(&[iss]);
                    required.push("iss");
                }
                if cfg.audience.is_empty() {
                    v.validate_aud = false;
                } else {
                    v.set_audience(&cfg.audience);
                    required.push("aud");
                }
                v.set_required_spec_claims(&required);
                (alg, v)
            })
            .collect();
        Ok(JwtProvider {
            algorithms: cfg.algorithms.clone(),
            keys,
            validations,
            leeway: cfg.leeway,
            cache: TokenCache::new(cfg.cache_entries, cfg.cache_ttl),
        })
    }

    /// The JWKS source to keep refreshed, for `jwks.url` providers.
    pub fn remote(&self) -> Option<&Arc<JwksSource>> {
        match &self.keys {
            Keys::Remote(s) => Some(s),
            _ => None,
        }
    }

    fn check(&self, token: &str, alg: Algorithm, key: &DecodingKey) -> Result<Claims, JwtError> {
        let validation = &self
            .validations
            .iter()
            .find(|(a, _)| *a == alg)
            .ok_or(JwtError::Algorithm)?
            .1;
        let data = jsonwebtoken::decode::<Map<String, Value>>(token, key, validation)
            .map_err(|e| map_error(&e))?;
        Ok(Arc::new(data.claims))
    }

    /// Verifies with the keys at hand; `UnknownKey` may be worth a refetch.
    fn verify_with(
        &self,
        token: &str,
        alg: Algorithm,
        kid: Option<&str>,
        set: Option<&KeySet>,
    ) -> Result<Claims, JwtError> {
        match (&self.keys, set) {
            (Keys::Static(key), _) => self.check(token, alg, key),
            (_, Some(set)) => {
                let e = set.find(kid, alg).ok_or(JwtError::UnknownKey)?;
                if !e.accepts(alg) {
                    return Err(JwtError::Algorithm);
                }
                self.check(token, alg, &e.key)
            }
            (_, None) => Err(JwtError::KeysUnavailable),
        }
    }

    /// Verifies `token`, using the verified-token cache.
    pub async fn verify(&self, token: &str) -> Result<Claims, JwtError> {
        // A cached token passed every check below with this provider.
        if let Some(c) = self.cache.as_ref().and_then(|c| c.get(token)) {
            return Ok(c);
        }
        let (alg, kid) = parse_header(token)?;
        if !self.algorithms.contains(&alg) {
            return Err(JwtError::Algorithm);
        }
        let claims = match &self.keys {
            Keys::Static(..) => self.verify_with(token, alg, kid.as_deref(), None),
            Keys::Set(set) => self.verify_with(token, alg, kid.as_deref(), Some(set)),
            Keys::Remote(src) => {
                let set = src.keys();
                match self.verify_with(token, alg, kid.as_deref(), set.as_deref()) {
                    Err(JwtError::UnknownKey) => {
                        src.refresh_for_unknown_kid().await;
                        self.verify_with(token, alg, kid.as_deref(), src.keys().as_deref())
                    }
                    other => other,
                }
            }
        }?;
        if let Some(c) = &self.cache {
            c.put(token, claims.clone(), self.leeway);
        }
        Ok(claims)
    }

    /// Verification without the cache (benchmarks).
    pub fn verify_uncached(&self, token: &str) -> Result<Claims, JwtError> {
        let (alg, kid) = parse_header(token)?;
        if !self.algorithms.contains(&alg) {
            return Err(JwtError::Algorithm);
        }
        match &self.keys {
            Keys::Set(set) => self.verify_with(token, alg, kid.as_deref(), Some(set)),
            Keys::Remote(src) => {
                self.verify_with(token, alg, kid.as_deref(), src.keys().as_deref())
            }
            Keys::Static(..) => self.verify_with(token, alg, kid.as_deref(), None),
        }
    }
}

/// True when the claims grant every scope in `required`: from `scope`
/// (space-separated) and/or `scp` (array, or space-separated string).
pub(crate) fn has_scopes(claims: &Map<String, Value>, required: &[String]) -> bool {
    if required.is_empty() {
        return true;
    }
    let mut granted: HashSet<&str> = HashSet::new();
    for name in ["scope", "scp"] {
        match claims.get(name) {
            Some(Value::String(s)) => granted.extend(s.split(' ').filter(|s| !s.is_empty())),
            Some(Value::Array(a)) => granted.extend(a.iter().filter_map(Value::as_str)),
            _ => {}
        }
    }
    required.iter().all(|r| granted.contains(r.as_str()))
}

/// A claim as a header value: strings as they are, arrays joined by spaces,
/// anything else as JSON. `None` if it cannot be a header value.
pub(crate) fn claim_header_value(v: &Value) -> Option<http::HeaderValue> {
    if v.is_null() {
        return None;
    }
    http::HeaderValue::from_str(&crate::http::claim_text(v)).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_parsing_refuses_tricks() {
        let enc = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
        let tok = |h: &str, p: &str| format!("{}.{}.sig", enc(h), enc(p));
        assert_eq!(
            parse_header(&tok(r#"{"alg":"HS256"}"#, "{}")).unwrap().0,
            Algorithm::HS256
        );
        assert_eq!(
            parse_header(&tok(r#"{"alg":"none"}"#, "{}")).unwrap_err(),
            JwtError::Algorithm
        );
        assert_eq!(
            parse_header(&tok(r#"{"alg":"HS256","alg":"none"}"#, "{}")).unwrap_err(),
            JwtError::Malformed
        );
        assert_eq!(
            parse_header(&tok(r#"{"alg":"HS256"}"#, r#"{"sub":"a","sub":"b"}"#)).unwrap_err(),
            JwtError::Malformed
        );
        assert_eq!(
            parse_header(&tok(r#"{"alg":"HS256","crit":["x"]}"#, "{}")).unwrap_err(),
            JwtError::Malformed
        );
        assert_eq!(parse_header("a.b").unwrap_err(), JwtError::Malformed);
        assert_eq!(parse_header("a.b.c.d").unwrap_err(), JwtError::Malformed);
        assert_eq!(
            parse_header(&"a".repeat(MAX_TOKEN_BYTES + 1)).unwrap_err(),
            JwtError::Malformed
        );
        let (_, kid) =
            parse_header(&tok(r#"{"alg":"RS256","kid":"../../dev/null"}"#, "{}")).unwrap();
        assert_eq!(kid.as_deref(), Some("../../dev/null"));
    }

    #[test]
    fn scopes() {
        let c: Map<String, Value> = serde_json::from_str(r#"{"scope":"a b","scp":["c"]}"#).unwrap();
        assert!(has_scopes(&c, &["a".into(), "c".into()]));
        assert!(!has_scopes(&c, &["d".into()]));
        assert!(has_scopes(&c, &[]));
    }

    #[test]
    fn claim_values() {
        assert_eq!(claim_header_value(&Value::from("x")).unwrap(), "x");
        assert_eq!(
            claim_header_value(&serde_json::json!(["a", "b", 3])).unwrap(),
            "a b 3"
        );
        assert_eq!(
            claim_header_value(&serde_json::json!({"k": 1})).unwrap(),
            "{\"k\":1}"
        );
        assert!(claim_header_value(&Value::from("a\nb")).is_none());
    }
}
