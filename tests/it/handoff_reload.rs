//! The real binary: WebSocket tunnels across a `-u` handoff
//! (`tunnel_grace_period`) and SIGTERM, reload diffs, and memory over
//! 1,000 reloads of 200-route configs.

use crate::support::*;
use std::io::{BufReader, Read, Write};
use std::net::TcpStream;
use std::process::Stdio;
use std::time::{Duration, Instant};

fn ws_config(up: &Upstream) -> String {
    format!(
        r#"
server:
  listen: ["{{listen}}"]
  threads: 1
  grace_period: 1s
  tunnel_grace_period: 30s
  pid_file: "{{dir}}/gatehouse.pid"
  upgrade_sock: "{{dir}}/upgrade.sock"
admin: {{ listen: "{{admin}}" }}
logging: {{ access_log: off, level: info }}
upstreams: {{ svc: {{ targets: ["{}"] }} }}
routes:
  - {{ name: ws, match: {{ path_prefix: /ws }}, upstream: svc, websocket: true }}
  - {{ name: api, match: {{ path_prefix: /api }}, upstream: svc }}
"#,
        up.addr
    )
}

/// Opens a WebSocket through `addr`; the open stream.
fn ws_open(addr: std::net::SocketAddr) -> TcpStream {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"GET /ws/chat HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n").unwrap();
    let head = read_response(&mut BufReader::new(s.try_clone().unwrap())).unwrap();
    assert_eq!(head.status, 101);
    s
}

/// A masked frame echoed back intact: the tunnel is alive.
fn ws_echo(s: &mut TcpStream) -> bool {
    let frame = [0x81u8, 0x82, 1, 2, 3, 4, b'h' ^ 1, b'i' ^ 2];
    if s.write_all(&frame).is_err() {
        return false;
    }
    let mut back = [0u8; 8];
    s.read_exact(&mut back).is_ok() && back == frame
}

fn old_tunnels(admin: std::net::SocketAddr) -> f64 {
    metric(
        &scrape_at(admin),
        "gatehouse_upgrade_old_process_tunnels",
        &[],
    )
}

#[test]
fn a_websocket_outlives_grace_period_across_an_upgrade_and_the_old_process_then_exits() {
    let up = Upstream::start("svc");
    let mut b = spawn_binary(&ws_config(&up), |c| {
        c.stderr(Stdio::piped());
    });
    let mut ws = ws_open(b.addr);
    assert!(ws_echo(&mut ws));
    assert_eq!(
        metric(&scrape_at(b.admin), "gatehouse_tunnels_open", &[]),
        1.0
    );
    b.signal(SIGQUIT);
    let mut new = spawn_successor(&b.config);
    // The new process serves new requests.
    assert!(eventually(Duration::from_secs(10), || {
        get_raw(b.addr, "/api/x", "").status == 200
    }));
    // Once the old process drains (after Pingora's 5 s handoff pause), the
    // new process reports the tunnel it holds; past grace_period (1 s) the
    // old process still carries it.
    assert!(eventually(Duration::from_secs(15), || old_tunnels(b.admin) == 1.0));
    std::thread::sleep(Duration::from_millis(1500));
    assert!(b.child.try_wait().unwrap().is_none(), "old process exited");
    assert!(ws_echo(&mut ws), "the tunnel survived the handoff");
    // Closing the last tunnel lets the old process go, with status 0.
    drop(ws);
    let status = b.wait(Duration::from_secs(5)).expect("old process exited");
    assert!(status.success(), "{status:?}");
    let log = b.read_stderr();
    assert!(log.contains("the last tunnel closed after"), "{log}");
    assert!(eventually(Duration::from_secs(4), || old_tunnels(b.admin) == 0.0));
    let _ = new.kill();
    let _ = new.wait();
}

#[test]
fn sigterm_ends_tunnels_within_grace_period() {
    let up = Upstream::start("svc");
    let mut b = spawn_binary(&ws_config(&up), |_| {});
    let mut ws = ws_open(b.addr);
    assert!(ws_echo(&mut ws));
    let start = Instant::now();
    b.signal(SIGTERM);
    let status = b.wait(Duration::from_secs(10)).expect("exited");
    assert!(status.success(), "{status:?}");
    let took = start.elapsed();
    assert!(
        took < Duration::from_secs(5),
        "SIGTERM took {took:?} with a tunnel open"
    );
    assert!(!ws_echo(&mut ws), "the tunnel ended with the process");
}

