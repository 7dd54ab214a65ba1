//! The snapshot: everything compiled from one config (router, pools, auth
//! providers, per-route policies).
//!
//! Stateful parts are carried over when their config is unchanged: upstream
//! pools (health state and checks), JWKS-URL providers (fetched keys), rate
//! limits (their counts) and the Redis connection.

use super::BuildError;
use crate::config::{Config, CorsConfig, HashKey, HeaderTransform, RetryReason, RouteConfig};
use crate::observability::metrics::{Metrics, RouteLabels, RouteMetrics};
use crate::observability::tracing::Tracer;
use crate::policy::auth::{self, jwks::JwksSource, AuthFailure, Provider, RouteAuth};
use crate::policy::cache::CacheResult;
use crate::policy::ip_rules::IpRules;
use crate::policy::rate_limit::{Limit, RedisStore};
use crate::router::Router;
use crate::tasks::Spawner;
use crate::upstream::{discovery, Pool, PoolCtx};
use http::HeaderName;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// A route with its references resolved.
pub struct Route {
    pub name: Arc<str>,
    /// The upstream, or every side of the split with its weight.
    pub upstreams: Box<[(Arc<Pool>, u32)]>,
    /// Keeps a client on one side of the split.
    pub split_key: Option<HashKey>,
    /// Copies of `percent` of the requests go to this pool.
    pub mirror: Option<(Arc<Pool>, f64)>,
    pub strip_prefix: Option<String>,
    pub add_prefix: Option<String>,
    pub timeout: Option<Duration>,
    pub auth: Option<RouteAuth>,
    pub rate_limits: Vec<Arc<Limit>>,
    /// `Some(ttl)` when the route is cached: freshness for responses that
    /// give none (the route's `ttl`, else `cache.default_ttl`).
    pub cache: Option<Duration>,
    pub request_headers: HeaderTransform,
    pub response_headers: HeaderTransform,
    pub cors: Option<CorsConfig>,
    pub websocket: bool,
    /// Response compression; `None`: off.
    pub compress: Option<crate::config::CompressConfig>,
    /// `allow_ips` / `deny_ips`; `None` when the route has neither.
    pub ip_rules: Option<IpRules>,
    /// Resolved metric children; `None` without an admin listener.
    pub metrics: Option<RouteMetrics>,
}

impl Route {
    /// The pool of side `side` of the split (0 without one).
    pub fn pool(&self, side: usize) -> &Arc<Pool> {
        &self.upstreams[side.min(self.upstreams.len() - 1)].0
    }
}

pub struct Snapshot {
    pub generation: u64,
    pub config: Arc<Config>,
    pub router: Router,
    pub routes: Vec<Route>,
    pub upstreams: BTreeMap<String, Arc<Pool>>,
    pub providers: BTreeMap<String, Arc<Provider>>,
    pub limits: BTreeMap<String, Arc<Limit>>,
    /// Header names set from identity: removed from every client request.
    pub identity_headers: Vec<HeaderName>,
    /// Span export, with `tracing`.
    pub(crate) tracer: Option<Arc<Tracer>>,
}

/// The trace exporter; an unchanged one keeps its queue and task.
fn tracer(config: &Config, prev: Option<&Snapshot>, bcx: &BuildCtx<'_>) -> Option<Arc<Tracer>> {
    let tc = config.tracing.as_ref()?;
    let same = prev
        .and_then(|p| p.tracer.as_ref())
        .filter(|t| t.config == *tc);
    if let Some(t) = same {
        return Some(t.clone());
    }
    let t = Arc::new(Tracer::new(tc, bcx.metrics.trace_dropped.clone()));
    crate::observability::tracing::start(bcx.spawner, &t);
    Some(t)
}

/// What building a snapshot needs besides the config.
pub(crate) struct BuildCtx<'a> {
    /// Starts health checks and JWKS refreshes for new parts.
    pub spawner: &'a Spawner,
    /// Where per-route metric children are resolved (only with an admin
    /// listener: without one nothing would read them).
    pub metrics: &'a Metrics,
}

