//! Turns the serde surface into the validated model, collecting every error
//! (with its key path) instead of stopping at the first one.

use super::file::*;
use super::model::*;
use super::units::parse_duration;
use crate::http::normalize_path;
use http::{HeaderName, HeaderValue, Method};
use std::collections::{BTreeMap, HashSet};
use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

/// Turns `host:port` into an address (the first one found).
pub type Resolve = fn(&str) -> std::io::Result<Option<SocketAddr>>;

/// The system resolver (`/etc/hosts`, DNS), used by default.
pub fn system_resolve(s: &str) -> std::io::Result<Option<SocketAddr>> {
    s.to_socket_addrs().map(|mut it| it.next())
}

/// Errors gathered during validation, each with its key path, and the
/// resolver used for host names.
pub struct Errs(pub Vec<(String, String)>, pub Resolve);

impl Default for Errs {
    fn default() -> Errs {
        Errs(Vec::new(), system_resolve)
    }
}

impl Errs {
    pub fn push(&mut self, path: impl Into<String>, msg: impl Into<String>) {
        self.0.push((path.into(), msg.into()));
    }

    pub fn duration(&mut self, path: &str, v: &Option<Text>, default: Duration) -> Duration {
        match v {
            None => default,
            Some(t) => parse_duration(&t.0).unwrap_or_else(|e| {
                self.push(path, e);
                default
            }),
        }
    }

    pub fn positive_duration(
        &mut self,
        path: &str,
        v: &Option<Text>,
        default: Duration,
    ) -> Duration {
        let d = self.duration(path, v, default);
        if d.is_zero() {
            self.push(path, "must be greater than zero");
            return default;
        }
        d
    }

    /// Parses `ip:port`, or resolves `host:port` once, here at load time
    /// (never on the request path).
    pub fn addr(&mut self, path: &str, t: &Text) -> Option<SocketAddr> {
        let s = t.0.trim();
        if let Ok(a) = s.parse::<SocketAddr>() {
            return Some(a);
        }
        if !s.contains(':') {
            self.push(path, format!("invalid address `{s}`: expected `host:port`"));
            return None;
        }
        match (self.1)(s) {
            Ok(Some(a)) => Some(a),
            Ok(None) => {
                self.push(path, format!("address `{s}` resolved to nothing"));
                None
            }
            Err(e) => {
                self.push(path, format!("invalid address `{s}`: {e}"));
                None
            }
        }
    }
}

pub const DEFAULT_LISTEN: &str = "0.0.0.0:8080";

pub fn validate(f: FileConfig, base: &std::path::Path, errs: &mut Errs) -> Config {
    let server = server(&f.server, base, errs);
    let admin = f.admin.as_ref().and_then(|a| {
        let listen = errs.addr("admin.listen", &a.listen)?;
        if server.listen.contains(&listen) {
            errs.push(
                "admin.listen",
                "the admin listener must not share an address with server.listen",
            );
        }
        let token = a.token.clone().filter(|t| !t.is_empty());
        Some(AdminConfig { listen, token })
    });
    let logging = logging(&f.logging, base, errs);
    let auth = super::validate_auth::providers(&f.auth, base, errs);
    let redis = f
        .redis
        .as_ref()
        .map(|r| super::validate_limits::redis(r, errs));
    let rate_limits = super::validate_limits::rate_limits(&f.rate_limits, f.redis.is_some(), errs);
    let cache = cache(f.cache.as_ref(), errs);
    let mut upstreams = BTreeMap::new();
    for (name, u) in &f.upstreams {
        if let Some(u) = upstream(&format!("upstreams.{name}"), u, errs) {
            upstreams.insert(name.clone(), u);
        }
    }
    let mut routes = Vec::new();
    let mut names = HashSet::new();
    for (i, r) in f.routes.iter().enumerate() {
        let path = format!("routes[{i}]");
        if !names.insert(r.name.clone()) {
            errs.push(
                format!("{path}.name"),
                format!("duplicate route name `{}`", r.name),
            );
        }
        if let Some(route) = route(&path, r, &f, errs) {
            routes.push(route);
        }
    }
    Config {
        server,
        admin,
        logging,
        upstreams,
        auth,
        rate_limits,
        redis,
        cache,
        routes,
    }
}

