//! Validation of `rate_limits`, `redis` and routes' `rate_limit` keys.

use super::file::{RateLimitFile, RedisFile, StrOrList};
use super::model::*;
use super::units::parse_duration;
use super::validate::Errs;
use http::HeaderName;
use std::collections::BTreeMap;
use std::time::Duration;

fn key(path: &str, k: Option<&str>, errs: &mut Errs) -> LimitKey {
    match k.unwrap_or("client_ip") {
        "client_ip" => LimitKey::ClientIp,
        "consumer" => LimitKey::Consumer,
        other => {
            if let Some(c) = other
                .strip_prefix("claim:")
                .filter(|c| !c.trim().is_empty())
            {
                LimitKey::Claim(c.trim().to_string())
            } else if let Some(h) = other.strip_prefix("header:") {
                match HeaderName::from_bytes(h.trim().as_bytes()) {
                    Ok(h) => LimitKey::Header(h),
                    Err(_) => {
                        errs.push(path, format!("invalid header name in `{other}`"));
                        LimitKey::ClientIp
                    }
                }
            } else {
                errs.push(
                    path,
                    format!("unknown key `{other}` (client_ip, claim:NAME, header:NAME, consumer)"),
                );
                LimitKey::ClientIp
            }
        }
    }
}

pub fn rate_limits(
    f: &BTreeMap<String, RateLimitFile>,
    has_redis: bool,
    errs: &mut Errs,
) -> BTreeMap<String, RateLimitConfig> {
    let mut out = BTreeMap::new();
    for (name, l) in f {
        let path = format!("rate_limits.{name}");
        let before = errs.0.len();
        if l.requests == 0 {
            errs.push(format!("{path}.requests"), "must be at least 1");
        }
        let per = match parse_duration(&l.per.0) {
            Ok(d) if d >= Duration::from_secs(1) => d,
            Ok(_) => {
                errs.push(format!("{path}.per"), "must be at least 1s");
                Duration::from_secs(1)
            }
            Err(e) => {
                errs.push(format!("{path}.per"), e);
                Duration::from_secs(1)
            }
        };
        let key = key(&format!("{path}.key"), l.key.as_deref(), errs);
        let backend = match l.backend.as_deref().unwrap_or("local") {
            "local" => LimitBackend::Local,
            "redis" => {
                if !has_redis {
                    errs.push(
                        format!("{path}.backend"),
                        "`backend: redis` needs a top-level `redis` section",
                    );
                }
                LimitBackend::Redis
            }
            other => {
                errs.push(
                    format!("{path}.backend"),
                    format!("unknown backend `{other}` (local, redis)"),
                );
                LimitBackend::Local
            }
        };
        if errs.0.len() == before {
            out.insert(
                name.clone(),
                RateLimitConfig {
                    requests: l.requests,
                    per,
                    key,
                    backend,
                },
            );
        }
    }
    out
}

pub fn redis(r: &RedisFile, errs: &mut Errs) -> RedisConfig {
    let ok = (r.url.starts_with("redis://") || r.url.starts_with("rediss://"))
        && redis::Client::open(r.url.as_str()).is_ok();
    if !ok {
        errs.push(
            "redis.url",
            "invalid URL; write e.g. `redis://127.0.0.1:6379`",
        );
    }
    let on_error = match r.on_error.as_deref().unwrap_or("allow") {
        "allow" => RedisOnError::Allow,
        "deny" => RedisOnError::Deny,
        other => {
            errs.push(
                "redis.on_error",
                format!("unknown value `{other}` (allow, deny)"),
            );
            RedisOnError::Allow
        }
    };
    let timeout = errs.positive_duration("redis.timeout", &r.timeout, Duration::from_millis(50));
    RedisConfig {
        url: r.url.clone(),
        on_error,
        timeout,
    }
}

pub fn route_limits(
    path: &str,
    r: &StrOrList,
    all: &BTreeMap<String, RateLimitFile>,
    errs: &mut Errs,
) -> Vec<String> {
    if r.0.is_empty() {
        errs.push(path, "name at least one rate limit (or leave the key out)");
    }
    for name in &r.0 {
        if !all.contains_key(name) {
            errs.push(
                path,
                format!("rate limit `{name}` is not defined in `rate_limits`"),
            );
        }
    }
    r.0.clone()
}
