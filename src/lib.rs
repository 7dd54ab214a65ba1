//! gatehouse: a config-driven API gateway on Cloudflare's Pingora.
//!
//! `ARCHITECTURE.md` is the map: the layers, the request path through
//! `proxy/pipeline.rs`, where a new policy goes and how reload works. The
//! public surface is what the binary needs (`app`, `cli`, `config`) plus
//! [`bench`], the internals that benches, fuzz targets and integration
//! tests reach.

pub mod app;
pub mod cli;
pub mod config;

// L0 vocabulary
pub(crate) mod http;
pub(crate) mod keys;
pub(crate) mod netfmt;
pub(crate) mod problem;
pub(crate) mod tasks;
pub(crate) mod tls;
// L2 policies and parts
pub(crate) mod cache;
pub(crate) mod logging;
pub(crate) mod observability;
pub(crate) mod policy;
pub(crate) mod router;
pub(crate) mod upstream;
// L3 runtime
pub(crate) mod runtime;
// L4 services
pub(crate) mod admin;
pub(crate) mod cluster;
pub(crate) mod proxy;
pub(crate) mod signals;
// L5 entry points
pub(crate) mod demo;

/// Internals for benches, fuzz targets and integration tests. Not an API:
/// anything here may change with any commit.
#[doc(hidden)]
pub mod bench {
    pub use crate::cache::{key as cache_key, store::PurgeTag};
    pub use crate::http::normalize::normalize_path;
    pub use crate::http::{new_request_id, normalize_host};
    pub use crate::keys::KeyKind;
    pub use crate::logging::init as init_logging;
    pub use crate::observability::access_log::{AccessLog, AccessRecord};
    pub use crate::observability::metrics::{Metrics, RouteLabels, RouteMetrics, FAMILIES};
    pub use crate::observability::tracing::{Attr, SpanId, TraceCtx, TraceId, Tracer};
    pub use crate::policy::auth::jwks::{JwksSource, MIN_REFETCH};
    pub use crate::policy::auth::jwt::{parse_header, JwtProvider};
    pub use crate::policy::auth::{Provider, ProviderKind};
    pub use crate::policy::cache::{storable, variance, Storable};
    pub use crate::policy::ip_rules::{IpRules, PrefixSet};
    pub use crate::policy::rate_limit::{check, Limit, RedisStore};
    pub use crate::policy::{cors, headers};
    pub use crate::router::{RouteOutcome, RouteRequest, Router};
    pub use crate::runtime::reload::{apply, ReloadReport};
    pub use crate::runtime::snapshot::Snapshot;
    pub use crate::runtime::state::GatewayState;
    pub use crate::runtime::SnapshotHandle;
}
