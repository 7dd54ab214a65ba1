//! A node's side of cluster mode, one task per gateway: connect, read the
//! config and the live nodes, keep this node's record under a lease, and
//! watch `<prefix>/` from the revision read. Each config revision goes
//! through the reload path (the newest of a batch only: never a stale or
//! half one); purges run on the local cache. A compaction or a cancelled
//! watch re-reads at once; a lost connection retries with backoff while the
//! node keeps serving what it applied.

use super::{boot, connect, read_config, read_nodes, sha256, timed, Keys, NODE_TTL_SECS};
use crate::runtime::fleet::{in_sync, Command, Fleet, NodeRecord, Purge};
use crate::runtime::reload::{ClusterDoc, ReloadReport};
use crate::runtime::GatewayState;
use etcd_client::{Client, EventType, PutOptions, WatchOptions};
use std::sync::{Arc, Weak};
use std::time::{Duration, SystemTime};
use tokio::sync::mpsc::UnboundedReceiver;

/// How long a purge key lives: every node watching sees it well before.
const PURGE_TTL_SECS: i64 = 10;
const KEEPALIVE: Duration = Duration::from_secs(5);

/// Why a session ended.
enum Ended {
    /// Re-read at once (compaction, cancelled watch, expired lease).
    Resync(String),
    /// etcd failed: wait, then reconnect.
    Lost(String),
    /// The gateway is gone.
    Stopped,
}

/// Runs until the gateway is dropped (or the task service stops).
async fn run(
    state: Weak<GatewayState>,
    fleet: Arc<Fleet>,
    mut commands: UnboundedReceiver<Command>,
) {
    let mut wait = Duration::from_millis(100);
    loop {
        let ended = match Session::open(&fleet, &state).await {
            Ok(mut s) => s.serve(&state, &mut commands).await,
            Err(e) => Ended::Lost(e),
        };
        let why = match ended {
            Ended::Stopped => return,
            Ended::Resync(why) => {
                log::info!("cluster: re-reading etcd ({why})");
                wait = Duration::from_millis(100);
                continue;
            }
            Ended::Lost(why) => why,
        };
        if fleet
            .update(|s| s.etcd_error.replace(why.clone()))
            .is_none()
        {
            log::warn!("cluster: etcd unreachable ({why}); serving the applied config");
        }
        // Offline: commands are answered from what this node has.
        let sleep = tokio::time::sleep(wait);
        tokio::pin!(sleep);
        loop {
            tokio::select! {
                _ = &mut sleep => break,
                cmd = commands.recv() => match (cmd, state.upgrade()) {
                    (Some(cmd), Some(st)) => offline(&st, &fleet, cmd),
                    _ => return,
                },
            }
        }
        wait = (wait * 2).min(Duration::from_secs(2));
    }
}

/// A command while etcd is unreachable.
fn offline(st: &GatewayState, f: &Fleet, cmd: Command) {
    match cmd {
        Command::Reload(reply) => {
            let r = st.reloader.reload(st);
            if let Ok(report) = &r {
                note_upgrade(f, report);
            }
            let _ = reply.send(r);
        }
        Command::Purge(_, reply) => {
            let _ = reply.send(Err("etcd is unreachable".into()));
        }
    }
}

/// A reload that changed a key only `-u` applies is reported in the record.
fn note_upgrade(f: &Fleet, report: &ReloadReport) {
    if !report.needs_upgrade.is_empty() {
        f.update(|s| {
            if let Some(own) = &mut s.own {
                own.needs_upgrade = true;
            }
        });
    }
}

fn now_rfc3339() -> String {
    crate::observability::time::rfc3339_millis(SystemTime::now())
}