/// Upstream pools; an unchanged one keeps its state and tasks. Names are
/// resolved (again) before the snapshot serves; new pools then start their
/// health checks and DNS refreshes.
fn pools(
    config: &Config,
    prev: Option<&Snapshot>,
    bcx: &BuildCtx<'_>,
) -> BTreeMap<String, Arc<Pool>> {
    let resolvers = &config.server.resolver;
    let reasons: Vec<&str> = RetryReason::ALL.iter().map(|r| r.label()).collect();
    let mut upstreams = BTreeMap::new();
    let mut new = Vec::new();
    for (name, ucfg) in &config.upstreams {
        let old = prev.and_then(|p| p.upstreams.get(name));
        let reused = old
            .filter(|p| p.config == *ucfg && p.resolvers == *resolvers)
            .cloned();
        let pool = reused.unwrap_or_else(|| {
            let pcx = PoolCtx {
                resolvers,
                metrics: bcx.metrics.upstream(name, &reasons),
                seed: old.map(|p| &**p),
            };
            let pool = Arc::new(Pool::new(name, ucfg, pcx));
            new.push(pool.clone());
            pool
        });
        upstreams.insert(name.clone(), pool);
    }
    discovery::resolve_now(upstreams.values().cloned().collect(), resolvers);
    for pool in &new {
        crate::upstream::health::start(bcx.spawner, pool);
        discovery::start(bcx.spawner, pool, resolvers);
    }
    upstreams
}

/// Auth providers; an unchanged JWKS-URL provider keeps its fetched keys.
fn providers(
    config: &Config,
    prev: Option<&Snapshot>,
    bcx: &BuildCtx<'_>,
) -> Result<BTreeMap<String, Arc<Provider>>, BuildError> {
    let mut providers = BTreeMap::new();
    for (name, acfg) in &config.auth {
        let reused = prev
            .and_then(|p| p.providers.get(name))
            .filter(|p| p.reusable_for(acfg))
            .cloned();
        let provider = match reused {
            Some(p) => p,
            None => {
                let p =
                    Provider::new(name, acfg, bcx.metrics).map_err(|source| BuildError::Auth {
                        name: name.clone(),
                        source,
                    })?;
                if let auth::ProviderKind::Jwt(j) = &p.kind {
                    if let Some(src) = j.remote() {
                        bcx.spawner.spawn(JwksSource::run(Arc::downgrade(src)));
                    }
                }
                Arc::new(p)
            }
        };
        providers.insert(name.clone(), provider);
    }
    Ok(providers)
}

/// Rate limits; unchanged ones keep counting, and so does the Redis
/// connection.
fn limits(
    config: &Config,
    prev: Option<&Snapshot>,
    bcx: &BuildCtx<'_>,
) -> BTreeMap<String, Arc<Limit>> {
    let store = config.redis.as_ref().map(|rc| {
        prev.and_then(|p| {
            p.limits
                .values()
                .find_map(|l| l.redis_store().filter(|s| s.config == *rc).cloned())
        })
        .unwrap_or_else(|| Arc::new(RedisStore::new(rc)))
    });
    let mut limits = BTreeMap::new();
    for (name, lcfg) in &config.rate_limits {
        let reused = prev
            .and_then(|p| p.limits.get(name))
            .filter(|l| l.reusable_for(lcfg, store.as_ref()))
            .cloned();
        let limit = reused.unwrap_or_else(|| {
            let l = Arc::new(Limit::new(name, lcfg, store.as_ref()));
            l.spawn_sync(bcx.spawner, bcx.metrics.redis_errors.clone());
            l
        });
        limits.insert(name.clone(), limit);
    }
    limits
}

