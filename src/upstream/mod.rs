//! Upstream pools: targets resolved at load time, selection with
//! `pingora-load-balancing`, and the `HttpPeer` (with timeouts) per attempt.
//!
//! A pool is immutable once built. A reload reuses the `Arc<Pool>` of every
//! upstream whose config did not change, so its health state and health-check
//! task carry over; changed or removed pools are dropped with the last
//! snapshot that uses them, which also ends their health-check task.

pub(crate) mod health;

use crate::config::{Balance, HealthKind, UpstreamConfig};
use pingora::http::ResponseHeader;
use pingora::lb::discovery::Static;
use pingora::lb::health_check::{HealthCheck, HttpHealthCheck, TcpHealthCheck};
use pingora::lb::selection::{Consistent, Random, RoundRobin};
use pingora::lb::{Backend, Backends, LoadBalancer};
use pingora::prelude::HttpPeer;
use pingora::protocols::l4::socket::SocketAddr as PSocketAddr;
use std::collections::BTreeSet;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

/// How many backends `select` may look at before giving up.
const MAX_SELECT_ITERATIONS: usize = 256;

enum Balancer {
    RoundRobin(LoadBalancer<RoundRobin>),
    Random(LoadBalancer<Random>),
    Consistent(LoadBalancer<Consistent>),
}

macro_rules! each_lb {
    ($self:expr, $lb:ident => $e:expr) => {
        match $self {
            Balancer::RoundRobin($lb) => $e,
            Balancer::Random($lb) => $e,
            Balancer::Consistent($lb) => $e,
        }
    };
}

/// One target as shown by the admin API.
#[derive(Debug, Clone, PartialEq)]
pub struct TargetStatus {
    pub addr: SocketAddr,
    pub weight: usize,
    pub healthy: bool,
    pub inflight: usize,
}

/// Counts one request in flight to a target until dropped.
pub struct TargetGuard {
    pool: Arc<Pool>,
    idx: usize,
}

impl TargetGuard {
    /// The target's address as text, for metric labels.
    pub fn label(&self) -> &str {
        &self.pool.labels[self.idx]
    }
}

impl Drop for TargetGuard {
    fn drop(&mut self) {
        self.pool.inflight[self.idx].fetch_sub(1, Ordering::Relaxed);
    }
}

pub struct Pool {
    pub name: Arc<str>,
    pub config: UpstreamConfig,
    balancer: Balancer,
    backends: Vec<Backend>,
    /// Requests in flight per target (same order as `backends`).
    inflight: Vec<AtomicUsize>,
    /// Each target's address as text (metric label), rendered once.
    labels: Vec<Box<str>>,
    /// Set after the first health-check pass (or at once without checks),
    /// so `/ready` does not report targets as healthy before anyone looked.
    checked: AtomicBool,
}

/// Runs a future that cannot block (static discovery) to completion.
fn run_ready<F: Future>(f: F) -> F::Output {
    let mut f = pin!(f);
    match f.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(v) => v,
        Poll::Pending => unreachable!("static discovery never waits"),
    }
}

fn build_lb<S>(
    set: BTreeSet<Backend>,
    hc: Option<Box<dyn HealthCheck + Send + Sync>>,
) -> LoadBalancer<S>
where
    S: pingora::lb::selection::BackendSelection + 'static,
    S::Iter: pingora::lb::selection::BackendIter,
{
    let mut lb = LoadBalancer::<S>::from_backends(Backends::new(Static::new(set)));
    if let Some(hc) = hc {
        lb.set_health_check(hc);
    }
    run_ready(lb.update()).expect("static discovery cannot fail");
    lb
}

