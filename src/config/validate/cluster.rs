//! `cluster`: etcd endpoints, the key prefix, the node's id and its
//! snapshot file.

use super::{Errs, KeyPath};
use crate::config::file::ClusterFile;
use crate::config::model::ClusterConfig;
use std::path::Path;
use std::time::Duration;

pub(super) fn cluster(c: &ClusterFile, base: &Path, errs: &mut Errs) -> ClusterConfig {
    let path = KeyPath::root("cluster");
    if c.etcd.is_empty() {
        errs.push(path.key("etcd"), "name at least one etcd endpoint");
    }
    for (i, e) in c.etcd.iter().enumerate() {
        let ok = http::Uri::try_from(e.as_str())
            .ok()
            .filter(|u| u.scheme_str() == Some("http") && u.port_u16().is_some());
        if ok.is_none() {
            errs.push(
                path.key("etcd").index(i),
                format!("invalid endpoint `{e}`: write `http://host:port` (e.g. `http://10.0.0.5:2379`)"),
            );
        }
    }
    let prefix = c.prefix.trim_end_matches('/').to_string();
    if !prefix.starts_with('/') || prefix.len() < 2 {
        errs.push(
            path.key("prefix"),
            format!(
                "`{}` is not a key prefix: write e.g. `/gatehouse/prod`",
                c.prefix
            ),
        );
    }
    let node_id = c.node_id.0.trim().to_string();
    if node_id.is_empty() || node_id.len() > 128 || node_id.contains(['/', ' ']) {
        errs.push(
            path.key("node_id"),
            format!("`{node_id}` is not a node id: 1 to 128 characters, no `/` or space"),
        );
    }
    ClusterConfig {
        etcd: c.etcd.clone(),
        prefix,
        node_id,
        snapshot_file: c.snapshot_file.as_ref().map(|f| base.join(f)),
        timeout: errs.positive_duration(&path.key("timeout"), &c.timeout, Duration::from_secs(2)),
    }
}
