//! Cluster mode with a real etcd and three real gatehouse processes: push,
//! convergence, per-node failures, conflicts, etcd outages and compaction,
//! purge, rollback and lease expiry.

use crate::support::*;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Three (or more) nodes of one cluster, each with its own local file.
pub(crate) struct Fleet {
    endpoint: String,
    prefix: String,
    pub nodes: Vec<Binary>,
    _etcd: Option<Etcd>,
}

fn local_yaml(endpoint: &str, prefix: &str, node: &str) -> String {
    format!(
        r#"
server:
  listen: ["{{listen}}"]
  threads: 1
  pid_file: "{{dir}}/pid"
  upgrade_sock: "{{dir}}/upgrade.sock"
  grace_period: 2s
admin: {{ listen: "{{admin}}" }}
logging: {{ level: info, access_log: off }}
cluster:
  etcd: ["{endpoint}"]
  prefix: {prefix}
  node_id: {node}
  snapshot_file: "{{dir}}/last-config.yaml"
  timeout: 1s
"#
    )
}

/// Starts one node; `setup` may drop files into its directory first.
fn node(endpoint: &str, prefix: &str, id: &str) -> Binary {
    spawn_binary(&local_yaml(endpoint, prefix, id), |c| {
        c.env("RUST_LOG", "info");
    })
}

impl Fleet {
    pub(crate) fn start(test: &str, n: usize, etcd: Option<Etcd>) -> Fleet {
        let (endpoint, guard) = match etcd {
            Some(e) => (e.endpoint(), Some(e)),
            None => shared_etcd(),
        };
        let prefix = unique_prefix(test);
        let nodes = (0..n)
            .map(|i| node(&endpoint, &prefix, &format!("node-{i}")))
            .collect();
        Fleet {
            endpoint,
            prefix,
            nodes,
            _etcd: guard,
        }
    }

