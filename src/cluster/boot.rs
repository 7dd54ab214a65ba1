//! Start-up of a cluster node: the config in etcd, else the last one this
//! node applied (`snapshot_file`), else a clear error. And the snapshot file
//! itself, written atomically after each applied revision.

use super::{connect, read_config};
use crate::config::{self, Config};
use crate::runtime::reload::ClusterDoc;
use std::io::Write;
use std::path::Path;

/// The first line of a snapshot file; the document follows as written.
const HEADER: &str = "# gatehouse cluster snapshot: revision ";

/// Writes `doc` to `path` through a temporary file and a rename, so a crash
/// never leaves half a snapshot.
pub(crate) fn write_snapshot(path: &Path, doc: &ClusterDoc) -> std::io::Result<()> {
    let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
    let mut f = std::fs::File::create(&tmp)?;
    write!(f, "{HEADER}{}\n{}", doc.revision, doc.text)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

/// The document a snapshot file holds.
pub(crate) fn read_snapshot(path: &Path) -> Result<ClusterDoc, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let (first, rest) = text.split_once('\n').unwrap_or((&text, ""));
    let revision = first
        .strip_prefix(HEADER)
        .and_then(|r| r.trim().parse::<u64>().ok())
        .ok_or_else(|| format!("{} is not a gatehouse snapshot file", path.display()))?;
    Ok(ClusterDoc {
        text: rest.to_string(),
        revision,
    })
}

/// The config `explain` reads, without touching the network: outside
/// cluster mode the file itself; in cluster mode the local file merged with
/// the document this node last applied (`snapshot_file`).
pub(crate) fn offline(local: Config, local_path: &Path) -> Result<Config, String> {
    let Some(c) = &local.cluster else {
        return Ok(local);
    };
    let Some(file) = &c.snapshot_file else {
        return Err(
            "in cluster mode explain reads `cluster.snapshot_file`, which is not set; \
             ask a running node instead: POST /explain on its admin listener"
                .into(),
        );
    };
    let doc = read_snapshot(file)?;
    config::load_merged(local_path, &doc.text).map_err(|e| {
        format!(
            "the snapshot file {} (revision {}) does not validate: {}",
            file.display(),
            doc.revision,
            e.errors().join("; ")
        )
    })
}

/// What a node starts with.
pub(crate) struct Start {
    pub config: Config,
    /// `None`: nothing pushed yet (503 "no configuration yet"), or the
    /// document in etcd did not validate here and no snapshot could stand in.
    pub doc: Option<ClusterDoc>,
}

/// Reads the config from etcd, else `snapshot_file`. `Err` is the one line
/// the binary prints before exiting non-zero.
pub(crate) fn start(local: Config, local_path: &Path) -> Result<Start, String> {
    let Some(c) = local.cluster.clone() else {
        return Ok(Start {
            config: local,
            doc: None,
        });
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start a runtime: {e}"))?;
    let fetched = rt.block_on(async {
        let mut client = connect(&c).await?;
        read_config(&mut client, &c).await
    });
    let from_snapshot = |why: &str| -> Result<Start, String> {
        let Some(file) = &c.snapshot_file else {
            return Err(format!(
                "{why}, and `cluster.snapshot_file` is not set: nothing to start from"
            ));
        };
        let doc = read_snapshot(file).map_err(|e| format!("{why}, and the snapshot file {e}"))?;
        let config = config::load_merged(local_path, &doc.text).map_err(|e| {
            format!(
                "{why}, and the snapshot file {} does not validate: {}",
                file.display(),
                e.errors().join("; ")
            )
        })?;
        log::warn!(
            "{why}: starting from {} (revision {})",
            file.display(),
            doc.revision
        );
        Ok(Start {
            config,
            doc: Some(doc),
        })
    };
    match fetched {
        Err(e) => from_snapshot(&format!("etcd is unreachable ({e})")),
        Ok((None, _)) => {
            log::warn!(
                "cluster: nothing at {}/config yet; answering 503 until the first push",
                c.prefix
            );
            Ok(Start {
                config: local,
                doc: None,
            })
        }
        Ok((Some((text, revision)), _)) => {
            let doc = ClusterDoc { text, revision };
            match config::load_merged(local_path, &doc.text) {
                Ok(config) => Ok(Start {
                    config,
                    doc: Some(doc),
                }),
                Err(e) => {
                    let why = format!(
                        "the config at revision {revision} does not validate on this node ({})",
                        e.errors().join("; ")
                    );
                    log::error!("cluster: {why}");
                    // The agent reports it as `last_error` once it runs.
                    from_snapshot(&why).or(Ok(Start {
                        config: local,
                        doc: None,
                    }))
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_snapshot_reads_back_what_was_written() {
        let dir = std::env::temp_dir().join(format!("gh-snap-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("last.yaml");
        let doc = ClusterDoc {
            text: "routes: []\n# ${SECRET}\n".into(),
            revision: 42,
        };
        write_snapshot(&path, &doc).expect("write");
        assert_eq!(read_snapshot(&path).expect("read"), doc);
        std::fs::write(&path, "routes: []\n").expect("write");
        assert!(read_snapshot(&path).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
