//! The running config as JSON for `GET /config`, with every secret
//! replaced by `"<redacted>"`.

use super::model::*;
use super::units::format_duration;
use serde_json::{json, Value};

const REDACTED: &str = "<redacted>";

fn secret(v: &Option<String>) -> Value {
    match v {
        Some(_) => Value::from(REDACTED),
        None => Value::Null,
    }
}

fn hash_key(k: &HashKey) -> String {
    match k {
        HashKey::ClientIp => "client_ip".to_string(),
        HashKey::Path => "path".to_string(),
        HashKey::Header(h) => format!("header:{h}"),
        HashKey::Claim(c) => format!("claim:{c}"),
    }
}

fn percent(share: f64) -> String {
    format!("{}%", share * 100.0)
}

fn upstream(u: &UpstreamConfig) -> Value {
    json!({
        "targets": u.targets.iter().map(|t| json!({"addr": t.addr.text(), "weight": t.weight})).collect::<Vec<_>>(),
        "srv": u.srv,
        "resolve": u.resolve.map_or("once".to_string(), format_duration),
        "balance": u.balance.name(),
        "hash_key": hash_key(&u.hash_key),
        "retry_on": u.retry_on.iter().map(|r| r.label()).collect::<Vec<_>>(),
        "retry_methods": u.retry_methods.name(),
        "retry_budget": percent(u.retry_budget),
        "max_inflight": u.max_inflight,
        "passive_health": u.passive_health.as_ref().map(|p| json!({
            "consecutive_failures": p.consecutive_failures,
            "eject_for": format_duration(p.eject_for),
            "max_ejected": percent(p.max_ejected),
        })),
        "health_check": u.health_check.as_ref().map(|h| json!({
            "kind": h.kind.name(),
            "path": h.path,
            "expect_status": h.expect_status,
            "interval": format_duration(h.interval),
            "timeout": format_duration(h.timeout),
            "unhealthy_after": h.unhealthy_after,
            "healthy_after": h.healthy_after,
        })),
        "connect_timeout": format_duration(u.connect_timeout),
        "read_timeout": format_duration(u.read_timeout),
        "retries": u.retries,
        "tls": u.tls,
        "tls_verify": u.tls_verify,
        "sni": u.sni,
        "host": u.host,
    })
}

fn auth(a: &AuthConfig) -> Value {
    match a {
        AuthConfig::Jwt(j) => json!({
            "type": "jwt",
            "algorithms": j.algorithms.iter().map(|a| format!("{a:?}")).collect::<Vec<_>>(),
            "secret": matches!(j.key, JwtKey::Secret(_)).then_some(REDACTED),
            "public_key": match &j.key { JwtKey::PublicKey { path, .. } => Some(path.clone()), _ => None },
            "jwks": match &j.key {
                JwtKey::JwksFile { path, .. } => Some(json!({"file": path})),
                JwtKey::JwksUrl { url, refresh } => Some(json!({"url": url, "refresh": format_duration(*refresh)})),
                _ => None,
            },
            "issuer": j.issuer,
            "audience": j.audience,
            "leeway": format_duration(j.leeway),
            "forward_claims": j.forward_claims.iter().map(|(c, h)| (c.clone(), Value::from(h.as_str()))).collect::<serde_json::Map<_, _>>(),
            "token_cache": {"entries": j.cache_entries, "ttl": format_duration(j.cache_ttl)},
        }),
        AuthConfig::ApiKey(k) => json!({
            "type": "api_key",
            "header": k.header.as_str(),
            "keys": k.keys.iter().map(|e| json!({"id": e.id, "key": REDACTED})).collect::<Vec<_>>(),
            "forward_id": k.forward_id.as_ref().map(|h| h.as_str()),
        }),
        AuthConfig::Forward(f) => json!({
            "type": "forward",
            "url": f.url,
            "timeout": format_duration(f.timeout),
            "send_headers": f.send_headers.iter().map(|h| h.as_str()).collect::<Vec<_>>(),
            "copy_headers": f.copy_headers.iter().map(|h| h.as_str()).collect::<Vec<_>>(),
            "cache": f.cache.map(format_duration),
        }),
        AuthConfig::Basic(b) => json!({
            "type": "basic",
            "users": b.users.iter().map(|(n, _)| json!({"name": n, "hash": REDACTED})).collect::<Vec<_>>(),
            "forward_id": b.forward_id.as_ref().map(|h| h.as_str()),
        }),
        AuthConfig::Mtls(m) => json!({
            "type": "mtls",
            "allow_subjects": m.allow_subjects,
            "allow_sans": m.allow_sans,
            "forward": {
                "subject": m.forward_subject.as_ref().map(|h| h.as_str()),
                "fingerprint": m.forward_fingerprint.as_ref().map(|h| h.as_str()),
            },
        }),
    }
}

