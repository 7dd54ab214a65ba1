//! The runtime snapshot: everything compiled from one config (router, pools,
//! per-route settings). It lives behind an `ArcSwap`; each request loads it
//! once and keeps that `Arc` to the end, so a reload never changes the rules
//! under a request in flight.

use crate::config::{Config, RouteConfig};
use crate::router::Router;
use crate::upstream::health::HealthRegistrar;
use crate::upstream::Pool;
use arc_swap::ArcSwap;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// A route with its references resolved.
pub struct Route {
    pub name: Arc<str>,
    pub upstream: Arc<Pool>,
    pub strip_prefix: Option<String>,
    pub add_prefix: Option<String>,
    pub timeout: Option<Duration>,
}

pub struct Snapshot {
    pub generation: u64,
    pub config: Arc<Config>,
    pub router: Router,
    pub routes: Vec<Route>,
    pub upstreams: BTreeMap<String, Arc<Pool>>,
}

impl Snapshot {
    /// Compiles `config`. Pools whose config is unchanged from `previous`
    /// are shared, keeping their health state.
    fn build(
        config: Config,
        generation: u64,
        previous: Option<&Snapshot>,
        registrar: &HealthRegistrar,
    ) -> Snapshot {
        let mut upstreams = BTreeMap::new();
        for (name, ucfg) in &config.upstreams {
            let reused = previous
                .and_then(|p| p.upstreams.get(name))
                .filter(|p| p.config == *ucfg)
                .cloned();
            let pool = reused.unwrap_or_else(|| {
                let pool = Arc::new(Pool::new(name, ucfg));
                registrar.register(&pool);
                pool
            });
            upstreams.insert(name.clone(), pool);
        }
        let routes = config
            .routes
            .iter()
            .map(|r: &RouteConfig| Route {
                name: Arc::from(r.name.as_str()),
                upstream: upstreams[&r.upstream].clone(),
                strip_prefix: r.strip_prefix.clone(),
                add_prefix: r.add_prefix.clone(),
                timeout: r.timeout,
            })
            .collect();
        Snapshot {
            generation,
            router: Router::new(&config.routes),
            config: Arc::new(config),
            routes,
            upstreams,
        }
    }

    /// True when every upstream has a healthy target; else the first that has none.
    pub fn unready_upstream(&self) -> Option<&str> {
        self.upstreams
            .values()
            .find(|p| !p.is_ready())
            .map(|p| &*p.name)
    }
}

/// The swappable current snapshot.
pub struct SnapshotHandle {
    current: ArcSwap<Snapshot>,
    registrar: HealthRegistrar,
    generation: AtomicU64,
}

impl SnapshotHandle {
    pub fn new(config: Config, registrar: HealthRegistrar) -> SnapshotHandle {
        let snap = Snapshot::build(config, 1, None, &registrar);
        SnapshotHandle {
            current: ArcSwap::from_pointee(snap),
            registrar,
            generation: AtomicU64::new(1),
        }
    }

    /// The snapshot for one request (one atomic reference-count increment).
    pub fn load(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    /// Builds a snapshot from `config` and makes it current.
    pub fn replace(&self, config: Config) -> Arc<Snapshot> {
        let generation = self.generation.fetch_add(1, Ordering::Relaxed) + 1;
        let old = self.current.load_full();
        let snap = Arc::new(Snapshot::build(
            config,
            generation,
            Some(&old),
            &self.registrar,
        ));
        self.current.store(snap.clone());
        snap
    }
}