fn health_check(cfg: &UpstreamConfig) -> Option<Box<dyn HealthCheck + Send + Sync>> {
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
                    cfg.targets[0].addr.to_string()
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

impl Pool {
    pub fn new(name: &str, config: &UpstreamConfig) -> Pool {
        let backends: Vec<Backend> = config
            .targets
            .iter()
            .map(|t| Backend {
                addr: PSocketAddr::Inet(t.addr),
                weight: t.weight,
                ext: Default::default(),
            })
            .collect();
        let set: BTreeSet<Backend> = backends.iter().cloned().collect();
        let hc = health_check(config);
        let balancer = match config.balance {
            Balance::RoundRobin => Balancer::RoundRobin(build_lb(set, hc)),
            Balance::Random => Balancer::Random(build_lb(set, hc)),
            Balance::ConsistentHash => Balancer::Consistent(build_lb(set, hc)),
        };
        Pool {
            name: Arc::from(name),
            inflight: backends.iter().map(|_| AtomicUsize::new(0)).collect(),
            labels: config
                .targets
                .iter()
                .map(|t| crate::netfmt::socket_addr_text(t.addr).into_boxed_str())
                .collect(),
            checked: AtomicBool::new(config.health_check.is_none()),
            config: config.clone(),
            balancer,
            backends,
        }
    }

    /// Picks a healthy target not in `exclude` (targets that already failed
    /// this request). `key` is used by `consistent_hash` only.
    pub fn select(&self, key: &[u8], exclude: &[SocketAddr]) -> Option<SocketAddr> {
        let accept = |b: &Backend, healthy: bool| {
            healthy && b.addr.as_inet().is_some_and(|a| !exclude.contains(a))
        };
        let b = each_lb!(&self.balancer, lb => lb.select_with(key, MAX_SELECT_ITERATIONS, accept))?;
        b.addr.as_inet().copied()
    }

    /// The peer for one attempt; `timeout` (the route's) overrides the
    /// upstream's read/write timeout.
    pub fn peer(&self, addr: SocketAddr, timeout: Option<Duration>) -> HttpPeer {
        let c = &self.config;
        let mut peer = HttpPeer::new(addr, c.tls, c.sni.clone());
        let io_timeout = timeout.unwrap_or(c.read_timeout);
        peer.options.connection_timeout = Some(c.connect_timeout);
        peer.options.total_connection_timeout = Some(c.connect_timeout);
        peer.options.read_timeout = Some(io_timeout);
        peer.options.write_timeout = Some(io_timeout);
        peer.options.idle_timeout = Some(Duration::from_secs(60));
        if c.tls && !c.tls_verify {
            peer.options.verify_cert = false;
            peer.options.verify_hostname = false;
        }
        peer
    }

    pub fn targets(&self) -> Vec<TargetStatus> {
        let backends = each_lb!(&self.balancer, lb => lb.backends());
        self.backends
            .iter()
            .zip(&self.inflight)
            .filter_map(|(b, n)| {
                Some(TargetStatus {
                    addr: *b.addr.as_inet()?,
                    weight: b.weight,
                    healthy: backends.ready(b),
                    inflight: n.load(Ordering::Relaxed),
                })
            })
            .collect()
    }

    /// True once health was checked at least once and a target is healthy.
    pub fn is_ready(&self) -> bool {
        self.checked.load(Ordering::Acquire) && self.targets().iter().any(|t| t.healthy)
    }

    /// Marks a request in flight to `addr` until the guard is dropped.
    pub fn track(self: &Arc<Self>, addr: SocketAddr) -> Option<TargetGuard> {
        let idx = self
            .backends
            .iter()
            .position(|b| b.addr.as_inet() == Some(&addr))?;
        self.inflight[idx].fetch_add(1, Ordering::Relaxed);
        Some(TargetGuard {
            pool: self.clone(),
            idx,
        })
    }

    pub fn has_health_check(&self) -> bool {
        self.config.health_check.is_some()
    }

    /// One active health-check pass over every target.
    pub async fn run_health_check(&self) {
        each_lb!(&self.balancer, lb => lb.backends().run_health_check(true).await);
        self.checked.store(true, Ordering::Release);
    }
}
