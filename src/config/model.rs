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
    pub routes: Vec<RouteConfig>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ServerConfig {
    pub listen: Vec<SocketAddr>,
    pub threads: usize,
    pub work_stealing: bool,
    pub pid_file: String,
    pub upgrade_sock: String,
    pub grace_period: Duration,
    pub trusted_proxies: Vec<IpNet>,
    pub idle_timeout: Duration,
}

#[derive(Debug, Clone, PartialEq)]
pub struct AdminConfig {
    pub listen: SocketAddr,
    pub token: Option<String>,
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
}

/// What `consistent_hash` hashes on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HashKey {
    ClientIp,
    Path,
    Header(HeaderName),
}

#[derive(Debug, Clone, PartialEq)]
pub struct TargetConfig {
    pub addr: SocketAddr,
    pub weight: usize,
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
    pub sni: String,
    /// `Host` sent upstream instead of the client's.
    pub host: Option<String>,
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
    pub upstream: String,
    pub strip_prefix: Option<String>,
    pub add_prefix: Option<String>,
    pub timeout: Option<Duration>,
}
