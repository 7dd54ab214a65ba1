//! Turns the serde surface into the validated model, collecting every error
//! (with its key path) instead of stopping at the first one. One file per
//! section; this one holds [`Errs`] with the helpers every section shares
//! (durations, addresses, sizes, header names, methods, `claim:`/`header:`
//! selectors and word choices) and [`KeyPath`].

mod auth;
mod basic;
mod cluster;
mod edge;
mod forward;
mod limits;
mod mtls;
mod route;
mod server;
mod tracing;
mod traffic;
mod upstream;

use super::file::*;
use super::model::*;
use super::units::{parse_duration, parse_size};
use http::{HeaderName, Method};
use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

/// Turns `host:port` into an address (the first one found).
pub type Resolve = fn(&str) -> std::io::Result<Option<SocketAddr>>;

/// The system resolver (`/etc/hosts`, DNS), used by default.
pub fn system_resolve(s: &str) -> std::io::Result<Option<SocketAddr>> {
    s.to_socket_addrs().map(|mut it| it.next())
}

pub(super) const DEFAULT_LISTEN: &str = "0.0.0.0:8080";

/// Where a value sits in the file: `routes[2].match.path`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct KeyPath(String);

impl KeyPath {
    pub(super) fn root(key: &str) -> KeyPath {
        KeyPath(key.to_string())
    }

    /// `self.key`
    pub(super) fn key(&self, key: &str) -> KeyPath {
        KeyPath(format!("{}.{key}", self.0))
    }

    /// `self[i]`
    pub(super) fn index(&self, i: usize) -> KeyPath {
        KeyPath(format!("{}[{i}]", self.0))
    }
}