fn server(s: &ServerFile, base: &std::path::Path, errs: &mut Errs) -> ServerConfig {
    let edge = super::validate_edge::server_edge(s, base, errs);
    let listen_src = s
        .listen
        .clone()
        .unwrap_or_else(|| vec![Text(DEFAULT_LISTEN.to_string())]);
    if listen_src.is_empty() {
        errs.push("server.listen", "at least one listen address is required");
    }
    let listen = listen_src
        .iter()
        .enumerate()
        .filter_map(|(i, t)| errs.addr(&format!("server.listen[{i}]"), t))
        .collect();
    let threads = s.threads.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    });
    if threads == 0 {
        errs.push("server.threads", "must be at least 1");
    }
    let trusted_proxies = s
        .trusted_proxies
        .iter()
        .enumerate()
        .filter_map(|(i, t)| {
            let v = t.0.trim();
            let parsed = v
                .parse::<ipnet::IpNet>()
                .or_else(|_| v.parse::<std::net::IpAddr>().map(ipnet::IpNet::from));
            parsed
                .map_err(|_| {
                    errs.push(
                        format!("server.trusted_proxies[{i}]"),
                        format!("invalid IP or CIDR `{v}`"),
                    )
                })
                .ok()
        })
        .collect();
    ServerConfig {
        listen,
        threads: threads.max(1),
        work_stealing: s.work_stealing.unwrap_or(true),
        pid_file: s
            .pid_file
            .clone()
            .unwrap_or_else(|| "/tmp/gatehouse.pid".into()),
        upgrade_sock: s
            .upgrade_sock
            .clone()
            .unwrap_or_else(|| "/tmp/gatehouse_upgrade.sock".into()),
        grace_period: errs.duration(
            "server.grace_period",
            &s.grace_period,
            Duration::from_secs(30),
        ),
        trusted_proxies,
        idle_timeout: errs.positive_duration(
            "server.idle_timeout",
            &s.idle_timeout,
            Duration::from_secs(60),
        ),
        tls: edge.tls,
        h2c: edge.h2c,
        limits: edge.limits,
        upstream_ca: edge.upstream_ca,
    }
}

/// A relative access-log path is taken from the config file's directory
/// (a daemon runs from `/`).
fn logging(l: &LoggingFile, base: &std::path::Path, errs: &mut Errs) -> LoggingConfig {
    let level = match l.level.as_deref().unwrap_or("info") {
        "error" => LogLevel::Error,
        "warn" => LogLevel::Warn,
        "info" => LogLevel::Info,
        "debug" => LogLevel::Debug,
        "trace" => LogLevel::Trace,
        other => {
            errs.push(
                "logging.level",
                format!("unknown level `{other}` (error, warn, info, debug)"),
            );
            LogLevel::Info
        }
    };
    let access_log = match l.access_log.as_deref().unwrap_or("stdout") {
        "stdout" => AccessLogTarget::Stdout,
        "off" => AccessLogTarget::Off,
        "" => {
            errs.push("logging.access_log", "must be stdout, off or a file path");
            AccessLogTarget::Off
        }
        path => AccessLogTarget::File(base.join(path).display().to_string()),
    };
    let format = match l.format.as_deref().unwrap_or("json") {
        "json" => AccessLogFormat::Json,
        "combined" => AccessLogFormat::Combined,
        other => {
            errs.push(
                "logging.format",
                format!("unknown format `{other}` (json, combined)"),
            );
            AccessLogFormat::Json
        }
    };
    let buffer_lines = l.buffer_lines.unwrap_or(16 * 1024);
    if buffer_lines == 0 {
        errs.push("logging.buffer_lines", "must be at least 1");
    }
    LoggingConfig {
        level,
        access_log,
        format,
        buffer_lines: buffer_lines.max(1),
    }
}

