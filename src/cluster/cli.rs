//! The operator's side: `push FILE`, `push --rollback REV` and `cluster`.
//! Each returns the process exit code and prints one clear line on failure.

use super::{connect, read_config, read_nodes, timed, Keys, HISTORY};
use crate::config::{self, ClusterConfig};
use crate::runtime::fleet;
use etcd_client::{Client, Compare, CompareOp, DeleteOptions, GetOptions, Txn, TxnOp};
use std::path::Path;

/// What to push.
pub(crate) enum PushSource<'a> {
    File(&'a Path),
    /// The document of an earlier revision, from `<prefix>/history/`.
    Rollback(u64),
}

fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start a runtime: {e}"))
}

/// `gatehouse -c LOCAL push FILE | --rollback REV [--if-revision REV]`.
pub(crate) fn push(
    c: &ClusterConfig,
    local: &Path,
    source: PushSource<'_>,
    if_revision: Option<u64>,
) -> i32 {
    match runtime().and_then(|rt| rt.block_on(push_async(c, local, source, if_revision))) {
        Ok(rev) => {
            println!("pushed revision {rev}");
            0
        }
        Err(e) => {
            eprintln!("push: {e}");
            1
        }
    }
}

/// Validates `text` as every node will (merged with the local file).
fn validate(local: &Path, text: &str, what: &str) -> Result<(), String> {
    config::load_merged(local, text).map(|_| ()).map_err(|e| {
        let mut msg = format!("{what} has errors; nothing was written:");
        for line in e.errors() {
            msg.push_str("\n  ");
            msg.push_str(&line);
        }
        msg
    })
}

async fn push_async(
    c: &ClusterConfig,
    local: &Path,
    source: PushSource<'_>,
    if_revision: Option<u64>,
) -> Result<u64, String> {
    let keys = Keys(&c.prefix);
    let text = match &source {
        PushSource::File(f) => {
            let text = std::fs::read_to_string(f).map_err(|e| format!("{}: {e}", f.display()))?;
            validate(local, &text, &f.display().to_string())?;
            text
        }
        PushSource::Rollback(_) => String::new(),
    };
    let mut client = connect(c).await?;
    let text = match source {
        PushSource::File(_) => text,
        PushSource::Rollback(rev) => {
            let text = history_doc(&mut client, c, rev).await?;
            validate(local, &text, &format!("revision {rev}"))?;
            text
        }
    };
    let (current, _) = read_config(&mut client, c).await?;
    let read_rev = current.as_ref().map_or(0, |d| d.1);
    if let Some(want) = if_revision {
        if want != read_rev {
            return Err(conflict(want, read_rev));
        }
    }
    // Compare-and-swap on the revision read: a concurrent push fails here.
    let guard = match current {
        Some(_) => Compare::mod_revision(keys.config(), CompareOp::Equal, read_rev as i64),
        None => Compare::create_revision(keys.config(), CompareOp::Equal, 0),
    };
    let txn = Txn::new()
        .when([guard])
        .and_then([TxnOp::put(keys.config(), text.clone(), None)]);
    let resp = timed(c.timeout, client.txn(txn)).await?;
    if !resp.succeeded() {
        let (now, _) = read_config(&mut client, c).await?;
        return Err(conflict(read_rev, now.map_or(0, |d| d.1)));
    }
    let rev = resp.header().map_or(0, |h| h.revision()) as u64;
    timed(c.timeout, client.put(keys.history_at(rev), text, None)).await?;
    trim_history(&mut client, c).await?;
    Ok(rev)
}

fn conflict(read: u64, now: u64) -> String {
    format!(
        "conflict: the config changed from revision {read} to {now} in the meantime; nothing was written (read it again and push once more)"
    )
}

