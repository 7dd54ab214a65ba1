//! Traffic splitting (weights, sticky keys) and mirroring on routes.

use crate::support::*;
use std::time::{Duration, Instant};

fn yaml(upstreams: &[(&str, &Upstream)], route: &str) -> String {
    let ups: String = upstreams
        .iter()
        .map(|(n, u)| format!("  {n}: {{ targets: [\"{}\"] }}\n", u.addr))
        .collect();
    format!(
        "server: {{ listen: [\"{{listen}}\"] }}\nadmin: {{ listen: \"{{admin}}\" }}\nupstreams:\n{ups}routes:\n  - name: checkout\n    match: {{ path_prefix: /api }}\n{route}"
    )
}

fn who(r: reqwest::blocking::Response) -> String {
    assert_eq!(r.status(), 200);
    r.headers()["x-upstream"].to_str().unwrap().to_string()
}

#[test]
fn split_follows_the_weights_over_10000_requests() {
    let (v1, v2) = (Upstream::start("v1"), Upstream::start("v2"));
    let gw = gateway(&yaml(
        &[("v1", &v1), ("v2", &v2)],
        "    split:\n      - { upstream: v1, weight: 90 }\n      - { upstream: v2, weight: 10 }\n",
    ));
    let url = gw.url("/api/pay");
    let workers: Vec<_> = (0..4)
        .map(|_| {
            let url = url.clone();
            std::thread::spawn(move || {
                let c = client();
                (0..2500)
                    .filter(|_| who(c.get(&url).send().unwrap()) == "v2")
                    .count()
            })
        })
        .collect();
    let v2_count: usize = workers.into_iter().map(|w| w.join().unwrap()).sum();
    let share = v2_count as f64 / 10_000.0;
    eprintln!(
        "split 90/10 over 10,000 requests: v2 took {:.2}%",
        share * 100.0
    );
    assert!(
        (0.07..=0.13).contains(&share),
        "v2 got {share:.4} of 10,000 (weight 10%)"
    );
    let hits = v1.hits() + v2.hits();
    assert_eq!(hits, 10_000);
    // Each side is measured under its own upstream.
    let m = scrape(&gw);
    let count = |u: &str| {
        metric(
            &m,
            "gatehouse_upstream_duration_seconds_count",
            &[("upstream", u)],
        )
    };
    assert_eq!(count("v1") + count("v2"), 10_000.0);
}

#[test]
fn a_split_key_keeps_each_user_on_one_side_and_most_stay_when_a_weight_changes() {
    let (a, b) = (Upstream::start("a"), Upstream::start("b"));
    let route = |wb: u32| {
        format!("    split:\n      - {{ upstream: a, weight: 50 }}\n      - {{ upstream: b, weight: {wb} }}\n    split_key: header:X-User-Id\n")
    };
    let gw = gateway(&yaml(&[("a", &a), ("b", &b)], &route(50)));
    let c = client();
    let side = |user: u32| {
        who(c
            .get(gw.url("/api/x"))
            .header("x-user-id", user.to_string())
            .send()
            .unwrap())
    };
    let first: Vec<String> = (0..300).map(side).collect();
    for _ in 0..2 {
        let again: Vec<String> = (0..300).map(side).collect();
        assert_eq!(again, first, "the same key always gets the same upstream");
    }
    let on_b = first.iter().filter(|s| *s == "b").count();
    assert!(
        (110..=190).contains(&on_b),
        "{on_b} of 300 keys on b at 50:50"
    );
    // b's weight goes from 50 to 70: only keys moving to b move.
    let cfg = gatehouse::config::load_str(
        &yaml(&[("a", &a), ("b", &b)], &route(70))
            .replace("{listen}", &gw.addr.to_string())
            .replace("{admin}", &gw.admin.unwrap().to_string()),
    )
    .unwrap();
    gatehouse::bench::apply(&gw.state, cfg).unwrap();
    let after: Vec<String> = (0..300).map(side).collect();
    let moved: Vec<usize> = (0..300).filter(|i| after[*i] != first[*i]).collect();
    assert!(
        moved.iter().all(|i| after[*i] == "b"),
        "keys only move to the side that grew"
    );
    assert!(moved.len() < 60, "{} of 300 keys moved", moved.len());
}

#[test]
fn a_split_side_without_healthy_targets_gives_its_share_away() {
    let (a, b) = (Upstream::start("a"), Upstream::start("b"));
    b.stop();
    let gw = gateway(
        &yaml(
            &[("a", &a), ("b", &b)],
            "    split:\n      - { upstream: a, weight: 50 }\n      - { upstream: b, weight: 50 }\n",
        )
        .replace(
            &format!("b: {{ targets: [\"{}\"] }}", b.addr),
            &format!("b: {{ targets: [\"{}\"], health_check: {{ kind: tcp, interval: 100ms, unhealthy_after: 1 }} }}", b.addr),
        ),
    );
    assert!(eventually(Duration::from_secs(5), || {
        gw.admin_json("/upstreams")["b"]["targets"][0]["healthy"] == false
    }));
    let c = client();
    for _ in 0..40 {
        assert_eq!(who(c.get(gw.url("/api/x")).send().unwrap()), "a");
    }
}