fn upstream(path: &str, u: &UpstreamFile, errs: &mut Errs) -> Option<UpstreamConfig> {
    let before = errs.0.len();
    if u.targets.is_empty() {
        errs.push(
            format!("{path}.targets"),
            "an upstream needs at least one target",
        );
    }
    let mut targets = Vec::new();
    let mut seen = HashSet::new();
    for (i, t) in u.targets.iter().enumerate() {
        let tpath = format!("{path}.targets[{i}]");
        let (addr, weight, apath) = match t {
            StrOr::Str(s) => (Text(s.clone()), 1, tpath.clone()),
            StrOr::Full(full) => (
                full.addr.clone(),
                full.weight.unwrap_or(1),
                format!("{tpath}.addr"),
            ),
        };
        if weight == 0 {
            errs.push(format!("{tpath}.weight"), "weight must be at least 1");
        }
        if let Some(addr) = errs.addr(&apath, &addr) {
            if !seen.insert(addr) {
                errs.push(apath, format!("duplicate target {addr}"));
            }
            targets.push(TargetConfig {
                addr,
                weight: weight.max(1),
            });
        }
    }
    let balance = match u.balance.as_deref().unwrap_or("round_robin") {
        "round_robin" => Balance::RoundRobin,
        "random" => Balance::Random,
        "consistent_hash" => Balance::ConsistentHash,
        other => {
            errs.push(
                format!("{path}.balance"),
                format!("unknown balance `{other}` (round_robin, random, consistent_hash)"),
            );
            Balance::RoundRobin
        }
    };
    let hash_key = match u.hash_key.as_deref() {
        None => HashKey::ClientIp,
        Some(k) => {
            if balance != Balance::ConsistentHash {
                errs.push(
                    format!("{path}.hash_key"),
                    "hash_key is only used with `balance: consistent_hash`",
                );
            }
            parse_hash_key(k).unwrap_or_else(|e| {
                errs.push(format!("{path}.hash_key"), e);
                HashKey::ClientIp
            })
        }
    };
    let health_check = u
        .health_check
        .as_ref()
        .map(|h| health_check(&format!("{path}.health_check"), h, errs));
    let tls = u.tls.unwrap_or(false);
    if u.sni.is_some() && !tls {
        errs.push(format!("{path}.sni"), "sni is only used with `tls: true`");
    }
    let host = u.host.clone();
    if let Some(h) = &host {
        if HeaderValue::from_str(h).is_err() || h.is_empty() {
            errs.push(format!("{path}.host"), format!("invalid host `{h}`"));
        }
    }
    let cfg = UpstreamConfig {
        targets,
        balance,
        hash_key,
        health_check,
        connect_timeout: errs.positive_duration(
            &format!("{path}.connect_timeout"),
            &u.connect_timeout,
            Duration::from_secs(5),
        ),
        read_timeout: errs.positive_duration(
            &format!("{path}.read_timeout"),
            &u.read_timeout,
            Duration::from_secs(60),
        ),
        retries: u.retries.unwrap_or(1),
        tls,
        tls_verify: u.tls_verify.unwrap_or(true),
        sni: u.sni.clone().unwrap_or_default(),
        host,
    };
    (errs.0.len() == before).then_some(cfg)
}

fn parse_hash_key(k: &str) -> Result<HashKey, String> {
    match k {
        "client_ip" => Ok(HashKey::ClientIp),
        "path" => Ok(HashKey::Path),
        _ => {
            if let Some(name) = k.strip_prefix("header:") {
                HeaderName::from_bytes(name.trim().as_bytes())
                    .map(HashKey::Header)
                    .map_err(|_| format!("invalid header name in `{k}`"))
            } else if let Some(claim) = k.strip_prefix("claim:").filter(|c| !c.trim().is_empty()) {
                Ok(HashKey::Claim(claim.trim().to_string()))
            } else {
                Err(format!(
                    "unknown hash_key `{k}` (client_ip, path, header:NAME, claim:NAME)"
                ))
            }
        }
    }
}

