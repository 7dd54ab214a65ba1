//! gatehouse's in-memory cache storage, bounded in bytes.
//!
//! Pingora's `MemCache` is for tests only and evicts nothing by itself.
//! This store keeps complete objects in a hash map keyed by the cache key's
//! combined hash (primary plus Vary variance) and orders them in
//! `pingora-lru` (sharded LRU, weights in bytes). Memory is accounted in
//! bytes for stored objects *and* for fills still in flight: every chunk a
//! miss handler receives is reserved first, evicting least recently used
//! objects to make room, and a fill that cannot get room (or grows past
//! `max_object`) is abandoned, so stored + in-flight bytes never exceed
//! `max_size`. Hits stream the stored body in 64 KiB zero-copy slices.
//!
//! Each object also carries the client-facing host, path and query it was
//! stored for, indexed by path, so purges by path (admin API, unsafe
//! methods) find every variant, query and route of that path.

use async_trait::async_trait;
use bytes::Bytes;
use pingora::cache::key::{CacheHashKey, HashBinary};
use pingora::cache::storage::{
    HandleHit, HandleMiss, HitHandler, MissFinishType, MissHandler, PurgeOutcome, PurgeTarget,
    PurgeType,
};
use pingora::cache::trace::SpanHandle;
use pingora::cache::{CacheEntryId, CacheKey, CacheMeta, Storage};
use pingora::{Error, ErrorType, Result};
use std::any::Any;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::SystemTime;

use super::decoded::{DecodedMeta, Fresh};

/// Bookkeeping bytes charged per object on top of body and headers.
const OVERHEAD: usize = 512;
const CHUNK: usize = 64 * 1024;

/// What a cached object was stored for, read back from its `CacheKey`
/// (`cache::tag_of`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PurgeTag {
    pub host: String,
    pub path: String,
    pub query: String,
}

struct Entry {
    id: u64,
    meta: (Vec<u8>, Vec<u8>),
    decoded: Option<DecodedMeta>,
    body: Bytes,
    weight: usize,
    tag: Option<PurgeTag>,
    /// The key's primary bytes, for an entry [`MemoryStore::fresh`] may
    /// serve (decoded metadata, no Vary variance).
    primary: Option<Box<[u8]>>,
}

pub struct MemoryStore {
    max_bytes: usize,
    max_object: usize,
    entries: RwLock<HashMap<HashBinary, Arc<Entry>>>,
    lru: pingora_lru::Lru<HashBinary, 16>,
    inflight: AtomicUsize,
    by_path: Mutex<HashMap<String, HashSet<HashBinary>>>,
    /// Primary bytes → key hash of the entries [`MemoryStore::fresh`] may
    /// serve: finding them costs an FxHash of the bytes, not blake2.
    by_primary: RwLock<rustc_hash::FxHashMap<Box<[u8]>, HashBinary>>,
    next_id: AtomicU64,
}

fn lru_key(k: &HashBinary) -> u64 {
    u64::from_le_bytes(k[..8].try_into().expect("16-byte hash"))
}

impl MemoryStore {
    pub fn new(max_bytes: usize) -> MemoryStore {
        MemoryStore {
            max_bytes,
            max_object: (max_bytes / 8).max(1),
            entries: RwLock::new(HashMap::new()),
            lru: pingora_lru::Lru::with_capacity(max_bytes, 1024),
            inflight: AtomicUsize::new(0),
            by_path: Mutex::new(HashMap::new()),
            by_primary: RwLock::new(Default::default()),
            next_id: AtomicU64::new(1),
        }
    }

    /// The largest object stored (an eighth of `max_size`).
    pub fn max_object(&self) -> usize {
        self.max_object
    }

    /// Bytes held: stored objects plus fills in progress.
    pub fn used_bytes(&self) -> usize {
        self.lru.weight() + self.inflight.load(Ordering::Acquire)
    }

