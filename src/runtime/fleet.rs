//! Cluster mode's shared state: what the etcd agent (`cluster`) knows of
//! the fleet, read by the admin listener and `gatehouse cluster`, and the
//! requests the admin listener and signals hand to the agent. Plain data.

use super::reload::ReloadReport;
use crate::config::ClusterConfig;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::Mutex;
use tokio::sync::{mpsc, oneshot};

/// `<prefix>/nodes/<node_id>`: what one node runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeRecord {
    /// The config revision in force on the node (0: none yet).
    pub applied_revision: u64,
    /// SHA-256 of the applied document, as stored in etcd.
    pub sha256: Option<String>,
    /// RFC 3339, when it was applied.
    pub applied_at: Option<String>,
    /// gatehouse's version.
    pub version: String,
    /// Why the newest revision is not in force, when it is not.
    pub last_error: Option<String>,
    /// A SIGHUP changed a key that only a restart or `-u` applies.
    pub needs_upgrade: bool,
}

/// A cache purge to run on every node: the parts of `POST /cache/purge`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Purge {
    /// Normalised path.
    pub path: String,
    pub query: Option<String>,
    pub host: Option<String>,
}

/// What others ask of the agent; each answer comes back on the oneshot.
pub enum Command {
    /// Re-read etcd and the local file, apply (`POST /reload`, SIGHUP).
    Reload(oneshot::Sender<Result<ReloadReport, Vec<String>>>),
    /// Write a purge for every node.
    Purge(Purge, oneshot::Sender<Result<(), String>>),
}

/// What the agent last saw.
#[derive(Debug, Default, Clone)]
pub struct FleetStatus {
    /// `mod_revision` of `<prefix>/config` (0: nothing pushed yet).
    pub revision: u64,
    /// This node's record, as last written.
    pub own: Option<NodeRecord>,
    /// Live nodes' records (their leases have not expired), by node id.
    pub nodes: BTreeMap<String, NodeRecord>,
    /// `None` while the agent is connected to etcd.
    pub etcd_error: Option<String>,
}

/// True when every live node runs `revision` without error.
pub(crate) fn in_sync(revision: u64, nodes: &BTreeMap<String, NodeRecord>) -> bool {
    revision > 0
        && !nodes.is_empty()
        && nodes
            .values()
            .all(|n| n.applied_revision == revision && n.last_error.is_none())
}

/// The document of `GET /cluster` (and `gatehouse cluster --json`).
pub(crate) fn view(revision: u64, nodes: &BTreeMap<String, NodeRecord>) -> Value {
    let list: Vec<Value> = nodes
        .iter()
        .map(|(id, n)| {
            let mut v = serde_json::to_value(n).unwrap_or(Value::Null);
            v["node_id"] = id.clone().into();
            v
        })
        .collect();
    json!({
        "revision": revision,
        "in_sync": in_sync(revision, nodes),
        "nodes": list,
    })
}

/// Cluster mode, shared by the agent, the admin listener and signals.
pub struct Fleet {
    pub config: ClusterConfig,
    pub status: Mutex<FleetStatus>,
    pub commands: mpsc::UnboundedSender<Command>,
}

impl Fleet {
    pub fn new(config: ClusterConfig) -> (Fleet, mpsc::UnboundedReceiver<Command>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let fleet = Fleet {
            config,
            status: Mutex::new(FleetStatus::default()),
            commands: tx,
        };
        (fleet, rx)
    }

    pub fn status(&self) -> FleetStatus {
        self.status
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Changes the status under its lock.
    pub fn update<R>(&self, f: impl FnOnce(&mut FleetStatus) -> R) -> R {
        f(&mut self.status.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// `GET /cluster`: the fleet as this node sees it.
    pub fn view(&self) -> Value {
        let s = self.status();
        let mut v = view(s.revision, &s.nodes);
        v["node_id"] = self.config.node_id.clone().into();
        v["etcd"] = match &s.etcd_error {
            None => "connected".into(),
            Some(e) => format!("unreachable: {e}").into(),
        };
        v
    }

    /// Asks the agent to re-read etcd and apply; waits for its answer.
    pub async fn reload(&self) -> Result<ReloadReport, Vec<String>> {
        let (tx, rx) = oneshot::channel();
        if self.commands.send(Command::Reload(tx)).is_err() {
            return Err(vec!["the cluster agent is not running".into()]);
        }
        rx.await
            .unwrap_or_else(|_| Err(vec!["the cluster agent stopped".into()]))
    }

    /// Asks the agent to purge on every node; waits for its answer.
    pub async fn purge(&self, p: Purge) -> Result<(), String> {
        let (tx, rx) = oneshot::channel();
        if self.commands.send(Command::Purge(p, tx)).is_err() {
            return Err("the cluster agent is not running".into());
        }
        rx.await
            .unwrap_or_else(|_| Err("the cluster agent stopped".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(rev: u64, err: Option<&str>) -> NodeRecord {
        NodeRecord {
            applied_revision: rev,
            sha256: None,
            applied_at: None,
            version: "x".into(),
            last_error: err.map(str::to_string),
            needs_upgrade: false,
        }
    }

    #[test]
    fn in_sync_needs_every_live_node_on_the_revision_without_error() {
        let mut nodes = BTreeMap::new();
        assert!(!in_sync(5, &nodes));
        nodes.insert("a".to_string(), node(5, None));
        nodes.insert("b".to_string(), node(5, None));
        assert!(in_sync(5, &nodes));
        assert!(!in_sync(6, &nodes));
        nodes.insert("c".to_string(), node(4, Some("tls file missing")));
        assert!(!in_sync(5, &nodes));
        assert_eq!(view(5, &nodes)["nodes"][2]["node_id"], "c");
    }
}
