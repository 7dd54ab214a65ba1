//! JSON Web Key Sets: parsing (`jwks.file` and `jwks.url`) and, for URLs,
//! fetching at start, every `refresh`, and on an unknown `kid`.
//!
//! The unknown-`kid` refetch is what lets a rotated IdP key work at once,
//! and also what an attacker could abuse by sending tokens with random
//! `kid`s; so refetches are at least [`MIN_REFETCH`] apart and concurrent
//! requests share one. A failed fetch keeps the last good set. URLs named
//! inside tokens (`jku`, `x5u`) are never fetched: only the configured URL.

use arc_swap::ArcSwapOption;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, JwkSet, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};
use std::collections::HashMap;
use std::str::FromStr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

/// Minimum time between fetches triggered by unknown `kid`s.
pub const MIN_REFETCH: Duration = Duration::from_secs(5);
/// Retry interval while no key set was ever loaded.
const RETRY_EMPTY: Duration = Duration::from_secs(5);
const MAX_JWKS_BYTES: usize = 1 << 20;
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    Rsa,
    P256,
    P384,
    Ed25519,
}

impl KeyKind {
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
    pub fn from_json(json: &[u8]) -> Result<KeySet, String> {
        let set: JwkSet =
            serde_json::from_slice(json).map_err(|e| format!("not a JWKS document: {e}"))?;
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
            return Err(
                "the JWKS has no usable signing key (RSA, EC P-256/P-384 or Ed25519)".into(),
            );
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

/// Keys fetched from `jwks.url`.
pub struct JwksSource {
    pub url: String,
    refresh: Duration,
    keys: ArcSwapOption<KeySet>,
    /// Serialises fetches and remembers when the last one started.
    last_fetch: tokio::sync::Mutex<Option<Instant>>,
    fetches: AtomicUsize,
    client: reqwest::Client,
}

impl JwksSource {
    pub fn new(url: &str, refresh: Duration) -> JwksSource {
        let client = reqwest::Client::builder()
            .timeout(FETCH_TIMEOUT)
            .connect_timeout(Duration::from_secs(3))
            .redirect(reqwest::redirect::Policy::limited(3))
            .no_proxy()
            .build()
            .unwrap_or_default();
        JwksSource {
            url: url.to_string(),
            refresh,
            keys: ArcSwapOption::empty(),
            last_fetch: tokio::sync::Mutex::new(None),
            fetches: AtomicUsize::new(0),
            client,
        }
    }

    /// The last good key set (`None` until the first successful fetch).
    pub fn keys(&self) -> Option<Arc<KeySet>> {
        self.keys.load_full()
    }

    /// Fetch attempts so far.
    pub fn fetch_count(&self) -> usize {
        self.fetches.load(Ordering::Relaxed)
    }

    async fn download(&self) -> Result<KeySet, String> {
        let mut resp = self
            .client
            .get(&self.url)
            .send()
            .await
            .map_err(|e| e.without_url().to_string())?;
        if !resp.status().is_success() {
            return Err(format!("status {}", resp.status()));
        }
        let mut body = Vec::new();
        while let Some(chunk) = resp
            .chunk()
            .await
            .map_err(|e| e.without_url().to_string())?
        {
            body.extend_from_slice(&chunk);
            if body.len() > MAX_JWKS_BYTES {
                return Err("document larger than 1 MiB".into());
            }
        }
        KeySet::from_json(&body)
    }

    /// Fetches now, holding the fetch lock. Keeps the old set on failure.
    async fn fetch_locked(&self, last: &mut Option<Instant>) -> bool {
        *last = Some(Instant::now());
        self.fetches.fetch_add(1, Ordering::Relaxed);
        match self.download().await {
            Ok(ks) => {
                log::info!("JWKS {}: loaded {} keys", self.url, ks.len());
                self.keys.store(Some(Arc::new(ks)));
                true
            }
            Err(e) => {
                let kept = if self.keys.load().is_some() {
                    "keeping the last good key set"
                } else {
                    "no keys yet"
                };
                log::warn!("JWKS {}: fetch failed ({e}); {kept}", self.url);
                false
            }
        }
    }

    /// Called when a token names a `kid` we do not know: fetch again unless
    /// a fetch started less than [`MIN_REFETCH`] ago. Callers look the key
    /// up again afterwards either way.
    pub async fn refresh_for_unknown_kid(&self) {
        let mut last = self.last_fetch.lock().await;
        if last.is_some_and(|t| t.elapsed() < MIN_REFETCH) {
            return;
        }
        self.fetch_locked(&mut last).await;
    }

    /// The periodic refresh; ends when the source is dropped.
    pub async fn run(source: Weak<JwksSource>) {
        loop {
            let wait = {
                let Some(s) = source.upgrade() else { return };
                let ok = {
                    let mut last = s.last_fetch.lock().await;
                    s.fetch_locked(&mut last).await
                };
                if !ok && s.keys.load().is_none() {
                    RETRY_EMPTY.min(s.refresh)
                } else {
                    s.refresh
                }
            };
            tokio::time::sleep(wait).await;
        }
    }
}
