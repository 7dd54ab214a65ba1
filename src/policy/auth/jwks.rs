//! JSON Web Key Sets from `jwks.url`: fetched at start, every `refresh`,
//! and on an unknown `kid` (parsing is `crate::keys`).
//!
//! The unknown-`kid` refetch is what lets a rotated IdP key work at once,
//! and also what an attacker could abuse by sending tokens with random
//! `kid`s; so refetches are at least [`MIN_REFETCH`] apart and concurrent
//! requests share one. A failed fetch keeps the last good set. URLs named
//! inside tokens (`jku`, `x5u`) are never fetched: only the configured URL.

use crate::keys::{KeyError, KeySet};
use arc_swap::ArcSwapOption;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

/// Minimum time between fetches triggered by unknown `kid`s.
pub const MIN_REFETCH: Duration = Duration::from_secs(5);
/// Retry interval while no key set was ever loaded.
const RETRY_EMPTY: Duration = Duration::from_secs(5);
const MAX_JWKS_BYTES: usize = 1 << 20;
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a fetch of `jwks.url` failed (logged; the last good set stays).
#[derive(Debug, thiserror::Error)]
enum FetchError {
    #[error("{0}")]
    Http(reqwest::Error),
    #[error("status {0}")]
    Status(u16),
    #[error("document larger than 1 MiB")]
    TooLarge,
    #[error(transparent)]
    Keys(#[from] KeyError),
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

    /// Fetch attempts so far, failed ones included (the refetch limit is
    /// tested by it).
    pub fn fetch_count(&self) -> usize {
        self.fetches.load(Ordering::Relaxed)
    }

    async fn download(&self) -> Result<KeySet, FetchError> {
        let mut resp = self
            .client
            .get(&self.url)
            .send()
            .await
            .map_err(|e| FetchError::Http(e.without_url()))?;
        if !resp.status().is_success() {
            return Err(FetchError::Status(resp.status().as_u16()));
        }
        let mut body = Vec::new();
        while let Some(chunk) = resp
            .chunk()
            .await
            .map_err(|e| FetchError::Http(e.without_url()))?
        {
            body.extend_from_slice(&chunk);
            if body.len() > MAX_JWKS_BYTES {
                return Err(FetchError::TooLarge);
            }
        }
        Ok(KeySet::from_json(&body)?)
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
