//! The runtime (L3): the snapshot compiled from one config, the handle that
//! swaps it, the state every service of a gateway shares, and reload.
//!
//! The snapshot lives behind an `ArcSwap`; each request loads it once and
//! keeps that `Arc` to the end, so a reload never changes the rules under
//! a request in flight. Reload builds a new snapshot or keeps the old one.

pub(crate) mod diff;
pub(crate) mod fleet;
pub(crate) mod handoff;
pub(crate) mod reload;
pub(crate) mod snapshot;
pub(crate) mod state;

pub(crate) use snapshot::{BuildCtx, Route, Snapshot};
pub(crate) use state::GatewayState;

use crate::config::Config;
use crate::observability::metrics::Metrics;
use crate::tasks::Spawner;
use arc_swap::ArcSwap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Why a config could not be turned into a running gateway.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("auth.{name}: {source}")]
    Auth {
        name: String,
        source: crate::keys::KeyError,
    },
    #[error("server.tls: {0}")]
    Tls(#[from] crate::tls::TlsError),
    #[error("server.tls: {0}")]
    Listener(String),
}

/// The swappable current snapshot.
pub struct SnapshotHandle {
    current: ArcSwap<Snapshot>,
    spawner: Spawner,
    generation: AtomicU64,
}

impl SnapshotHandle {
    pub fn new(
        config: Config,
        spawner: Spawner,
        metrics: &Metrics,
    ) -> Result<SnapshotHandle, BuildError> {
        let bcx = BuildCtx {
            spawner: &spawner,
            metrics,
        };
        let snap = Snapshot::build(config, 1, None, &bcx)?;
        Ok(SnapshotHandle {
            current: ArcSwap::from_pointee(snap),
            spawner,
            generation: AtomicU64::new(1),
        })
    }

    /// Where background tasks of this gateway are started.
    pub fn spawner(&self) -> &Spawner {
        &self.spawner
    }

    /// The snapshot for one request (one atomic reference-count increment).
    pub fn load(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    /// Builds a snapshot from `config` and makes it current; on error the
    /// current one stays.
    pub fn replace(&self, config: Config, metrics: &Metrics) -> Result<Arc<Snapshot>, BuildError> {
        let old = self.current.load_full();
        let generation = self.generation.load(Ordering::Relaxed) + 1;
        let bcx = BuildCtx {
            spawner: &self.spawner,
            metrics,
        };
        let snap = Arc::new(Snapshot::build(config, generation, Some(&old), &bcx)?);
        self.generation.store(generation, Ordering::Relaxed);
        self.current.store(snap.clone());
        Ok(snap)
    }
}
