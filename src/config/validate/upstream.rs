//! `upstreams.NAME`: targets, balancing, health checks, timeouts, TLS.

use super::{Errs, KeyPath, Selector};
use crate::config::file::*;
use crate::config::model::*;
use http::HeaderValue;
use std::collections::HashSet;
use std::time::Duration;

pub(super) fn upstream(
    path: &KeyPath,
    u: &UpstreamFile,
    errs: &mut Errs,
) -> Option<UpstreamConfig> {
    let before = errs.count();
    let targets = targets(path, u, errs);
    let balance = errs.choice(
        &path.key("balance"),
        u.balance.as_deref(),
        Balance::RoundRobin,
        "balance",
    );
    let hash_key = match u.hash_key.as_deref() {
        None => HashKey::ClientIp,
        Some(k) => {
            if balance != Balance::ConsistentHash {
                errs.warn(
                    path.key("hash_key"),
                    "hash_key has no effect without `balance: consistent_hash`",
                );
            }
            hash_key(&path.key("hash_key"), k, errs)
        }
    };
    let health_check = u
        .health_check
        .as_ref()
        .map(|h| health_check(&path.key("health_check"), h, errs));
    let tls = u.tls.unwrap_or(false);
    if u.sni.is_some() && !tls {
        errs.warn(path.key("sni"), "sni has no effect without `tls: true`");
    }
    let host = u.host.clone();
    if let Some(h) = &host {
        if HeaderValue::from_str(h).is_err() || h.is_empty() {
            errs.push(path.key("host"), format!("invalid host `{h}`"));
        }
    }
    let resilience = resilience(path, u, errs);
    let cfg = UpstreamConfig {
        srv: srv(path, u, errs),
        resolve: resolve(path, u, errs),
        retry_on: resilience.retry_on,
        retry_methods: resilience.retry_methods,
        retry_budget: resilience.retry_budget,
        max_inflight: resilience.max_inflight,
        passive_health: resilience.passive_health,
        targets,
        balance,
        hash_key,
        health_check,
        connect_timeout: errs.positive_duration(
            &path.key("connect_timeout"),
            &u.connect_timeout,
            Duration::from_secs(5),
        ),
        read_timeout: errs.positive_duration(
            &path.key("read_timeout"),
            &u.read_timeout,
            Duration::from_secs(60),
        ),
        retries: u.retries.unwrap_or(1),
        tls,
        tls_verify: u.tls_verify.unwrap_or(true),
        sni: u.sni.clone().unwrap_or_default(),
        host,
    };
    (errs.count() == before).then_some(cfg)
}

fn targets(path: &KeyPath, u: &UpstreamFile, errs: &mut Errs) -> Vec<TargetConfig> {
    match (u.targets.is_empty(), u.srv.is_some()) {
        (true, false) => errs.push(
            path.key("targets"),
            "an upstream needs at least one target (or `srv`)",
        ),
        (false, true) => errs.push(
            path.key("srv"),
            "`srv` gives the targets: leave out `targets`",
        ),
        _ => {}
    }
    let mut targets = Vec::new();
    let mut seen = HashSet::new();
    for (i, t) in u.targets.iter().enumerate() {
        let tpath = path.key("targets").index(i);
        let (addr, weight, apath) = match t {
            StrOr::Str(s) => (Text(s.clone()), 1, tpath.clone()),
            StrOr::Full(full) => (
                full.addr.clone(),
                full.weight.unwrap_or(1),
                tpath.key("addr"),
            ),
        };
        if weight == 0 {
            errs.push(tpath.key("weight"), "weight must be at least 1");
        }
        if let Some(addr) = errs.target_addr(&apath, &addr) {
            if !seen.insert(addr.clone()) {
                errs.push(apath, format!("duplicate target {}", addr.text()));
            }
            targets.push(TargetConfig {
                addr,
                weight: weight.max(1),
            });
        }
    }
    targets
}

pub(super) fn hash_key(path: &KeyPath, k: &str, errs: &mut Errs) -> HashKey {
    match k {
        "client_ip" => HashKey::ClientIp,
        "path" => HashKey::Path,
        _ => match errs.selector(path, k) {
            Some(Some(Selector::Header(h))) => HashKey::Header(h),
            Some(Some(Selector::Claim(c))) => HashKey::Claim(c),
            Some(None) => HashKey::ClientIp,
            None => {
                errs.push(
                    path,
                    format!("unknown hash_key `{k}` (client_ip, path, header:NAME, claim:NAME)"),
                );
                HashKey::ClientIp
            }
        },
    }
}

