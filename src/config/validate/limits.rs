//! `rate_limits`, `redis` and routes' `rate_limit` keys.

use super::{Errs, KeyPath, Selector};
use crate::config::file::{RateLimitFile, RedisFile, StrOrList};
use crate::config::model::*;
use crate::config::units::parse_duration;
use std::collections::BTreeMap;
use std::time::Duration;

fn key(path: &KeyPath, k: Option<&str>, errs: &mut Errs) -> LimitKey {
    match k.unwrap_or("client_ip") {
        "client_ip" => LimitKey::ClientIp,
        "consumer" => LimitKey::Consumer,
        other => match errs.selector(path, other) {
            Some(Some(Selector::Claim(c))) => LimitKey::Claim(c),
            Some(Some(Selector::Header(h))) => LimitKey::Header(h),
            Some(None) => LimitKey::ClientIp,
            None => {
                errs.push(
                    path,
                    format!("unknown key `{other}` (client_ip, claim:NAME, header:NAME, consumer)"),
                );
                LimitKey::ClientIp
            }
        },
    }
}

fn limit(path: &KeyPath, l: &RateLimitFile, has_redis: bool, errs: &mut Errs) -> RateLimitConfig {
    if l.requests == 0 {
        errs.push(path.key("requests"), "must be at least 1");
    }
    let per = match parse_duration(&l.per.0) {
        Ok(d) if d >= Duration::from_secs(1) => d,
        Ok(_) => {
            errs.push(path.key("per"), "must be at least 1s");
            Duration::from_secs(1)
        }
        Err(e) => {
            errs.push(path.key("per"), e);
            Duration::from_secs(1)
        }
    };
    let key = key(&path.key("key"), l.key.as_deref(), errs);
    let bpath = path.key("backend");
    let backend = errs.choice(&bpath, l.backend.as_deref(), LimitBackend::Local, "backend");
    if backend == LimitBackend::Redis && !has_redis {
        errs.push(bpath, "`backend: redis` needs a top-level `redis` section");
    }
    let sync = l.sync.as_ref().map(|_| {
        let spath = path.key("sync");
        if backend != LimitBackend::Redis {
            errs.push(&spath, "`sync` needs `backend: redis`");
        }
        let d = errs.positive_duration(&spath, &l.sync, Duration::from_millis(100));
        if d > per {
            errs.push(&spath, "must not be longer than `per`");
        }
        d
    });
    RateLimitConfig {
        requests: l.requests,
        per,
        key,
        backend,
        sync,
    }
}

pub(super) fn rate_limits(
    f: &BTreeMap<String, RateLimitFile>,
    has_redis: bool,
    errs: &mut Errs,
) -> BTreeMap<String, RateLimitConfig> {
    let mut out = BTreeMap::new();
    for (name, l) in f {
        let before = errs.count();
        let path = KeyPath::root("rate_limits").key(name);
        if name.is_empty()
            || !name
                .bytes()
                .all(|b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\')
        {
            errs.push(
                path.clone(),
                "a limit name is printable ASCII without `\"` or `\\` (it is quoted in the `RateLimit` response fields)",
            );
        }
        let cfg = limit(&path, l, has_redis, errs);
        if errs.count() == before {
            out.insert(name.clone(), cfg);
        }
    }
    out
}

pub(super) fn redis(r: &RedisFile, errs: &mut Errs) -> RedisConfig {
    let path = KeyPath::root("redis");
    let ok = (r.url.starts_with("redis://") || r.url.starts_with("rediss://"))
        && redis::Client::open(r.url.as_str()).is_ok();
    if !ok {
        errs.push(
            path.key("url"),
            "invalid URL; write e.g. `redis://127.0.0.1:6379`",
        );
    }
    let on_error = errs.choice(
        &path.key("on_error"),
        r.on_error.as_deref(),
        RedisOnError::Allow,
        "value",
    );
    let timeout =
        errs.positive_duration(&path.key("timeout"), &r.timeout, Duration::from_millis(50));
    RedisConfig {
        url: r.url.clone(),
        on_error,
        timeout,
    }
}

pub(super) fn route_limits(
    path: &KeyPath,
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