#[test]
fn reload_answers_and_logs_what_changed() {
    let up = Upstream::start("svc");
    let mut b = spawn_binary(&ws_config(&up), |c| {
        c.stderr(Stdio::piped());
    });
    let text = std::fs::read_to_string(&b.config).unwrap();
    let text = text
        .replace(
            "  - { name: api, match: { path_prefix: /api }, upstream: svc }\n",
            "  - { name: api, match: { path_prefix: /v2 }, upstream: svc }\n  - { name: new, match: { path: /new }, upstream: other }\n",
        )
        .replace(
            "upstreams: { svc: {",
            &format!("upstreams: {{ other: {{ targets: [\"{}\"] }}, svc: {{", up.addr),
        )
        .replace("  - { name: ws, match: { path_prefix: /ws }, upstream: svc, websocket: true }\n", "");
    std::fs::write(&b.config, &text).unwrap();
    let r: serde_json::Value = client()
        .post(b.admin_url("/reload"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let changed = &r["changed"];
    assert_eq!(
        changed["routes"]["added"],
        serde_json::json!(["new"]),
        "{r}"
    );
    assert_eq!(changed["routes"]["removed"], serde_json::json!(["ws"]));
    assert_eq!(changed["routes"]["changed"], serde_json::json!(["api"]));
    assert_eq!(changed["upstreams"]["added"], serde_json::json!(["other"]));
    assert_eq!(
        changed["auth"],
        serde_json::json!({"added": [], "removed": [], "changed": []})
    );
    let g1 = r["generation"].as_u64().unwrap();
    // A reload that changes nothing still counts a generation.
    b.signal(SIGHUP);
    assert!(eventually(Duration::from_secs(5), || {
        let v: serde_json::Value = client()
            .get(b.admin_url("/console.json"))
            .send()
            .unwrap()
            .json()
            .unwrap();
        v["generation"].as_u64() == Some(g1 + 1)
    }));
    b.signal(SIGINT);
    b.wait(Duration::from_secs(5));
    let log = b.read_stderr();
    assert!(
        log.contains("routes +new -ws ~api; upstreams +other"),
        "{log}"
    );
    assert!(
        log.contains("no changes to routes, upstreams, auth or rate limits"),
        "{log}"
    );
}

/// A config of 200 routes over one health-checked upstream; `side`
/// names the routes, so consecutive configs replace every route.
fn two_hundred_routes(side: &str, checked: &Upstream, other: &Upstream) -> String {
    let mut routes = String::new();
    for i in 0..200 {
        routes.push_str(&format!(
            "  - {{ name: {side}{i}, match: {{ path_prefix: /{side}/{i} }}, upstream: {side} }}\n"
        ));
    }
    let target = if side == "a" {
        checked.addr
    } else {
        other.addr
    };
    format!(
        "server: {{ listen: [\"{{listen}}\"], threads: 1, upgrade_sock: \"{{dir}}/u.sock\", pid_file: \"{{dir}}/p\" }}\n\
         admin: {{ listen: \"{{admin}}\" }}\nlogging: {{ access_log: off, level: warn }}\n\
         upstreams: {{ {side}: {{ targets: [\"{target}\"], health_check: {{ path: /health, interval: 100ms }} }} }}\nroutes:\n{routes}"
    )
}

fn rss_kb(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap()
}

#[test]
fn a_thousand_reloads_of_200_routes_keep_memory_and_tasks_flat() {
    let (ua, ub) = (Upstream::start("a"), Upstream::start("b"));
    let b = spawn_binary(&two_hundred_routes("a", &ua, &ub), |_| {});
    let configs: Vec<String> = ["b", "a"]
        .iter()
        .map(|side| {
            two_hundred_routes(side, &ua, &ub)
                .replace("{listen}", &b.addr.to_string())
                .replace("{admin}", &b.admin.to_string())
                .replace("{dir}", b.dir().to_str().unwrap())
        })
        .collect();
    let c = client();
    let pid = b.child.id();
    let reload = |i: usize| {
        std::fs::write(&b.config, &configs[i % 2]).unwrap();
        let r = c.post(b.admin_url("/reload")).send().unwrap();
        assert_eq!(r.status(), 200, "reload {i}");
    };
    let start = Instant::now();
    reload(0);
    let first = rss_kb(pid);
    for i in 1..1000 {
        reload(i);
    }
    std::thread::sleep(Duration::from_millis(500));
    let after = rss_kb(pid);
    println!(
        "1,000 reloads of 200 routes in {:.1} s: RSS {first} kB after the first, {after} kB after the last",
        start.elapsed().as_secs_f64()
    );
    assert!(after <= first + 5 * 1024, "RSS {first} kB -> {after} kB");
    // The last reload (i = 999) installed config "a": "b"'s health checks
    // stopped with its pool, and "a" is checked by one loop only.
    assert_eq!(get_raw(b.addr, "/a/7/x", "").status, 200);
    let (a0, b0) = (ua.health_hits(), ub.health_hits());
    std::thread::sleep(Duration::from_millis(1000));
    let (a1, b1) = (ua.health_hits() - a0, ub.health_hits() - b0);
    assert_eq!(b1, 0, "the removed pool is still health-checked");
    assert!((5..=15).contains(&a1), "{a1} checks/s on the current pool");
}