impl fmt::Display for KeyPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// `claim:NAME` or `header:NAME`, the selector mini-language of
/// A DNS name: dot-separated labels of letters, digits, `-` and `_`
/// (SRV names), none empty or over 63 bytes, 253 bytes at most.
pub(super) fn valid_host_name(h: &str) -> bool {
    let h = h.strip_suffix('.').unwrap_or(h);
    !h.is_empty()
        && h.len() <= 253
        && h.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && l.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

/// `hash_key` and rate-limit `key`.
pub(super) enum Selector {
    Claim(String),
    Header(HeaderName),
}

/// Errors gathered during validation, each with its key path, and the
/// resolver used for host names.
pub(super) struct Errs {
    errors: Vec<(String, String)>,
    warnings: Vec<(String, String)>,
    resolve: Resolve,
}

impl Errs {
    pub(super) fn new(resolve: Resolve) -> Errs {
        Errs {
            errors: Vec::new(),
            warnings: Vec::new(),
            resolve,
        }
    }

    /// A key that does nothing where it is: reported, not refused.
    pub(super) fn warn(&mut self, path: impl fmt::Display, msg: impl Into<String>) {
        self.warnings.push((path.to_string(), msg.into()));
    }

    /// The warnings gathered, with their key paths.
    pub(super) fn take_warnings(&mut self) -> Vec<(String, String)> {
        std::mem::take(&mut self.warnings)
    }

    pub(super) fn push(&mut self, path: impl fmt::Display, msg: impl Into<String>) {
        self.errors.push((path.to_string(), msg.into()));
    }

    /// Errors so far: a section compares it before and after itself.
    pub(super) fn count(&self) -> usize {
        self.errors.len()
    }

    /// Every (key path, message), in the order found.
    pub(super) fn into_errors(self) -> Vec<(String, String)> {
        self.errors
    }

    pub(super) fn duration(
        &mut self,
        path: &KeyPath,
        v: &Option<Text>,
        default: Duration,
    ) -> Duration {
        match v {
            None => default,
            Some(t) => parse_duration(&t.0).unwrap_or_else(|e| {
                self.push(path, e);
                default
            }),
        }
    }

    pub(super) fn positive_duration(
        &mut self,
        path: &KeyPath,
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
    pub(super) fn addr(&mut self, path: &KeyPath, t: &Text) -> Option<SocketAddr> {
        let s = t.0.trim();
        if let Ok(a) = s.parse::<SocketAddr>() {
            return Some(a);
        }
        if !s.contains(':') {
            self.push(path, format!("invalid address `{s}`: expected `host:port`"));
            return None;
        }
        match (self.resolve)(s) {
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

    /// A byte size (`64KiB`) within `min..=max`; `default` when absent.
    pub(super) fn size(
        &mut self,
        path: &KeyPath,
        v: &Option<Text>,
        default: u64,
        min: u64,
        max: u64,
    ) -> u64 {
        let n = match v {
            None => return default,
            Some(t) => match parse_size(&t.0) {
                Ok(n) => n,
                Err(e) => {
                    self.push(path, e);
                    return default;
                }
            },
        };
        if n < min || n > max {
            self.push(path, format!("must be between {min} and {max} bytes"));
            return default;
        }
        n
    }

    /// IPs and CIDRs (`10.0.0.0/8`, `192.168.1.7`, `2001:db8::/32`); a bare
    /// IP is a /32 or /128. Host bits of a CIDR are ignored.
    pub(super) fn cidrs(&mut self, path: &KeyPath, list: &[Text]) -> Vec<ipnet::IpNet> {
        let mut out = Vec::with_capacity(list.len());
        for (i, t) in list.iter().enumerate() {
            let v = t.0.trim();
            let parsed = v
                .parse::<ipnet::IpNet>()
                .map(|n| n.trunc())
                .or_else(|_| v.parse::<std::net::IpAddr>().map(ipnet::IpNet::from));
            match parsed {
                Ok(n) => out.push(n),
                Err(_) => self.push(path.index(i), format!("invalid IP or CIDR `{v}`")),
            }
        }
        out
    }

    /// A share written `20%` (or `20`), as a fraction 0..=1 within
    /// `min..=max` percent; `default` (a fraction) when absent.
    pub(super) fn percent(
        &mut self,
        path: &KeyPath,
        v: &Option<Text>,
        default: f64,
        (min, max): (f64, f64),
    ) -> f64 {
        let Some(t) = v else { return default };
        let s = t.0.trim();
        let n = s.strip_suffix('%').unwrap_or(s).trim().parse::<f64>();
        match n {
            Ok(n) if n.is_finite() && (min..=max).contains(&n) => n / 100.0,
            Ok(_) => {
                self.push(path, format!("must be between {min}% and {max}%"));
                default
            }
            Err(_) => {
                self.push(path, format!("invalid percentage `{s}` (e.g. `20%`)"));
                default
            }
        }
    }

    /// `host:port` or `ip:port` of an upstream target. Host names are
    /// kept as names (resolved later, in the background), so validating a
    /// config never touches the network.
    pub(super) fn target_addr(&mut self, path: &KeyPath, t: &Text) -> Option<TargetAddr> {
        let s = t.0.trim();
        if let Ok(a) = s.parse::<SocketAddr>() {
            return Some(TargetAddr::Ip(a));
        }
        let parsed = s.rsplit_once(':').and_then(|(h, p)| {
            let port = p.parse::<u16>().ok().filter(|p| *p > 0)?;
            valid_host_name(h).then(|| (h.to_ascii_lowercase(), port))
        });
        match parsed {
            Some((host, port)) => Some(TargetAddr::Name { host, port }),
            None => {
                self.push(
                    path,
                    format!("invalid address `{s}`: expected `host:port` or `ip:port`"),
                );
                None
            }
        }
    }

    pub(super) fn header_name(&mut self, path: &KeyPath, name: &str) -> Option<HeaderName> {
        match HeaderName::from_bytes(name.trim().as_bytes()) {
            Ok(h) => Some(h),
            Err(_) => {
                self.push(path, format!("invalid header name `{name}`"));
                None
            }
        }
    }

    /// A method name, any case.
    pub(super) fn method(&mut self, path: &KeyPath, name: &str) -> Option<Method> {
        match Method::from_bytes(name.to_ascii_uppercase().as_bytes()) {
            Ok(m) => Some(m),
            Err(_) => {
                self.push(path, format!("invalid method `{name}`"));
                None
            }
        }
    }

    /// `claim:NAME` / `header:NAME`; `None` when `text` is neither (the
    /// caller names what else it accepts), `Some(None)` after an error.
    pub(super) fn selector(&mut self, path: &KeyPath, text: &str) -> Option<Option<Selector>> {
        if let Some(c) = text.strip_prefix("claim:").filter(|c| !c.trim().is_empty()) {
            return Some(Some(Selector::Claim(c.trim().to_string())));
        }
        let h = text.strip_prefix("header:")?;
        match HeaderName::from_bytes(h.trim().as_bytes()) {
            Ok(h) => Some(Some(Selector::Header(h))),
            Err(_) => {
                self.push(path, format!("invalid header name in `{text}`"));
                Some(None)
            }
        }
    }

    /// One of `T`'s words; the hint lists them all. `what` names the key
    /// in the message (`unknown balance `x` (round_robin, ...)`).
    pub(super) fn choice<T: Choice>(
        &mut self,
        path: &KeyPath,
        v: Option<&str>,
        default: T,
        what: &str,
    ) -> T {
        let Some(word) = v else {
            return default;
        };
        match T::ALL.iter().find(|(n, _)| *n == word) {
            Some((_, value)) => *value,
            None => {
                let words: Vec<&str> = T::ALL.iter().map(|(n, _)| *n).collect();
                self.push(
                    path,
                    format!("unknown {what} `{word}` ({})", words.join(", ")),
                );
                default
            }
        }
    }
}

/// Which file is being validated: a whole config, the local file of a
/// cluster node (no shared keys, no routes), or a node's local file merged
/// with the document from etcd.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Part {
    Whole,
    Merged,
}

pub(super) fn validate(
    f: FileConfig,
    part: Part,
    base: &std::path::Path,
    errs: &mut Errs,
) -> Config {
    let cluster = f.cluster.as_ref().map(|c| cluster::cluster(c, base, errs));
    // The local file of a cluster node: the shared keys live in etcd.
    let local_only = cluster.is_some() && part == Part::Whole;
    if local_only {
        for k in f.shared_keys() {
            errs.push(
                KeyPath::root(k),
                format!(
                    "with `cluster`, `{k}` lives in etcd (pushed with `gatehouse push`), \
                     not in the local file"
                ),
            );
        }
    }
    let server = server::server(&f.server, base, errs);
    let admin = f
        .admin
        .as_ref()
        .and_then(|a| server::admin(a, &server, errs));
    let logging = server::logging(&f.logging, base, errs);
    let auth = auth::providers(&f.auth, base, errs);
    let asks_for_certs = server.tls.as_ref().is_some_and(|t| t.client_ca.is_some());
    for (name, a) in &auth {
        if matches!(a, AuthConfig::Mtls(_)) && !asks_for_certs {
            errs.warn(
                KeyPath::root("auth").key(name),
                "no client certificate can reach this mtls provider without \
                 `server.tls.client_ca`: every request it checks gets 401",
            );
        }
    }
    let redis = f.redis.as_ref().map(|r| limits::redis(r, errs));
    let rate_limits = limits::rate_limits(&f.rate_limits, f.redis.is_some(), errs);
    let cache = server::cache(f.cache.as_ref(), errs);
    let tracing = f.tracing.as_ref().map(|t| tracing::tracing(t, errs));
    let mut upstreams = BTreeMap::new();
    for (name, u) in &f.upstreams {
        let path = KeyPath::root("upstreams").key(name);
        if let Some(u) = upstream::upstream(&path, u, errs) {
            upstreams.insert(name.clone(), u);
        }
    }
    let mut routes = Vec::new();
    let mut names = HashSet::new();
    // A truncated file must not become "no routes, 404 for everything".
    if f.routes.is_empty() && !local_only {
        errs.push(
            KeyPath::root("routes"),
            "the config has no routes (an empty or truncated file?); at least one is required",
        );
    }
    for (i, r) in f.routes.iter().enumerate() {
        let path = KeyPath::root("routes").index(i);
        if !names.insert(r.name.clone()) {
            errs.push(
                path.key("name"),
                format!("duplicate route name `{}`", r.name),
            );
        }
        if let Some(route) = route::route(&path, r, &f, errs) {
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
        tracing,
        routes,
        cluster,
        warnings: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_paths_render_as_written_in_errors() {
        let p = KeyPath::root("routes").index(2).key("match").key("path");
        assert_eq!(p.to_string(), "routes[2].match.path");
    }

    /// The hint is generated from the same table that parses and renders,
    /// so every accepted word is listed (`trace` was missing once).
    #[test]
    fn choices_parse_hint_and_render_from_one_table() {
        let mut errs = Errs::new(system_resolve);
        let p = KeyPath::root("logging").key("level");
        assert_eq!(
            errs.choice(&p, Some("trace"), LogLevel::Info, "level"),
            LogLevel::Trace
        );
        assert_eq!(errs.count(), 0);
        assert_eq!(
            errs.choice(&p, Some("loud"), LogLevel::Info, "level"),
            LogLevel::Info
        );
        let errors = errs.into_errors();
        assert_eq!(errors[0].0, "logging.level");
        assert_eq!(
            errors[0].1,
            "unknown level `loud` (error, warn, info, debug, trace)"
        );
        for (word, value) in LogLevel::ALL {
            assert_eq!(value.name(), *word);
        }
        for (word, value) in Balance::ALL {
            assert_eq!(value.name(), *word);
        }
    }

    #[test]
    fn selectors() {
        let mut errs = Errs::new(system_resolve);
        let p = KeyPath::root("k");
        assert!(
            matches!(errs.selector(&p, "claim:tenant"), Some(Some(Selector::Claim(c))) if c == "tenant")
        );
        assert!(
            matches!(errs.selector(&p, "header:x-team"), Some(Some(Selector::Header(h))) if h == "x-team")
        );
        assert!(errs.selector(&p, "claim:").is_none());
        assert!(errs.selector(&p, "client_ip").is_none());
        assert!(matches!(errs.selector(&p, "header:bad name"), Some(None)));
        assert_eq!(
            errs.into_errors()[0].1,
            "invalid header name in `header:bad name`"
        );
    }
}
