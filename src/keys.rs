//! Public-key vocabulary (L0): which key kinds verify which JWT algorithms,
//! what a public-key PEM holds, and JSON Web Key Sets. Config validation
//! and the JWT verifier both use it, so they cannot disagree on a key.

use base64::Engine;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, JwkSet, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};
use std::collections::HashMap;
use std::str::FromStr;

/// Why key material was refused; the message is shown to the operator.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum KeyError {
    /// Not a PEM file, or a broken one (what is wrong).
    #[error("{0}")]
    Pem(&'static str),
    #[error("this is a private key; configure the public key")]
    PrivateKey,
    #[error("unsupported public key type (use RSA, EC P-256/P-384 or Ed25519)")]
    Unsupported,
    #[error("the public key could not be parsed")]
    Unparsable,
    #[error("not a JWKS document: {0}")]
    NotJwks(String),
    #[error("the HMAC secret is unusable: {0}")]
    Secret(String),
    #[error("the JWKS has no usable signing key (RSA, EC P-256/P-384 or Ed25519)")]
    NoUsableKey,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    Rsa,
    P256,
    P384,
    Ed25519,
}

impl KeyKind {
    /// True when a key of this kind may verify `alg` (RFC 8725 §3.1).
    pub fn fits(self, alg: Algorithm) -> bool {
        use Algorithm::*;
        match self {
            KeyKind::Rsa => matches!(alg, RS256 | RS384 | RS512 | PS256 | PS384 | PS512),
            KeyKind::P256 => alg == ES256,
            KeyKind::P384 => alg == ES384,
            KeyKind::Ed25519 => alg == EdDSA,
        }
    }
}

pub struct KeyEntry {
    pub key: DecodingKey,
    pub kind: KeyKind,
    /// The JWK's own `alg`, which then is the only one it may verify.
    pub alg: Option<Algorithm>,
}

impl KeyEntry {
    pub fn accepts(&self, alg: Algorithm) -> bool {
        self.kind.fits(alg) && self.alg.is_none_or(|a| a == alg)
    }
}

/// The signing keys of one JWKS document.
#[derive(Default)]
pub struct KeySet {
    by_kid: HashMap<String, KeyEntry>,
    without_kid: Vec<KeyEntry>,
}

fn entry(jwk: &Jwk) -> Option<KeyEntry> {
    if matches!(
        jwk.common.public_key_use,
        Some(PublicKeyUse::Encryption) | Some(PublicKeyUse::Other(_))
    ) {
        return None;
    }
    let kind = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => KeyKind::Rsa,
        AlgorithmParameters::EllipticCurve(p) => match p.curve {
            EllipticCurve::P256 => KeyKind::P256,
            EllipticCurve::P384 => KeyKind::P384,
            _ => return None,
        },
        AlgorithmParameters::OctetKeyPair(p) if p.curve == EllipticCurve::Ed25519 => {
            KeyKind::Ed25519
        }
        // Symmetric (`oct`) and other keys never verify tokens here.
        _ => return None,
    };
    let alg = match &jwk.common.key_algorithm {
        None => None,
        Some(ka) => Some(Algorithm::from_str(&ka.to_string()).ok()?),
    };
    if alg.is_some_and(|a| !kind.fits(a)) {
        return None;
    }
    let key = DecodingKey::from_jwk(jwk).ok()?;
    Some(KeyEntry { key, kind, alg })
}

impl KeySet {
    /// Parses a JWKS document; keys that cannot sign tokens are skipped.
    pub fn from_json(json: &[u8]) -> Result<KeySet, KeyError> {
        let set: JwkSet =
            serde_json::from_slice(json).map_err(|e| KeyError::NotJwks(e.to_string()))?;
        let mut ks = KeySet::default();
        for jwk in &set.keys {
            let Some(e) = entry(jwk) else { continue };
            match &jwk.common.key_id {
                Some(kid) => {
                    ks.by_kid.insert(kid.clone(), e);
                }
                None => ks.without_kid.push(e),
            }
        }
        if ks.by_kid.is_empty() && ks.without_kid.is_empty() {
            return Err(KeyError::NoUsableKey);
        }
        Ok(ks)
    }

    /// The key for a token: by `kid` when the token names one; otherwise
    /// the only key that accepts `alg`.
    pub fn find(&self, kid: Option<&str>, alg: Algorithm) -> Option<&KeyEntry> {
        match kid {
            Some(k) => self.by_kid.get(k),
            None => {
                let mut fitting = self
                    .by_kid
                    .values()
                    .chain(&self.without_kid)
                    .filter(|e| e.accepts(alg));
                let first = fitting.next()?;
                fitting.next().is_none().then_some(first)
            }
        }
    }

    pub fn len(&self) -> usize {
        self.by_kid.len() + self.without_kid.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Decodes the first PEM block of `text` into (label, DER).
fn pem_der(text: &[u8]) -> Result<(String, Vec<u8>), KeyError> {
    let text =
        std::str::from_utf8(text).map_err(|_| KeyError::Pem("not a PEM file (not UTF-8)"))?;
    let begin = text
        .find("-----BEGIN ")
        .ok_or(KeyError::Pem("not a PEM file (no BEGIN line)"))?;
    let rest = &text[begin + 11..];
    let label_end = rest
        .find("-----")
        .ok_or(KeyError::Pem("malformed PEM header"))?;
    let label = rest[..label_end].to_string();
    let body_start = label_end + 5;
    let end = rest
        .find("-----END ")
        .ok_or(KeyError::Pem("malformed PEM (no END line)"))?;
    let b64: String = rest[body_start..end]
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map_err(|_| KeyError::Pem("malformed PEM body"))?;
    Ok((label, der))
}

/// Finds the key type of a public-key PEM by its algorithm OID, and checks
/// that the crypto backend accepts the key.
pub(crate) fn public_key_kind(pem: &[u8]) -> Result<KeyKind, KeyError> {
    let (label, der) = pem_der(pem)?;
    if label.contains("PRIVATE") {
        return Err(KeyError::PrivateKey);
    }
    let has = |oid: &[u8]| der.windows(oid.len()).any(|w| w == oid);
    const RSA: &[u8] = &[
        0x06, 0x09, 0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x01, 0x01, 0x01,
    ];
    const P256: &[u8] = &[0x06, 0x08, 0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x03, 0x01, 0x07];
    const P384: &[u8] = &[0x06, 0x05, 0x2B, 0x81, 0x04, 0x00, 0x22];
    const ED25519: &[u8] = &[0x06, 0x03, 0x2B, 0x65, 0x70];
    let kind = if label == "RSA PUBLIC KEY" || has(RSA) {
        KeyKind::Rsa
    } else if has(P256) {
        KeyKind::P256
    } else if has(P384) {
        KeyKind::P384
    } else if has(ED25519) {
        KeyKind::Ed25519
    } else {
        return Err(KeyError::Unsupported);
    };
    kind.decoding_key(pem)?;
    Ok(kind)
}

impl KeyKind {
    /// The verification key of a PEM of this kind.
    pub fn decoding_key(self, pem: &[u8]) -> Result<DecodingKey, KeyError> {
        match self {
            KeyKind::Rsa => DecodingKey::from_rsa_pem(pem),
            KeyKind::P256 | KeyKind::P384 => DecodingKey::from_ec_pem(pem),
            KeyKind::Ed25519 => DecodingKey::from_ed_pem(pem),
        }
        .map_err(|_| KeyError::Unparsable)
    }
}
