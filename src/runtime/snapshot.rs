//! The snapshot: everything compiled from one config (router, pools, auth
//! providers, per-route policies).
//!
//! Stateful parts are carried over when their config is unchanged: upstream
//! pools (health state and checks), JWKS-URL providers (fetched keys), rate
//! limits (their counts) and the Redis connection.

use super::BuildError;
use crate::config::{Config, CorsConfig, HeaderTransform};
use crate::observability::metrics::RouteMetrics;
use crate::policy::auth::{self, jwks::JwksSource, Provider, RouteAuth};
use crate::policy::rate_limit::{Limit, RedisStore};
use crate::router::Router;
use crate::tasks::Spawner;
use crate::upstream::Pool;
use http::HeaderName;
use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// A route with its references resolved.
pub struct Route {
    pub name: Arc<str>,
    pub upstream: Arc<Pool>,
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
    /// Filled on the route's first logged request.
    pub metrics: OnceLock<RouteMetrics>,
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
}

impl Snapshot {
    /// Compiles `config`, reusing unchanged stateful parts of `previous`.
    pub(super) fn build(
        config: Config,
        generation: u64,
        previous: Option<&Snapshot>,
        spawner: &Spawner,
    ) -> Result<Snapshot, BuildError> {
        let mut upstreams = BTreeMap::new();
        for (name, ucfg) in &config.upstreams {
            let reused = previous
                .and_then(|p| p.upstreams.get(name))
                .filter(|p| p.config == *ucfg)
                .cloned();
            let pool = reused.unwrap_or_else(|| {
                let pool = Arc::new(Pool::new(name, ucfg));
                crate::upstream::health::start(spawner, &pool);
                pool
            });
            upstreams.insert(name.clone(), pool);
        }
        let mut providers = BTreeMap::new();
        for (name, acfg) in &config.auth {
            let reused = previous
                .and_then(|p| p.providers.get(name))
                .filter(|p| p.reusable_for(acfg))
                .cloned();
            let provider = match reused {
                Some(p) => p,
                None => {
                    let p =
                        Arc::new(
                            Provider::new(name, acfg).map_err(|source| BuildError::Auth {
                                name: name.clone(),
                                source,
                            })?,
                        );
                    if let auth::ProviderKind::Jwt(j) = &p.kind {
                        if let Some(src) = j.remote() {
                            spawner.spawn(JwksSource::run(Arc::downgrade(src)));
                        }
                    }
                    p
                }
            };
            providers.insert(name.clone(), provider);
        }
        // Limits keep counting across reloads when unchanged; so does the
        // Redis connection.
        let store = config.redis.as_ref().map(|rc| {
            previous
                .and_then(|p| {
                    p.limits
                        .values()
                        .find_map(|l| l.redis_store().filter(|s| s.config == *rc).cloned())
                })
                .unwrap_or_else(|| Arc::new(RedisStore::new(rc)))
        });
        let mut limits = BTreeMap::new();
        for (name, lcfg) in &config.rate_limits {
            let reused = previous
                .and_then(|p| p.limits.get(name))
                .filter(|l| l.reusable_for(lcfg, store.as_ref()))
                .cloned();
            limits.insert(
                name.clone(),
                reused.unwrap_or_else(|| Arc::new(Limit::new(name, lcfg, store.as_ref()))),
            );
        }
        let routes = config
            .routes
            .iter()
            .map(|r| Route {
                name: Arc::from(r.name.as_str()),
                upstream: upstreams[&r.upstream].clone(),
                strip_prefix: r.strip_prefix.clone(),
                add_prefix: r.add_prefix.clone(),
                timeout: r.timeout,
                auth: r.auth.as_ref().map(|a| RouteAuth::new(a, &providers)),
                rate_limits: r
                    .rate_limits
                    .iter()
                    .filter_map(|n| limits.get(n).cloned())
                    .collect(),
                cache: r.cache.map(|ttl| ttl.unwrap_or(config.cache.default_ttl)),
                request_headers: r.request_headers.clone(),
                response_headers: r.response_headers.clone(),
                cors: r.cors.clone(),
                websocket: r.websocket,
                metrics: OnceLock::new(),
            })
            .collect();
        Ok(Snapshot {
            generation,
            router: Router::new(&config.routes),
            identity_headers: auth::identity_headers(&providers),
            config: Arc::new(config),
            routes,
            upstreams,
            providers,
            limits,
        })
    }

    /// The first upstream without a healthy target, if any.
    pub fn unready_upstream(&self) -> Option<&str> {
        self.upstreams
            .values()
            .find(|p| !p.is_ready())
            .map(|p| &*p.name)
    }
}