    pub fn len(&self) -> usize {
        self.entries.read().map(|e| e.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Called when an entry leaves the store (eviction, purge), so that a
    /// purge by path never finds a stale key.
    fn unindex(&self, key: &HashBinary, entry: &Entry) {
        if let Some(primary) = &entry.primary {
            let mut idx = self.by_primary.write().unwrap_or_else(|p| p.into_inner());
            if idx.get(primary) == Some(key) {
                idx.remove(primary);
            }
        }
        if let Some(tag) = &entry.tag {
            let mut idx = self.by_path.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(set) = idx.get_mut(&tag.path) {
                set.remove(key);
                if set.is_empty() {
                    idx.remove(&tag.path);
                }
            }
        }
    }

    /// Removes one object from map, LRU and index. The LRU key (64 bits of
    /// the hash) is kept unique by `insert`, so it names only this object.
    fn remove(&self, key: &HashBinary) -> Option<Arc<Entry>> {
        let entry = self
            .entries
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(key)?;
        self.lru.remove(lru_key(key));
        self.unindex(key, &entry);
        Some(entry)
    }

    /// Evicts least recently used objects until stored + in-flight fits.
    fn make_room(&self) {
        let limit = self
            .max_bytes
            .saturating_sub(self.inflight.load(Ordering::Acquire));
        self.lru.set_weight_limit(limit);
        for (key, _) in self.lru.evict_to_limit() {
            let removed = self
                .entries
                .write()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&key);
            if let Some(entry) = removed {
                self.unindex(&key, &entry);
            }
        }
    }

    /// Reserves `n` bytes for a fill; `false` if they cannot fit.
    fn reserve(&self, n: usize) -> bool {
        self.inflight.fetch_add(n, Ordering::AcqRel);
        self.make_room();
        if self.used_bytes() > self.max_bytes {
            self.inflight.fetch_sub(n, Ordering::AcqRel);
            return false;
        }
        true
    }

    fn insert(&self, key: HashBinary, entry: Entry) {
        let (weight, tag) = (entry.weight, entry.tag.clone());
        let primary = entry.primary.clone();
        self.remove(&key);
        // Another object sharing the 64-bit LRU key: it goes.
        if let Some((other, _)) = self.lru.remove(lru_key(&key)) {
            self.remove(&other);
        }
        self.entries
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key, Arc::new(entry));
        self.lru.admit(lru_key(&key), key, weight);
        if let Some(primary) = primary {
            let mut idx = self.by_primary.write().unwrap_or_else(|p| p.into_inner());
            idx.insert(primary, key);
        }
        if let Some(tag) = tag {
            let mut idx = self.by_path.lock().unwrap_or_else(|p| p.into_inner());
            idx.entry(tag.path).or_default().insert(key);
        }
    }

    /// The object stored for the key with these `primary` bytes
    /// (`cache::primary`) when it can be served as stored, for the hit fast
    /// path (`proxy::caching::fresh_hit`): fresh at `now` (Pingora's
    /// `is_fresh`: `fresh_until >= now`; a revalidated object too) and not
    /// a Vary variant. `Age` counts from its last validation. Promoted like
    /// a [`Storage::lookup`] hit. `None` sends the request through
    /// Pingora's cache phases instead.
    pub(crate) fn fresh(&self, primary: &[u8], now: SystemTime) -> Option<Fresh> {
        let key = *self.by_primary.read().ok()?.get(primary)?;
        let entry = self.entries.read().ok()?.get(&key).cloned()?;
        let meta = entry.decoded.as_ref()?;
        if meta.variance.is_some() {
            return None;
        }
        let left = meta.fresh_until.duration_since(now).ok()?;
        self.lru.promote(lru_key(&key));
        let status = meta.header.status;
        Some(Fresh {
            head: meta.header.as_owned_parts(),
            reason: meta
                .header
                .get_reason_phrase()
                .filter(|r| Some(*r) != status.canonical_reason())
                .map(str::to_owned),
            body: entry.body.clone(),
            age: now.duration_since(meta.epoch).unwrap_or_default().as_secs(),
            ttl: left.as_secs() as i64,
        })
    }

