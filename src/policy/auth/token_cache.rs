//! A bounded cache of verified tokens, so that repeat requests with the
//! same JWT skip the signature check (RSA verification costs tens of µs).
//!
//! Entries are keyed by a hash of the token and keep the full token to
//! rule out collisions. An entry lives until the earlier of the token's
//! `exp` (plus leeway) and `ttl` after verification, so a key rotated out
//! of a JWKS stops being honoured within `ttl`. When a shard is full,
//! expired entries go first, then an arbitrary one.

use serde_json::{Map, Value};
use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const SHARDS: usize = 16;

pub(crate) type Claims = Arc<Map<String, Value>>;

struct Entry {
    token: Box<str>,
    claims: Claims,
    until: Instant,
}

/// Keyed by the token's keyed (SipHash) hash already: the map hashes that
/// `u64` again with FxHash (one multiply) instead of a second SipHash.
type Shard = HashMap<u64, Entry, rustc_hash::FxBuildHasher>;

pub(crate) struct TokenCache {
    shards: Vec<Mutex<Shard>>,
    per_shard: usize,
    ttl: Duration,
    hasher: RandomState,
}

impl TokenCache {
    /// `None` when `entries` is 0 (cache disabled).
    pub(crate) fn new(entries: usize, ttl: Duration) -> Option<TokenCache> {
        (entries > 0 && !ttl.is_zero()).then(|| TokenCache {
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
            per_shard: entries.div_ceil(SHARDS),
            ttl,
            hasher: RandomState::new(),
        })
    }

    fn shard(&self, h: u64) -> &Mutex<Shard> {
        &self.shards[(h as usize) % SHARDS]
    }

    pub(crate) fn get(&self, token: &str) -> Option<Claims> {
        let h = self.hasher.hash_one(token);
        let shard = self.shard(h).lock().unwrap_or_else(|p| p.into_inner());
        let e = shard.get(&h)?;
        (&*e.token == token && Instant::now() < e.until).then(|| e.claims.clone())
    }

    /// Remembers a verified token until `exp + leeway` or the TTL.
    pub(crate) fn put(&self, token: &str, claims: Claims, leeway: Duration) {
        let now_unix = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        let Some(exp) = claims.get("exp").and_then(Value::as_u64) else {
            return;
        };
        let remaining = Duration::from_secs(
            exp.saturating_add(leeway.as_secs())
                .saturating_sub(now_unix),
        );
        let until = Instant::now() + remaining.min(self.ttl);
        let h = self.hasher.hash_one(token);
        let mut shard = self.shard(h).lock().unwrap_or_else(|p| p.into_inner());
        if shard.len() >= self.per_shard && !shard.contains_key(&h) {
            let now = Instant::now();
            shard.retain(|_, e| e.until > now);
            if shard.len() >= self.per_shard {
                if let Some(k) = shard.keys().next().copied() {
                    shard.remove(&k);
                }
            }
        }
        shard.insert(
            h,
            Entry {
                token: token.into(),
                claims,
                until,
            },
        );
    }
}

#[cfg(test)]
impl TokenCache {
    fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().map(|m| m.len()).unwrap_or(0))
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(exp_in: i64) -> Claims {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        let mut m = Map::new();
        m.insert("exp".into(), Value::from(now + exp_in));
        Arc::new(m)
    }

    #[test]
    fn hits_and_bounds() {
        let c = TokenCache::new(32, Duration::from_secs(60)).unwrap();
        c.put("a.b.c", claims(600), Duration::ZERO);
        assert!(c.get("a.b.c").is_some());
        assert!(c.get("a.b.d").is_none());
        for i in 0..1000 {
            c.put(&format!("t{i}"), claims(600), Duration::ZERO);
        }
        assert!(c.len() <= 32, "{}", c.len());
    }

    #[test]
    fn expired_tokens_are_not_served() {
        let c = TokenCache::new(8, Duration::from_secs(60)).unwrap();
        c.put("old", claims(-5), Duration::ZERO);
        assert!(c.get("old").is_none());
        assert!(TokenCache::new(0, Duration::from_secs(1)).is_none());
    }
}
