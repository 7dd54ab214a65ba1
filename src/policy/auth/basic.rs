//! HTTP Basic (RFC 7617) against argon2id or bcrypt hashes.
//!
//! - Hashes only: the config never holds a password (validated at load).
//! - An unknown user is verified against a dummy hash made with the
//!   parameters of the most expensive configured hash, so a client cannot
//!   tell which user names exist by timing; a wrong password costs what a
//!   right one does (the whole hash is always computed).
//! - Verification is CPU work of tens of milliseconds: it runs on the
//!   blocking pool, never on the proxy's worker thread.
//! - A successful check is cached for [`CACHE_TTL`], keyed by the SHA-256
//!   of the credentials (never the password itself), at most
//!   [`CACHE_ENTRIES`] entries, so a keep-alive client does not pay the hash
//!   on every request. Failures are never cached.

use super::digest_cache::DigestCache;
use crate::config::{BasicConfig, PasswordHash};
use argon2::password_hash::{PasswordHash as Phc, PasswordHasher, PasswordVerifier, SaltString};
use base64::Engine;
use http::{HeaderMap, HeaderName};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long a verified credential is trusted without hashing again.
pub(crate) const CACHE_TTL: Duration = Duration::from_secs(60);
/// Verified credentials remembered at most.
pub(crate) const CACHE_ENTRIES: usize = 10_000;

pub struct BasicProvider {
    users: HashMap<String, PasswordHash>,
    /// What an unknown user is verified against.
    dummy: PasswordHash,
    pub forward_id: Option<HeaderName>,
    /// SHA-256(user ":" password) -> user.
    cache: DigestCache<Arc<str>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BasicError {
    Missing,
    Malformed,
    Wrong,
}

/// `Authorization: Basic <base64(user:password)>`, the scheme in any case.
fn credentials(headers: &HeaderMap) -> Result<(String, String), BasicError> {
    let v = headers
        .get(http::header::AUTHORIZATION)
        .ok_or(BasicError::Missing)?;
    let v = v.to_str().map_err(|_| BasicError::Malformed)?;
    let (scheme, rest) = v.split_once(' ').ok_or(BasicError::Missing)?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(BasicError::Missing);
    }
    let raw = base64::engine::general_purpose::STANDARD
        .decode(rest.trim())
        .map_err(|_| BasicError::Malformed)?;
    let text = String::from_utf8(raw).map_err(|_| BasicError::Malformed)?;
    let (user, pass) = text.split_once(':').ok_or(BasicError::Malformed)?;
    Ok((user.to_string(), pass.to_string()))
}

/// Checks `password` against `hash`; always the full cost.
fn verify(hash: &PasswordHash, password: &str) -> bool {
    match hash {
        PasswordHash::Argon2id(phc) => Phc::new(phc).is_ok_and(|h| {
            argon2::Argon2::default()
                .verify_password(password.as_bytes(), &h)
                .is_ok()
        }),
        PasswordHash::Bcrypt(h) => bcrypt::verify(password, h).unwrap_or(false),
    }
}

/// A hash of a random password with the parameters of `like`.
fn dummy_like(like: &PasswordHash) -> PasswordHash {
    let mut salt = [0u8; 16];
    salt.iter_mut().for_each(|b| *b = fastrand::u8(..));
    let secret: String = (0..24).map(|_| fastrand::alphanumeric()).collect();
    match like {
        PasswordHash::Argon2id(phc) => {
            let made = Phc::new(phc).ok().and_then(|h| {
                let params = argon2::Params::try_from(&h).ok()?;
                let a = argon2::Argon2::new(
                    argon2::Algorithm::Argon2id,
                    argon2::Version::V0x13,
                    params,
                );
                let salt = SaltString::encode_b64(&salt).ok()?;
                a.hash_password(secret.as_bytes(), &salt)
                    .ok()
                    .map(|h| h.to_string())
            });
            PasswordHash::Argon2id(made.unwrap_or_else(|| phc.clone()))
        }
        PasswordHash::Bcrypt(h) => {
            let cost = PasswordHash::bcrypt_cost(h).unwrap_or(12);
            let made = bcrypt::hash_with_salt(&secret, cost, salt).map(|p| p.to_string());
            PasswordHash::Bcrypt(made.unwrap_or_else(|_| h.clone()))
        }
    }
}

