//! Operations on the real binary: zero-downtime upgrade under load, hot
//! reload, graceful shutdown, daemon mode, reload leak check, systemd unit.

use crate::support::*;
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_gatehouse"))
}

fn config(up: &Upstream, extra_routes: &str) -> String {
    format!(
        r#"
server:
  listen: ["{{listen}}"]
  threads: 2
  grace_period: 10s
  pid_file: "{{dir}}/gatehouse.pid"
  upgrade_sock: "{{dir}}/upgrade.sock"
admin: {{ listen: "{{admin}}", token: ops-token }}
logging: {{ access_log: off, level: warn }}
upstreams: {{ svc: {{ targets: ["{}"] }} }}
routes:
  - {{ name: api, match: {{ path_prefix: /api }}, upstream: svc }}
{extra_routes}
"#,
        up.addr
    )
}

/// `rounds` upgrades (SIGQUIT to the old process, a new one with `-u`)
/// under a load of `keepalive` keep-alive clients and `fresh` clients that
/// open a new connection per request; every request must succeed.
fn upgrades_under_load(rounds: usize, keepalive: usize, fresh: usize) {
    let up = Upstream::start("svc");
    let mut b = spawn_binary(&config(&up, ""), |_| {});
    let addr = b.addr;
    let load = Load::start(addr, keepalive, fresh);
    std::thread::sleep(Duration::from_millis(800));
    let mut old = std::mem::replace(&mut b.child, bin().arg("--version").spawn().unwrap());
    for round in 0..rounds {
        let before = load.ok();
        // The systemd order: ask the old process to hand over, start the new one.
        send_signal(old.id(), SIGQUIT);
        let new = spawn_successor(&b.config);
        let status = wait_exit(&mut old, Duration::from_secs(30))
            .unwrap_or_else(|| panic!("round {round}: old did not exit"));
        assert!(
            status.success(),
            "round {round}: old exited with {status:?}"
        );
        std::thread::sleep(Duration::from_millis(700));
        assert!(load.ok() > before + 50, "round {round}: load kept flowing");
        old = new;
    }
    let (ok, failures) = load.finish();
    assert!(
        failures.is_empty(),
        "{} failed of {}: {:?}",
        failures.len(),
        ok + failures.len(),
        &failures[..failures.len().min(10)]
    );
    assert!(ok > 500, "{ok} requests");
    // The last process serves, and it is the only one left.
    assert_eq!(get_raw(addr, "/api/after", "").status, 200);
    assert!(old.try_wait().unwrap().is_none());
    send_signal(old.id(), SIGINT);
    wait_exit(&mut old, Duration::from_secs(10));
}

#[test]
fn zero_downtime_upgrade_under_load_three_times() {
    upgrades_under_load(3, 4, 2);
}

/// Fresh connections are the hard case: one accepted just before the old
/// process stops listening must still be served (the drain waits for
/// connections whose head has not arrived yet).
#[test]
fn zero_downtime_upgrades_with_a_new_connection_per_request() {
    upgrades_under_load(5, 0, 6);
}

#[test]
fn sighup_reload_changes_routes_without_failures() {
    let up = Upstream::start("svc");
    let up2 = Upstream::start("svc2");
    let b = spawn_binary(&config(&up, ""), |_| {});
    let load = Load::start(b.addr, 2, 1);
    assert_eq!(get_raw(b.addr, "/new/x", "").status, 404);
    let text = std::fs::read_to_string(&b.config).unwrap().replace(
        "routes:",
        &format!("  svc2: {{ targets: [\"{}\"] }}\nroutes:\n  - {{ name: new, match: {{ path_prefix: /new }}, upstream: svc2 }}", up2.addr),
    );
    let text = text
        .replace("upstreams: { svc: {", "upstreams:\n  svc: {")
        .replace("\"] } }\n  svc2", "\"] }\n  svc2");
    std::fs::write(&b.config, &text).unwrap();
    b.signal(SIGHUP);
    assert!(
        eventually(Duration::from_secs(5), || get_raw(b.addr, "/new/x", "")
            .status
            == 200),
        "{text}"
    );
    assert_eq!(up2.hits(), 1);
    std::thread::sleep(Duration::from_millis(300));
    let (ok, failures) = load.finish();
    assert!(failures.is_empty(), "{failures:?}");
    assert!(ok > 50);
    let m = parse_metrics(
        &client()
            .get(b.admin_url("/metrics"))
            .send()
            .unwrap()
            .text()
            .unwrap(),
    );
    assert_eq!(
        metric(&m, "gatehouse_config_reloads_total", &[("result", "ok")]),
        1.0
    );
}

