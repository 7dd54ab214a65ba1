//! State shared by every service of one gateway, and config reload.

use crate::config::{self, Config};
use crate::observability::access_log::AccessLog;
use crate::observability::metrics::Metrics;
use crate::runtime::SnapshotHandle;
use crate::tasks::Spawner;
use crate::tls::CertResolver;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

pub struct GatewayState {
    pub snapshots: SnapshotHandle,
    pub cache: crate::cache::Cache,
    pub metrics: Metrics,
    pub access_log: AccessLog,
    /// The file `reload` re-reads; `None` when started from text (demo).
    pub config_path: Option<PathBuf>,
    /// The listener certificate, present when `server.tls` is set.
    pub tls: Option<Arc<CertResolver>>,
    reload_lock: Mutex<()>,
}

/// What a successful reload changed.
#[derive(Debug, Clone, PartialEq)]
pub struct ReloadReport {
    pub generation: u64,
    /// Changed keys that only take effect with a restart or `-u` upgrade.
    pub needs_upgrade: Vec<String>,
}

/// Keys that are bound to sockets or threads at start-up.
fn restart_only_changes(old: &Config, new: &Config) -> Vec<String> {
    let (o, n) = (&old.server, &new.server);
    let mut v = Vec::new();
    let mut check = |key: &str, changed: bool| {
        if changed {
            v.push(key.to_string());
        }
    };
    check("server.listen", o.listen != n.listen);
    check("server.threads", o.threads != n.threads);
    check("server.work_stealing", o.work_stealing != n.work_stealing);
    check("server.pid_file", o.pid_file != n.pid_file);
    check("server.upgrade_sock", o.upgrade_sock != n.upgrade_sock);
    check("server.grace_period", o.grace_period != n.grace_period);
    check(
        "server.tls.listen",
        o.tls.as_ref().map(|t| t.listen) != n.tls.as_ref().map(|t| t.listen),
    );
    check("server.h2c", o.h2c != n.h2c);
    check("server.upstream_ca", o.upstream_ca != n.upstream_ca);
    check("cache.max_size", old.cache.max_size != new.cache.max_size);
    check(
        "admin.listen",
        old.admin.as_ref().map(|a| a.listen) != new.admin.as_ref().map(|a| a.listen),
    );
    v
}

impl GatewayState {
    pub fn new(
        config: Config,
        spawner: Spawner,
        config_path: Option<PathBuf>,
    ) -> Result<GatewayState, String> {
        let metrics = Metrics::new();
        let access_log = AccessLog::new(&config.logging, metrics.access_log_dropped.clone());
        let cache = crate::cache::Cache::new(config.cache.max_size);
        let tls = match &config.server.tls {
            Some(t) => Some(Arc::new(CertResolver::load(&t.cert, &t.key)?)),
            None => None,
        };
        let state = GatewayState {
            cache,
            snapshots: SnapshotHandle::new(config, spawner)?,
            metrics,
            access_log,
            config_path,
            tls,
            reload_lock: Mutex::new(()),
        };
        state.init_metric_labels();
        Ok(state)
    }

    /// Creates the per-route label sets of policy metrics at 0, so that
    /// dashboards see them before the first failure.
    fn init_metric_labels(&self) {
        let snap = self.snapshots.load();
        for r in &snap.routes {
            if r.auth.is_some() {
                for reason in crate::policy::auth::REASONS {
                    self.metrics
                        .auth_failures
                        .with_label_values(&[&*r.name, reason]);
                }
            }
            if r.cache.is_some() {
                for result in crate::policy::cache::RESULTS {
                    self.metrics
                        .cache_lookups
                        .with_label_values(&[&*r.name, result]);
                }
            }
            for l in &r.rate_limits {
                self.metrics
                    .rate_limited
                    .with_label_values(&[&*r.name, &*l.name]);
            }
        }
    }

    /// Re-reads the config file and swaps the snapshot; on any error the
    /// running config stays. Errors and the result are logged and counted.
    pub fn reload(&self) -> Result<ReloadReport, Vec<String>> {
        let _one_at_a_time = self.reload_lock.lock().unwrap_or_else(|p| p.into_inner());
        let result = match &self.config_path {
            None => Err(vec![
                "gatehouse was not started from a config file; nothing to reload".to_string(),
            ]),
            Some(path) => config::load_file(path)
                .map_err(|e| e.errors())
                .and_then(|cfg| self.apply(cfg).map_err(|e| vec![e])),
        };
        match &result {
            Ok(report) => {
                self.metrics.config_reloads.with_label_values(&["ok"]).inc();
                log::info!("config reloaded (generation {})", report.generation);
                for key in &report.needs_upgrade {
                    log::warn!("config reload: `{key}` changed but only takes effect after a restart or `-u` upgrade");
                }
            }
            Err(errors) => {
                self.metrics
                    .config_reloads
                    .with_label_values(&["error"])
                    .inc();
                log::error!("config reload failed; the running config stays in force:");
                for e in errors {
                    log::error!("  {e}");
                }
            }
        }
        result
    }

    /// Makes `cfg` (already validated) the running config.
    pub fn apply(&self, cfg: Config) -> Result<ReloadReport, String> {
        let old = self.snapshots.load();
        let needs_upgrade = restart_only_changes(&old.config, &cfg);
        // Certificates are re-read on every reload (renewals keep the same
        // paths); a bad pair fails the reload before anything is swapped.
        let cert = match (&self.tls, &cfg.server.tls) {
            (Some(_), Some(t)) => Some(
                crate::tls::load_pair(&t.cert, &t.key).map_err(|e| format!("server.tls: {e}"))?,
            ),
            _ => None,
        };
        let logging = cfg.logging.clone();
        let snap = self.snapshots.replace(cfg)?;
        if let (Some(resolver), Some(cert)) = (&self.tls, cert) {
            resolver.store(cert);
        }
        self.access_log.reconfigure(&logging);
        crate::logging::set_level(logging.level);
        self.init_metric_labels();
        Ok(ReloadReport {
            generation: snap.generation,
            needs_upgrade,
        })
    }
}