/// Roughly how expensive verifying `h` is, to pick the dummy's model.
fn cost(h: &PasswordHash) -> u64 {
    match h {
        PasswordHash::Argon2id(phc) => Phc::new(phc)
            .ok()
            .and_then(|h| argon2::Params::try_from(&h).ok())
            .map_or(0, |p| u64::from(p.m_cost()) * u64::from(p.t_cost())),
        PasswordHash::Bcrypt(h) => {
            let c = PasswordHash::bcrypt_cost(h).unwrap_or(12);
            // bcrypt's 2^cost rounds, on the same rough scale as argon2's KiB x passes.
            1u64 << c.min(40)
        }
    }
}

impl BasicProvider {
    pub fn new(cfg: &BasicConfig) -> BasicProvider {
        let most = cfg
            .users
            .iter()
            .max_by_key(|(_, h)| cost(h))
            .map(|(_, h)| h);
        let dummy = most.map_or(PasswordHash::Bcrypt(String::new()), dummy_like);
        BasicProvider {
            users: cfg.users.iter().cloned().collect(),
            dummy,
            forward_id: cfg.forward_id.clone(),
            cache: DigestCache::new(CACHE_TTL, CACHE_ENTRIES),
        }
    }

    /// True when the request carries Basic credentials.
    pub fn presented(headers: &HeaderMap) -> bool {
        !matches!(credentials(headers), Err(BasicError::Missing))
    }

    /// The user name, once the password checked out.
    pub async fn check(self: &Arc<Self>, headers: &HeaderMap) -> Result<Arc<str>, BasicError> {
        let (user, pass) = credentials(headers)?;
        let key: [u8; 32] = Sha256::new()
            .chain_update(user.as_bytes())
            .chain_update(b":")
            .chain_update(pass.as_bytes())
            .finalize()
            .into();
        let now = Instant::now();
        if let Some(user) = self.cache.get(&key, now) {
            return Ok(user);
        }
        let (this, name) = (self.clone(), user.clone());
        let ok = tokio::task::spawn_blocking(move || match this.users.get(&name) {
            Some(hash) => verify(hash, &pass),
            // The same work for a user that does not exist.
            None => {
                let _ = verify(&this.dummy, &pass);
                false
            }
        })
        .await
        .unwrap_or(false);
        if !ok {
            return Err(BasicError::Wrong);
        }
        let name: Arc<str> = Arc::from(user.as_str());
        self.cache.put(key, name.clone(), now);
        Ok(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(http::header::AUTHORIZATION, v.parse().unwrap());
        h
    }

    #[test]
    fn credentials_are_parsed_strictly() {
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        assert_eq!(
            credentials(&header(&format!("Basic {}", b64("alice:pa:ss")))),
            Ok(("alice".into(), "pa:ss".into()))
        );
        assert_eq!(
            credentials(&header(&format!("basic {}", b64("a:b"))))
                .unwrap()
                .0,
            "a"
        );
        assert_eq!(credentials(&HeaderMap::new()), Err(BasicError::Missing));
        assert_eq!(credentials(&header("Bearer x")), Err(BasicError::Missing));
        assert_eq!(
            credentials(&header("Basic !!!")),
            Err(BasicError::Malformed)
        );
        assert_eq!(
            credentials(&header(&format!("Basic {}", b64("nocolon")))),
            Err(BasicError::Malformed)
        );
    }

    #[test]
    fn dummies_copy_the_parameters() {
        let h = bcrypt::hash("pw", 4).unwrap();
        let d = dummy_like(&PasswordHash::Bcrypt(h.clone()));
        let PasswordHash::Bcrypt(d) = d else { panic!() };
        assert_eq!(&d[..7], &h[..7]);
        assert!(!verify(&PasswordHash::Bcrypt(d), "pw"));
    }
}
