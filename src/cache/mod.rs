//! The response cache: storage (`store.rs`) plus the cache lock, created
//! once per gateway process. Pingora needs both as `&'static`, so they are
//! leaked once when the gateway is built (one allocation per gateway, not
//! per config reload; `cache.max_size` therefore only changes with `-u`).

mod decoded;
pub(crate) mod store;

use pingora::cache::lock::{CacheKeyLockImpl, CacheLock};
use pingora::cache::{CacheKey, CacheOptionOverrides};
use pingora::proxy::Session;
use std::time::Duration;
use store::{MemoryStore, PurgeTag};

/// How long a request waits for another one filling the same key before it
/// goes to the upstream itself.
pub(crate) const LOCK_WAIT: Duration = Duration::from_secs(5);

pub struct Cache {
    pub store: &'static MemoryStore,
    lock: &'static CacheKeyLockImpl,
}

impl Cache {
    pub fn new(max_size: u64) -> Cache {
        let store: &'static MemoryStore = Box::leak(Box::new(MemoryStore::new(max_size as usize)));
        let lock: &'static CacheKeyLockImpl = Box::leak(CacheLock::new_boxed(LOCK_WAIT));
        Cache { store, lock }
    }

    /// Turns caching on for this request (GET/HEAD on a cached route).
    pub fn enable(&self, session: &mut Session) {
        let mut overrides = CacheOptionOverrides::default();
        overrides.wait_timeout = Some(LOCK_WAIT);
        overrides.max_lock_retries = Some(3);
        session
            .cache
            .enable(self.store, None, None, Some(self.lock), Some(overrides));
        session
            .cache
            .set_max_file_size_bytes(self.store.max_object());
    }
}

/// The cache key: method class (HEAD shares GET's entries), scheme, host,
/// route, normalised path and query, each length-prefixed so that no two
/// different requests can spell the same key. `Vary`'d headers are added
/// by Pingora as the variance. The tag lets purges find the entry.
pub fn key(scheme: &str, route: &str, tag: &PurgeTag) -> CacheKey {
    CacheKey::new(primary(scheme, route, tag), "")
}

/// The primary bytes of [`key`]; the hit fast path finds entries by them
/// without hashing them with blake2 (`MemoryStore::fresh`).
pub(crate) fn primary(scheme: &str, route: &str, tag: &PurgeTag) -> Vec<u8> {
    let mut primary = Vec::with_capacity(64 + tag.path.len() + tag.query.len());
    for part in ["GET", scheme, &tag.host, route, &tag.path, &tag.query] {
        primary.extend_from_slice(&(part.len() as u32).to_be_bytes());
        primary.extend_from_slice(part.as_bytes());
    }
    primary
}

/// The request a [`key`] was built for, read back from its primary bytes
/// when a response is stored (for purges by path and host). Reading it back
/// costs nothing on hits; attaching a copy to every key cost about 700
/// instructions per cached request. `None` for a key [`key`] did not build.
pub(crate) fn tag_of(key: &CacheKey) -> Option<PurgeTag> {
    let mut rest = key.primary_key();
    let mut parts = [""; 6];
    for part in &mut parts {
        let (len, tail) = rest.split_first_chunk::<4>()?;
        let len = u32::from_be_bytes(*len) as usize;
        *part = std::str::from_utf8(tail.get(..len)?).ok()?;
        rest = &tail[len..];
    }
    let [_, _, host, _, path, query] = parts;
    rest.is_empty().then(|| PurgeTag {
        host: host.into(),
        path: path.into(),
        query: query.into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use pingora::cache::key::CacheHashKey;

    fn tag(host: &str, path: &str, query: &str) -> PurgeTag {
        PurgeTag {
            host: host.into(),
            path: path.into(),
            query: query.into(),
        }
    }

    #[test]
    fn the_tag_reads_back_from_the_key() {
        for t in [
            tag("a.example", "/p", "x=1"),
            tag("", "/", ""),
            tag("h", "/ü/\u{0}", "q"),
        ] {
            assert_eq!(tag_of(&key("https", "route", &t)), Some(t));
        }
        assert_eq!(tag_of(&CacheKey::new("not ours", "")), None);
        assert_eq!(tag_of(&CacheKey::new(vec![0, 0, 0, 9, b'a'], "")), None);
    }

    #[test]
    fn keys_separate_every_component() {
        let base = key("http", "r", &tag("a.example", "/p", "x=1")).primary_bin();
        assert_ne!(
            base,
            key("https", "r", &tag("a.example", "/p", "x=1")).primary_bin()
        );
        assert_ne!(
            base,
            key("http", "r2", &tag("a.example", "/p", "x=1")).primary_bin()
        );
        assert_ne!(
            base,
            key("http", "r", &tag("b.example", "/p", "x=1")).primary_bin()
        );
        assert_ne!(
            base,
            key("http", "r", &tag("a.example", "/q", "x=1")).primary_bin()
        );
        assert_ne!(
            base,
            key("http", "r", &tag("a.example", "/p", "x=2")).primary_bin()
        );
        // No ambiguity at component boundaries.
        assert_ne!(
            key("http", "r", &tag("a", "/bc", "")).primary_bin(),
            key("http", "r", &tag("a/b", "c", "")).primary_bin()
        );
        assert_eq!(
            base,
            key("http", "r", &tag("a.example", "/p", "x=1")).primary_bin()
        );
    }
}
