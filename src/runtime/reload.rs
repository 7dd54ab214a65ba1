//! Config reload: SIGHUP, `POST /reload` and cluster updates all come
//! through [`Reloader::reload`], [`Reloader::apply_doc`] or [`apply`]. A new
//! snapshot is built from the new config, or the old one stays;
//! certificates, the access log and the log level follow a successful build.

use super::diff::Changes;
use super::{BuildError, GatewayState};
use crate::config::{self, Config};
use std::path::PathBuf;
use std::sync::Mutex;

/// A cluster's shared config document as stored in etcd, with its revision.
#[derive(Debug, Clone, PartialEq)]
pub struct ClusterDoc {
    pub text: String,
    pub revision: u64,
}

/// Re-reads the config file, one reload at a time.
pub struct Reloader {
    /// The file `reload` re-reads; `None` when started from text (demo).
    path: Option<PathBuf>,
    /// Cluster mode: the document last applied (the local file is read
    /// again on each reload and merged with it).
    doc: Mutex<Option<ClusterDoc>>,
    lock: Mutex<()>,
}

/// What a successful reload changed.
#[derive(Debug, Clone, PartialEq)]
pub struct ReloadReport {
    pub generation: u64,
    /// Changed keys that only take effect with a restart or `-u` upgrade.
    pub needs_upgrade: Vec<String>,
    pub changes: Changes,
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
    check("cluster", old.cluster != new.cluster);
    check(
        "admin.listen",
        old.admin.as_ref().map(|a| a.listen) != new.admin.as_ref().map(|a| a.listen),
    );
    v
}

impl Reloader {
    pub fn new(path: Option<PathBuf>, doc: Option<ClusterDoc>) -> Reloader {
        Reloader {
            path,
            doc: Mutex::new(doc),
            lock: Mutex::new(()),
        }
    }

    /// Cluster mode: the document in force (`None` before the first push).
    pub fn doc(&self) -> Option<ClusterDoc> {
        self.doc.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The config file, merged with `doc` in cluster mode.
    fn load(&self, doc: Option<&ClusterDoc>) -> Result<Config, Vec<String>> {
        let Some(path) = &self.path else {
            return Err(vec![
                "gatehouse was not started from a config file; nothing to reload".to_string(),
            ]);
        };
        match doc {
            Some(d) => config::load_merged(path, &d.text),
            None => config::load_file(path),
        }
        .map_err(|e| e.errors())
    }

    /// Re-reads the config file (with the cluster document in force) and
    /// swaps the snapshot; on any error the running config stays. Errors
    /// and the result are logged and counted.
    pub fn reload(&self, state: &GatewayState) -> Result<ReloadReport, Vec<String>> {
        let doc = self.doc();
        self.reload_with(state, doc, "config reloaded")
    }

    /// Cluster mode: makes `doc` the document in force, merged with the
    /// re-read local file; on error the running config and document stay.
    pub fn apply_doc(
        &self,
        state: &GatewayState,
        doc: ClusterDoc,
    ) -> Result<ReloadReport, Vec<String>> {
        let what = format!("cluster config revision {} applied", doc.revision);
        self.reload_with(state, Some(doc), &what)
    }

    fn reload_with(
        &self,
        state: &GatewayState,
        doc: Option<ClusterDoc>,
        what: &str,
    ) -> Result<ReloadReport, Vec<String>> {
        let _one_at_a_time = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        let result = self
            .load(doc.as_ref())
            .and_then(|cfg| apply(state, cfg).map_err(|e| vec![e.to_string()]));
        if result.is_ok() {
            *self.doc.lock().unwrap_or_else(|p| p.into_inner()) = doc;
        }
        match &result {
            Ok(report) => {
                state
                    .metrics
                    .config_reloads
                    .with_label_values(&["ok"])
                    .inc();
                log::info!(
                    "{what} (generation {}): {}",
                    report.generation,
                    report.changes.summary()
                );
                for key in &report.needs_upgrade {
                    log::warn!("config reload: `{key}` changed but only takes effect after a restart or `-u` upgrade");
                }
            }
            Err(errors) => {
                state
                    .metrics
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
}

/// Makes `cfg` (already validated) the running config.
pub fn apply(state: &GatewayState, cfg: Config) -> Result<ReloadReport, BuildError> {
    let old = state.snapshots.load();
    let needs_upgrade = restart_only_changes(&old.config, &cfg);
    let changes = Changes::between(&old.config, &cfg);
    // Certificates and the client CA are re-read on every reload (renewals
    // keep the same paths); a bad file fails the reload before anything is
    // swapped.
    let acceptor = match (&state.tls, &cfg.server.tls) {
        (Some(_), Some(t)) => Some(crate::tls::acceptor(&t.cert, &t.key, t.client_ca())?),
        _ => None,
    };
    let logging = cfg.logging.clone();
    let snap = state.snapshots.replace(cfg, &state.metrics)?;
    if let (Some(listener), Some(acceptor)) = (&state.tls, acceptor) {
        listener.store(acceptor);
    }
    state.access_log.reconfigure(&logging);
    crate::logging::set_level(logging.level);
    Ok(ReloadReport {
        generation: snap.generation,
        needs_upgrade,
        changes,
    })
}