fn health_check(path: &KeyPath, h: &HealthCheckFile, errs: &mut Errs) -> HealthCheckConfig {
    let kind = errs.choice(
        &path.key("kind"),
        h.kind.as_deref(),
        HealthKind::Http,
        "kind",
    );
    let hc_path = h.path.clone().unwrap_or_else(|| "/".into());
    if !hc_path.starts_with('/') || http::Uri::try_from(hc_path.as_str()).is_err() {
        errs.push(path.key("path"), format!("invalid path `{hc_path}`"));
    }
    let expect_status = h.expect_status.unwrap_or(200);
    if !(100..=599).contains(&expect_status) {
        errs.push(
            path.key("expect_status"),
            "must be an HTTP status code (100-599)",
        );
    }
    let unhealthy_after = h.unhealthy_after.unwrap_or(2);
    let healthy_after = h.healthy_after.unwrap_or(1);
    if unhealthy_after == 0 {
        errs.push(path.key("unhealthy_after"), "must be at least 1");
    }
    if healthy_after == 0 {
        errs.push(path.key("healthy_after"), "must be at least 1");
    }
    HealthCheckConfig {
        kind,
        path: hc_path,
        expect_status,
        interval: errs.positive_duration(
            &path.key("interval"),
            &h.interval,
            Duration::from_secs(5),
        ),
        timeout: errs.positive_duration(&path.key("timeout"), &h.timeout, Duration::from_secs(1)),
        unhealthy_after: unhealthy_after.max(1),
        healthy_after: healthy_after.max(1),
    }
}

/// `srv`: a DNS name (`_http._tcp.search.internal`).
fn srv(path: &KeyPath, u: &UpstreamFile, errs: &mut Errs) -> Option<String> {
    let name = u.srv.as_deref()?.trim();
    if !super::valid_host_name(name) {
        errs.push(path.key("srv"), format!("invalid SRV name `{name}`"));
    }
    Some(name.to_ascii_lowercase())
}

/// `resolve`: `once` (the default) or an interval.
fn resolve(path: &KeyPath, u: &UpstreamFile, errs: &mut Errs) -> Option<Duration> {
    let v = u.resolve.as_ref()?;
    if v.0.trim() == "once" {
        return None;
    }
    Some(errs.positive_duration(
        &path.key("resolve"),
        &Some(v.clone()),
        Duration::from_secs(30),
    ))
}

/// The keys of "Resilient upstreams": retries, the budget, overload and
/// passive health.
struct Resilience {
    retry_on: Vec<RetryReason>,
    retry_methods: RetryMethods,
    retry_budget: f64,
    max_inflight: Option<usize>,
    passive_health: Option<PassiveHealthConfig>,
}

fn resilience(path: &KeyPath, u: &UpstreamFile, errs: &mut Errs) -> Resilience {
    let retry_on = match &u.retry_on {
        None => vec![RetryReason::Connect],
        Some(list) => retry_on(&path.key("retry_on"), list, errs),
    };
    if u.max_inflight == Some(0) {
        errs.push(path.key("max_inflight"), "must be at least 1");
    }
    Resilience {
        retry_on,
        retry_methods: errs.choice(
            &path.key("retry_methods"),
            u.retry_methods.as_deref(),
            RetryMethods::Idempotent,
            "retry_methods",
        ),
        retry_budget: errs.percent(
            &path.key("retry_budget"),
            &u.retry_budget,
            0.2,
            (0.0, 100.0),
        ),
        max_inflight: u.max_inflight.filter(|n| *n > 0),
        passive_health: u
            .passive_health
            .as_ref()
            .map(|p| passive_health(&path.key("passive_health"), p, errs)),
    }
}

fn retry_on(path: &KeyPath, list: &[Text], errs: &mut Errs) -> Vec<RetryReason> {
    let mut out = Vec::new();
    for (i, t) in list.iter().enumerate() {
        let word = t.0.trim();
        match RetryReason::ALL.iter().find(|r| r.label() == word) {
            Some(r) if !out.contains(r) => out.push(*r),
            Some(_) => {}
            None => errs.push(
                path.index(i),
                format!(
                    "unknown retry_on reason `{word}` (connect, reset, timeout, 502, 503, 504)"
                ),
            ),
        }
    }
    out
}

fn passive_health(path: &KeyPath, p: &PassiveHealthFile, errs: &mut Errs) -> PassiveHealthConfig {
    let consecutive_failures = p.consecutive_failures.unwrap_or(5);
    if consecutive_failures == 0 {
        errs.push(path.key("consecutive_failures"), "must be at least 1");
    }
    PassiveHealthConfig {
        consecutive_failures: consecutive_failures.max(1),
        eject_for: errs.positive_duration(
            &path.key("eject_for"),
            &p.eject_for,
            Duration::from_secs(30),
        ),
        max_ejected: errs.percent(&path.key("max_ejected"), &p.max_ejected, 0.5, (0.0, 100.0)),
    }
}
