//! Cluster mode (SPEC Part 2): the shared config is one YAML document in
//! etcd at `<prefix>/config`; every node applies each revision through the
//! normal reload path and reports what it runs under `<prefix>/nodes/`.
//!
//! | key | what |
//! |---|---|
//! | `<prefix>/config` | the document, as written (`${VAR}` expanded on each node) |
//! | `<prefix>/history/<rev>` | the documents of the last 20 revisions, for `push --rollback` |
//! | `<prefix>/nodes/<node_id>` | a node's [`NodeRecord`], under a 15 s lease |
//! | `<prefix>/purge/<id>` | a cache purge for every node, under a short lease |
//!
//! `agent` is the node's side (watch, apply, report, purge), `boot` the
//! start-up (etcd, else `snapshot_file`), `cli` the operator's side (`push`,
//! `push --rollback`, `cluster`).

pub(crate) mod agent;
pub(crate) mod boot;
pub(crate) mod cli;

use crate::config::ClusterConfig;
use crate::runtime::fleet::NodeRecord;
use etcd_client::{Client, ConnectOptions, GetOptions};
use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

/// How many revisions' documents `<prefix>/history/` keeps.
pub(crate) const HISTORY: usize = 20;
/// A node record outlives its node by this long.
pub(crate) const NODE_TTL_SECS: i64 = 15;

/// The cluster's keys.
pub(crate) struct Keys<'a>(pub &'a str);

impl Keys<'_> {
    pub(crate) fn config(&self) -> String {
        format!("{}/config", self.0)
    }
    pub(crate) fn nodes(&self) -> String {
        format!("{}/nodes/", self.0)
    }
    pub(crate) fn node(&self, id: &str) -> String {
        format!("{}/nodes/{id}", self.0)
    }
    pub(crate) fn history(&self) -> String {
        format!("{}/history/", self.0)
    }
    /// Zero-padded, so keys sort by revision.
    pub(crate) fn history_at(&self, rev: u64) -> String {
        format!("{}/history/{rev:020}", self.0)
    }
    pub(crate) fn purges(&self) -> String {
        format!("{}/purge/", self.0)
    }
    /// Everything a node watches.
    pub(crate) fn all(&self) -> String {
        format!("{}/", self.0)
    }
}

/// An etcd failure, as one line for logs, `/cluster` and the CLI.
pub(crate) type EtcdResult<T> = Result<T, String>;

/// Runs one etcd call within the cluster's `timeout`.
pub(crate) async fn timed<T, E: std::fmt::Display>(
    timeout: Duration,
    f: impl Future<Output = Result<T, E>>,
) -> EtcdResult<T> {
    match tokio::time::timeout(timeout, f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no answer within {} ms", timeout.as_millis())),
    }
}

/// Connects to the cluster's etcd endpoints.
pub(crate) async fn connect(c: &ClusterConfig) -> EtcdResult<Client> {
    let opts = ConnectOptions::new()
        .with_connect_timeout(c.timeout)
        .with_keep_alive(Duration::from_secs(2), c.timeout)
        .with_keep_alive_while_idle(true);
    let client = timed(c.timeout, Client::connect(c.etcd.clone(), Some(opts)))
        .await
        .map_err(|e| format!("etcd {}: {e}", c.etcd.join(", ")))?;
    Ok(client)
}

/// The document at `<prefix>/config` and its revision, if any.
pub(crate) async fn read_config(
    client: &mut Client,
    c: &ClusterConfig,
) -> EtcdResult<(Option<(String, u64)>, u64)> {
    let key = Keys(&c.prefix).config();
    let resp = timed(c.timeout, client.get(key, None)).await?;
    let store_rev = resp.header().map_or(0, |h| h.revision()) as u64;
    let doc = match resp.kvs().first() {
        None => None,
        Some(kv) => {
            let text = kv
                .value_str()
                .map_err(|_| "the config in etcd is not UTF-8 text".to_string())?;
            Some((text.to_string(), kv.mod_revision() as u64))
        }
    };
    Ok((doc, store_rev))
}

/// Parses a node record; a value that is not one is left out (and said).
pub(crate) fn parse_node(key: &str, value: &[u8]) -> Option<NodeRecord> {
    match serde_json::from_slice(value) {
        Ok(r) => Some(r),
        Err(e) => {
            log::warn!("cluster: ignoring the malformed node record at {key}: {e}");
            None
        }
    }
}

/// Every live node's record.
pub(crate) async fn read_nodes(
    client: &mut Client,
    c: &ClusterConfig,
) -> EtcdResult<BTreeMap<String, NodeRecord>> {
    let keys = Keys(&c.prefix);
    let prefix = keys.nodes();
    let resp = timed(
        c.timeout,
        client.get(prefix.clone(), Some(GetOptions::new().with_prefix())),
    )
    .await?;
    let mut out = BTreeMap::new();
    for kv in resp.kvs() {
        let key = String::from_utf8_lossy(kv.key()).into_owned();
        let id = key.strip_prefix(&prefix).unwrap_or(&key).to_string();
        if let Some(r) = parse_node(&key, kv.value()) {
            out.insert(id, r);
        }
    }
    Ok(out)
}

/// Lowercase hex SHA-256 of a document.
pub(crate) fn sha256(text: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(text.as_bytes()))
}
