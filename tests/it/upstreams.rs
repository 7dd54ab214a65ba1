//! Load balancing, health checks, failover and upstream errors.

use crate::support::*;
use std::collections::HashMap;
use std::time::Duration;

fn gw_for(upstreams_yaml: &str) -> Gateway {
    gateway(&format!(
        "server: {{ listen: [\"{{listen}}\"] }}\nadmin: {{ listen: \"{{admin}}\" }}\nupstreams:\n{upstreams_yaml}\nroutes:\n  - name: all\n    upstream: pool\n"
    ))
}

/// Three upstreams `u0`..`u2` and their addresses as a YAML flow list body.
fn three_upstreams() -> (Vec<Upstream>, String) {
    let ups: Vec<Upstream> = (0..3).map(|i| Upstream::start(&format!("u{i}"))).collect();
    let targets = ups
        .iter()
        .map(|u| format!("\"{}\"", u.addr))
        .collect::<Vec<_>>()
        .join(", ");
    (ups, targets)
}

fn spread(gw: &Gateway, n: usize, header: Option<(&str, String)>) -> HashMap<String, usize> {
    let c = client();
    let mut counts = HashMap::new();
    for _ in 0..n {
        let mut req = c.get(gw.url("/x"));
        if let Some((k, v)) = &header {
            req = req.header(*k, v);
        }
        let r = req.send().unwrap();
        assert_eq!(r.status(), 200);
        *counts
            .entry(r.headers()["x-upstream"].to_str().unwrap().to_string())
            .or_insert(0) += 1;
    }
    counts
}

#[test]
fn weighted_round_robin_follows_weights() {
    let a = Upstream::start("a");
    let b = Upstream::start("b");
    let gw = gw_for(&format!(
        "  pool:\n    targets:\n      - {{ addr: \"{}\", weight: 3 }}\n      - {{ addr: \"{}\", weight: 1 }}\n",
        a.addr, b.addr
    ));
    let counts = spread(&gw, 400, None);
    let (ca, cb) = (counts["a"], counts["b"]);
    assert_eq!(ca + cb, 400);
    assert!(
        (270..=330).contains(&ca),
        "a got {ca} of 400 with weight 3:1"
    );
}

#[test]
fn plain_round_robin_spreads_evenly() {
    let a = Upstream::start("a");
    let b = Upstream::start("b");
    let gw = gw_for(&format!(
        "  pool: {{ targets: [\"{}\", \"{}\"] }}\n",
        a.addr, b.addr
    ));
    let counts = spread(&gw, 100, None);
    assert!((40..=60).contains(&counts["a"]), "{counts:?}");
}

#[test]
fn random_uses_every_target() {
    let a = Upstream::start("a");
    let b = Upstream::start("b");
    let gw = gw_for(&format!(
        "  pool: {{ targets: [\"{}\", \"{}\"], balance: random }}\n",
        a.addr, b.addr
    ));
    let counts = spread(&gw, 100, None);
    assert!(
        counts.get("a").copied().unwrap_or(0) > 15 && counts.get("b").copied().unwrap_or(0) > 15,
        "{counts:?}"
    );
}

#[test]
fn consistent_hash_is_stable_per_key_and_spreads_keys() {
    let (_ups, targets) = three_upstreams();
    let gw = gw_for(&format!(
        "  pool: {{ targets: [{targets}], balance: consistent_hash, hash_key: \"header:X-Tenant\" }}\n"
    ));
    let mut owner = HashMap::new();
    for key in 0..30 {
        let counts = spread(&gw, 5, Some(("X-Tenant", format!("tenant-{key}"))));
        assert_eq!(
            counts.len(),
            1,
            "key {key} went to several targets: {counts:?}"
        );
        owner.insert(key, counts.into_keys().next().unwrap());
    }
    let used: std::collections::HashSet<_> = owner.values().collect();
    assert!(used.len() >= 2, "30 keys all hashed to one target");
    // Asking again later gives the same owners.
    for key in 0..30 {
        let counts = spread(&gw, 1, Some(("X-Tenant", format!("tenant-{key}"))));
        assert!(counts.contains_key(&owner[&key]));
    }
}

#[test]
fn consistent_hash_on_path() {
    let (_ups, targets) = three_upstreams();
    let gw = gw_for(&format!(
        "  pool: {{ targets: [{targets}], balance: consistent_hash, hash_key: path }}\n"
    ));
    let c = client();
    let mut owners = std::collections::HashSet::new();
    for p in 0..20 {
        let first = c
            .get(gw.url(&format!("/item/{p}")))
            .send()
            .unwrap()
            .headers()["x-upstream"]
            .clone();
        for _ in 0..3 {
            let again = c
                .get(gw.url(&format!("/item/{p}")))
                .send()
                .unwrap()
                .headers()["x-upstream"]
                .clone();
            assert_eq!(first, again);
        }
        owners.insert(first);
    }
    assert!(owners.len() >= 2);
}

