//! The Redis backend with `sync`: no Redis call on the request path. Each
//! node counts locally and, every `sync`, pushes what it counted and reads
//! the fleet's totals back, one atomic script per batch of keys (INCRBY and
//! the new value for each). A request is admitted on the last total seen
//! plus this node's requests since.
//!
//! Windows are fixed and aligned to the wall clock (`now / per`), so every
//! node counts into the same Redis key for a window. Over-admission is
//! bounded by what the other nodes admit between two syncs: a node's view
//! of the total is at most one interval old, and so are the counts the
//! others have not pushed yet (README, "Rate limits across a fleet").
//!
//! Memory is bounded: at most [`MAX_KEYS`] keys per limit are tracked per
//! window; requests of further keys in that window are counted by a local
//! sketch only (this node's share of the limit).

use super::local::LocalCounter;
use super::redis::RedisStore;
use prometheus::IntCounter;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Keys tracked per limit and window.
pub(crate) const MAX_KEYS: usize = 65_536;
/// Keys per script call.
const BATCH: usize = 512;

/// `KEYS[i] += ARGV[i]`, each key expiring `ARGV[#KEYS + 1]` ms after its
/// creation; the new values, in order.
const SCRIPT: &str = r#"
local ttl = ARGV[#KEYS + 1]
local out = {}
for i, k in ipairs(KEYS) do
  local c = redis.call('INCRBY', k, ARGV[i])
  if redis.call('PTTL', k) < 0 then
    redis.call('PEXPIRE', k, ttl)
  end
  out[i] = c
end
return out
"#;

#[derive(Default, Clone, Copy)]
struct Entry {
    window: u64,
    /// The fleet's total for this key and window at the last sync.
    shared: u64,
    /// This node's requests since (not pushed yet).
    pending: u64,
}

pub(crate) struct SyncedCounter {
    pub store: Arc<RedisStore>,
    prefix: String,
    per_ms: u64,
    entries: Mutex<HashMap<u128, Entry>>,
    /// Keys over [`MAX_KEYS`] in a window.
    overflow: LocalCounter,
    /// False after a failed sync, until one succeeds.
    reachable: AtomicBool,
    script: redis::Script,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl SyncedCounter {
    pub(crate) fn new(store: Arc<RedisStore>, limit: &str, per: Duration) -> SyncedCounter {
        let per_ms = per.as_millis().max(1) as u64;
        SyncedCounter {
            store,
            prefix: format!("gatehouse:rls:{limit}:{per_ms}:"),
            per_ms,
            entries: Mutex::new(HashMap::new()),
            overflow: LocalCounter::new(per),
            reachable: AtomicBool::new(true),
            script: redis::Script::new(SCRIPT),
        }
    }

    /// Counts one request: (requests in this window, fleet-wide as far as
    /// this node knows, and the time left). `Err` when Redis is unreachable
    /// (the caller applies `on_error`; with `allow` the local count stands).
    pub(crate) fn observe(&self, key: &str) -> (u64, Duration, bool) {
        let now = now_ms();
        let window = now / self.per_ms;
        let reset = Duration::from_millis(self.per_ms - now % self.per_ms);
        let h = u128::from_be_bytes(
            Sha256::digest(key.as_bytes())[..16]
                .try_into()
                .unwrap_or([0; 16]),
        );
        let reachable = self.reachable.load(Ordering::Relaxed);
        let mut map = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= MAX_KEYS && !map.contains_key(&h) {
            map.retain(|_, e| e.window == window);
            if map.len() >= MAX_KEYS {
                drop(map);
                let (count, _) = self.overflow.observe(key);
                return (count, reset, reachable);
            }
        }
        let e = map.entry(h).or_default();
        if e.window != window {
            *e = Entry {
                window,
                ..Entry::default()
            };
        }
        e.pending += 1;
        (e.shared + e.pending, reset, reachable)
    }

    /// One reconcile: pushes every pending count of the current window and
    /// reads back the totals of every key this node has seen in it.
    pub(crate) async fn sync(&self) -> Result<(), String> {
        let window = now_ms() / self.per_ms;
        let batch: Vec<(u128, u64)> = {
            let mut map = self.entries.lock().unwrap_or_else(|p| p.into_inner());
            map.retain(|_, e| e.window == window);
            map.iter_mut()
                .map(|(h, e)| {
                    let n = e.pending;
                    e.pending = 0;
                    e.shared += n;
                    (*h, n)
                })
                .collect()
        };
        let mut totals = Vec::with_capacity(batch.len());
        let mut failed = None;
        for chunk in batch.chunks(BATCH) {
            match self.push(window, chunk).await {
                Ok(t) => totals.extend(chunk.iter().map(|c| c.0).zip(t)),
                Err(e) => {
                    failed = Some(e);
                    // What was not pushed counts again next time.
                    self.restore(window, &batch[totals.len()..]);
                    break;
                }
            }
        }
        let mut map = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        for (h, total) in totals {
            if let Some(e) = map.get_mut(&h).filter(|e| e.window == window) {
                e.shared = e.shared.max(total);
            }
        }
        self.reachable.store(failed.is_none(), Ordering::Relaxed);
        failed.map_or(Ok(()), Err)
    }

    fn restore(&self, window: u64, unpushed: &[(u128, u64)]) {
        let mut map = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        for (h, n) in unpushed {
            if let Some(e) = map.get_mut(h).filter(|e| e.window == window) {
                e.shared = e.shared.saturating_sub(*n);
                e.pending += n;
            }
        }
    }

    async fn push(&self, window: u64, chunk: &[(u128, u64)]) -> Result<Vec<u64>, String> {
        let mut conn = self.store.connection()?;
        let mut call = self.script.prepare_invoke();
        for (h, _) in chunk {
            call.key(format!("{}{window}:{h:032x}", self.prefix));
        }
        for (_, n) in chunk {
            call.arg(*n);
        }
        call.arg(self.per_ms * 2);
        let fut = call.invoke_async::<Vec<i64>>(&mut conn);
        match tokio::time::timeout(self.store.config.timeout, fut).await {
            Ok(Ok(v)) if v.len() == chunk.len() => {
                Ok(v.into_iter().map(|c| c.max(0) as u64).collect())
            }
            Ok(Ok(_)) => Err("Redis answered a batch with the wrong number of counts".into()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("no answer within {:?}", self.store.config.timeout)),
        }
    }
}

/// Reconciles `counter` every `every` until it is dropped.
pub(crate) async fn run(counter: Weak<SyncedCounter>, every: Duration, errors: IntCounter) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(c) = counter.upgrade() else { return };
        if let Err(e) = c.sync().await {
            errors.inc();
            if c.store.should_log() {
                log::warn!("rate limit sync with Redis failed: {e}");
            }
        }
    }
}
