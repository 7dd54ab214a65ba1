//! The validated configuration: every value parsed, every reference checked.
//! Nothing outside `config` sees the serde surface.

use http::{HeaderName, HeaderValue, Method};
use ipnet::IpNet;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Config {
    pub server: ServerConfig,
    pub admin: Option<AdminConfig>,
    pub logging: LoggingConfig,
    pub upstreams: BTreeMap<String, UpstreamConfig>,
    pub auth: BTreeMap<String, AuthConfig>,
    pub rate_limits: BTreeMap<String, RateLimitConfig>,
    pub redis: Option<RedisConfig>,
    pub cache: CacheConfig,
    /// OTLP trace export; `None`: off (`traceparent` passes through).
    pub tracing: Option<TracingConfig>,
    pub routes: Vec<RouteConfig>,
    /// Cluster mode: the shared part of the config comes from etcd.
    pub cluster: Option<ClusterConfig>,
    /// Keys that have no effect where they are (printed by `-t` and at
    /// start, never an error).
    pub warnings: Vec<super::ConfigError>,
}

/// `cluster`: where the shared config lives and who this node is.
#[derive(Debug, Clone, PartialEq)]
pub struct ClusterConfig {
    /// etcd endpoints, `http://host:port`.
    pub etcd: Vec<String>,
    /// The cluster's key space, `/gatehouse/prod` (no trailing `/`).
    pub prefix: String,
    pub node_id: String,
    /// The last applied document, written after each apply; read at start
    /// when etcd cannot be reached.
    pub snapshot_file: Option<std::path::PathBuf>,
    /// Per etcd request (connect, read, write).
    pub timeout: Duration,
}

