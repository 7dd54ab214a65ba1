//! The serde surface of the config file: exactly the keys an operator writes,
//! with unknown keys rejected. Values that need parsing with a good error
//! message (durations, sizes, addresses) are kept as [`Text`] here and checked
//! in `validate`, so that every such error is reported at once with its path.

use serde::de::{self, value::MapAccessDeserializer, value::SeqAccessDeserializer, Visitor};
use serde::{Deserialize, Deserializer};
use std::collections::BTreeMap;
use std::fmt;
use std::marker::PhantomData;

/// A scalar kept as text (strings, numbers and booleans are all accepted).
#[derive(Debug, Clone, Default, PartialEq)]
pub(super) struct Text(pub String);

impl<'de> Deserialize<'de> for Text {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Text;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string or number")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Text, E> {
                Ok(Text(v.to_string()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Text, E> {
                Ok(Text(v.to_string()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Text, E> {
                Ok(Text(v.to_string()))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Text, E> {
                Ok(Text(v.to_string()))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Text, E> {
                Ok(Text(v.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

/// A value written either as a plain string or as a mapping (`T`).
#[derive(Debug, Clone)]
pub(super) enum StrOr<T> {
    Str(String),
    Full(T),
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for StrOr<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for V<T> {
            type Value = StrOr<T>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string or a mapping")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(StrOr::Str(v.to_string()))
            }
            fn visit_map<A: de::MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                T::deserialize(MapAccessDeserializer::new(map)).map(StrOr::Full)
            }
        }
        d.deserialize_any(V(PhantomData))
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct FileConfig {
    pub server: ServerFile,
    pub admin: Option<AdminFile>,
    pub logging: LoggingFile,
    pub upstreams: BTreeMap<String, UpstreamFile>,
    pub auth: BTreeMap<String, AuthFile>,
    pub rate_limits: BTreeMap<String, RateLimitFile>,
    pub redis: Option<RedisFile>,
    pub cache: Option<CacheFile>,
    pub tracing: Option<TracingFile>,
    pub routes: Vec<RouteFile>,
    pub cluster: Option<ClusterFile>,
}

impl FileConfig {
    /// The keys that live in etcd in cluster mode, present in this file.
    pub(super) fn shared_keys(&self) -> Vec<&'static str> {
        let present = [
            ("upstreams", !self.upstreams.is_empty()),
            ("routes", !self.routes.is_empty()),
            ("auth", !self.auth.is_empty()),
            ("rate_limits", !self.rate_limits.is_empty()),
            ("redis", self.redis.is_some()),
            ("cache", self.cache.is_some()),
            ("tracing", self.tracing.is_some()),
        ];
        present
            .iter()
            .filter(|(_, p)| *p)
            .map(|(k, _)| *k)
            .collect()
    }
}

/// `cluster`: the config lives in etcd (SPEC Part 2, Cluster mode).
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ClusterFile {
    pub etcd: Vec<String>,
    pub prefix: String,
    pub node_id: Text,
    #[serde(default)]
    pub snapshot_file: Option<String>,
    #[serde(default)]
    pub timeout: Option<Text>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct TracingFile {
    pub otlp: String,
    #[serde(default)]
    pub service_name: Option<String>,
    #[serde(default)]
    pub sample: Option<Text>,
    #[serde(default)]
    pub timeout: Option<Text>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct CacheFile {
    pub max_size: Option<Text>,
    pub default_ttl: Option<Text>,
}

/// A key that is `true`/`false` or a map of options: a route's `cache`
/// (`{ ttl }`) and `compress` (`{ algorithms, min_size }`).
#[derive(Debug, Clone)]
pub(super) enum BoolOr<T> {
    On(bool),
    With(T),
}

pub(super) type RouteCacheFile = BoolOr<RouteCacheTtl>;
pub(super) type CompressFile = BoolOr<CompressOptions>;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RouteCacheTtl {
    #[serde(default)]
    pub ttl: Option<Text>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct CompressOptions {
    #[serde(default)]
    pub algorithms: Option<Vec<String>>,
    #[serde(default)]
    pub min_size: Option<Text>,
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for BoolOr<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for V<T> {
            type Value = BoolOr<T>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("true, false or a map of options")
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<BoolOr<T>, E> {
                Ok(BoolOr::On(v))
            }
            fn visit_map<A: de::MapAccess<'de>>(self, map: A) -> Result<BoolOr<T>, A::Error> {
                T::deserialize(MapAccessDeserializer::new(map)).map(BoolOr::With)
            }
        }
        d.deserialize_any(V(std::marker::PhantomData))
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RateLimitFile {
    pub requests: u64,
    pub per: Text,
    #[serde(default)]
    pub key: Option<String>,
    #[serde(default)]
    pub backend: Option<String>,
    #[serde(default)]
    pub sync: Option<Text>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RedisFile {
    pub url: String,
    #[serde(default)]
    pub on_error: Option<String>,
    #[serde(default)]
    pub timeout: Option<Text>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct ServerFile {
    pub listen: Option<Vec<Text>>,
    pub threads: Option<usize>,
    pub work_stealing: Option<bool>,
    pub pid_file: Option<String>,
    pub upgrade_sock: Option<String>,
    pub grace_period: Option<Text>,
    pub tunnel_grace_period: Option<Text>,
    pub trusted_proxies: Vec<Text>,
    pub idle_timeout: Option<Text>,
    pub tls: Option<TlsFile>,
    pub h2c: Option<bool>,
    pub max_body: Option<Text>,
    pub max_header_bytes: Option<Text>,
    pub header_timeout: Option<Text>,
    pub body_timeout: Option<Text>,
    pub max_uri_bytes: Option<Text>,
    pub max_connections: Option<usize>,
    pub upstream_ca: Option<String>,
    pub resolver: Option<Vec<Text>>,
    pub underscores_in_headers: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct TlsFile {
    pub listen: Text,
    pub cert: String,
    pub key: String,
    pub client_ca: Option<String>,
    pub client_auth: Option<String>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct HeaderTransformFile {
    pub set: BTreeMap<String, String>,
    pub add: BTreeMap<String, String>,
    pub remove: Vec<String>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct CorsFile {
    pub allow_origins: Vec<String>,
    pub allow_methods: Option<Vec<String>>,
    pub allow_headers: Vec<String>,
    pub expose_headers: Vec<String>,
    pub allow_credentials: bool,
    pub max_age: Option<Text>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AdminFile {
    pub listen: Text,
    #[serde(default)]
    pub token: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct LoggingFile {
    pub level: Option<String>,
    pub access_log: Option<String>,
    pub format: Option<String>,
    pub buffer_lines: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct UpstreamFile {
    pub targets: Vec<StrOr<TargetFile>>,
    pub balance: Option<String>,
    pub hash_key: Option<String>,
    pub health_check: Option<HealthCheckFile>,
    pub connect_timeout: Option<Text>,
    pub read_timeout: Option<Text>,
    pub retries: Option<usize>,
    pub tls: Option<bool>,
    pub tls_verify: Option<bool>,
    pub sni: Option<String>,
    pub host: Option<String>,
    pub srv: Option<String>,
    pub resolve: Option<Text>,
    pub retry_on: Option<Vec<Text>>,
    pub retry_methods: Option<String>,
    pub retry_budget: Option<Text>,
    pub max_inflight: Option<usize>,
    pub passive_health: Option<PassiveHealthFile>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct PassiveHealthFile {
    pub consecutive_failures: Option<u32>,
    pub eject_for: Option<Text>,
    pub max_ejected: Option<Text>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct TargetFile {
    pub addr: Text,
    #[serde(default)]
    pub weight: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct HealthCheckFile {
    pub kind: Option<String>,
    pub path: Option<String>,
    pub expect_status: Option<u16>,
    pub interval: Option<Text>,
    pub timeout: Option<Text>,
    pub unhealthy_after: Option<usize>,
    pub healthy_after: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RouteFile {
    pub name: String,
    #[serde(rename = "match", default)]
    pub matcher: MatchFile,
    #[serde(default)]
    pub upstream: Option<String>,
    #[serde(default)]
    pub split: Option<Vec<SplitFile>>,
    #[serde(default)]
    pub split_key: Option<String>,
    #[serde(default)]
    pub mirror: Option<MirrorFile>,
    #[serde(default)]
    pub strip_prefix: Option<String>,
    #[serde(default)]
    pub add_prefix: Option<String>,
    #[serde(default)]
    pub timeout: Option<Text>,
    #[serde(default)]
    pub auth: Option<RouteAuthFile>,
    #[serde(default)]
    pub rate_limit: Option<StrOrList>,
    #[serde(default)]
    pub cache: Option<RouteCacheFile>,
    #[serde(default)]
    pub request_headers: Option<HeaderTransformFile>,
    #[serde(default)]
    pub response_headers: Option<HeaderTransformFile>,
    #[serde(default)]
    pub cors: Option<CorsFile>,
    #[serde(default)]
    pub websocket: bool,
    #[serde(default)]
    pub compress: Option<CompressFile>,
    #[serde(default)]
    pub allow_ips: Vec<Text>,
    #[serde(default)]
    pub deny_ips: Vec<Text>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SplitFile {
    pub upstream: String,
    pub weight: u32,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct MirrorFile {
    pub upstream: String,
    #[serde(default)]
    pub percent: Option<Text>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct MatchFile {
    pub path: Option<String>,
    pub path_prefix: Option<String>,
    pub path_regex: Option<String>,
    pub methods: Option<Vec<String>>,
    pub host: Option<String>,
    pub headers: BTreeMap<String, Text>,
}

/// One `auth:` provider. A flat struct (rather than a tagged enum) so that
/// keys that do not belong to the provider's `type` get a precise error.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct AuthFile {
    #[serde(rename = "type")]
    pub kind: Option<String>,
    // jwt
    pub algorithms: Option<Vec<String>>,
    pub secret: Option<String>,
    pub public_key: Option<String>,
    pub jwks: Option<JwksFile>,
    pub issuer: Option<String>,
    pub audience: Option<StrOrList>,
    pub leeway: Option<Text>,
    pub forward_claims: Option<BTreeMap<String, String>>,
    pub token_cache: Option<TokenCacheFile>,
    // api_key
    pub header: Option<String>,
    pub keys: Option<Vec<ApiKeyFile>>,
    pub forward_id: Option<String>,
    // basic
    pub users: Option<Vec<BasicUserFile>>,
    // forward
    pub url: Option<String>,
    pub timeout: Option<Text>,
    pub send_headers: Option<Vec<String>>,
    pub copy_headers: Option<Vec<String>>,
    pub cache: Option<Text>,
    // mtls
    pub allow_subjects: Option<Vec<String>>,
    pub allow_sans: Option<Vec<String>>,
    pub forward: Option<MtlsForwardFile>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct MtlsForwardFile {
    pub subject: Option<String>,
    pub fingerprint: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct BasicUserFile {
    pub name: String,
    pub hash: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct JwksFile {
    pub file: Option<String>,
    pub url: Option<String>,
    pub refresh: Option<Text>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct TokenCacheFile {
    pub entries: Option<usize>,
    pub ttl: Option<Text>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ApiKeyFile {
    pub id: String,
    #[serde(default)]
    pub key: Option<String>,
    #[serde(default)]
    pub sha256: Option<String>,
}

/// One string or a list of strings.
#[derive(Debug, Clone, Default)]
pub(super) struct StrOrList(pub Vec<String>);

impl<'de> Deserialize<'de> for StrOrList {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = StrOrList;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string or a list of strings")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<StrOrList, E> {
                Ok(StrOrList(vec![v.to_string()]))
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, seq: A) -> Result<StrOrList, A::Error> {
                Vec::<String>::deserialize(SeqAccessDeserializer::new(seq)).map(StrOrList)
            }
        }
        d.deserialize_any(V)
    }
}

/// A route's `auth`: a provider name, `{provider, scopes}`, or a list of
/// names (any of them may authenticate the request).
#[derive(Debug, Clone)]
pub(super) enum RouteAuthFile {
    One(String),
    Scoped(ScopedAuthFile),
    AnyOf(Vec<String>),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ScopedAuthFile {
    pub provider: StrOrList,
    #[serde(default)]
    pub scopes: Vec<String>,
}

impl<'de> Deserialize<'de> for RouteAuthFile {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RouteAuthFile;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a provider name, a list of names, or {provider, scopes}")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RouteAuthFile, E> {
                Ok(RouteAuthFile::One(v.to_string()))
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, seq: A) -> Result<RouteAuthFile, A::Error> {
                Vec::<String>::deserialize(SeqAccessDeserializer::new(seq))
                    .map(RouteAuthFile::AnyOf)
            }
            fn visit_map<A: de::MapAccess<'de>>(self, map: A) -> Result<RouteAuthFile, A::Error> {
                ScopedAuthFile::deserialize(MapAccessDeserializer::new(map))
                    .map(RouteAuthFile::Scoped)
            }
        }
        d.deserialize_any(V)
    }
}