#[test]
fn unhealthy_target_leaves_rotation_and_comes_back() {
    let a = Upstream::start("a");
    let b = Upstream::start("b");
    let gw = gw_for(&format!(
        "  pool:\n    targets: [\"{}\", \"{}\"]\n    health_check: {{ path: /health, interval: 200ms, timeout: 500ms, unhealthy_after: 2, healthy_after: 1 }}\n",
        a.addr, b.addr
    ));
    assert!(eventually(Duration::from_secs(5), || a.health_hits() > 0
        && b.health_hits() > 0));
    b.set_health(500);
    // interval x unhealthy_after = 400 ms; allow generous slack.
    let start = std::time::Instant::now();
    assert!(eventually(Duration::from_secs(5), || {
        !spread(&gw, 4, None).contains_key("b")
    }));
    let ejected_after = start.elapsed();
    assert!(
        ejected_after < Duration::from_secs(3),
        "ejection took {ejected_after:?}"
    );
    let before = b.hits();
    let counts = spread(&gw, 20, None);
    assert_eq!(counts["a"], 20);
    assert_eq!(b.hits(), before);

    b.set_health(200);
    assert!(eventually(Duration::from_secs(5), || spread(&gw, 4, None)
        .contains_key("b")));
}

#[test]
fn ready_reflects_upstream_health() {
    let a = Upstream::start("a");
    let gw = gw_for(&format!(
        "  pool:\n    targets: [\"{}\"]\n    health_check: {{ path: /health, interval: 200ms, unhealthy_after: 1 }}\n",
        a.addr
    ));
    let c = client();
    assert!(eventually(Duration::from_secs(5), || c
        .get(gw.admin_url("/ready"))
        .send()
        .unwrap()
        .status()
        == 200));
    a.set_health(503);
    assert!(eventually(Duration::from_secs(5), || c
        .get(gw.admin_url("/ready"))
        .send()
        .unwrap()
        .status()
        == 503));
    let body: serde_json::Value = c
        .get(gw.admin_url("/ready"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert!(body["reason"].as_str().unwrap().contains("pool"));
    assert_eq!(c.get(gw.admin_url("/health")).send().unwrap().status(), 200);
}

#[test]
fn all_targets_unhealthy_gives_503() {
    let a = Upstream::start("a");
    let gw = gw_for(&format!(
        "  pool:\n    targets: [\"{}\"]\n    health_check: {{ kind: tcp, interval: 200ms, unhealthy_after: 1 }}\n",
        a.addr
    ));
    a.stop();
    let c = client();
    assert!(eventually(Duration::from_secs(5), || c
        .get(gw.url("/x"))
        .send()
        .unwrap()
        .status()
        == 503));
    let r = c.get(gw.url("/x")).send().unwrap();
    assert_eq!(r.headers()["content-type"], "application/problem+json");
    let text = r.text().unwrap();
    assert!(
        !text.contains(&a.addr.to_string()),
        "upstream address leaked: {text}"
    );
    // TCP check sees it come back.
    a.restart();
    assert!(eventually(Duration::from_secs(5), || c
        .get(gw.url("/x"))
        .send()
        .unwrap()
        .status()
        == 200));
}

#[test]
fn connect_failures_fail_over_to_another_target() {
    let a = Upstream::start("a");
    let dead = Upstream::start("dead");
    dead.stop();
    // No health check: only retries can save these requests.
    let gw = gw_for(&format!(
        "  pool: {{ targets: [\"{}\", \"{}\"], retries: 1, connect_timeout: 1s }}\n",
        dead.addr, a.addr
    ));
    let counts = spread(&gw, 20, None);
    assert_eq!(counts.get("a"), Some(&20));
}

#[test]
fn connect_failure_without_retries_is_502() {
    let a = Upstream::start("a");
    let dead = Upstream::start("dead");
    dead.stop();
    let gw = gw_for(&format!(
        "  pool: {{ targets: [\"{}\", \"{}\"], retries: 0 }}\n",
        dead.addr, a.addr
    ));
    let c = client();
    let statuses: Vec<u16> = (0..10)
        .map(|_| c.get(gw.url("/x")).send().unwrap().status().as_u16())
        .collect();
    assert!(statuses.contains(&502), "{statuses:?}");
    assert!(statuses.contains(&200), "{statuses:?}");
    let r = (0..10)
        .map(|_| c.get(gw.url("/x")).send().unwrap())
        .find(|r| r.status() == 502)
        .unwrap();
    assert_eq!(r.headers()["content-type"], "application/problem+json");
    let body: serde_json::Value = r.json().unwrap();
    assert_eq!(body["status"], 502);
    assert!(!body.to_string().contains(&dead.addr.to_string()));
}

#[test]
fn slow_upstream_is_504_and_route_timeout_overrides() {
    let slow = Upstream::start("slow");
    slow.set_delay(Duration::from_millis(1500));
    let gw = gateway(&format!(
        r#"
server: {{ listen: ["{{listen}}"] }}
upstreams:
  slow: {{ targets: ["{}"], read_timeout: 300ms }}
routes:
  - {{ name: quick, match: {{ path_prefix: /quick }}, upstream: slow }}
  - {{ name: patient, match: {{ path_prefix: /patient }}, upstream: slow, timeout: 5s }}
"#,
        slow.addr
    ));
    let c = client();
    let r = c.get(gw.url("/quick")).send().unwrap();
    assert_eq!(r.status(), 504);
    assert_eq!(r.headers()["content-type"], "application/problem+json");
    let r = c.get(gw.url("/patient")).send().unwrap();
    assert_eq!(r.status(), 200);
}

#[test]
fn upstream_host_override() {
    let a = Upstream::start("a");
    let gw = gw_for(&format!(
        "  pool: {{ targets: [\"{}\"], host: backend.internal }}\n",
        a.addr
    ));
    client().get(gw.url("/x")).send().unwrap();
    assert_eq!(a.last().header("host"), Some("backend.internal"));
}