/// Applies `doc`: the reload's result and this node's record afterwards.
fn apply(
    st: &GatewayState,
    f: &Fleet,
    doc: ClusterDoc,
) -> (Result<ReloadReport, Vec<String>>, NodeRecord) {
    let rev = doc.revision;
    let result = st.reloader.apply_doc(st, doc.clone());
    let own = match &result {
        Ok(report) => applied(st, f, &doc, !report.needs_upgrade.is_empty()),
        Err(errors) => f.update(|s| {
            let own = s.own.get_or_insert_with(|| record(0, None));
            own.last_error = Some(format!("revision {rev}: {}", errors.join("; ")));
            own.clone()
        }),
    };
    (result, own)
}

/// The record once `doc` is in force; the snapshot file follows it.
fn applied(st: &GatewayState, f: &Fleet, doc: &ClusterDoc, needs_upgrade: bool) -> NodeRecord {
    st.metrics.config_revision.set(doc.revision as i64);
    if let Some(file) = &f.config.snapshot_file {
        if let Err(e) = boot::write_snapshot(file, doc) {
            log::error!("cluster: cannot write {}: {e}", file.display());
        }
    }
    f.update(|s| {
        let own = s.own.get_or_insert_with(|| record(0, None));
        own.applied_revision = doc.revision;
        own.sha256 = Some(sha256(&doc.text));
        own.applied_at = Some(now_rfc3339());
        own.last_error = None;
        own.needs_upgrade |= needs_upgrade;
        own.clone()
    })
}

fn record(applied_revision: u64, sha256: Option<String>) -> NodeRecord {
    NodeRecord {
        applied_revision,
        sha256,
        applied_at: None,
        version: env!("CARGO_PKG_VERSION").to_string(),
        last_error: None,
        needs_upgrade: false,
    }
}

/// Publishes the in-sync gauge from the status.
fn publish(st: &GatewayState, f: &Fleet) {
    let s = f.status();
    st.metrics
        .cluster_in_sync
        .set(in_sync(s.revision, &s.nodes) as i64);
}

/// One connection to etcd with this node's lease.
struct Session {
    fleet: Arc<Fleet>,
    client: Client,
    lease: i64,
    keeper: etcd_client::LeaseKeeper,
    acks: etcd_client::LeaseKeepAliveStream,
}

impl Session {
    async fn open(fleet: &Arc<Fleet>, state: &Weak<GatewayState>) -> Result<Session, String> {
        let c = &fleet.config;
        let mut client = connect(c).await?;
        let lease = timed(c.timeout, client.lease_grant(NODE_TTL_SECS, None))
            .await?
            .id();
        let (keeper, acks) = timed(c.timeout, client.lease_keep_alive(lease)).await?;
        // The first record: the document the node started with, if any.
        if let Some(st) = state.upgrade() {
            if fleet.status().own.is_none() {
                match st.reloader.doc() {
                    Some(doc) => {
                        applied(&st, fleet, &doc, false);
                    }
                    None => fleet.update(|s| s.own = Some(record(0, None))),
                }
            }
        }
        Ok(Session {
            fleet: fleet.clone(),
            client,
            lease,
            keeper,
            acks,
        })
    }

    async fn put_record(&mut self, own: &NodeRecord) -> Result<(), String> {
        let key = Keys(&self.fleet.config.prefix).node(&self.fleet.config.node_id);
        let value = serde_json::to_vec(own).unwrap_or_default();
        let opts = PutOptions::new().with_lease(self.lease);
        timed(
            self.fleet.config.timeout,
            self.client.put(key, value, Some(opts)),
        )
        .await?;
        Ok(())
    }