#[test]
fn an_invalid_reload_keeps_the_running_config() {
    let up = Upstream::start("svc");
    let b = spawn_binary(&config(&up, ""), |_| {});
    let good = std::fs::read_to_string(&b.config).unwrap();
    std::fs::write(
        &b.config,
        good.replace("upstream: svc", "upstream: missing"),
    )
    .unwrap();
    b.signal(SIGHUP);
    let c = client();
    assert!(eventually(Duration::from_secs(5), || {
        let m = parse_metrics(
            &c.get(b.admin_url("/metrics"))
                .send()
                .unwrap()
                .text()
                .unwrap(),
        );
        metric(&m, "gatehouse_config_reloads_total", &[("result", "error")]) == 1.0
    }));
    assert_eq!(
        get_raw(b.addr, "/api/x", "").status,
        200,
        "old config still serves"
    );
    // The same through the admin API, which also needs the token.
    assert_eq!(c.post(b.admin_url("/reload")).send().unwrap().status(), 401);
    let r = c
        .post(b.admin_url("/reload"))
        .bearer_auth("ops-token")
        .send()
        .unwrap();
    assert_eq!(r.status(), 400);
    let body: serde_json::Value = r.json().unwrap();
    assert!(
        body["errors"][0]
            .as_str()
            .unwrap()
            .contains("routes[0].upstream"),
        "{body}"
    );
    // Fix the file: the admin reload applies it.
    std::fs::write(
        &b.config,
        good.replace("path_prefix: /api", "path_prefix: /v2"),
    )
    .unwrap();
    let r = c
        .post(b.admin_url("/reload"))
        .bearer_auth("ops-token")
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(get_raw(b.addr, "/v2/x", "").status, 200);
    assert_eq!(get_raw(b.addr, "/api/x", "").status, 404);
}

#[test]
fn reload_reports_changes_that_need_an_upgrade() {
    let up = Upstream::start("svc");
    let b = spawn_binary(&config(&up, ""), |_| {});
    let text = std::fs::read_to_string(&b.config)
        .unwrap()
        .replace("threads: 2", "threads: 3");
    std::fs::write(&b.config, text).unwrap();
    let r: serde_json::Value = client()
        .post(b.admin_url("/reload"))
        .bearer_auth("ops-token")
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(r["needs_upgrade"], serde_json::json!(["server.threads"]));
}

#[test]
fn sigterm_drains_in_flight_requests_and_exits_0() {
    let up = Upstream::start("svc");
    up.set_delay(Duration::from_millis(1500));
    let mut b = spawn_binary(&config(&up, ""), |_| {});
    let addr = b.addr;
    let slow = std::thread::spawn(move || get_raw(addr, "/api/slow", "").status);
    assert!(eventually(Duration::from_secs(5), || up.hits() == 1));
    let start = Instant::now();
    b.signal(SIGTERM);
    assert_eq!(slow.join().unwrap(), 200, "the in-flight request finished");
    let status = b.wait(Duration::from_secs(15)).expect("exited");
    assert!(status.success(), "{status:?}");
    // Exits once drained, well inside the 10 s grace period.
    assert!(start.elapsed() < Duration::from_secs(10));
    assert!(TcpStream::connect(addr).is_err(), "no longer listening");
}

