//! Runs the active health checks of every live pool.
//!
//! Pools come and go with reloads, while Pingora's background services are
//! fixed at start-up. So one background service receives each new pool that
//! has a health check and runs a loop for it holding only a `Weak`: when the
//! last snapshot using the pool is gone, the loop ends by itself.

use super::Pool;
use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use std::sync::{Arc, Mutex, Weak};
use tokio::sync::mpsc;

/// Hands new pools to the [`HealthService`]; cheap to clone.
#[derive(Clone)]
pub struct HealthRegistrar(mpsc::UnboundedSender<Weak<Pool>>);

impl HealthRegistrar {
    pub fn register(&self, pool: &Arc<Pool>) {
        if pool.has_health_check() {
            // The receiver lives as long as the server; if it is gone the
            // process is shutting down and nothing needs checking.
            let _ = self.0.send(Arc::downgrade(pool));
        }
    }
}

pub struct HealthService {
    rx: Mutex<Option<mpsc::UnboundedReceiver<Weak<Pool>>>>,
}

pub fn channel() -> (HealthRegistrar, HealthService) {
    let (tx, rx) = mpsc::unbounded_channel();
    (
        HealthRegistrar(tx),
        HealthService {
            rx: Mutex::new(Some(rx)),
        },
    )
}

async fn check_loop(pool: Weak<Pool>) {
    loop {
        let interval = {
            let Some(p) = pool.upgrade() else { return };
            p.run_health_check().await;
            p.config.health_check.as_ref().map(|h| h.interval)
        };
        let Some(interval) = interval else { return };
        tokio::time::sleep(interval).await;
    }
}

#[async_trait]
impl BackgroundService for HealthService {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let Some(mut rx) = self.rx.lock().expect("health rx lock").take() else {
            return;
        };
        let mut tasks = tokio::task::JoinSet::new();
        loop {
            tokio::select! {
                pool = rx.recv() => match pool {
                    Some(p) => { tasks.spawn(check_loop(p)); }
                    None => break,
                },
                // Reap finished loops so the set does not grow across reloads.
                Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
                _ = shutdown.changed() => break,
            }
        }
        tasks.abort_all();
    }
}