    /// Removes every object stored for `path` (and, when given, that exact
    /// `query` and `host`). Returns how many went.
    pub fn purge_path(&self, path: &str, query: Option<&str>, host: Option<&str>) -> usize {
        let keys: Vec<HashBinary> = self
            .by_path
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(path)
            .map(|s| s.iter().copied().collect())
            .unwrap_or_default();
        let mut n = 0;
        for k in keys {
            let matches = self
                .entries
                .read()
                .ok()
                .and_then(|e| e.get(&k).cloned())
                .and_then(|e| e.tag.clone())
                .is_some_and(|t| {
                    query.is_none_or(|q| t.query == q) && host.is_none_or(|h| t.host == h)
                });
            if matches && self.remove(&k).is_some() {
                n += 1;
            }
        }
        n
    }
}

struct Hit {
    entry: Arc<Entry>,
    pos: usize,
    end: usize,
}

#[async_trait]
impl HandleHit for Hit {
    async fn read_body(&mut self) -> Result<Option<Bytes>> {
        if self.pos >= self.end {
            return Ok(None);
        }
        let stop = (self.pos + CHUNK).min(self.end);
        let chunk = self.entry.body.slice(self.pos..stop);
        self.pos = stop;
        Ok(Some(chunk))
    }

    async fn finish(
        self: Box<Self>,
        _: &'static (dyn Storage + Sync),
        _: &CacheKey,
        _: &SpanHandle,
    ) -> Result<()> {
        Ok(())
    }

    fn can_seek(&self) -> bool {
        true
    }

    fn seek(&mut self, start: usize, end: Option<usize>) -> Result<()> {
        let len = self.entry.body.len();
        if start >= len && len > 0 {
            return Error::e_explain(ErrorType::InternalError, "seek beyond the cached body");
        }
        self.pos = start;
        self.end = end.map_or(len, |e| (e + 1).min(len));
        Ok(())
    }

    fn get_eviction_weight(&self) -> usize {
        self.entry.weight
    }

    fn entry_id(&self) -> Option<CacheEntryId> {
        Some(CacheEntryId::new(self.entry.id))
    }

    fn as_any(&self) -> &(dyn Any + Send + Sync) {
        self
    }

    fn as_any_mut(&mut self) -> &mut (dyn Any + Send + Sync) {
        self
    }
}

struct Miss {
    store: &'static MemoryStore,
    key: HashBinary,
    id: u64,
    meta: (Vec<u8>, Vec<u8>),
    chunks: Vec<Bytes>,
    reserved: usize,
    tag: Option<PurgeTag>,
    finished: bool,
    decoded: Option<DecodedMeta>,
    primary: Option<Box<[u8]>>,
}

#[async_trait]
impl HandleMiss for Miss {
    async fn write_body(&mut self, data: Bytes, _eof: bool) -> Result<()> {
        if self.reserved + data.len() > self.store.max_object {
            return Error::e_explain(
                ErrorType::InternalError,
                "object larger than the cache's max object size",
            );
        }
        if !self.store.reserve(data.len()) {
            return Error::e_explain(ErrorType::InternalError, "cache full of in-flight fills");
        }
        self.reserved += data.len();
        self.chunks.push(data);
        Ok(())
    }

    async fn finish(mut self: Box<Self>) -> Result<MissFinishType> {
        let mut body = Vec::with_capacity(self.chunks.iter().map(Bytes::len).sum());
        for c in self.chunks.drain(..) {
            body.extend_from_slice(&c);
        }
        let weight = self.reserved;
        self.finished = true;
        let entry = Entry {
            id: self.id,
            meta: std::mem::take(&mut self.meta),
            decoded: self.decoded.take(),
            body: Bytes::from(body),
            weight,
            tag: self.tag.take(),
            primary: self.primary.take(),
        };
        // Hand the reservation over to the stored object.
        self.store.insert(self.key, entry);
        self.store.inflight.fetch_sub(weight, Ordering::AcqRel);
        self.store.make_room();
        Ok(MissFinishType::Created(weight))
    }