/// Header names whose configured values are credentials (an upstream
/// `Authorization` injected by a transform, say).
fn sensitive_header(name: &str) -> bool {
    name == "cookie"
        || ["auth", "token", "secret", "key", "password", "session"]
            .iter()
            .any(|w| name.contains(w))
}

fn template(name: &http::HeaderName, parts: &[TemplatePart]) -> Value {
    if sensitive_header(name.as_str()) {
        return Value::from(REDACTED);
    }
    let text: String = parts
        .iter()
        .map(|p| match p {
            TemplatePart::Text(t) => t.clone(),
            TemplatePart::RequestId => "${request_id}".to_string(),
            TemplatePart::ClientIp => "${client_ip}".to_string(),
            TemplatePart::Route => "${route}".to_string(),
            TemplatePart::Claim(c) => format!("${{claim.{c}}}"),
        })
        .collect();
    Value::from(text)
}

fn transform(t: &HeaderTransform) -> Value {
    let pairs = |v: &[(http::HeaderName, Vec<TemplatePart>)]| {
        v.iter()
            .map(|(n, p)| json!([n.as_str(), template(n, p)]))
            .collect::<Vec<_>>()
    };
    json!({
        "set": pairs(&t.set),
        "add": pairs(&t.add),
        "remove": t.remove.iter().map(|n| n.as_str()).collect::<Vec<_>>(),
    })
}

fn route(r: &RouteConfig) -> Value {
    let m = &r.matcher;
    json!({
        "name": r.name,
        "match": {
            "path": m.path,
            "path_prefix": m.path_prefix,
            "path_regex": m.path_regex.as_ref().map(|re| re.as_str()),
            "methods": m.methods.iter().map(|m| m.as_str()).collect::<Vec<_>>(),
            "host": m.host.as_ref().map(|h| match h { HostMatch::Exact(h) => h.clone(), HostMatch::Wildcard(h) => format!("*.{h}") }),
            "headers": m.headers.iter().map(|(k, v)| (k.to_string(), Value::from(v.to_str().unwrap_or("")))).collect::<serde_json::Map<_, _>>(),
        },
        "upstream": match &r.upstream { RouteUpstream::One(n) => Some(n), RouteUpstream::Split(_) => None },
        "split": match &r.upstream {
            RouteUpstream::Split(v) => Some(v.iter().map(|(n, w)| json!({"upstream": n, "weight": w})).collect::<Vec<_>>()),
            RouteUpstream::One(_) => None,
        },
        "split_key": r.split_key.as_ref().map(hash_key),
        "allow_ips": r.allow_ips.iter().map(|n| n.to_string()).collect::<Vec<_>>(),
        "deny_ips": r.deny_ips.iter().map(|n| n.to_string()).collect::<Vec<_>>(),
        "mirror": r.mirror.as_ref().map(|m| json!({"upstream": m.upstream, "percent": format!("{}%", m.percent)})),
        "strip_prefix": r.strip_prefix,
        "add_prefix": r.add_prefix,
        "timeout": r.timeout.map(format_duration),
        "auth": r.auth.as_ref().map(|a| json!({"providers": a.providers, "scopes": a.scopes})),
        "rate_limit": r.rate_limits,
        "cache": r.cache.map(|ttl| json!({"ttl": ttl.map(format_duration)})),
        "request_headers": transform(&r.request_headers),
        "response_headers": transform(&r.response_headers),
        "cors": r.cors.as_ref().map(|c| json!({
            "allow_origins": c.allow_origins,
            "allow_methods": c.allow_methods.iter().map(|m| m.as_str()).collect::<Vec<_>>(),
            "allow_headers": c.allow_headers.iter().map(|h| h.as_str()).collect::<Vec<_>>(),
            "expose_headers": c.expose_headers.iter().map(|h| h.as_str()).collect::<Vec<_>>(),
            "allow_credentials": c.allow_credentials,
            "max_age": format_duration(c.max_age),
        })),
        "websocket": r.websocket,
        "compress": r.compress.as_ref().map(|c| json!({
            "algorithms": c.algorithms.iter().map(|a| a.token()).collect::<Vec<_>>(),
            "min_size": c.min_size,
        })),
    })
}

