//! Observability through the real binary: logrotate, back-pressure, secrets.

use crate::support::*;
use std::process::Stdio;
use std::time::Duration;

#[test]
fn sigusr1_reopens_the_access_log() {
    let up = Upstream::start("svc");
    let b = spawn_binary(
        &format!(
            "server: {{ listen: [\"{{listen}}\"] }}\nlogging: {{ access_log: \"{{dir}}/access.log\", level: warn }}\n\
             upstreams: {{ svc: {{ targets: [\"{}\"] }} }}\nroutes: [{{ name: all, upstream: svc }}]\n",
            up.addr
        ),
        |_| {},
    );
    let log = b.dir().join("access.log");
    get_raw(b.addr, "/first", "X-Request-Id: before-rotate\r\n");
    assert!(eventually(Duration::from_secs(5), || {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .contains("before-rotate")
    }));
    let rotated = b.dir().join("access.log.1");
    std::fs::rename(&log, &rotated).unwrap();
    b.signal(SIGUSR1);
    // The reopen happens on the writer thread; keep sending until a line lands in the new file.
    assert!(eventually(Duration::from_secs(5), || {
        get_raw(b.addr, "/second", "X-Request-Id: after-rotate\r\n");
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .contains("after-rotate")
    }));
    let old = std::fs::read_to_string(&rotated).unwrap();
    assert!(old.contains("before-rotate"));
}

#[test]
fn a_stuck_log_reader_drops_lines_instead_of_stalling_requests() {
    let up = Upstream::start("svc");
    // stdout is a pipe nobody reads: it fills after ~64 KiB.
    let b = spawn_binary(
        &format!(
            "server: {{ listen: [\"{{listen}}\"] }}\nadmin: {{ listen: \"{{admin}}\" }}\n\
             logging: {{ access_log: stdout, buffer_lines: 16, level: warn }}\n\
             upstreams: {{ svc: {{ targets: [\"{}\"] }} }}\nroutes: [{{ name: all, upstream: svc }}]\n",
            up.addr
        ),
        |c| {
            c.stdout(Stdio::piped());
        },
    );
    let c = client();
    let start = std::time::Instant::now();
    for i in 0..800 {
        let r = c.get(b.url(&format!("/req/{i}"))).send().unwrap();
        assert_eq!(r.status(), 200);
    }
    // Not a timing assertion: the loop finishing at all shows nothing blocked.
    let _ = start.elapsed();
    let text = c
        .get(b.admin_url("/metrics"))
        .send()
        .unwrap()
        .text()
        .unwrap();
    let dropped = metric(
        &parse_metrics(&text),
        "gatehouse_access_log_dropped_total",
        &[],
    );
    assert!(dropped > 100.0, "dropped {dropped}");
}

#[test]
fn credentials_never_reach_any_log() {
    let up = Upstream::start("svc");
    let dead = Upstream::start("dead");
    dead.stop();
    let mut b = spawn_binary(
        &format!(
            "server: {{ listen: [\"{{listen}}\"] }}\nlogging: {{ access_log: stdout, level: debug }}\n\
             upstreams:\n  svc: {{ targets: [\"{}\"] }}\n  dead: {{ targets: [\"{}\"], retries: 0 }}\n\
             routes:\n  - {{ name: ok, match: {{ path_prefix: /ok }}, upstream: svc }}\n  - {{ name: down, match: {{ path_prefix: /down }}, upstream: dead }}\n",
            up.addr, dead.addr
        ),
        |c| {
            c.stdout(Stdio::piped()).stderr(Stdio::piped()).env_remove("RUST_LOG");
        },
    );
    let secret = "eyJhbGciOiJIUzI1NiJ9.c2VjcmV0LXBheWxvYWQ.c2lnbmF0dXJlLXh5eg";
    for path in ["/ok/a", "/down/b", "/nowhere", "/ok/../../x"] {
        get_raw(
            b.addr,
            path,
            &format!("Authorization: Bearer {secret}\r\nX-API-Key: api-key-material-123\r\nCookie: session=cookie-secret\r\n"),
        );
    }
    // SIGTERM drains: every finished request has been logged before exit.
    b.signal(SIGTERM);
    b.wait(Duration::from_secs(10)).expect("exits on SIGTERM");
    let out = b.read_stdout();
    let err = b.read_stderr();
    assert!(out.lines().count() >= 4, "access log: {out}");
    assert!(
        err.contains("Fail to proxy") || err.contains("ERROR"),
        "the failing route should log: {err}"
    );
    for s in [secret, "api-key-material-123", "cookie-secret"] {
        assert!(!out.contains(s), "{s} in access log");
        assert!(!err.contains(s), "{s} in error log");
    }
}

#[test]
fn sigint_still_writes_the_lines_of_finished_requests() {
    let up = Upstream::start("svc");
    let mut b = spawn_binary(
        &format!(
            "server: {{ listen: [\"{{listen}}\"] }}\n\
             logging: {{ access_log: stdout, level: warn }}\n\
             upstreams: {{ svc: {{ targets: [\"{}\"] }} }}\nroutes: [{{ name: all, upstream: svc }}]\n",
            up.addr
        ),
        |c| {
            c.stdout(Stdio::piped());
        },
    );
    // One keep-alive connection: a request is logged before the next one on
    // the same connection is read, so once the last answer arrives every
    // earlier line is queued. SIGINT follows at once.
    let c = client();
    for i in 0..=20 {
        let r = c.get(b.url(&format!("/fast/{i}"))).send().unwrap();
        assert_eq!(r.status(), 200);
        let _ = r.bytes().unwrap();
    }
    b.signal(SIGINT);
    b.wait(Duration::from_secs(10)).expect("exits on SIGINT");
    let out = b.read_stdout();
    for i in 0..20 {
        assert!(
            out.contains(&format!("\"path\":\"/fast/{i}\"")),
            "/fast/{i} missing from: {out}"
        );
    }
}
