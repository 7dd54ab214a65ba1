//! DNS discovery against a real DNS server (dnsmasq) whose records change
//! while the gateway runs.

use crate::support::*;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

fn gw(dns: &DnsServer, upstream: &str) -> Gateway {
    gateway(&format!(
        "server: {{ listen: [\"{{listen}}\"], resolver: [\"{}\"] }}\nadmin: {{ listen: \"{{admin}}\" }}\nupstreams:\n  pool:\n{upstream}\nroutes:\n  - {{ name: all, upstream: pool }}\n",
        dns.addr
    ))
}

/// Upstreams on 127.0.0.2.. sharing one port, as the addresses of one name.
fn on_ips(n: u8) -> (Vec<Upstream>, u16) {
    let port = free_port();
    let ups = (0..n)
        .map(|i| {
            let ip = format!("127.0.0.{}", i + 2);
            Upstream::start_at(&ip, SocketAddr::new(ip.parse().unwrap(), port))
        })
        .collect();
    (ups, port)
}

fn spread(gw: &Gateway, n: usize) -> HashMap<String, usize> {
    let c = client();
    let mut counts = HashMap::new();
    for _ in 0..n {
        let r = c.get(gw.url("/x")).send().unwrap();
        assert_eq!(r.status(), 200);
        let who = r.headers()["x-upstream"].to_str().unwrap().to_string();
        *counts.entry(who).or_insert(0) += 1;
    }
    counts
}

fn target_addrs(gw: &Gateway) -> Vec<String> {
    let mut v: Vec<String> = gw.admin_json("/upstreams")["pool"]["targets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["addr"].as_str().unwrap().to_string())
        .collect();
    v.sort();
    v
}

fn hosts<'a>(ips: &[&'a str]) -> Vec<(&'a str, &'a str)> {
    ips.iter().map(|ip| (*ip, "users.test")).collect()
}