fn health_check(path: &str, h: &HealthCheckFile, errs: &mut Errs) -> HealthCheckConfig {
    let kind = match h.kind.as_deref().unwrap_or("http") {
        "http" => HealthKind::Http,
        "tcp" => HealthKind::Tcp,
        other => {
            errs.push(
                format!("{path}.kind"),
                format!("unknown kind `{other}` (http, tcp)"),
            );
            HealthKind::Http
        }
    };
    let hc_path = h.path.clone().unwrap_or_else(|| "/".into());
    if !hc_path.starts_with('/') || http::Uri::try_from(hc_path.as_str()).is_err() {
        errs.push(format!("{path}.path"), format!("invalid path `{hc_path}`"));
    }
    let expect_status = h.expect_status.unwrap_or(200);
    if !(100..=599).contains(&expect_status) {
        errs.push(
            format!("{path}.expect_status"),
            "must be an HTTP status code (100-599)",
        );
    }
    let unhealthy_after = h.unhealthy_after.unwrap_or(2);
    let healthy_after = h.healthy_after.unwrap_or(1);
    if unhealthy_after == 0 {
        errs.push(format!("{path}.unhealthy_after"), "must be at least 1");
    }
    if healthy_after == 0 {
        errs.push(format!("{path}.healthy_after"), "must be at least 1");
    }
    HealthCheckConfig {
        kind,
        path: hc_path,
        expect_status,
        interval: errs.positive_duration(
            &format!("{path}.interval"),
            &h.interval,
            Duration::from_secs(5),
        ),
        timeout: errs.positive_duration(
            &format!("{path}.timeout"),
            &h.timeout,
            Duration::from_secs(1),
        ),
        unhealthy_after: unhealthy_after.max(1),
        healthy_after: healthy_after.max(1),
    }
}

/// Checks that a configured path is absolute and already normalised (a
/// route on `/a//b` could never match, since requests are normalised first).
fn config_path(errs: &mut Errs, path: &str, p: &str) -> bool {
    if !p.starts_with('/') {
        errs.push(path, format!("`{p}` must start with `/`"));
        return false;
    }
    match normalize_path(p) {
        Ok(n) if n == p => true,
        Ok(n) => {
            errs.push(
                path,
                format!("`{p}` is not in normalised form; write `{n}`"),
            );
            false
        }
        Err(e) => {
            errs.push(path, format!("`{p}`: {e}"));
            false
        }
    }
}

/// `/api/` and `/api` name the same prefix (matching is segment-aware).
fn trim_trailing_slash(p: &str) -> String {
    let t = p.trim_end_matches('/');
    if t.is_empty() {
        "/".to_string()
    } else {
        t.to_string()
    }
}