/// A connection accepted before SIGTERM whose first request arrives after it
/// is served, then closed (a kept-alive idle one is closed at once).
#[test]
fn sigterm_serves_the_first_request_of_a_connection_accepted_before_it() {
    use std::io::{BufReader, Write};
    let up = Upstream::start("svc");
    let mut b = spawn_binary(&config(&up, ""), |_| {});
    let open = || metric(&scrape_at(b.admin), "gatehouse_connections_open", &[]);
    // The start-up probe's close first, then ours is the one counted.
    assert!(eventually(Duration::from_secs(5), || open() == 0.0));
    let mut fresh = TcpStream::connect(b.addr).unwrap();
    let mut kept = TcpStream::connect(b.addr).unwrap();
    kept.write_all(b"GET /api/a HTTP/1.1\r\nHost: a\r\n\r\n")
        .unwrap();
    let mut kept = BufReader::new(kept);
    assert_eq!(read_response(&mut kept).unwrap().status, 200);
    assert!(eventually(Duration::from_secs(5), || open() == 2.0));
    b.signal(SIGTERM);
    assert!(
        closed_within(kept.get_mut(), Duration::from_secs(5)),
        "an idle kept-alive connection is closed"
    );
    fresh
        .write_all(b"GET /api/b HTTP/1.1\r\nHost: a\r\n\r\n")
        .unwrap();
    let mut fresh = BufReader::new(fresh);
    let r = read_response(&mut fresh).unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.header("connection"), Some("close"));
    assert!(b.wait(Duration::from_secs(15)).expect("exited").success());
}

#[test]
fn sighup_during_start_up_does_not_kill() {
    let up = Upstream::start("svc");
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("g.yaml");
    // 20,000 routes make start-up take a moment (config load, router build),
    // a window in which SIGHUP used to kill gatehouse.
    let mut text = format!(
        "server: {{ listen: [\"127.0.0.1:{port}\"], upgrade_sock: \"{}/u.sock\" }}\nlogging: {{ access_log: off, level: error }}\nupstreams: {{ s: {{ targets: [\"{}\"] }} }}\nroutes:\n",
        dir.path().display(),
        up.addr
    );
    for i in 0..20_000 {
        text.push_str(&format!(
            "  - {{ name: r{i}, upstream: s, match: {{ path_prefix: /p{i} }} }}\n"
        ));
    }
    text.push_str("  - { name: all, upstream: s }\n");
    std::fs::write(&cfg, text).unwrap();
    let mut child = bin()
        .arg("-c")
        .arg(&cfg)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // No program can catch a signal before its main() runs; what matters is
    // that the handler is in place from the start of main, long before the
    // listeners are up. Wait until the kernel shows SIGHUP as caught.
    let caught = || {
        std::fs::read_to_string(format!("/proc/{}/status", child.id()))
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix("SigCgt:"))
            .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
            .is_some_and(|mask| mask & 1 != 0)
    };
    assert!(eventually(Duration::from_secs(10), caught));
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let listening_when_hup = TcpStream::connect(addr).is_ok();
    for _ in 0..5 {
        send_signal(child.id(), SIGHUP);
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(
        !listening_when_hup,
        "the handler should be installed before start-up work begins"
    );
    wait_listening(addr);
    assert!(
        child.try_wait().unwrap().is_none(),
        "SIGHUP killed gatehouse"
    );
    assert_eq!(
        get_raw(format!("127.0.0.1:{port}").parse().unwrap(), "/", "").status,
        200
    );
    send_signal(child.id(), SIGINT);
    wait_exit(&mut child, Duration::from_secs(10));
}

#[test]
fn daemon_mode_writes_the_pid_file_and_detaches() {
    let up = Upstream::start("svc");
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("g.yaml");
    let pid_file = dir.path().join("g.pid");
    std::fs::write(
        &cfg,
        format!(
            "server: {{ listen: [\"127.0.0.1:{port}\"], pid_file: \"{}\", upgrade_sock: \"{}/u.sock\" }}\nlogging: {{ access_log: off, level: error }}\nupstreams: {{ s: {{ targets: [\"{}\"] }} }}\nroutes: [{{ name: r, upstream: s }}]\n",
            pid_file.display(),
            dir.path().display(),
            up.addr
        ),
    )
    .unwrap();
    let status = bin()
        .arg("-c")
        .arg(&cfg)
        .arg("-d")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(
        status.success(),
        "the foreground process exits once daemonised"
    );
    assert!(eventually(Duration::from_secs(10), || pid_file.exists()));
    let pid: u32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(std::path::Path::new(&format!("/proc/{pid}")).exists());
    let addr = format!("127.0.0.1:{port}").parse().unwrap();
    wait_listening(addr);
    assert_eq!(get_raw(addr, "/x", "").status, 200);
    send_signal(pid, SIGTERM);
    assert!(eventually(
        Duration::from_secs(15),
        || !std::path::Path::new(&format!("/proc/{pid}")).exists()
            || std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .unwrap_or_default()
                .contains(") Z")
    ));
}