/// The document of `rev` from the kept history.
async fn history_doc(client: &mut Client, c: &ClusterConfig, rev: u64) -> Result<String, String> {
    let keys = Keys(&c.prefix);
    let resp = timed(c.timeout, client.get(keys.history_at(rev), None)).await?;
    if let Some(kv) = resp.kvs().first() {
        return kv
            .value_str()
            .map(str::to_string)
            .map_err(|_| format!("revision {rev}: the document is not UTF-8"));
    }
    let kept = history_revisions(client, c).await?;
    Err(match (kept.first(), kept.last()) {
        (Some(a), Some(b)) => format!(
            "revision {rev} is not among the last {HISTORY} revisions kept ({a} to {b}); nothing was written"
        ),
        _ => format!("revision {rev} is not kept: the history is empty; nothing was written"),
    })
}

async fn history_revisions(client: &mut Client, c: &ClusterConfig) -> Result<Vec<u64>, String> {
    let prefix = Keys(&c.prefix).history();
    let opts = GetOptions::new().with_prefix().with_keys_only();
    let resp = timed(c.timeout, client.get(prefix.clone(), Some(opts))).await?;
    let mut revs: Vec<u64> = resp
        .kvs()
        .iter()
        .filter_map(|kv| {
            String::from_utf8_lossy(kv.key())
                .strip_prefix(&prefix)
                .and_then(|r| r.parse().ok())
        })
        .collect();
    revs.sort_unstable();
    Ok(revs)
}

/// Keeps the newest [`HISTORY`] documents.
async fn trim_history(client: &mut Client, c: &ClusterConfig) -> Result<(), String> {
    let revs = history_revisions(client, c).await?;
    if revs.len() <= HISTORY {
        return Ok(());
    }
    let keys = Keys(&c.prefix);
    let cut = revs[revs.len() - HISTORY];
    // Every history key below the oldest one kept.
    let opts = DeleteOptions::new().with_range(keys.history_at(cut));
    timed(c.timeout, client.delete(keys.history(), Some(opts))).await?;
    Ok(())
}

/// `gatehouse -c LOCAL cluster [--json]`: the fleet as etcd has it.
pub(crate) fn status(c: &ClusterConfig, json: bool) -> i32 {
    let fetched = runtime().and_then(|rt| {
        rt.block_on(async {
            let mut client = connect(c).await?;
            let (doc, _) = read_config(&mut client, c).await?;
            let nodes = read_nodes(&mut client, c).await?;
            Ok::<_, String>((doc.map_or(0, |d| d.1), nodes))
        })
    });
    let (revision, nodes) = match fetched {
        Ok(v) => v,
        Err(e) => {
            eprintln!("cluster: {e}");
            return 1;
        }
    };
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&fleet::view(revision, &nodes)).unwrap_or_default()
        );
        return 0;
    }
    print!("{}", table(revision, &nodes));
    0
}

/// The fleet as an aligned table.
fn table(revision: u64, nodes: &std::collections::BTreeMap<String, fleet::NodeRecord>) -> String {
    let sync = if fleet::in_sync(revision, nodes) {
        "yes"
    } else {
        "no"
    };
    let mut rows = vec![[
        "NODE".to_string(),
        "APPLIED".into(),
        "SHA256".into(),
        "APPLIED AT".into(),
        "VERSION".into(),
        "UPGRADE".into(),
        "LAST ERROR".into(),
    ]];
    for (id, n) in nodes {
        rows.push([
            id.clone(),
            n.applied_revision.to_string(),
            n.sha256
                .as_deref()
                .map_or("-", |s| &s[..12.min(s.len())])
                .into(),
            n.applied_at.clone().unwrap_or_else(|| "-".into()),
            n.version.clone(),
            if n.needs_upgrade { "needed" } else { "-" }.into(),
            n.last_error.clone().unwrap_or_else(|| "-".into()),
        ]);
    }
    let mut widths = [0usize; 7];
    for r in &rows {
        for (w, cell) in widths.iter_mut().zip(r) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = format!(
        "revision {revision}, {} live node(s), in sync: {sync}\n",
        nodes.len()
    );
    for r in &rows {
        let cells: Vec<String> = r
            .iter()
            .zip(widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}
