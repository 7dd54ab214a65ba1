//! The Redis backend: one atomic server-side script per check, so counting
//! is exact across every gatehouse instance sharing the Redis (no
//! read-then-write race). A key lives for one window: the first request
//! creates it with `PEXPIRE per`, later ones increment it, and its TTL is the
//! time to reset. Keys are `gatehouse:rl:<limit>:<window ms>:<sha256 of the
//! key value, 128 bits>`, so client-chosen values cannot grow Redis keys.
//!
//! Every call is bounded by `redis.timeout`. The connection is made lazily
//! (inside the proxy runtime) and re-made by the connection manager after a
//! failure, so the limiter recovers by itself when Redis comes back.

use crate::config::{RedisConfig, RedisOnError};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use sha2::{Digest, Sha256};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const SCRIPT: &str = r#"
local c = redis.call('INCR', KEYS[1])
local ttl = redis.call('PTTL', KEYS[1])
if ttl < 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
  ttl = tonumber(ARGV[1])
end
return {c, ttl}
"#;

/// Errors are logged at most this often per Redis.
const LOG_EVERY_SECS: u64 = 10;

pub struct RedisStore {
    pub config: RedisConfig,
    client: Option<redis::Client>,
    conn: OnceLock<ConnectionManager>,
    script: redis::Script,
    last_log: AtomicU64,
}

impl RedisStore {
    pub fn new(config: &RedisConfig) -> RedisStore {
        RedisStore {
            client: redis::Client::open(config.url.as_str()).ok(),
            config: config.clone(),
            conn: OnceLock::new(),
            script: redis::Script::new(SCRIPT),
            last_log: AtomicU64::new(0),
        }
    }

    pub fn deny_on_error(&self) -> bool {
        self.config.on_error == RedisOnError::Deny
    }

    pub(crate) fn connection(&self) -> Result<ConnectionManager, String> {
        if let Some(c) = self.conn.get() {
            return Ok(c.clone());
        }
        let client = self.client.clone().ok_or("invalid Redis URL")?;
        let cfg = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(self.config.timeout))
            .set_response_timeout(Some(self.config.timeout))
            .set_number_of_retries(1);
        let manager =
            ConnectionManager::new_lazy_with_config(client, cfg).map_err(|e| e.to_string())?;
        Ok(self.conn.get_or_init(|| manager).clone())
    }

    /// True when this error should be logged (rate-limited).
    pub fn should_log(&self) -> bool {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        let last = self.last_log.load(Ordering::Relaxed);
        now >= last + LOG_EVERY_SECS
            && self
                .last_log
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
    }
}

pub(crate) struct RedisCounter {
    pub store: Arc<RedisStore>,
    prefix: String,
    per_ms: u64,
}

impl RedisCounter {
    pub(crate) fn new(store: Arc<RedisStore>, limit: &str, per: Duration) -> RedisCounter {
        let per_ms = per.as_millis() as u64;
        RedisCounter {
            store,
            prefix: format!("gatehouse:rl:{limit}:{per_ms}:"),
            per_ms,
        }
    }

    /// Counts one request: (requests in this window, time left), or why not.
    pub(crate) async fn observe(&self, key: &str) -> Result<(u64, Duration), String> {
        let digest = Sha256::digest(key.as_bytes());
        let rkey = format!("{}{}", self.prefix, hex::encode(&digest[..16]));
        let mut conn = self.store.connection()?;
        let mut call = self.store.script.key(rkey);
        call.arg(self.per_ms);
        let fut = call.invoke_async::<(i64, i64)>(&mut conn);
        match tokio::time::timeout(self.store.config.timeout, fut).await {
            Ok(Ok((count, ttl))) => Ok((
                count.max(0) as u64,
                Duration::from_millis(ttl.max(0) as u64),
            )),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("no answer within {:?}", self.store.config.timeout)),
        }
    }
}