    /// Reads the config (applying a newer one) and the nodes, writes this
    /// node's record; returns the store revision to watch from.
    async fn sync(&mut self, st: &GatewayState) -> Result<u64, String> {
        // A handle of its own: `self` is borrowed mutably below.
        let fleet = self.fleet.clone();
        let f = &*fleet;
        let (doc, store_rev) = read_config(&mut self.client, &self.fleet.config).await?;
        let revision = doc.as_ref().map_or(0, |d| d.1);
        f.update(|s| {
            s.revision = revision;
            s.etcd_error = None;
        });
        let applied = st.reloader.doc().map(|d| d.revision);
        let own = match doc {
            Some((text, rev)) if applied != Some(rev) => {
                apply(
                    st,
                    f,
                    ClusterDoc {
                        text,
                        revision: rev,
                    },
                )
                .1
            }
            _ => f.status().own.unwrap_or_else(|| record(0, None)),
        };
        self.put_record(&own).await?;
        let nodes = read_nodes(&mut self.client, &self.fleet.config).await?;
        f.update(|s| s.nodes = nodes);
        publish(st, f);
        Ok(store_rev)
    }

    async fn serve(
        &mut self,
        state: &Weak<GatewayState>,
        commands: &mut UnboundedReceiver<Command>,
    ) -> Ended {
        let from = {
            let Some(st) = state.upgrade() else {
                return Ended::Stopped;
            };
            match self.sync(&st).await {
                Ok(rev) => rev + 1,
                Err(e) => return Ended::Lost(e),
            }
        };
        let opts = WatchOptions::new()
            .with_prefix()
            .with_start_revision(from as i64)
            .with_progress_notify();
        let prefix = Keys(&self.fleet.config.prefix).all();
        let mut watch = match timed(
            self.fleet.config.timeout,
            self.client.watch(prefix, Some(opts)),
        )
        .await
        {
            Ok(w) => w,
            Err(e) => return Ended::Lost(e),
        };
        let mut tick = tokio::time::interval(KEEPALIVE);
        loop {
            tokio::select! {
                msg = watch.message() => {
                    let resp = match msg {
                        Ok(Some(r)) => r,
                        Ok(None) => return Ended::Lost("the watch stream ended".into()),
                        Err(e) => return Ended::Lost(e.to_string()),
                    };
                    if resp.compact_revision() > 0 {
                        return Ended::Resync(format!("compacted at revision {}", resp.compact_revision()));
                    }
                    if resp.canceled() {
                        return Ended::Resync(format!("watch cancelled: {}", resp.cancel_reason()));
                    }
                    if let Err(e) = self.on_events(state, resp.events()).await {
                        return e;
                    }
                }
                _ = tick.tick() => {
                    if let Err(e) = timed(self.fleet.config.timeout, self.keeper.keep_alive()).await {
                        return Ended::Lost(e);
                    }
                }
                ack = self.acks.message() => match ack {
                    Ok(Some(a)) if a.ttl() <= 0 => return Ended::Resync("the node's lease expired".into()),
                    Ok(Some(_)) => {}
                    Ok(None) => return Ended::Lost("the lease stream ended".into()),
                    Err(e) => return Ended::Lost(e.to_string()),
                },
                cmd = commands.recv() => {
                    let Some(cmd) = cmd else { return Ended::Stopped };
                    if let Err(e) = self.online(state, cmd).await {
                        return e;
                    }
                }
            }
        }
    }