#[test]
fn the_mirror_gets_a_copy_of_the_request_as_sent_upstream() {
    let (main, shadow) = (Upstream::start("main"), Upstream::start("shadow"));
    let gw = gateway(&yaml(
        &[("main", &main), ("shadow", &shadow)],
        "    upstream: main\n    strip_prefix: /api\n    request_headers: { set: { X-Env: prod } }\n    mirror: { upstream: shadow, percent: 100 }\n",
    ));
    let c = client();
    let r = c
        .post(gw.url("/api/orders?id=7"))
        .body("{\"qty\":2}")
        .send()
        .unwrap();
    assert_eq!(who(r), "main");
    assert!(eventually(Duration::from_secs(5), || shadow.hits() == 1));
    let (m, s) = (main.last(), shadow.last());
    assert_eq!(
        (s.method.as_str(), s.target.as_str()),
        ("POST", "/orders?id=7")
    );
    assert_eq!(s.target, m.target);
    assert_eq!(s.body, b"{\"qty\":2}");
    assert_eq!(s.header("x-env"), Some("prod"));
    assert_eq!(s.header("x-gatehouse-mirror"), Some("1"));
    assert_eq!(m.header("x-gatehouse-mirror"), None);
    // Mirror traffic is measured under the mirror upstream.
    assert!(eventually(Duration::from_secs(5), || {
        metric(
            &scrape(&gw),
            "gatehouse_upstream_duration_seconds_count",
            &[("upstream", "shadow")],
        ) == 1.0
    }));
}

#[test]
fn mirror_percent_and_large_bodies() {
    let (main, shadow) = (Upstream::start("main"), Upstream::start("shadow"));
    let gw = gateway(&yaml(
        &[("main", &main), ("shadow", &shadow)],
        "    upstream: main\n    mirror: { upstream: shadow, percent: 25 }\n",
    ));
    let c = client();
    for _ in 0..400 {
        assert_eq!(c.get(gw.url("/api/x")).send().unwrap().status(), 200);
    }
    assert!(eventually(Duration::from_secs(5), || shadow.hits() >= 60));
    let n = shadow.hits();
    assert!((60..=140).contains(&n), "25% of 400 mirrored: {n}");
    let before = shadow.hits();
    let big = vec![b'x'; 70 * 1024];
    for _ in 0..20 {
        assert_eq!(
            c.post(gw.url("/api/x"))
                .body(big.clone())
                .send()
                .unwrap()
                .status(),
            200
        );
    }
    // Small bodies after the large ones are mirrored again; the large ones never.
    for _ in 0..40 {
        c.post(gw.url("/api/x")).body("small").send().unwrap();
    }
    assert!(eventually(Duration::from_secs(5), || shadow
        .requests()
        .iter()
        .any(|r| r.body == b"small")));
    assert!(shadow.requests()[before..]
        .iter()
        .all(|r| r.body.len() < 1024));
}

fn percentiles(mut v: Vec<Duration>) -> (Duration, Duration) {
    v.sort();
    (v[v.len() / 2], v[v.len() * 99 / 100])
}

fn timed(gw: &Gateway, n: usize) -> Vec<Duration> {
    let c = client();
    (0..n)
        .map(|_| {
            let t = Instant::now();
            assert_eq!(c.get(gw.url("/api/x")).send().unwrap().status(), 200);
            t.elapsed()
        })
        .collect()
}

#[test]
fn a_slow_or_dead_mirror_changes_nothing_for_clients() {
    let (main, slow, dead) = (
        Upstream::start("main"),
        Upstream::start("slow"),
        Upstream::start("dead"),
    );
    slow.set_delay(Duration::from_secs(1));
    dead.stop();
    let route = |mirror: &str| {
        format!("    upstream: main\n    mirror: {{ upstream: {mirror}, percent: 100 }}\n")
    };
    let ups = [("main", &main), ("slow", &slow), ("dead", &dead)];
    let baseline = gateway(&yaml(&ups, "    upstream: main\n"));
    let with_slow = gateway(&yaml(&ups, &route("slow")));
    let with_dead = gateway(&yaml(&ups, &route("dead")));
    let (b50, b99) = percentiles(timed(&baseline, 300));
    let (s50, s99) = percentiles(timed(&with_slow, 300));
    let (d50, d99) = percentiles(timed(&with_dead, 300));
    eprintln!("latency p50/p99: baseline {b50:?}/{b99:?}, slow mirror {s50:?}/{s99:?}, dead mirror {d50:?}/{d99:?}");
    // The slow mirror answers after 1 s: had a client waited for it, its
    // p50 would be over 1 s.
    assert!(s50 < Duration::from_millis(500) && s99 < Duration::from_secs(1));
    assert!(d50 < Duration::from_millis(500) && d99 < Duration::from_secs(1));
    // At most 64 copies wait on the slow mirror; the rest were dropped.
    let dropped = metric(
        &scrape(&with_slow),
        "gatehouse_mirror_dropped_total",
        &[("upstream", "slow")],
    );
    assert!(dropped > 0.0, "copies over 64 in flight are dropped");
    assert!(slow.hits() <= 300 - dropped as usize);
}
