//! Active health checks: one loop per pool that has a `health_check`,
//! holding only a `Weak` so it ends with the last snapshot using the pool.

use super::Pool;
use crate::tasks::Spawner;
use std::sync::{Arc, Weak};

/// Starts the health-check loop of `pool` (if it has checks configured).
pub(crate) fn start(spawner: &Spawner, pool: &Arc<Pool>) {
    if pool.has_health_check() {
        spawner.spawn(check_loop(Arc::downgrade(pool)));
    }
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