    fn entry_id(&self) -> Option<CacheEntryId> {
        Some(CacheEntryId::new(self.id))
    }
}

impl Drop for Miss {
    fn drop(&mut self) {
        if !self.finished {
            self.store
                .inflight
                .fetch_sub(self.reserved, Ordering::AcqRel);
        }
    }
}

#[async_trait]
impl Storage for MemoryStore {
    async fn lookup(
        &'static self,
        key: &CacheKey,
        _: &SpanHandle,
    ) -> Result<Option<(CacheMeta, HitHandler)>> {
        let combined = key.combined_bin();
        let Some(entry) = self
            .entries
            .read()
            .ok()
            .and_then(|e| e.get(&combined).cloned())
        else {
            return Ok(None);
        };
        self.lru.promote(lru_key(&combined));
        let meta = match &entry.decoded {
            Some(d) if d.exact => d.rebuild(),
            _ => CacheMeta::deserialize(&entry.meta.0, &entry.meta.1)?,
        };
        let end = entry.body.len();
        Ok(Some((meta, Box::new(Hit { entry, pos: 0, end }))))
    }

    async fn get_miss_handler(
        &'static self,
        key: &CacheKey,
        meta: &CacheMeta,
        _: &SpanHandle,
    ) -> Result<MissHandler> {
        let serialized = meta.serialize()?;
        let base = serialized.0.len() + serialized.1.len() + OVERHEAD;
        if base > self.max_object || !self.reserve(base) {
            return Error::e_explain(ErrorType::InternalError, "no room in the cache");
        }
        let decoded = DecodedMeta::capture(meta);
        // Only what `fresh` can serve is found by its primary bytes.
        let plain = decoded.variance.is_none() && key.variance_bin().is_none();
        let primary = plain.then(|| key.primary_key().into());
        Ok(Box::new(Miss {
            store: self,
            key: key.combined_bin(),
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            meta: serialized,
            chunks: Vec::new(),
            reserved: base,
            tag: super::tag_of(key),
            finished: false,
            decoded: Some(decoded),
            primary,
        }))
    }

    async fn purge(
        &'static self,
        target: PurgeTarget<'_>,
        _: PurgeType,
        _: &SpanHandle,
    ) -> Result<PurgeOutcome> {
        let key = target.key().combined_bin();
        let wanted = match target {
            PurgeTarget::Exact(e) => e.entry_id(),
            PurgeTarget::Active(_) => None,
        };
        let current = self
            .entries
            .read()
            .ok()
            .and_then(|e| e.get(&key).map(|e| e.id));
        match current {
            Some(id) if wanted.is_none_or(|w| w.get() == id) => {
                self.remove(&key);
                Ok(PurgeOutcome::Purged(Some(CacheEntryId::new(id))))
            }
            _ => Ok(PurgeOutcome::NotFound),
        }
    }

    async fn update_meta(
        &'static self,
        key: &CacheKey,
        meta: &CacheMeta,
        _: &SpanHandle,
    ) -> Result<bool> {
        let combined = key.combined_bin();
        // Revalidated (a 304): no longer exact for Pingora's lookups, still
        // served by the fast path while fresh.
        let decoded = Some(DecodedMeta::capture(meta));
        let meta = meta.serialize()?;
        let mut entries = self.entries.write().unwrap_or_else(|p| p.into_inner());
        let Some(old) = entries.get(&combined).cloned() else {
            return Ok(false);
        };
        entries.insert(
            combined,
            Arc::new(Entry {
                id: old.id,
                meta,
                decoded,
                body: old.body.clone(),
                weight: old.weight,
                tag: old.tag.clone(),
                primary: old.primary.clone(),
            }),
        );
        Ok(true)
    }

