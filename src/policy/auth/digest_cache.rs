//! What Basic and forward auth remember of successful checks: a bounded
//! map from a SHA-256 digest (of credentials, or of everything sent to the
//! auth service) to a value with a deadline. When full, expired entries go
//! first, then all of them (a rare reset, cheaper than LRU bookkeeping on
//! every hit).

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

pub(crate) struct DigestCache<V> {
    ttl: Duration,
    max: usize,
    map: Mutex<HashMap<[u8; 32], (V, Instant)>>,
}

impl<V: Clone> DigestCache<V> {
    pub(crate) fn new(ttl: Duration, max: usize) -> DigestCache<V> {
        DigestCache {
            ttl,
            max,
            map: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<[u8; 32], (V, Instant)>> {
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The value stored for `key`, unless it has expired.
    pub(crate) fn get(&self, key: &[u8; 32], now: Instant) -> Option<V> {
        self.lock()
            .get(key)
            .filter(|(_, until)| *until > now)
            .map(|(v, _)| v.clone())
    }

    /// Remembers `v` for the cache's TTL from `now`.
    pub(crate) fn put(&self, key: [u8; 32], v: V, now: Instant) {
        let mut map = self.lock();
        if map.len() >= self.max {
            map.retain(|_, (_, until)| *until > now);
            if map.len() >= self.max {
                map.clear();
            }
        }
        map.insert(key, (v, now + self.ttl));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_expire_and_the_size_is_bounded() {
        let c = DigestCache::new(Duration::from_secs(10), 2);
        let now = Instant::now();
        c.put([1; 32], "a", now);
        assert_eq!(c.get(&[1; 32], now), Some("a"));
        assert_eq!(c.get(&[1; 32], now + Duration::from_secs(11)), None);
        c.put([2; 32], "b", now);
        c.put([3; 32], "c", now);
        assert!(c.lock().len() <= 2);
        assert_eq!(c.get(&[3; 32], now), Some("c"));
    }
}
