//! `server` (listeners, threads, TLS, protocol limits), `admin`, `logging`
//! and `cache`.

use super::{Errs, KeyPath, DEFAULT_LISTEN};
use crate::config::file::*;
use crate::config::model::*;
use std::path::Path;
use std::time::Duration;

/// Pingora reads at most 1 MiB of request head whatever the setting.
const PINGORA_MAX_HEAD: u64 = 1 << 20;

fn key(k: &str) -> KeyPath {
    KeyPath::root("server").key(k)
}

pub(super) fn server(s: &ServerFile, base: &Path, errs: &mut Errs) -> ServerConfig {
    let listen_src = s
        .listen
        .clone()
        .unwrap_or_else(|| vec![Text(DEFAULT_LISTEN.to_string())]);
    if listen_src.is_empty() {
        errs.push(key("listen"), "at least one listen address is required");
    }
    let listen = listen_src
        .iter()
        .enumerate()
        .filter_map(|(i, t)| errs.addr(&key("listen").index(i), t))
        .collect();
    let threads = s.threads.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    });
    if threads == 0 {
        errs.push(key("threads"), "must be at least 1");
    }
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
            &key("grace_period"),
            &s.grace_period,
            Duration::from_secs(30),
        ),
        tunnel_grace_period: errs.duration(
            &key("tunnel_grace_period"),
            &s.tunnel_grace_period,
            Duration::from_secs(3600),
        ),
        trusted_proxies: trusted_proxies(s, errs),
        idle_timeout: errs.positive_duration(
            &key("idle_timeout"),
            &s.idle_timeout,
            Duration::from_secs(60),
        ),
        tls: tls(s, base, errs),
        h2c: s.h2c.unwrap_or(false),
        limits: limits(s, errs),
        upstream_ca: s
            .upstream_ca
            .as_ref()
            .map(|f| readable(errs, &key("upstream_ca"), f, base, "CERTIFICATE")),
        resolver: resolver(s, errs),
        underscores_in_headers: match s.underscores_in_headers.as_deref() {
            None | Some("drop") => false,
            Some("allow") => true,
            Some(other) => {
                errs.push(
                    key("underscores_in_headers"),
                    format!("unknown underscores_in_headers `{other}` (drop, allow)"),
                );
                false
            }
        },
    }
}

/// `server.resolver`: DNS servers as `ip:port` (or a bare IP: port 53).
fn resolver(s: &ServerFile, errs: &mut Errs) -> Vec<std::net::SocketAddr> {
    let list = s.resolver.as_deref().unwrap_or_default();
    let mut out = Vec::new();
    for (i, t) in list.iter().enumerate() {
        let v = t.0.trim();
        let parsed = v.parse::<std::net::SocketAddr>().ok().or_else(|| {
            v.parse::<std::net::IpAddr>()
                .ok()
                .map(|ip| std::net::SocketAddr::new(ip, 53))
        });
        match parsed {
            Some(a) => out.push(a),
            None => errs.push(
                key("resolver").index(i),
                format!("invalid DNS server `{v}`: expected `ip:port`"),
            ),
        }
    }
    out
}

fn trusted_proxies(s: &ServerFile, errs: &mut Errs) -> Vec<ipnet::IpNet> {
    errs.cidrs(&key("trusted_proxies"), &s.trusted_proxies)
}

fn readable(
    errs: &mut Errs,
    path: &KeyPath,
    file: &str,
    base: &Path,
    must_contain: &str,
) -> String {
    let full = base.join(file);
    match std::fs::read_to_string(&full) {
        Ok(text) if text.contains(must_contain) => {}
        Ok(_) => errs.push(
            path,
            format!(
                "{} does not hold a PEM `{must_contain}` block",
                full.display()
            ),
        ),
        Err(e) => errs.push(path, format!("cannot read {}: {e}", full.display())),
    }
    full.display().to_string()
}

fn tls(s: &ServerFile, base: &Path, errs: &mut Errs) -> Option<TlsConfig> {
    let t = s.tls.as_ref()?;
    let path = key("tls");
    let before = errs.count();
    let listen = errs.addr(&path.key("listen"), &t.listen)?;
    let cert = readable(errs, &path.key("cert"), &t.cert, base, "CERTIFICATE");
    let key = readable(errs, &path.key("key"), &t.key, base, "PRIVATE KEY");
    if errs.count() == before {
        // Parse them as the listener will, so `-t` catches a key that
        // does not belong to the certificate.
        if let Err(e) = crate::tls::load_pair(&cert, &key) {
            errs.push(path.key("key"), e.to_string());
        }
    }
    let client_ca = client_ca(t, &path, base, errs);
    Some(TlsConfig {
        listen,
        cert,
        key,
        client_ca,
    })
}