fn proc_stats(pid: u32) -> (usize, usize, u64) {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .count();
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let rss_kb = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    (tasks, fds, rss_kb)
}

#[test]
fn two_hundred_reloads_leak_nothing() {
    let up = Upstream::start("svc");
    let hc = Upstream::start("checked");
    let extra = "  - { name: checked, match: { path_prefix: /checked }, upstream: checked }\n";
    let cfg = config(&up, extra).replace(
        "upstreams: { svc: {",
        &format!("upstreams:\n  checked: {{ targets: [\"{}\"], health_check: {{ path: /health, interval: 100ms }} }}\n  svc: {{", hc.addr),
    );
    let cfg = cfg.replace("\"] } }\nroutes", "\"] }\nroutes");
    let b = spawn_binary(&cfg, |_| {});
    let load = Load::start(b.addr, 1, 1);
    let c = client();
    let reload = |i: usize| {
        // Alternate the health-check interval so the checked pool is rebuilt every time.
        let text = std::fs::read_to_string(&b.config).unwrap();
        let text = if i.is_multiple_of(2) {
            text.replace("interval: 100ms", "interval: 150ms")
        } else {
            text.replace("interval: 150ms", "interval: 100ms")
        };
        std::fs::write(&b.config, text).unwrap();
        let r = c
            .post(b.admin_url("/reload"))
            .bearer_auth("ops-token")
            .send()
            .unwrap();
        assert_eq!(r.status(), 200);
    };
    for i in 0..20 {
        reload(i);
    }
    std::thread::sleep(Duration::from_millis(500));
    let pid = b.child.id();
    let before = proc_stats(pid);
    for i in 20..220 {
        reload(i);
    }
    std::thread::sleep(Duration::from_millis(800));
    let after = proc_stats(pid);
    let (ok, failures) = load.finish();
    assert!(failures.is_empty(), "{failures:?}");
    assert!(ok > 10);
    assert!(
        after.0 <= before.0 + 4,
        "threads {} -> {}",
        before.0,
        after.0
    );
    assert!(after.1 <= before.1 + 16, "fds {} -> {}", before.1, after.1);
    assert!(
        after.2 <= before.2 + 40 * 1024,
        "RSS {} kB -> {} kB",
        before.2,
        after.2
    );
    // Old pools' health checks stopped: only the current pool checks.
    let hits = hc.health_hits();
    std::thread::sleep(Duration::from_millis(1000));
    let per_sec = hc.health_hits() - hits;
    assert!(
        per_sec <= 15,
        "{per_sec} health checks per second: old loops are still running"
    );
}

#[test]
fn systemd_unit_verifies() {
    if Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("systemd-analyze not installed; skipping");
        return;
    }
    let unit = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/systemd/gatehouse.service"
    ))
    .unwrap();
    for key in [
        "Type=forking",
        "PIDFile=/run/gatehouse/gatehouse.pid",
        "RuntimeDirectory=gatehouse",
        "ExecReload=/bin/kill -QUIT $MAINPID",
        "-u -d -c",
        "KillSignal=SIGTERM",
        "AmbientCapabilities=CAP_NET_BIND_SERVICE",
        "LimitNOFILE=",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ProtectHome=yes",
        "PrivateTmp=yes",
        "SystemCallFilter=@system-service",
        "ReadWritePaths=/var/log/gatehouse",
        "User=gatehouse",
    ] {
        assert!(unit.contains(key), "{key} missing from the unit");
    }
    // verify checks that the binaries exist: point it at the one just built.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gatehouse.service");
    std::fs::write(
        &path,
        unit.replace("/usr/local/bin/gatehouse", env!("CARGO_BIN_EXE_gatehouse")),
    )
    .unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