    /// `gatehouse -c <node 0's local file> ARGS...`
    fn cli(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_gatehouse"))
            .arg("-c")
            .arg(&self.nodes[0].config)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    /// Writes `doc` next to node 0's local file and pushes it; the revision.
    pub(crate) fn push(&self, doc: &str) -> u64 {
        let out = self.try_push(doc, &[]);
        assert!(out.status.success(), "push failed: {}", text(&out.stderr));
        revision_of(&out)
    }

    fn try_push(&self, doc: &str, extra: &[&str]) -> Output {
        let file = self.nodes[0]
            .dir()
            .join(format!("push-{}.yaml", fastrand::u64(..)));
        std::fs::write(&file, doc).unwrap();
        let mut args = vec!["push", file.to_str().unwrap()];
        args.extend_from_slice(extra);
        self.cli(&args)
    }

    fn cluster_view(&self, node: usize) -> serde_json::Value {
        client()
            .get(self.nodes[node].admin_url("/cluster"))
            .send()
            .unwrap()
            .json()
            .unwrap()
    }

    /// Waits until every node answers `path` with `status`; how long it took.
    pub(crate) fn converge(&self, path: &str, status: u16, limit: Duration) -> Duration {
        let start = Instant::now();
        for (i, n) in self.nodes.iter().enumerate() {
            assert!(
                eventually(limit, || get_raw(n.addr, path, "").status == status),
                "node {i} never answered {path} with {status}"
            );
        }
        start.elapsed()
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// `pushed revision N` -> N
fn revision_of(out: &Output) -> u64 {
    let s = text(&out.stdout);
    s.trim()
        .strip_prefix("pushed revision ")
        .and_then(|r| r.parse().ok())
        .unwrap_or_else(|| panic!("unexpected push output: {s}"))
}

pub(crate) fn doc(up: &Upstream, route: &str) -> String {
    format!(
        "upstreams:\n  svc: {{ targets: [\"{}\"] }}\nroutes:\n  - {{ name: {route}, match: {{ path_prefix: /{route} }}, upstream: svc }}\n",
        up.addr
    )
}

#[test]
fn before_the_first_push_nodes_answer_503_then_every_node_serves_the_push() {
    let up = Upstream::start("svc");
    let fleet = Fleet::start("converge", 3, None);
    let r = get_raw(fleet.nodes[0].addr, "/a/x", "");
    assert_eq!(r.status, 503);
    assert!(
        text(&r.body).contains("no configuration yet")
            || text(&r.body).contains("No configuration yet")
    );
    let ready = client()
        .get(fleet.nodes[1].admin_url("/ready"))
        .send()
        .unwrap();
    assert_eq!(ready.status(), 503);

    let rev = fleet.push(&doc(&up, "a"));
    let took = fleet.converge("/a/x", 200, Duration::from_secs(2));
    println!(
        "three nodes served revision {rev} {} ms after the push returned",
        took.as_millis()
    );
    assert!(
        eventually(Duration::from_secs(2), || {
            let v = fleet.cluster_view(2);
            v["in_sync"] == true
                && v["revision"] == rev
                && v["nodes"].as_array().unwrap().len() == 3
        }),
        "{}",
        fleet.cluster_view(2)
    );
    // Every node's view gets there, each through its own watch.
    assert!(
        eventually(Duration::from_secs(2), || {
            let v = fleet.cluster_view(0);
            let nodes = v["nodes"].as_array().cloned().unwrap_or_default();
            nodes.len() == 3
                && nodes.iter().all(|n| {
                    n["applied_revision"] == rev
                        && n["last_error"] == serde_json::Value::Null
                        && n["sha256"].as_str().is_some_and(|h| h.len() == 64)
                })
        }),
        "{}",
        fleet.cluster_view(0)
    );
    assert!(eventually(Duration::from_secs(2), || {
        let m = scrape_at(fleet.nodes[1].admin);
        metric(&m, "gatehouse_config_revision", &[]) == rev as f64
            && metric(&m, "gatehouse_cluster_in_sync", &[]) == 1.0
    }));

    // The CLI prints the same as a table.
    let out = fleet.cli(&["cluster"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let table = text(&out.stdout);
    assert!(
        table.contains(&format!("revision {rev}, 3 live node(s), in sync: yes")),
        "{table}"
    );
    for i in 0..3 {
        assert!(table.contains(&format!("node-{i}")), "{table}");
    }

    // A second push replaces the routes everywhere, and says what changed.
    let rev2 = fleet.push(&doc(&up, "b"));
    assert!(rev2 > rev);
    fleet.converge("/b/x", 200, Duration::from_secs(2));
    fleet.converge("/a/x", 404, Duration::from_secs(2));
    // The snapshot file follows the applied revision.
    let snap = std::fs::read_to_string(fleet.nodes[2].dir().join("last-config.yaml")).unwrap();
    assert!(
        snap.starts_with(&format!("# gatehouse cluster snapshot: revision {rev2}\n")),
        "{snap}"
    );
}

#[test]
fn an_invalid_push_is_refused_before_anything_is_written() {
    let up = Upstream::start("svc");
    let fleet = Fleet::start("invalid", 1, None);
    let rev = fleet.push(&doc(&up, "a"));
    let bad = doc(&up, "a").replace("upstream: svc", "upstream: nowhere");
    let out = fleet.try_push(&bad, &[]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains("routes[0].upstream") && err.contains("nothing was written"),
        "{err}"
    );
    // A document may not carry a node's own sections.
    let out = fleet.try_push(&format!("server: {{ threads: 1 }}\n{}", doc(&up, "a")), &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("`server` belongs to each node's local file"));
    // Nothing was written: etcd still holds the first revision.
    let out = fleet.cli(&["cluster", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["revision"], rev);
    // The local file of a node may not carry the shared keys.
    let local = std::fs::read_to_string(&fleet.nodes[0].config).unwrap();
    let mixed = fleet.nodes[0].dir().join("mixed.yaml");
    std::fs::write(&mixed, format!("{local}{}", doc(&up, "a"))).unwrap();
    let out = config_check(&mixed).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains("routes") && err.contains("lives in etcd"),
        "{err}"
    );
    // `-t` on the local file alone does not contact etcd.
    std::fs::write(&mixed, local.replace(&fleet.endpoint, "http://127.0.0.1:1")).unwrap();
    let out = config_check(&mixed).output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
}

#[test]
fn a_node_that_cannot_apply_a_revision_keeps_its_config_and_says_why() {
    let up = Upstream::start("svc");
    let fleet = Fleet::start("node-error", 3, None);
    // Each node's local directory holds the key file, except node 2's.
    for n in &fleet.nodes[..2] {
        std::fs::copy(fixture("rsa1.pub.pem"), n.dir().join("jwt.pub.pem")).unwrap();
    }
    let rev = fleet.push(&doc(&up, "a"));
    fleet.converge("/a/x", 200, Duration::from_secs(2));
    let with_key = format!(
        "auth:\n  j: {{ type: jwt, algorithms: [RS256], public_key: jwt.pub.pem }}\n{}",
        doc(&up, "b")
    );
    let rev2 = fleet.push(&with_key);
    for n in &fleet.nodes[..2] {
        assert!(eventually(Duration::from_secs(2), || get_raw(
            n.addr, "/b/x", ""
        )
        .status
            == 200));
    }
    assert!(
        eventually(Duration::from_secs(3), || {
            let v = fleet.cluster_view(0);
            let n2 = v["nodes"]
                .as_array()
                .unwrap()
                .iter()
                .find(|n| n["node_id"] == "node-2")
                .cloned();
            n2.is_some_and(|n| {
                n["last_error"]
                    .as_str()
                    .is_some_and(|e| e.contains("jwt.pub.pem"))
            })
        }),
        "{}",
        fleet.cluster_view(0)
    );
    // Node 1 learns the same through etcd, a watch event later.
    assert!(
        eventually(Duration::from_secs(3), || {
            let v = fleet.cluster_view(1);
            let n2 = v["nodes"]
                .as_array()
                .and_then(|a| a.iter().find(|n| n["node_id"] == "node-2").cloned());
            v["in_sync"] == false
                && v["revision"] == rev2
                && n2.is_some_and(|n| n["applied_revision"] == rev)
        }),
        "{}",
        fleet.cluster_view(1)
    );
    // Node 2 still serves the revision it had.
    assert_eq!(get_raw(fleet.nodes[2].addr, "/a/x", "").status, 200);
    assert_eq!(get_raw(fleet.nodes[2].addr, "/b/x", "").status, 404);
    // The gauge is published once the event that changed the view is done.
    assert!(eventually(Duration::from_secs(3), || {
        metric(
            &scrape_at(fleet.nodes[0].admin),
            "gatehouse_cluster_in_sync",
            &[],
        ) == 0.0
    }));
}

#[test]
fn of_concurrent_pushes_on_one_revision_exactly_one_wins() {
    let up = Upstream::start("svc");
    let fleet = Fleet::start("conflict", 1, None);
    let rev = fleet.push(&doc(&up, "a")).to_string();
    let docs: Vec<String> = (0..4).map(|i| doc(&up, &format!("r{i}"))).collect();
    let outs: Vec<Output> = std::thread::scope(|s| {
        let handles: Vec<_> = docs
            .iter()
            .map(|d| {
                let fleet = &fleet;
                let rev = &rev;
                s.spawn(move || fleet.try_push(d, &["--if-revision", rev]))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let won: Vec<&Output> = outs.iter().filter(|o| o.status.success()).collect();
    assert_eq!(
        won.len(),
        1,
        "{:?}",
        outs.iter().map(|o| text(&o.stderr)).collect::<Vec<_>>()
    );
    for o in outs.iter().filter(|o| !o.status.success()) {
        assert!(text(&o.stderr).contains("conflict"), "{}", text(&o.stderr));
    }
    let won = revision_of(won[0]);
    assert!(eventually(Duration::from_secs(2), || fleet.cluster_view(0)
        ["revision"]
        == won));
}

#[test]
fn nodes_ride_out_an_etcd_outage_and_a_compaction() {
    let up = Upstream::start("svc");
    let fleet = Fleet::start("outage", 2, Some(Etcd::start()));
    let mut etcd_guard = fleet;
    let rev = etcd_guard.push(&doc(&up, "a"));
    etcd_guard.converge("/a/x", 200, Duration::from_secs(2));
    let mut etcd = etcd_guard._etcd.take().unwrap();
    etcd.kill();
    // Nodes keep serving, and say etcd is unreachable.
    std::thread::sleep(Duration::from_millis(500));
    etcd_guard.converge("/a/x", 200, Duration::from_secs(1));
    assert!(eventually(Duration::from_secs(5), || {
        etcd_guard.cluster_view(0)["etcd"]
            .as_str()
            .unwrap()
            .starts_with("unreachable")
    }));
    // A node restarted while etcd is down starts from its snapshot file.
    let n1 = &mut etcd_guard.nodes[1];
    n1.signal(SIGINT);
    n1.wait(Duration::from_secs(5)).unwrap();
    n1.child = Command::new(env!("CARGO_BIN_EXE_gatehouse"))
        .arg("-c")
        .arg(&n1.config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_listening(n1.addr);
    assert_eq!(get_raw(n1.addr, "/a/x", "").status, 200);
    // etcd back: watches resume without a restart, including after a
    // compaction of the revisions the nodes had watched from.
    etcd.restart();
    etcd_guard._etcd = Some(etcd);
    let rev2 = etcd_guard.push(&doc(&up, "b"));
    assert!(rev2 > rev);
    etcd_guard.converge("/b/x", 200, Duration::from_secs(5));
    let rev3 = etcd_guard.push(&doc(&up, "c"));
    with_etcd(&etcd_guard.endpoint, async |c| {
        c.compact(rev3 as i64, None).await.unwrap();
    });
    let rev4 = etcd_guard.push(&doc(&up, "d"));
    etcd_guard.converge("/d/x", 200, Duration::from_secs(2));
    assert!(
        eventually(Duration::from_secs(3), || {
            let v = etcd_guard.cluster_view(1);
            v["in_sync"] == true && v["revision"] == rev4 && v["etcd"] == "connected"
        }),
        "{}",
        etcd_guard.cluster_view(1)
    );
}

#[test]
fn a_purge_on_one_node_reaches_every_node() {
    let up = Upstream::start("svc");
    up.add_response_header("Cache-Control", "max-age=300");
    let fleet = Fleet::start("purge", 3, None);
    let cached = format!(
        "upstreams:\n  svc: {{ targets: [\"{}\"] }}\nroutes:\n  - {{ name: c, match: {{ path_prefix: /c }}, upstream: svc, cache: true }}\n",
        up.addr
    );
    fleet.push(&cached);
    fleet.converge("/c/x", 200, Duration::from_secs(2));
    for n in &fleet.nodes {
        get_raw(n.addr, "/c/x", "");
    }
    let filled = up.hits();
    for n in &fleet.nodes {
        get_raw(n.addr, "/c/x", "");
    }
    assert_eq!(up.hits(), filled, "every node serves from its cache");
    let r = client()
        .post(fleet.nodes[0].admin_url("/cache/purge?path=/c/x"))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let body: serde_json::Value = r.json().unwrap();
    assert_eq!(body["cluster"], true);
    // Every node misses once more within 2 s.
    for (i, n) in fleet.nodes.iter().enumerate() {
        let before = up.hits();
        assert!(
            eventually(Duration::from_secs(2), || {
                get_raw(n.addr, "/c/x", "");
                up.hits() > before
            }),
            "node {i} still served its cached copy"
        );
    }
}

#[test]
fn rollback_pushes_an_earlier_document_and_history_keeps_twenty() {
    let up = Upstream::start("svc");
    let fleet = Fleet::start("rollback", 1, None);
    let r1 = fleet.push(&doc(&up, "one"));
    fleet.push(&doc(&up, "two"));
    fleet.converge("/two/x", 200, Duration::from_secs(2));
    let out = fleet.cli(&["push", "--rollback", &r1.to_string()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let r3 = revision_of(&out);
    assert!(r3 > r1);
    fleet.converge("/one/x", 200, Duration::from_secs(2));
    fleet.converge("/two/x", 404, Duration::from_secs(2));
    for i in 0..20 {
        fleet.push(&doc(&up, &format!("n{i}")));
    }
    let out = fleet.cli(&["push", "--rollback", &r1.to_string()]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains(&format!(
            "revision {r1} is not among the last 20 revisions kept"
        )),
        "{err}"
    );
    let kept = with_etcd(&fleet.endpoint, async |c| {
        let opts = etcd_client::GetOptions::new()
            .with_prefix()
            .with_keys_only();
        c.get(format!("{}/history/", fleet.prefix), Some(opts))
            .await
            .unwrap()
            .kvs()
            .len()
    });
    assert_eq!(kept, 20);
}

#[test]
fn a_stopped_node_leaves_the_cluster_view_when_its_lease_expires() {
    let up = Upstream::start("svc");
    let mut fleet = Fleet::start("lease", 2, None);
    fleet.push(&doc(&up, "a"));
    assert!(eventually(Duration::from_secs(3), || {
        fleet.cluster_view(0)["nodes"].as_array().unwrap().len() == 2
    }));
    // SIGKILL: the node cannot say goodbye; its lease runs out (15 s).
    let _ = fleet.nodes[1].child.kill();
    let _ = fleet.nodes[1].child.wait();
    let gone = Instant::now();
    assert!(
        eventually(Duration::from_secs(25), || {
            fleet.cluster_view(0)["nodes"].as_array().unwrap().len() == 1
        }),
        "{}",
        fleet.cluster_view(0)
    );
    println!(
        "node record gone {} ms after the node died",
        gone.elapsed().as_millis()
    );
    assert_eq!(fleet.cluster_view(0)["in_sync"], true);
}

#[test]
fn a_local_change_that_needs_an_upgrade_is_reported_and_reload_rereads_etcd() {
    let up = Upstream::start("svc");
    let fleet = Fleet::start("needs-upgrade", 2, None);
    let rev = fleet.push(&doc(&up, "a"));
    fleet.converge("/a/x", 200, Duration::from_secs(2));
    // SIGHUP with a local file whose listener threads changed: the node
    // keeps serving and says it needs `-u`.
    let n0 = &fleet.nodes[0];
    let local = std::fs::read_to_string(&n0.config).unwrap();
    std::fs::write(&n0.config, local.replace("threads: 1", "threads: 2")).unwrap();
    n0.signal(SIGHUP);
    assert!(
        eventually(Duration::from_secs(3), || {
            let v = fleet.cluster_view(1);
            v["nodes"]
                .as_array()
                .unwrap()
                .iter()
                .any(|n| n["node_id"] == "node-0" && n["needs_upgrade"] == true)
        }),
        "{}",
        fleet.cluster_view(1)
    );
    assert_eq!(get_raw(n0.addr, "/a/x", "").status, 200);
    // POST /reload re-reads etcd: a revision written behind gatehouse's back
    // (the watch applies it too; the answer names what changed).
    let text = doc(&up, "b");
    let key = format!("{}/config", fleet.prefix);
    with_etcd(&fleet.endpoint, async |c| {
        c.put(key, text, None).await.unwrap();
    });
    let r: serde_json::Value = client()
        .post(fleet.nodes[1].admin_url("/reload"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(r["status"], "reloaded", "{r}");
    fleet.converge("/b/x", 200, Duration::from_secs(2));
    assert!(fleet.cluster_view(1)["revision"].as_u64().unwrap() > rev);
}