/// `client_ca` (a PEM bundle, loaded as the listener will) and
/// `client_auth` (`optional`, the default, or `required`).
fn client_ca(t: &TlsFile, path: &KeyPath, base: &Path, errs: &mut Errs) -> Option<ClientCaConfig> {
    let required = match t.client_auth.as_deref() {
        None | Some("optional") => false,
        Some("required") => true,
        Some(other) => {
            errs.push(
                path.key("client_auth"),
                format!("unknown client_auth `{other}` (optional, required)"),
            );
            false
        }
    };
    let Some(file) = &t.client_ca else {
        if t.client_auth.is_some() {
            errs.push(
                path.key("client_auth"),
                "needs `client_ca`: the CA client certificates are verified against",
            );
        }
        return None;
    };
    let before = errs.count();
    let ca_path = readable(errs, &path.key("client_ca"), file, base, "CERTIFICATE");
    let ca = ClientCaConfig {
        path: ca_path,
        required,
    };
    if errs.count() == before {
        let check = crate::tls::ClientCa {
            path: &ca.path,
            required,
        };
        if let Err(e) = crate::tls::client_verifier(&check) {
            errs.push(path.key("client_ca"), e.to_string());
        }
    }
    Some(ca)
}

fn limits(s: &ServerFile, errs: &mut Errs) -> Limits {
    Limits {
        max_body: errs.size(&key("max_body"), &s.max_body, 10 << 20, 0, u64::MAX),
        max_header_bytes: errs.size(
            &key("max_header_bytes"),
            &s.max_header_bytes,
            64 << 10,
            1024,
            PINGORA_MAX_HEAD,
        ) as usize,
        header_timeout: errs.positive_duration(
            &key("header_timeout"),
            &s.header_timeout,
            Duration::from_secs(10),
        ),
        body_timeout: errs.positive_duration(
            &key("body_timeout"),
            &s.body_timeout,
            Duration::from_secs(30),
        ),
        max_connections: match s.max_connections {
            Some(0) => {
                errs.push(key("max_connections"), "must be at least 1");
                1
            }
            Some(n) => n,
            None => 10_000,
        },
        max_uri_bytes: errs.size(
            &key("max_uri_bytes"),
            &s.max_uri_bytes,
            8 << 10,
            64,
            PINGORA_MAX_HEAD,
        ) as usize,
    }
}

pub(super) fn admin(a: &AdminFile, server: &ServerConfig, errs: &mut Errs) -> Option<AdminConfig> {
    let path = KeyPath::root("admin").key("listen");
    let listen = errs.addr(&path, &a.listen)?;
    if server.listen.contains(&listen) {
        errs.push(
            path,
            "the admin listener must not share an address with server.listen",
        );
    }
    let token = a.token.clone().filter(|t| !t.is_empty());
    Some(AdminConfig { listen, token })
}

/// A relative access-log path is taken from the config file's directory
/// (a daemon runs from `/`).
pub(super) fn logging(l: &LoggingFile, base: &Path, errs: &mut Errs) -> LoggingConfig {
    let path = KeyPath::root("logging");
    let level = errs.choice(
        &path.key("level"),
        l.level.as_deref(),
        LogLevel::Info,
        "level",
    );
    let access_log = match l.access_log.as_deref().unwrap_or("stdout") {
        "stdout" => AccessLogTarget::Stdout,
        "off" => AccessLogTarget::Off,
        "" => {
            errs.push(path.key("access_log"), "must be stdout, off or a file path");
            AccessLogTarget::Off
        }
        file => AccessLogTarget::File(base.join(file).display().to_string()),
    };
    let format = errs.choice(
        &path.key("format"),
        l.format.as_deref(),
        AccessLogFormat::Json,
        "format",
    );
    let buffer_lines = l.buffer_lines.unwrap_or(16 * 1024);
    if buffer_lines == 0 {
        errs.push(path.key("buffer_lines"), "must be at least 1");
    }
    LoggingConfig {
        level,
        access_log,
        format,
        buffer_lines: buffer_lines.max(1),
    }
}

pub(super) fn cache(c: Option<&CacheFile>, errs: &mut Errs) -> CacheConfig {
    let path = KeyPath::root("cache");
    let max_size = match c.and_then(|c| c.max_size.as_ref()) {
        None => 256 << 20,
        Some(t) => match crate::config::units::parse_size(&t.0) {
            Ok(n) if n >= 1 << 20 => n,
            Ok(_) => {
                errs.push(path.key("max_size"), "must be at least 1MiB");
                256 << 20
            }
            Err(e) => {
                errs.push(path.key("max_size"), e);
                256 << 20
            }
        },
    };
    let default_ttl = errs.duration(
        &path.key("default_ttl"),
        &c.and_then(|c| c.default_ttl.clone()),
        Duration::from_secs(60),
    );
    CacheConfig {
        max_size,
        default_ttl,
    }
}