/// `tracing`: spans exported over OTLP/HTTP (protobuf).
#[derive(Debug, Clone, PartialEq)]
pub struct TracingConfig {
    /// The collector's traces URL (`http://127.0.0.1:4318/v1/traces`).
    pub otlp: String,
    pub service_name: String,
    /// Share (0..=1) of requests traced when the client sent no
    /// `traceparent`.
    pub sample: f64,
    /// Per export request.
    pub timeout: Duration,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CacheConfig {
    /// Bytes the cache may hold (bodies, headers, bookkeeping), in-flight
    /// fills included.
    pub max_size: u64,
    /// Freshness when neither the upstream nor the route says.
    pub default_ttl: Duration,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ServerConfig {
    pub listen: Vec<SocketAddr>,
    pub threads: usize,
    pub work_stealing: bool,
    pub pid_file: String,
    pub upgrade_sock: String,
    pub grace_period: Duration,
    /// After a `-u` handoff, how long the old process keeps upgraded
    /// connections (WebSocket) open.
    pub tunnel_grace_period: Duration,
    pub trusted_proxies: Vec<IpNet>,
    pub idle_timeout: Duration,
    pub tls: Option<TlsConfig>,
    /// HTTP/2 over cleartext (prior knowledge) on the plain listeners.
    pub h2c: bool,
    /// Keep request headers whose names contain `_` (`underscores_in_headers: allow`).
    pub underscores_in_headers: bool,
    pub limits: Limits,
    /// PEM bundle trusted for upstream TLS instead of the system roots.
    pub upstream_ca: Option<String>,
    /// DNS servers for upstream host names; empty: `/etc/resolv.conf`.
    pub resolver: Vec<SocketAddr>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TlsConfig {
    pub listen: SocketAddr,
    pub cert: String,
    pub key: String,
    /// `client_ca`: ask for client certificates and verify them.
    pub client_ca: Option<ClientCaConfig>,
}

impl TlsConfig {
    pub fn client_ca(&self) -> Option<crate::tls::ClientCa<'_>> {
        self.client_ca.as_ref().map(|c| crate::tls::ClientCa {
            path: &c.path,
            required: c.required,
        })
    }
}

/// `server.tls.client_ca` and `client_auth`.
#[derive(Debug, Clone, PartialEq)]
pub struct ClientCaConfig {
    pub path: String,
    /// `client_auth: required`: the handshake fails without a valid certificate.
    pub required: bool,
}

/// What a client may make gatehouse hold.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    pub max_body: u64,
    pub max_header_bytes: usize,
    pub header_timeout: Duration,
    /// The longest gap allowed between two reads of a request body.
    pub body_timeout: Duration,
    pub max_uri_bytes: usize,
    /// Client connections open at once; more are closed at accept.
    pub max_connections: usize,
}

/// A header value with `${request_id}`, `${client_ip}`, `${route}` and
/// `${claim.NAME}` placeholders.
#[derive(Debug, Clone, PartialEq)]
pub enum TemplatePart {
    Text(String),
    RequestId,
    ClientIp,
    Route,
    Claim(String),
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct HeaderTransform {
    pub set: Vec<(HeaderName, Vec<TemplatePart>)>,
    pub add: Vec<(HeaderName, Vec<TemplatePart>)>,
    pub remove: Vec<HeaderName>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CorsConfig {
    /// Exact origins (`https://app.example.com`), or `*` for any.
    pub allow_origins: Vec<String>,
    pub allow_methods: Vec<Method>,
    pub allow_headers: Vec<HeaderName>,
    pub expose_headers: Vec<HeaderName>,
    pub allow_credentials: bool,
    pub max_age: Duration,
}

#[derive(Clone, PartialEq)]
pub struct AdminConfig {
    pub listen: SocketAddr,
    pub token: Option<String>,
}

impl std::fmt::Debug for AdminConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let token = self.token.as_ref().map(|_| "<redacted>");
        f.debug_struct("AdminConfig")
            .field("listen", &self.listen)
            .field("token", &token)
            .finish()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogLevel {
    Error,
    Warn,
    Info,
    Debug,
    Trace,
}

impl LogLevel {
    pub fn as_filter(self) -> log::LevelFilter {
        match self {
            LogLevel::Error => log::LevelFilter::Error,
            LogLevel::Warn => log::LevelFilter::Warn,
            LogLevel::Info => log::LevelFilter::Info,
            LogLevel::Debug => log::LevelFilter::Debug,
            LogLevel::Trace => log::LevelFilter::Trace,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccessLogTarget {
    Stdout,
    Off,
    File(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccessLogFormat {
    Json,
    Combined,
}

#[derive(Debug, Clone, PartialEq)]
pub struct LoggingConfig {
    pub level: LogLevel,
    pub access_log: AccessLogTarget,
    pub format: AccessLogFormat,
    /// Access-log lines queued for the writer before new ones are dropped.
    pub buffer_lines: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Balance {
    RoundRobin,
    Random,
    ConsistentHash,
    /// Fewest requests in flight (per weight) of two random choices.
    LeastRequest,
}

/// What `consistent_hash` hashes on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HashKey {
    ClientIp,
    Path,
    Header(HeaderName),
    /// A claim of the verified JWT (client IP when absent).
    Claim(String),
}

/// A target as written: an address, or a host name resolved in the
/// background (`upstream::discovery`), never while loading the config.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum TargetAddr {
    Ip(SocketAddr),
    Name { host: String, port: u16 },
}

impl TargetAddr {
    /// As written: `10.0.0.7:8080`, `[::1]:80` or `users.internal:8080`.
    pub fn text(&self) -> String {
        match self {
            TargetAddr::Ip(a) => a.to_string(),
            TargetAddr::Name { host, port } => format!("{host}:{port}"),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct TargetConfig {
    pub addr: TargetAddr,
    pub weight: usize,
}

/// Why a failed attempt may be retried (`retry_on`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryReason {
    Connect,
    Reset,
    Timeout,
    Status(u16),
}

impl RetryReason {
    /// The `reason` label of `gatehouse_upstream_retries_total`.
    pub fn label(self) -> &'static str {
        match self {
            RetryReason::Connect => "connect",
            RetryReason::Reset => "reset",
            RetryReason::Timeout => "timeout",
            RetryReason::Status(502) => "502",
            RetryReason::Status(503) => "503",
            RetryReason::Status(504) => "504",
            RetryReason::Status(_) => "status",
        }
    }

    /// Every reason `retry_on` accepts, in label order.
    pub const ALL: [RetryReason; 6] = [
        RetryReason::Connect,
        RetryReason::Reset,
        RetryReason::Timeout,
        RetryReason::Status(502),
        RetryReason::Status(503),
        RetryReason::Status(504),
    ];
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryMethods {
    /// GET HEAD OPTIONS PUT DELETE (and TRACE).
    Idempotent,
    All,
}

/// `passive_health`: eject targets on live traffic.
#[derive(Debug, Clone, PartialEq)]
pub struct PassiveHealthConfig {
    pub consecutive_failures: u32,
    pub eject_for: Duration,
    /// Share of the targets (0..=1) that may be ejected at once.
    pub max_ejected: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HealthKind {
    Http,
    Tcp,
}

#[derive(Debug, Clone, PartialEq)]
pub struct HealthCheckConfig {
    pub kind: HealthKind,
    pub path: String,
    pub expect_status: u16,
    pub interval: Duration,
    pub timeout: Duration,
    pub unhealthy_after: usize,
    pub healthy_after: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub struct UpstreamConfig {
    pub targets: Vec<TargetConfig>,
    pub balance: Balance,
    pub hash_key: HashKey,
    pub health_check: Option<HealthCheckConfig>,
    pub connect_timeout: Duration,
    pub read_timeout: Duration,
    pub retries: usize,
    pub tls: bool,
    /// Verify the upstream's certificate and host name (default true).
    pub tls_verify: bool,
    pub sni: String,
    /// `Host` sent upstream instead of the client's.
    pub host: Option<String>,
    /// Targets from SRV records of this name (instead of `targets`).
    pub srv: Option<String>,
    /// How often host names are re-resolved; `None`: at load and reload.
    pub resolve: Option<Duration>,
    pub retry_on: Vec<RetryReason>,
    pub retry_methods: RetryMethods,
    /// Share (0..=1) of requests that retries may add, over 10 s.
    pub retry_budget: f64,
    pub max_inflight: Option<usize>,
    pub passive_health: Option<PassiveHealthConfig>,
}

impl UpstreamConfig {
    /// True when targets come from DNS (host names or SRV).
    pub fn uses_dns(&self) -> bool {
        self.srv.is_some()
            || self
                .targets
                .iter()
                .any(|t| matches!(t.addr, TargetAddr::Name { .. }))
    }
}

/// Host condition of a route: exact (`api.example.com`) or `*.example.com`
/// (any depth of subdomain, not the apex). Stored lower-cased.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostMatch {
    Exact(String),
    Wildcard(String),
}

#[derive(Debug, Clone)]
pub struct MatchConfig {
    pub path: Option<String>,
    /// Without its trailing slash; `/` stays `/`.
    pub path_prefix: Option<String>,
    pub path_regex: Option<regex::Regex>,
    pub methods: Vec<Method>,
    pub host: Option<HostMatch>,
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

#[derive(Debug, Clone)]
pub struct RouteConfig {
    pub name: String,
    pub matcher: MatchConfig,
    /// The upstream, or the weighted `split` between several.
    pub upstream: RouteUpstream,
    /// What keeps a client on one side of a split (`split_key`).
    pub split_key: Option<HashKey>,
    pub mirror: Option<MirrorConfig>,
    pub strip_prefix: Option<String>,
    pub add_prefix: Option<String>,
    pub timeout: Option<Duration>,
    pub auth: Option<RouteAuthConfig>,
    /// Names of `rate_limits`; all must pass.
    pub rate_limits: Vec<String>,
    /// `Some` when responses of this route are cached; the route's TTL
    /// for responses that give no freshness (else `cache.default_ttl`).
    pub cache: Option<Option<Duration>>,
    pub request_headers: HeaderTransform,
    pub response_headers: HeaderTransform,
    pub cors: Option<CorsConfig>,
    /// Proxy `Upgrade: websocket` handshakes (off: the upgrade is refused).
    pub websocket: bool,
    /// Response compression (`compress`); off when `None`.
    pub compress: Option<CompressConfig>,
    /// Client IPs/CIDRs allowed (empty: any) and denied (deny wins).
    pub allow_ips: Vec<ipnet::IpNet>,
    pub deny_ips: Vec<ipnet::IpNet>,
}

/// Where a route sends its requests.
#[derive(Debug, Clone, PartialEq)]
pub enum RouteUpstream {
    One(String),
    /// `(upstream, weight)`; weights are relative, at least one non-zero.
    Split(Vec<(String, u32)>),
}

impl RouteUpstream {
    /// Every upstream named, in order, with its weight (1 for `One`).
    pub fn entries(&self) -> Vec<(&str, u32)> {
        match self {
            RouteUpstream::One(n) => vec![(n.as_str(), 1)],
            RouteUpstream::Split(v) => v.iter().map(|(n, w)| (n.as_str(), *w)).collect(),
        }
    }
}

/// A content coding gatehouse can produce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Coding {
    Zstd,
    Br,
    Gzip,
}

impl Coding {
    /// The `Content-Encoding` token.
    pub fn token(self) -> &'static str {
        match self {
            Coding::Zstd => "zstd",
            Coding::Br => "br",
            Coding::Gzip => "gzip",
        }
    }
}

/// A route's `compress`: the codings in the route's order of preference
/// and the smallest `Content-Length` worth compressing.
#[derive(Debug, Clone, PartialEq)]
pub struct CompressConfig {
    pub algorithms: Vec<Coding>,
    pub min_size: u64,
}

/// `mirror`: a copy of a share of the requests, answer discarded.
#[derive(Debug, Clone, PartialEq)]
pub struct MirrorConfig {
    pub upstream: String,
    /// 0..=100.
    pub percent: f64,
}

pub use jsonwebtoken::Algorithm;

#[derive(Debug, Clone, PartialEq)]
pub enum AuthConfig {
    Jwt(JwtConfig),
    ApiKey(ApiKeyConfig),
    Basic(BasicConfig),
    Forward(ForwardConfig),
    Mtls(MtlsConfig),
}

/// `type: mtls`: the verified client certificate is the credential.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct MtlsConfig {
    /// Exact RFC 4514 subjects; with `allow_sans`, either may match.
    pub allow_subjects: Vec<String>,
    /// DNS or URI subject alternative names.
    pub allow_sans: Vec<String>,
    /// Identity headers: the subject and the SHA-256 fingerprint (hex).
    pub forward_subject: Option<HeaderName>,
    pub forward_fingerprint: Option<HeaderName>,
}

/// `type: forward`: ask another service.
#[derive(Debug, Clone, PartialEq)]
pub struct ForwardConfig {
    pub url: String,
    pub timeout: Duration,
    pub send_headers: Vec<HeaderName>,
    pub copy_headers: Vec<HeaderName>,
    /// Cache 2xx answers this long (by a hash of what was sent).
    pub cache: Option<Duration>,
}

/// A password hash as written (PHC string or bcrypt `$2b$...`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PasswordHash {
    Argon2id(String),
    Bcrypt(String),
}

impl PasswordHash {
    /// The cost of a bcrypt hash (`$2b$12$...` is 12).
    pub fn bcrypt_cost(h: &str) -> Option<u32> {
        h.get(4..6)?.parse().ok()
    }
}

/// `type: basic`: HTTP Basic against hashed passwords.
#[derive(Debug, Clone, PartialEq)]
pub struct BasicConfig {
    /// (name, hash)
    pub users: Vec<(String, PasswordHash)>,
    pub forward_id: Option<HeaderName>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct JwtConfig {
    /// The allow-list; each one fits the key material.
    pub algorithms: Vec<Algorithm>,
    pub key: JwtKey,
    pub issuer: Option<String>,
    pub audience: Vec<String>,
    pub leeway: Duration,
    /// claim -> upstream header
    pub forward_claims: Vec<(String, HeaderName)>,
    /// Verified-token cache: at most this many entries (0 disables it).
    pub cache_entries: usize,
    /// ...each kept at most this long (and never past the token's `exp`).
    pub cache_ttl: Duration,
}

#[derive(Clone, PartialEq)]
pub enum JwtKey {
    /// HMAC secret (the UTF-8 bytes of the configured string).
    Secret(Vec<u8>),
    PublicKey {
        path: String,
        kind: crate::keys::KeyKind,
        pem: Vec<u8>,
    },
    JwksFile {
        path: String,
        json: Vec<u8>,
    },
    JwksUrl {
        url: String,
        refresh: Duration,
    },
}

impl std::fmt::Debug for JwtKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            JwtKey::Secret(_) => f.write_str("Secret(<redacted>)"),
            JwtKey::PublicKey { path, kind, .. } => write!(f, "PublicKey({path}, {kind:?})"),
            JwtKey::JwksFile { path, .. } => write!(f, "JwksFile({path})"),
            JwtKey::JwksUrl { url, refresh } => write!(f, "JwksUrl({url}, {refresh:?})"),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct ApiKeyConfig {
    pub header: HeaderName,
    pub keys: Vec<ApiKeyEntry>,
    pub forward_id: Option<HeaderName>,
}

/// A key is kept only as its SHA-256, whether it was configured plain or hashed.
#[derive(Clone, PartialEq)]
pub struct ApiKeyEntry {
    pub id: String,
    pub sha256: [u8; 32],
}

impl std::fmt::Debug for ApiKeyEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ApiKeyEntry({}, <redacted>)", self.id)
    }
}

/// A route's `auth`: any of `providers` may authenticate; `scopes` must all
/// be granted by a JWT.
#[derive(Debug, Clone, PartialEq)]
pub struct RouteAuthConfig {
    pub providers: Vec<String>,
    pub scopes: Vec<String>,
}

/// What a rate limit counts by. Requests without the value fall back to
/// the client IP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LimitKey {
    ClientIp,
    Claim(String),
    Header(HeaderName),
    /// The authenticated identity: JWT `sub` or API-key id.
    Consumer,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitBackend {
    Local,
    Redis,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RateLimitConfig {
    pub requests: u64,
    pub per: Duration,
    pub key: LimitKey,
    pub backend: LimitBackend,
    /// Redis backend: count locally and reconcile this often (no Redis call
    /// on the request path); `None`: one Redis call per request.
    pub sync: Option<Duration>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RedisOnError {
    Allow,
    Deny,
}

#[derive(Clone, PartialEq)]
pub struct RedisConfig {
    pub url: String,
    pub on_error: RedisOnError,
    pub timeout: Duration,
}

impl RedisConfig {
    /// The URL with any password replaced, for logs and `/config`.
    pub fn redacted_url(&self) -> String {
        match (self.url.find("://"), self.url.rfind('@')) {
            (Some(s), Some(at)) if at > s => {
                format!("{}<redacted>{}", &self.url[..s + 3], &self.url[at..])
            }
            _ => self.url.clone(),
        }
    }
}

impl std::fmt::Debug for RedisConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisConfig")
            .field("url", &self.redacted_url())
            .field("on_error", &self.on_error)
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// An enum a config key names by a word: one table drives both parsing
/// (with the hint listing every word) and `GET /config` rendering, so the
/// two cannot drift apart.
pub trait Choice: Copy + PartialEq + 'static {
    const ALL: &'static [(&'static str, Self)];

    /// The word for this value.
    fn name(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(_, v)| *v == self)
            .map_or("", |(n, _)| n)
    }
}

impl Choice for LogLevel {
    const ALL: &'static [(&'static str, Self)] = &[
        ("error", LogLevel::Error),
        ("warn", LogLevel::Warn),
        ("info", LogLevel::Info),
        ("debug", LogLevel::Debug),
        ("trace", LogLevel::Trace),
    ];
}

impl Choice for AccessLogFormat {
    const ALL: &'static [(&'static str, Self)] = &[
        ("json", AccessLogFormat::Json),
        ("combined", AccessLogFormat::Combined),
    ];
}

impl Choice for Balance {
    const ALL: &'static [(&'static str, Self)] = &[
        ("round_robin", Balance::RoundRobin),
        ("random", Balance::Random),
        ("consistent_hash", Balance::ConsistentHash),
        ("least_request", Balance::LeastRequest),
    ];
}

impl Choice for HealthKind {
    const ALL: &'static [(&'static str, Self)] =
        &[("http", HealthKind::Http), ("tcp", HealthKind::Tcp)];
}

impl Choice for LimitBackend {
    const ALL: &'static [(&'static str, Self)] = &[
        ("local", LimitBackend::Local),
        ("redis", LimitBackend::Redis),
    ];
}

impl Choice for RedisOnError {
    const ALL: &'static [(&'static str, Self)] =
        &[("allow", RedisOnError::Allow), ("deny", RedisOnError::Deny)];
}

impl Choice for RetryMethods {
    const ALL: &'static [(&'static str, Self)] = &[
        ("idempotent", RetryMethods::Idempotent),
        ("all", RetryMethods::All),
    ];
}