/// The config with secrets redacted.
pub fn redacted_json(c: &Config) -> Value {
    let s = &c.server;
    json!({
        "server": {
            "listen": s.listen.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
            "threads": s.threads,
            "work_stealing": s.work_stealing,
            "pid_file": s.pid_file,
            "upgrade_sock": s.upgrade_sock,
            "grace_period": format_duration(s.grace_period),
            "tunnel_grace_period": format_duration(s.tunnel_grace_period),
            "trusted_proxies": s.trusted_proxies.iter().map(|n| n.to_string()).collect::<Vec<_>>(),
            "idle_timeout": format_duration(s.idle_timeout),
            "tls": s.tls.as_ref().map(|t| json!({
                "listen": t.listen.to_string(), "cert": t.cert, "key": t.key,
                "client_ca": t.client_ca.as_ref().map(|c| &c.path),
                "client_auth": t.client_ca.as_ref().map(|c| if c.required { "required" } else { "optional" }),
            })),
            "h2c": s.h2c,
            "upstream_ca": s.upstream_ca,
            "resolver": s.resolver.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
            "underscores_in_headers": if s.underscores_in_headers { "allow" } else { "drop" },
            "max_body": s.limits.max_body,
            "max_header_bytes": s.limits.max_header_bytes,
            "header_timeout": format_duration(s.limits.header_timeout),
            "body_timeout": format_duration(s.limits.body_timeout),
            "max_uri_bytes": s.limits.max_uri_bytes,
            "max_connections": s.limits.max_connections,
        },
        "admin": c.admin.as_ref().map(|a| json!({"listen": a.listen.to_string(), "token": secret(&a.token)})),
        "logging": {
            "level": c.logging.level.name(),
            "access_log": match &c.logging.access_log { AccessLogTarget::Stdout => "stdout".to_string(), AccessLogTarget::Off => "off".to_string(), AccessLogTarget::File(p) => p.clone() },
            "format": c.logging.format.name(),
            "buffer_lines": c.logging.buffer_lines,
        },
        "upstreams": c.upstreams.iter().map(|(k, u)| (k.clone(), upstream(u))).collect::<serde_json::Map<_, _>>(),
        "auth": c.auth.iter().map(|(k, a)| (k.clone(), auth(a))).collect::<serde_json::Map<_, _>>(),
        "rate_limits": c.rate_limits.iter().map(|(k, l)| (k.clone(), json!({
            "requests": l.requests,
            "per": format_duration(l.per),
            "key": match &l.key { LimitKey::ClientIp => "client_ip".to_string(), LimitKey::Consumer => "consumer".to_string(), LimitKey::Claim(c) => format!("claim:{c}"), LimitKey::Header(h) => format!("header:{h}") },
            "backend": l.backend.name(),
            "sync": l.sync.map(format_duration),
        }))).collect::<serde_json::Map<_, _>>(),
        "redis": c.redis.as_ref().map(|r| json!({
            "url": r.redacted_url(),
            "on_error": r.on_error.name(),
            "timeout": format_duration(r.timeout),
        })),
        "cache": {"max_size": c.cache.max_size, "default_ttl": format_duration(c.cache.default_ttl)},
        "tracing": c.tracing.as_ref().map(|t| json!({
            "otlp": t.otlp, "service_name": t.service_name, "sample": t.sample, "timeout": format_duration(t.timeout),
        })),
        "routes": c.routes.iter().map(route).collect::<Vec<_>>(),
        "cluster": c.cluster.as_ref().map(|k| json!({
            "etcd": k.etcd, "prefix": k.prefix, "node_id": k.node_id,
            "snapshot_file": k.snapshot_file, "timeout": format_duration(k.timeout),
        })),
    })
}
