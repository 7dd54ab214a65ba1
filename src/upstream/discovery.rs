//! DNS discovery: host-name targets stand for every A/AAAA address they
//! resolve to, `srv` for the lowest-priority SRV records (port and weight
//! from the record). Resolution never runs on the request path:
//! - at load and reload, [`resolve_now`] resolves every pool's names once,
//!   on a helper thread, before the snapshot is swapped in;
//! - with `resolve: <interval>`, a background task per pool re-resolves
//!   them (holding only a `Weak`, so it ends with the pool).
//!
//! A failed or empty answer keeps the last good set, and is logged and
//! counted in `gatehouse_dns_failures_total`.

use super::Pool;
use crate::config::{TargetAddr, UpstreamConfig};
use crate::tasks::Spawner;
use hickory_resolver::config::{LookupIpStrategy, NameServerConfig, ResolveHosts, ResolverConfig};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::rr::RData;
use hickory_resolver::TokioResolver;
use std::net::SocketAddr;
use std::sync::{Arc, Weak};
use std::time::Duration;

/// How long one DNS query may take.
const QUERY_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a load or reload waits for every name to resolve.
const FIRST_RESOLUTION: Duration = Duration::from_secs(5);

/// The names of `cfg` as keys of [`super::DnsState`]: `host:port` of
/// each host-name target, and the SRV name.
pub(crate) fn names(cfg: &UpstreamConfig) -> Vec<String> {
    let mut v: Vec<String> = cfg
        .targets
        .iter()
        .filter(|t| matches!(t.addr, TargetAddr::Name { .. }))
        .map(|t| t.addr.text())
        .collect();
    v.extend(cfg.srv.clone());
    v
}

/// A resolver on `servers` (UDP, then TCP), or the system's
/// (`/etc/resolv.conf` and `/etc/hosts`) when none are given. Nothing is
/// cached: each refresh asks the servers again.
fn resolver(servers: &[SocketAddr]) -> Result<TokioResolver, String> {
    let mut builder = if servers.is_empty() {
        TokioResolver::builder_tokio().map_err(|e| e.to_string())?
    } else {
        let ns = servers
            .iter()
            .map(|a| {
                let mut c = NameServerConfig::udp_and_tcp(a.ip());
                for conn in &mut c.connections {
                    conn.port = a.port();
                }
                c
            })
            .collect();
        TokioResolver::builder_with_config(
            ResolverConfig::from_name_servers(ns),
            TokioRuntimeProvider::default(),
        )
    };
    let o = builder.options_mut();
    o.cache_size = 0;
    o.timeout = QUERY_TIMEOUT;
    o.attempts = 1;
    o.ip_strategy = LookupIpStrategy::Ipv4AndIpv6;
    if !servers.is_empty() {
        o.use_hosts_file = ResolveHosts::Never;
    }
    builder.build().map_err(|e| e.to_string())
}

async fn lookup_host(r: &TokioResolver, host: &str, port: u16) -> Result<Vec<SocketAddr>, String> {
    let ips = r.lookup_ip(host).await.map_err(|e| e.to_string())?;
    let mut v: Vec<SocketAddr> = ips.iter().map(|ip| SocketAddr::new(ip, port)).collect();
    v.sort();
    v.dedup();
    Ok(v)
}

/// The lowest-priority SRV records of `name`, each target resolved.
async fn lookup_srv(r: &TokioResolver, name: &str) -> Result<Vec<(SocketAddr, usize)>, String> {
    let answer = r.srv_lookup(name).await.map_err(|e| e.to_string())?;
    let records: Vec<_> = answer
        .answers()
        .iter()
        .filter_map(|rec| match &rec.data {
            RData::SRV(srv) => Some(srv.clone()),
            _ => None,
        })
        .collect();
    let Some(lowest) = records.iter().map(|s| s.priority).min() else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for s in records.iter().filter(|s| s.priority == lowest) {
        let host = s.target.to_ascii();
        for addr in lookup_host(r, &host, s.port).await? {
            // Weight 0 means "rarely", not "never": the smallest share.
            out.push((addr, usize::from(s.weight).max(1)));
        }
    }
    Ok(out)
}

/// Resolves every name of `pool` and installs what answered; failures
/// and empty answers keep the last good set.
async fn refresh(r: &TokioResolver, pool: &Pool) {
    let mut results = Vec::new();
    for t in &pool.config.targets {
        if let TargetAddr::Name { host, port } = &t.addr {
            let answer = lookup_host(r, host, *port).await;
            let answer = answer.map(|v| v.into_iter().map(|a| (a, t.weight)).collect());
            results.push((t.addr.text(), answer));
        }
    }
    if let Some(srv) = &pool.config.srv {
        results.push((srv.clone(), lookup_srv(r, srv).await));
    }
    let mut changed = false;
    {
        let mut dns = pool.dns.lock().unwrap_or_else(|p| p.into_inner());
        for (name, answer) in results {
            match answer {
                Ok(addrs) if !addrs.is_empty() => {
                    dns.errors.remove(&name);
                    if dns.answers.get(&name) != Some(&addrs) {
                        dns.answers.insert(name, addrs);
                        changed = true;
                    }
                }
                other => {
                    let why = other.err().unwrap_or_else(|| "no addresses".into());
                    log::warn!(
                        "upstream `{}`: DNS for `{name}` failed, keeping the last set: {why}",
                        pool.name
                    );
                    pool.metrics.dns_failures.inc();
                    dns.errors.insert(name, why);
                }
            }
        }
    }
    if changed {
        pool.rebuild();
    }
}

/// Resolves the names of `pools` once, before they serve (load, reload).
/// Runs on its own thread and runtime, so it may be called from anywhere,
/// and waits at most [`FIRST_RESOLUTION`].
pub(crate) fn resolve_now(pools: Vec<Arc<Pool>>, servers: &[SocketAddr]) {
    let pools: Vec<Arc<Pool>> = pools
        .into_iter()
        .filter(|p| !names(&p.config).is_empty())
        .collect();
    if pools.is_empty() {
        return;
    }
    let servers = servers.to_vec();
    let run = move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build();
        let Ok(rt) = rt else { return };
        rt.block_on(async {
            let r = match resolver(&servers) {
                Ok(r) => r,
                Err(e) => return log::error!("DNS resolver: {e}"),
            };
            let all = async {
                for p in &pools {
                    refresh(&r, p).await;
                }
            };
            if tokio::time::timeout(FIRST_RESOLUTION, all).await.is_err() {
                log::warn!(
                    "DNS: names still resolving after {FIRST_RESOLUTION:?}; serving what answered"
                );
            }
        });
    };
    if let Ok(handle) = std::thread::Builder::new()
        .name("gatehouse-dns".into())
        .spawn(run)
    {
        let _ = handle.join();
    }
}

/// Starts the re-resolution task of `pool` when it has `resolve: <interval>`.
pub(crate) fn start(spawner: &Spawner, pool: &Arc<Pool>, servers: &[SocketAddr]) {
    if let (Some(every), false) = (pool.config.resolve, names(&pool.config).is_empty()) {
        spawner.spawn(refresh_loop(Arc::downgrade(pool), servers.to_vec(), every));
    }
}

async fn refresh_loop(pool: Weak<Pool>, servers: Vec<SocketAddr>, every: Duration) {
    let r = match resolver(&servers) {
        Ok(r) => r,
        Err(e) => return log::error!("DNS resolver: {e}"),
    };
    loop {
        tokio::time::sleep(every).await;
        let Some(p) = pool.upgrade() else { return };
        refresh(&r, &p).await;
    }
}