fn route(path: &str, r: &RouteFile, f: &FileConfig, errs: &mut Errs) -> Option<RouteConfig> {
    let before = errs.0.len();
    if r.name.trim().is_empty() {
        errs.push(format!("{path}.name"), "route name must not be empty");
    }
    if !f.upstreams.contains_key(&r.upstream) {
        errs.push(
            format!("{path}.upstream"),
            format!("upstream `{}` is not defined in `upstreams`", r.upstream),
        );
    }
    let m = &r.matcher;
    let mpath = format!("{path}.match");
    if let Some(p) = &m.path {
        config_path(errs, &format!("{mpath}.path"), p);
    }
    if let Some(p) = &m.path_prefix {
        config_path(errs, &format!("{mpath}.path_prefix"), p);
    }
    let path_regex = m.path_regex.as_ref().and_then(|re| {
        regex::Regex::new(re)
            .map_err(|e| {
                errs.push(
                    format!("{mpath}.path_regex"),
                    format!("invalid regex: {}", one_line(&e.to_string())),
                )
            })
            .ok()
    });
    let mut methods = Vec::new();
    if let Some(list) = &m.methods {
        if list.is_empty() {
            errs.push(
                format!("{mpath}.methods"),
                "must list at least one method (or be left out)",
            );
        }
        for (i, name) in list.iter().enumerate() {
            match Method::from_bytes(name.to_ascii_uppercase().as_bytes()) {
                Ok(mt) => methods.push(mt),
                Err(_) => errs.push(
                    format!("{mpath}.methods[{i}]"),
                    format!("invalid method `{name}`"),
                ),
            }
        }
    }
    let host = m.host.as_ref().and_then(|h| match parse_host(h) {
        Ok(hm) => Some(hm),
        Err(e) => {
            errs.push(format!("{mpath}.host"), e);
            None
        }
    });
    let mut headers = Vec::new();
    for (name, value) in &m.headers {
        let hpath = format!("{mpath}.headers.{name}");
        match (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(&value.0),
        ) {
            (Ok(n), Ok(v)) => headers.push((n, v)),
            (Err(_), _) => errs.push(hpath, format!("invalid header name `{name}`")),
            (_, Err(_)) => errs.push(hpath, "invalid header value"),
        }
    }
    for (key, v) in [
        ("strip_prefix", &r.strip_prefix),
        ("add_prefix", &r.add_prefix),
    ] {
        if let Some(p) = v {
            config_path(errs, &format!("{path}.{key}"), p);
        }
    }
    let timeout = r.timeout.as_ref().map(|t| {
        errs.positive_duration(
            &format!("{path}.timeout"),
            &Some(t.clone()),
            Duration::from_secs(60),
        )
    });
    let auth = r
        .auth
        .as_ref()
        .and_then(|a| super::validate_auth::route_auth(&format!("{path}.auth"), a, &f.auth, errs));
    let rate_limits = r
        .rate_limit
        .as_ref()
        .map(|l| {
            super::validate_limits::route_limits(
                &format!("{path}.rate_limit"),
                l,
                &f.rate_limits,
                errs,
            )
        })
        .unwrap_or_default();
    let cache = match &r.cache {
        None | Some(RouteCacheFile::On(false)) => None,
        Some(RouteCacheFile::On(true)) => Some(None),
        Some(RouteCacheFile::Ttl(t)) => Some(t.ttl.as_ref().map(|ttl| {
            errs.positive_duration(
                &format!("{path}.cache.ttl"),
                &Some(ttl.clone()),
                Duration::from_secs(60),
            )
        })),
    };
    let edge = |key: &str, t: &Option<HeaderTransformFile>, errs: &mut Errs| {
        t.as_ref()
            .map(|t| super::validate_edge::transform(&format!("{path}.{key}"), t, errs))
            .unwrap_or_default()
    };
    let request_headers = edge("request_headers", &r.request_headers, errs);
    let response_headers = edge("response_headers", &r.response_headers, errs);
    let cors = r
        .cors
        .as_ref()
        .map(|c| super::validate_edge::cors(&format!("{path}.cors"), c, errs));
    let cfg = RouteConfig {
        name: r.name.clone(),
        matcher: MatchConfig {
            path: m.path.clone(),
            path_prefix: m.path_prefix.as_deref().map(trim_trailing_slash),
            path_regex,
            methods,
            host,
            headers,
        },
        upstream: r.upstream.clone(),
        strip_prefix: r
            .strip_prefix
            .as_deref()
            .map(trim_trailing_slash)
            .filter(|p| p != "/"),
        add_prefix: r
            .add_prefix
            .as_deref()
            .map(trim_trailing_slash)
            .filter(|p| p != "/"),
        timeout,
        auth,
        rate_limits,
        cache,
        request_headers,
        response_headers,
        cors,
        websocket: r.websocket,
    };
    (errs.0.len() == before).then_some(cfg)
}

fn parse_host(h: &str) -> Result<HostMatch, String> {
    let lower = h.trim().trim_end_matches('.').to_ascii_lowercase();
    let (wild, name) = match lower.strip_prefix("*.") {
        Some(rest) => (true, rest.to_string()),
        None => (false, lower.clone()),
    };
    let valid = !name.is_empty()
        && name.split('.').all(|label| {
            !label.is_empty()
                && label
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        });
    if !valid {
        return Err(format!(
            "invalid host `{h}`: write a host name without port, e.g. `api.example.com` or `*.example.com`"
        ));
    }
    Ok(if wild {
        HostMatch::Wildcard(name)
    } else {
        HostMatch::Exact(name)
    })
}

/// The regex crate's errors draw a caret diagram over several lines; keep
/// the last line (the actual complaint) so each config error stays one line.
fn one_line(msg: &str) -> String {
    let last = msg.lines().rfind(|l| !l.trim().is_empty()).unwrap_or(msg);
    last.trim().trim_start_matches("error: ").to_string()
}

fn cache(c: Option<&CacheFile>, errs: &mut Errs) -> CacheConfig {
    let max_size = match c.and_then(|c| c.max_size.as_ref()) {
        None => 256 << 20,
        Some(t) => match super::units::parse_size(&t.0) {
            Ok(n) if n >= 1 << 20 => n,
            Ok(_) => {
                errs.push("cache.max_size", "must be at least 1MiB");
                256 << 20
            }
            Err(e) => {
                errs.push("cache.max_size", e);
                256 << 20
            }
        },
    };
    let default_ttl = errs.duration(
        "cache.default_ttl",
        &c.and_then(|c| c.default_ttl.clone()),
        Duration::from_secs(60),
    );
    CacheConfig {
        max_size,
        default_ttl,
    }
}
