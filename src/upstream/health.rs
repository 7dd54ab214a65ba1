//! Active health checks: one loop per pool that has a `health_check`,
//! holding only a `Weak` so it ends with the last snapshot using the pool.
//! Each pass checks every target of the current set (DNS may change it)
//! in parallel with Pingora's TCP and HTTP checks.

use super::Pool;
use crate::config::{HealthKind, UpstreamConfig};
use crate::tasks::Spawner;
use pingora::http::ResponseHeader;
use pingora::lb::health_check::{HealthCheck, HttpHealthCheck, TcpHealthCheck};
use pingora::lb::Backend;
use pingora::protocols::l4::socket::SocketAddr as PSocketAddr;
use std::sync::{Arc, Weak};

/// Starts the health-check loop of `pool` (if it has checks configured).
pub(crate) fn start(spawner: &Spawner, pool: &Arc<Pool>) {
    if pool.checker.is_some() {
        spawner.spawn(check_loop(Arc::downgrade(pool)));
    }
}

async fn check_loop(pool: Weak<Pool>) {
    loop {
        let interval = {
            let Some(p) = pool.upgrade() else { return };
            run_pass(&p).await;
            p.config.health_check.as_ref().map(|h| h.interval)
        };
        let Some(interval) = interval else { return };
        tokio::time::sleep(interval).await;
    }
}

/// One pass over every target of the current set.
pub(super) async fn run_pass(pool: &Arc<Pool>) {
    let set = pool.set.load_full();
    let mut checks = tokio::task::JoinSet::new();
    for t in &set.targets {
        let (pool, t) = (pool.clone(), t.clone());
        checks.spawn(async move {
            let Some(hc) = &pool.checker else { return };
            let backend = Backend {
                addr: PSocketAddr::Inet(t.addr),
                weight: t.weight,
                ext: Default::default(),
            };
            let result = hc.check(&backend).await;
            let ok = result.is_ok();
            if let Some(now) = t.checked(ok, hc.health_threshold(ok)) {
                match result {
                    Err(e) if !now => {
                        log::warn!("upstream `{}`: {} is unhealthy: {e}", pool.name, t.label)
                    }
                    _ => log::info!("upstream `{}`: {} is healthy again", pool.name, t.label),
                }
            }
        });
    }
    while checks.join_next().await.is_some() {}
    pool.checked
        .store(true, std::sync::atomic::Ordering::Release);
}

pub(super) fn checker(cfg: &UpstreamConfig) -> Option<Box<dyn HealthCheck + Send + Sync>> {
    let h = cfg.health_check.as_ref()?;
    Some(match h.kind {
        HealthKind::Tcp => {
            let mut c = if cfg.tls {
                TcpHealthCheck::new_tls(&cfg.sni)
            } else {
                TcpHealthCheck::new()
            };
            c.consecutive_success = h.healthy_after;
            c.consecutive_failure = h.unhealthy_after;
            c.peer_template.options.connection_timeout = Some(h.timeout);
            c.peer_template.options.total_connection_timeout = Some(h.timeout);
            c.peer_template.options.verify_cert = cfg.tls_verify;
            c.peer_template.options.verify_hostname = cfg.tls_verify;
            c
        }
        HealthKind::Http => {
            let host = cfg.host.clone().unwrap_or_else(|| {
                if cfg.sni.is_empty() {
                    match (&cfg.targets.first(), &cfg.srv) {
                        (Some(t), _) => t.addr.text(),
                        (None, Some(srv)) => srv.clone(),
                        (None, None) => String::new(),
                    }
                } else {
                    cfg.sni.clone()
                }
            });
            let mut c = HttpHealthCheck::new(&host, cfg.tls);
            c.peer_template.sni = cfg.sni.clone();
            c.consecutive_success = h.healthy_after;
            c.consecutive_failure = h.unhealthy_after;
            c.peer_template.options.connection_timeout = Some(h.timeout);
            c.peer_template.options.total_connection_timeout = Some(h.timeout);
            c.peer_template.options.read_timeout = Some(h.timeout);
            c.peer_template.options.write_timeout = Some(h.timeout);
            c.peer_template.options.verify_cert = cfg.tls_verify;
            c.peer_template.options.verify_hostname = cfg.tls_verify;
            // The path was validated at load.
            c.req.set_uri(h.path.parse().expect("validated path"));
            let expect = h.expect_status;
            c.validator = Some(Box::new(move |resp: &ResponseHeader| {
                if resp.status.as_u16() == expect {
                    Ok(())
                } else {
                    pingora::Error::e_explain(
                        pingora::ErrorType::CustomCode("unexpected status", resp.status.as_u16()),
                        "during http health check",
                    )
                }
            }));
            Box::new(c)
        }
    })
}