    fn as_any(&self) -> &(dyn Any + Send + Sync + 'static) {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, SystemTime};

    /// A store of its own, the key and primary bytes of `path`, and a
    /// runtime to drive the `Storage` calls.
    fn setup(
        path: &str,
    ) -> (
        &'static MemoryStore,
        CacheKey,
        Vec<u8>,
        tokio::runtime::Runtime,
    ) {
        let store: &'static MemoryStore = Box::leak(Box::new(MemoryStore::new(1 << 20)));
        let tag = PurgeTag {
            host: "h.example".into(),
            path: path.into(),
            query: String::new(),
        };
        let key = crate::cache::key("http", "r", &tag);
        let primary = crate::cache::primary("http", "r", &tag);
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        (store, key, primary, rt)
    }

    /// A stale entry refreshed by a 304 (`update_meta`) is served by the
    /// fast path again, its `Age` counted from the revalidation.
    #[test]
    fn revalidated_entries_are_fresh_again() {
        let (store, key, primary, rt) = setup("/r");
        let now = SystemTime::now();
        let stored = now - Duration::from_secs(100);
        let header = pingora::http::ResponseHeader::build(200, None).unwrap();
        let mut meta = CacheMeta::new(now - Duration::from_secs(1), stored, 0, 0, header);
        let span = pingora::cache::trace::Span::inactive();
        rt.block_on(async {
            let miss = store.get_miss_handler(&key, &meta, &span.handle()).await;
            miss.unwrap().finish().await.unwrap();
        });
        assert!(store.fresh(&primary, now).is_none(), "stale");
        meta.update_freshness(now + Duration::from_secs(60), 0, 0);
        let updated = rt.block_on(store.update_meta(&key, &meta, &span.handle()));
        assert!(updated.unwrap());
        let hit = store.fresh(&primary, now).expect("fresh after the 304");
        assert!(
            hit.age <= 1,
            "Age counts from the revalidation: {}",
            hit.age
        );
        assert!(hit.ttl >= 59);
        // Pingora's own lookup reads the revalidated metadata exactly.
        let found = rt.block_on(store.lookup(&key, &span.handle())).unwrap();
        let (looked_up, _) = found.expect("stored");
        assert_eq!(looked_up.serialize().unwrap(), meta.serialize().unwrap());
    }

    /// The fast path's index by primary bytes serves fresh entries only,
    /// and forgets an entry when it leaves the store.
    #[test]
    fn fresh_entries_are_found_by_primary_bytes_until_purged() {
        let (store, key, primary, rt) = setup("/p");
        let now = SystemTime::now();
        let mut header = pingora::http::ResponseHeader::build(200, None).unwrap();
        header.insert_header("Content-Length", "2").unwrap();
        let meta = CacheMeta::new(now + Duration::from_secs(60), now, 0, 0, header);
        rt.block_on(async {
            let span = pingora::cache::trace::Span::inactive();
            let mut miss = store
                .get_miss_handler(&key, &meta, &span.handle())
                .await
                .unwrap();
            miss.write_body(Bytes::from_static(b"ok"), true)
                .await
                .unwrap();
            miss.finish().await.unwrap();
        });
        let hit = store.fresh(&primary, now).expect("a fresh entry");
        assert_eq!((&hit.body[..], hit.age, hit.ttl), (&b"ok"[..], 0, 60));
        let later = now + Duration::from_secs(61);
        assert!(store.fresh(&primary, later).is_none(), "stale");
        assert_eq!(store.purge_path("/p", None, None), 1);
        assert!(store.fresh(&primary, now).is_none(), "purged");
        assert!(store.by_primary.read().unwrap().is_empty());
    }
}