fn route_metrics(m: &Metrics, r: &RouteConfig, limits: &[Arc<Limit>]) -> RouteMetrics {
    let names: Vec<&str> = limits.iter().map(|l| &*l.name).collect();
    let (reasons, results) = (AuthFailure::labels(), CacheResult::labels());
    m.route(&RouteLabels {
        route: &r.name,
        auth_reasons: if r.auth.is_some() { &reasons } else { &[] },
        cache_results: if r.cache.is_some() { &results } else { &[] },
        limits: &names,
        ip_rules: !(r.allow_ips.is_empty() && r.deny_ips.is_empty()),
    })
}

/// The stateful parts routes refer to by name.
struct Parts<'a> {
    upstreams: &'a BTreeMap<String, Arc<Pool>>,
    providers: &'a BTreeMap<String, Arc<Provider>>,
    limits: &'a BTreeMap<String, Arc<Limit>>,
}

fn route(r: &RouteConfig, config: &Config, parts: &Parts<'_>, metrics: Option<&Metrics>) -> Route {
    let Parts {
        upstreams,
        providers,
        limits,
    } = parts;
    let rate_limits: Vec<Arc<Limit>> = r
        .rate_limits
        .iter()
        .filter_map(|n| limits.get(n).cloned())
        .collect();
    Route {
        name: Arc::from(r.name.as_str()),
        upstreams: r
            .upstream
            .entries()
            .into_iter()
            .map(|(n, w)| (upstreams[n].clone(), w))
            .collect(),
        split_key: r.split_key.clone(),
        mirror: r
            .mirror
            .as_ref()
            .map(|m| (upstreams[&m.upstream].clone(), m.percent)),
        strip_prefix: r.strip_prefix.clone(),
        add_prefix: r.add_prefix.clone(),
        timeout: r.timeout,
        auth: r.auth.as_ref().map(|a| RouteAuth::new(a, providers)),
        metrics: metrics.map(|m| route_metrics(m, r, &rate_limits)),
        rate_limits,
        cache: r.cache.map(|ttl| ttl.unwrap_or(config.cache.default_ttl)),
        request_headers: r.request_headers.clone(),
        response_headers: r.response_headers.clone(),
        cors: r.cors.clone(),
        websocket: r.websocket,
        compress: r.compress.clone(),
        ip_rules: IpRules::new(&r.allow_ips, &r.deny_ips),
    }
}

impl Snapshot {
    /// Compiles `config`, reusing unchanged stateful parts of `prev`.
    pub(super) fn build(
        config: Config,
        generation: u64,
        prev: Option<&Snapshot>,
        bcx: &BuildCtx<'_>,
    ) -> Result<Snapshot, BuildError> {
        let upstreams = pools(&config, prev, bcx);
        let providers = providers(&config, prev, bcx)?;
        let limits = limits(&config, prev, bcx);
        let parts = Parts {
            upstreams: &upstreams,
            providers: &providers,
            limits: &limits,
        };
        let metrics = config.admin.is_some().then_some(bcx.metrics);
        let routes = config
            .routes
            .iter()
            .map(|r| route(r, &config, &parts, metrics))
            .collect();
        Ok(Snapshot {
            generation,
            tracer: tracer(&config, prev, bcx),
            router: Router::new(&config.routes),
            identity_headers: auth::identity_headers(&providers),
            config: Arc::new(config),
            routes,
            upstreams,
            providers,
            limits,
        })
    }

    /// Why the first upstream that takes no traffic does not, if any.
    pub fn unready_reason(&self) -> Option<String> {
        if self.awaiting_config() {
            return Some("no configuration yet: the cluster has no config in etcd".into());
        }
        self.upstreams.values().find_map(|p| p.unready_reason())
    }

    /// A cluster node started before anything was pushed: it has only its
    /// local file (a pushed config always has routes).
    pub fn awaiting_config(&self) -> bool {
        self.config.cluster.is_some() && self.config.routes.is_empty()
    }
}
