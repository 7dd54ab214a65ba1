//! `routes[i]`: the match, path rewrites, and the policies a route names.

use super::{auth, edge, limits, Errs, KeyPath};
use crate::config::file::*;
use crate::config::model::*;
use crate::http::normalize_path;
use http::HeaderValue;
use std::time::Duration;

pub(super) fn route(
    path: &KeyPath,
    r: &RouteFile,
    f: &FileConfig,
    errs: &mut Errs,
) -> Option<RouteConfig> {
    let before = errs.count();
    if r.name.trim().is_empty() {
        errs.push(path.key("name"), "route name must not be empty");
    }
    let traffic = super::traffic::traffic(path, r, f, errs);
    let matcher = matcher(&path.key("match"), &r.matcher, errs);
    let (strip_prefix, add_prefix) = rewrites(path, r, errs);
    let timeout = r.timeout.as_ref().map(|t| {
        errs.positive_duration(
            &path.key("timeout"),
            &Some(t.clone()),
            Duration::from_secs(60),
        )
    });
    let mut cfg = RouteConfig {
        name: r.name.clone(),
        matcher,
        upstream: traffic.upstream,
        split_key: traffic.split_key,
        mirror: traffic.mirror,
        strip_prefix,
        add_prefix,
        timeout,
        auth: None,
        rate_limits: Vec::new(),
        cache: None,
        request_headers: HeaderTransform::default(),
        response_headers: HeaderTransform::default(),
        cors: None,
        websocket: r.websocket,
        compress: compress(&path.key("compress"), r.compress.as_ref(), errs),
        allow_ips: errs.cidrs(&path.key("allow_ips"), &r.allow_ips),
        deny_ips: errs.cidrs(&path.key("deny_ips"), &r.deny_ips),
    };
    policies(path, r, f, &mut cfg, errs);
    (errs.count() == before).then_some(cfg)
}

/// `compress: true` is `{ algorithms: [zstd, br, gzip], min_size: 1KiB }`.
fn compress(path: &KeyPath, c: Option<&CompressFile>, errs: &mut Errs) -> Option<CompressConfig> {
    const ALL: [Coding; 3] = [Coding::Zstd, Coding::Br, Coding::Gzip];
    let opts = match c? {
        BoolOr::On(false) => return None,
        BoolOr::On(true) => CompressOptions::default(),
        BoolOr::With(o) => o.clone(),
    };
    let mut algorithms = Vec::new();
    match &opts.algorithms {
        None => algorithms.extend(ALL),
        Some(list) if list.is_empty() => errs.push(
            path.key("algorithms"),
            "name at least one of zstd, br, gzip",
        ),
        Some(list) => {
            for (i, name) in list.iter().enumerate() {
                let p = path.key("algorithms").index(i);
                match ALL
                    .iter()
                    .find(|c| c.token() == name.trim().to_ascii_lowercase())
                {
                    Some(c) if algorithms.contains(c) => {
                        errs.push(p, format!("`{name}` is listed twice"))
                    }
                    Some(c) => algorithms.push(*c),
                    None => errs.push(p, format!("unknown algorithm `{name}` (zstd, br, gzip)")),
                }
            }
        }
    }
    let min_size = errs.size(&path.key("min_size"), &opts.min_size, 1024, 0, 1 << 30);
    Some(CompressConfig {
        algorithms,
        min_size,
    })
}

fn matcher(path: &KeyPath, m: &MatchFile, errs: &mut Errs) -> MatchConfig {
    if let Some(p) = &m.path {
        config_path(errs, &path.key("path"), p);
    }
    if let Some(p) = &m.path_prefix {
        config_path(errs, &path.key("path_prefix"), p);
    }
    let path_regex = m.path_regex.as_ref().and_then(|re| {
        regex::Regex::new(re)
            .map_err(|e| {
                let msg = format!("invalid regex: {}", one_line(&e.to_string()));
                errs.push(path.key("path_regex"), msg)
            })
            .ok()
    });
    let mut methods = Vec::new();
    if let Some(list) = &m.methods {
        if list.is_empty() {
            errs.push(
                path.key("methods"),
                "must list at least one method (or be left out)",
            );
        }
        for (i, name) in list.iter().enumerate() {
            methods.extend(errs.method(&path.key("methods").index(i), name));
        }
    }
    let host = m.host.as_ref().and_then(|h| match parse_host(h) {
        Ok(hm) => Some(hm),
        Err(e) => {
            errs.push(path.key("host"), e);
            None
        }
    });
    let mut headers = Vec::new();
    for (name, value) in &m.headers {
        let hpath = path.key("headers").key(name);
        let Some(n) = errs.header_name(&hpath, name) else {
            continue;
        };
        match HeaderValue::from_str(&value.0) {
            Ok(v) => headers.push((n, v)),
            Err(_) => errs.push(hpath, "invalid header value"),
        }
    }
    MatchConfig {
        path: m.path.clone(),
        path_prefix: m.path_prefix.as_deref().map(trim_trailing_slash),
        path_regex,
        methods,
        host,
        headers,
    }
}

/// `strip_prefix` and `add_prefix` (`/` means none).
fn rewrites(path: &KeyPath, r: &RouteFile, errs: &mut Errs) -> (Option<String>, Option<String>) {
    let mut one = |key: &str, v: &Option<String>| {
        let p = v.as_deref()?;
        config_path(errs, &path.key(key), p);
        Some(trim_trailing_slash(p)).filter(|p| p != "/")
    };
    let strip = one("strip_prefix", &r.strip_prefix);
    let add = one("add_prefix", &r.add_prefix);
    (strip, add)
}

/// The policies a route names: auth, rate limits, cache, header
/// transforms and CORS.
fn policies(path: &KeyPath, r: &RouteFile, f: &FileConfig, cfg: &mut RouteConfig, errs: &mut Errs) {
    cfg.auth = r
        .auth
        .as_ref()
        .and_then(|a| auth::route_auth(&path.key("auth"), a, &f.auth, errs));
    cfg.rate_limits = r
        .rate_limit
        .as_ref()
        .map(|l| limits::route_limits(&path.key("rate_limit"), l, &f.rate_limits, errs))
        .unwrap_or_default();
    cfg.cache = match &r.cache {
        None | Some(BoolOr::On(false)) => None,
        Some(BoolOr::On(true)) => Some(None),
        Some(BoolOr::With(t)) => Some(t.ttl.as_ref().map(|ttl| {
            let p = path.key("cache").key("ttl");
            errs.positive_duration(&p, &Some(ttl.clone()), Duration::from_secs(60))
        })),
    };
    let mut transform = |key: &str, t: &Option<HeaderTransformFile>| {
        t.as_ref()
            .map(|t| edge::transform(&path.key(key), t, errs))
            .unwrap_or_default()
    };
    cfg.request_headers = transform("request_headers", &r.request_headers);
    cfg.response_headers = transform("response_headers", &r.response_headers);
    cfg.cors = r
        .cors
        .as_ref()
        .map(|c| edge::cors(&path.key("cors"), c, errs));
}

/// Checks that a configured path is absolute and already normalised (a
/// route on `/a//b` could never match, since requests are normalised first).
fn config_path(errs: &mut Errs, path: &KeyPath, p: &str) -> bool {
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
