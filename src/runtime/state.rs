//! What every service of one gateway shares (proxy, edge, admin, signals).
//! Plain data: behaviour lives with the services and in `reload`.

use super::reload::Reloader;
use super::{BuildError, SnapshotHandle};
use crate::config::Config;
use crate::observability::access_log::AccessLog;
use crate::observability::metrics::Metrics;
use crate::tasks::Spawner;
use std::path::PathBuf;
use std::sync::atomic::AtomicUsize;

/// Client connections of the proxy listeners, for `max_connections`, the
/// whole-connection head deadline and the drain (`proxy/accept.rs`).
#[derive(Default)]
pub struct Connections {
    pub open: AtomicUsize,
    /// Connections accepted whose first request head has not arrived, and
    /// requests whose head is being read: the drain waits for them too.
    pub awaiting_head: AtomicUsize,
}

pub struct GatewayState {
    pub snapshots: SnapshotHandle,
    pub cache: crate::cache::Cache,
    pub metrics: Metrics,
    pub access_log: AccessLog,
    /// The TLS listener's acceptor, present when `server.tls` is set.
    pub tls: Option<crate::tls::Listener>,
    pub reloader: Reloader,
    pub connections: Connections,
    /// Cluster mode (`cluster` in the local file).
    pub fleet: Option<std::sync::Arc<super::fleet::Fleet>>,
}

impl GatewayState {
    /// Compiles `config`; `config_path` is the file a reload re-reads
    /// (`None` when started from text, as the demo is).
    pub fn new(
        config: Config,
        spawner: Spawner,
        config_path: Option<PathBuf>,
        fleet: Option<(super::fleet::Fleet, Option<super::reload::ClusterDoc>)>,
    ) -> Result<GatewayState, BuildError> {
        let metrics = Metrics::new();
        let access_log = AccessLog::new(&config.logging, metrics.access_log_dropped.clone());
        let cache = crate::cache::Cache::new(config.cache.max_size);
        let tls = match &config.server.tls {
            Some(t) => Some(crate::tls::Listener::load(
                t.listen,
                &t.cert,
                &t.key,
                t.client_ca(),
            )?),
            None => None,
        };
        Ok(GatewayState {
            cache,
            snapshots: SnapshotHandle::new(config, spawner, &metrics)?,
            metrics,
            access_log,
            tls,
            reloader: Reloader::new(config_path, fleet.as_ref().and_then(|f| f.1.clone())),
            connections: Connections::default(),
            fleet: fleet.map(|f| std::sync::Arc::new(f.0)),
        })
    }
}