    /// One watch batch: node records, purges, and the newest config put.
    async fn on_events(
        &mut self,
        state: &Weak<GatewayState>,
        events: &[etcd_client::Event],
    ) -> Result<(), Ended> {
        let Some(st) = state.upgrade() else {
            return Err(Ended::Stopped);
        };
        // A handle of its own: `self` is borrowed mutably below.
        let fleet = self.fleet.clone();
        let f = &*fleet;
        let keys = Keys(&self.fleet.config.prefix);
        let (config_key, nodes, purges) = (keys.config(), keys.nodes(), keys.purges());
        let mut newest = None;
        for ev in events {
            let Some(kv) = ev.kv() else { continue };
            let key = String::from_utf8_lossy(kv.key());
            let put = ev.event_type() == EventType::Put;
            if *key == config_key {
                if put {
                    newest = Some(kv);
                } else {
                    log::warn!("cluster: {config_key} was deleted; keeping the applied config");
                }
            } else if let Some(id) = key.strip_prefix(&nodes) {
                let id = id.to_string();
                let rec = if put {
                    super::parse_node(&key, kv.value())
                } else {
                    None
                };
                f.update(|s| match rec {
                    Some(r) => s.nodes.insert(id, r),
                    None => s.nodes.remove(&id),
                });
            } else if key.starts_with(&purges) && put {
                match serde_json::from_slice::<Purge>(kv.value()) {
                    Ok(p) => {
                        let n = st.cache.store.purge_path(
                            &p.path,
                            p.query.as_deref(),
                            p.host.as_deref(),
                        );
                        log::info!("cluster: purged {n} cached responses for {}", p.path);
                    }
                    Err(e) => log::warn!("cluster: ignoring the malformed purge at {key}: {e}"),
                }
            }
        }
        if let Some(kv) = newest {
            let revision = kv.mod_revision() as u64;
            f.update(|s| s.revision = revision);
            let own = match kv.value_str() {
                Ok(text) => {
                    apply(
                        &st,
                        f,
                        ClusterDoc {
                            text: text.to_string(),
                            revision,
                        },
                    )
                    .1
                }
                Err(_) => f.update(|s| {
                    let own = s.own.get_or_insert_with(|| record(0, None));
                    own.last_error =
                        Some(format!("revision {revision}: the document is not UTF-8"));
                    own.clone()
                }),
            };
            self.put_record(&own).await.map_err(Ended::Lost)?;
        }
        publish(&st, f);
        Ok(())
    }

    /// A command while connected.
    async fn online(&mut self, state: &Weak<GatewayState>, cmd: Command) -> Result<(), Ended> {
        let Some(st) = state.upgrade() else {
            return Err(Ended::Stopped);
        };
        // A handle of its own: `self` is borrowed mutably below.
        let fleet = self.fleet.clone();
        let f = &*fleet;
        match cmd {
            Command::Reload(reply) => {
                let read = read_config(&mut self.client, &self.fleet.config).await;
                let applied = st.reloader.doc().map(|d| d.revision);
                let (result, own) = match read {
                    Ok((Some((text, revision)), _)) if applied != Some(revision) => {
                        f.update(|s| s.revision = revision);
                        apply(&st, f, ClusterDoc { text, revision })
                    }
                    _ => {
                        let r = st.reloader.reload(&st);
                        if let Ok(report) = &r {
                            note_upgrade(f, report);
                        }
                        (r, f.status().own.unwrap_or_else(|| record(0, None)))
                    }
                };
                let _ = reply.send(result);
                self.put_record(&own).await.map_err(Ended::Lost)?;
                publish(&st, f);
            }
            Command::Purge(p, reply) => {
                let r = self.write_purge(&p).await;
                let failed = r.is_err();
                let _ = reply.send(r.clone());
                if failed {
                    return Err(Ended::Lost(r.err().unwrap_or_default()));
                }
            }
        }
        Ok(())
    }

    async fn write_purge(&mut self, p: &Purge) -> Result<(), String> {
        let lease = timed(
            self.fleet.config.timeout,
            self.client.lease_grant(PURGE_TTL_SECS, None),
        )
        .await?
        .id();
        let nanos = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let key = format!(
            "{}{}-{nanos}",
            Keys(&self.fleet.config.prefix).purges(),
            self.fleet.config.node_id
        );
        let value = serde_json::to_vec(p).unwrap_or_default();
        let opts = PutOptions::new().with_lease(lease);
        timed(
            self.fleet.config.timeout,
            self.client.put(key, value, Some(opts)),
        )
        .await?;
        Ok(())
    }
}

/// Starts the agent of `state` (cluster mode only).
pub(crate) fn spawn(state: &Arc<GatewayState>, commands: UnboundedReceiver<Command>) {
    if let Some(fleet) = &state.fleet {
        let weak = Arc::downgrade(state);
        state
            .snapshots
            .spawner()
            .spawn(run(weak, fleet.clone(), commands));
    }
}