#[test]
fn traffic_follows_a_name_from_two_to_three_to_one_address() {
    let (ups, port) = on_ips(3);
    let dns = DnsServer::start(&hosts(&["127.0.0.2", "127.0.0.3"]), &[]);
    let gw = gw(
        &dns,
        &format!("    targets: [\"users.test:{port}\"]\n    resolve: 200ms\n"),
    );
    let at = |ip: &str| format!("{ip}:{port}");
    // Resolved before the first request: both addresses take traffic.
    assert_eq!(target_addrs(&gw), vec![at("127.0.0.2"), at("127.0.0.3")]);
    let counts = spread(&gw, 20);
    assert_eq!((counts["127.0.0.2"], counts["127.0.0.3"]), (10, 10));

    dns.set_hosts(&hosts(&["127.0.0.2", "127.0.0.3", "127.0.0.4"]));
    assert!(eventually(Duration::from_secs(5), || target_addrs(&gw)
        .len()
        == 3));
    let counts = spread(&gw, 30);
    assert_eq!(
        counts.len(),
        3,
        "all three addresses take traffic: {counts:?}"
    );

    // Requests in flight to addresses that go away still finish.
    for u in &ups {
        u.set_delay(Duration::from_millis(1500));
    }
    let url = gw.url("/slow");
    let inflight: Vec<_> = (0..6)
        .map(|_| {
            let url = url.clone();
            std::thread::spawn(move || client().get(url).send().unwrap())
        })
        .collect();
    assert!(eventually(Duration::from_secs(2), || ups
        .iter()
        .map(|u| u.hits())
        .sum::<usize>()
        >= 56));
    dns.set_hosts(&hosts(&["127.0.0.4"]));
    assert!(eventually(Duration::from_secs(5), || target_addrs(&gw)
        == vec![at("127.0.0.4")]));
    // The removed addresses are shown as draining while their requests run.
    let draining = gw.admin_json("/upstreams")["pool"]["draining"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(
        !draining.is_empty(),
        "removed targets with requests in flight drain"
    );
    let finished: Vec<String> = inflight
        .into_iter()
        .map(|t| {
            let r = t.join().unwrap();
            assert_eq!(r.status(), 200);
            r.headers()["x-upstream"].to_str().unwrap().to_string()
        })
        .collect();
    assert!(finished.iter().any(|w| w != "127.0.0.4"), "{finished:?}");
    for u in &ups {
        u.set_delay(Duration::ZERO);
    }
    let counts = spread(&gw, 10);
    assert_eq!(counts.get("127.0.0.4"), Some(&10), "{counts:?}");
}

#[test]
fn dns_down_keeps_the_last_good_set() {
    let (_ups, port) = on_ips(2);
    let mut dns = DnsServer::start(&hosts(&["127.0.0.2", "127.0.0.3"]), &[]);
    let gw = gw(
        &dns,
        &format!("    targets: [\"users.test:{port}\"]\n    resolve: 200ms\n"),
    );
    assert_eq!(target_addrs(&gw).len(), 2);
    dns.stop();
    assert!(eventually(Duration::from_secs(10), || {
        metric(
            &scrape(&gw),
            "gatehouse_dns_failures_total",
            &[("upstream", "pool")],
        ) >= 1.0
    }));
    let counts = spread(&gw, 20);
    assert_eq!(counts.len(), 2, "both addresses still serve: {counts:?}");
    let u = gw.admin_json("/upstreams");
    let err = &u["pool"]["dns"]["names"][format!("users.test:{port}")]["error"];
    assert!(err.is_string(), "the failure is shown: {u}");
    assert_eq!(u["pool"]["ready"], true);
}

#[test]
fn srv_records_give_ports_and_weights_of_the_lowest_priority() {
    let heavy = Upstream::start("heavy");
    let light = Upstream::start("light");
    let backup = Upstream::start("backup");
    let (hp, lp, bp) = (heavy.addr.port(), light.addr.port(), backup.addr.port());
    let srv = "_http._tcp.search.test";
    let dns = DnsServer::start(
        &[("127.0.0.1", "a.search.test")],
        &[
            (srv, "a.search.test", hp, 10, 30),
            (srv, "a.search.test", lp, 10, 10),
            (srv, "a.search.test", bp, 20, 100),
        ],
    );
    let gw = gw(&dns, &format!("    srv: {srv}\n    resolve: 30s\n"));
    let counts = spread(&gw, 400);
    assert_eq!(
        counts.get("backup"),
        None,
        "a higher priority is a backup: {counts:?}"
    );
    let h = counts["heavy"];
    assert!(
        (270..=330).contains(&h),
        "weights 30:10 gave heavy {h} of 400"
    );
    let weights: HashMap<String, u64> = gw.admin_json("/upstreams")["pool"]["targets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["addr"].as_str().unwrap().to_string(),
                t["weight"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(weights[&heavy.addr.to_string()], 30);
    assert_eq!(weights[&light.addr.to_string()], 10);
}

#[test]
fn a_name_that_never_resolved_gives_503_and_ready_says_why() {
    let dns = DnsServer::start(&[], &[]);
    let gw = gw(&dns, "    targets: [\"missing.test:80\"]\n");
    let r = client().get(gw.url("/x")).send().unwrap();
    assert_eq!(r.status(), 503);
    let ready = client().get(gw.admin_url("/ready")).send().unwrap();
    assert_eq!(ready.status(), 503);
    let body: serde_json::Value = ready.json().unwrap();
    let reason = body["reason"].as_str().unwrap();
    assert!(
        reason.contains("missing.test:80") && reason.contains("has not resolved"),
        "{reason}"
    );
}

#[test]
fn config_check_never_queries_dns() {
    let dns = DnsServer::start(&hosts(&["127.0.0.2"]), &[]);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("g.yaml");
    std::fs::write(
        &file,
        format!(
            "server: {{ resolver: [\"{}\"] }}\nupstreams:\n  pool: {{ targets: [\"users.test:80\"], resolve: 1s }}\nroutes:\n  - {{ name: all, upstream: pool }}\n",
            dns.addr
        ),
    )
    .unwrap();
    let out = config_check(&file).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // dnsmasq logs every query it answers (the check has exited already).
    assert!(
        !dns.query_log().contains("users.test"),
        "{}",
        dns.query_log()
    );
}

#[test]
fn a_target_that_stays_keeps_its_state_and_its_pooled_connections() {
    let (ups, port) = on_ips(3);
    let dns = DnsServer::start(&hosts(&["127.0.0.2", "127.0.0.3"]), &[]);
    let gw = gw(
        &dns,
        &format!("    targets: [\"users.test:{port}\"]\n    resolve: 200ms\n    passive_health: {{ consecutive_failures: 1, eject_for: 60s }}\n"),
    );
    let c = client();
    for _ in 0..6 {
        c.get(gw.url("/x")).send().unwrap();
    }
    // .3 fails once and is ejected for a minute; .2 has one pooled connection.
    ups[1].set_status(500);
    while ups[1].hits() == 3 {
        c.get(gw.url("/x")).send().unwrap();
    }
    let ejected = |ip: &str| {
        gw.admin_json("/upstreams")["pool"]["targets"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["addr"] == format!("{ip}:{port}") && t["ejected_until"].is_string())
    };
    assert!(ejected("127.0.0.3"));
    let conns_before = ups[0].connections();
    dns.set_hosts(&hosts(&["127.0.0.2", "127.0.0.3", "127.0.0.4"]));
    assert!(eventually(Duration::from_secs(5), || target_addrs(&gw)
        .len()
        == 3));
    assert!(ejected("127.0.0.3"), "the ejection survives the DNS change");
    for _ in 0..10 {
        assert_eq!(c.get(gw.url("/x")).send().unwrap().status(), 200);
    }
    assert!(ups[2].hits() > 0, "the new address takes traffic");
    assert_eq!(
        ups[0].connections(),
        conns_before,
        "the pooled connection to .2 is reused"
    );
}
