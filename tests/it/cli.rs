//! The real binary: `-t`, errors, `--version`, `--help`, serving, signals.

use crate::support::*;
use std::process::{Command, Stdio};
use std::time::Duration;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_gatehouse"))
}

fn write(text: &str) -> tempfile::NamedTempFile {
    let f = tempfile::Builder::new().suffix(".yaml").tempfile().unwrap();
    std::fs::write(f.path(), text).unwrap();
    f
}

#[test]
fn shipped_example_config_is_valid() {
    let out = bin()
        .args([
            "-c",
            concat!(env!("CARGO_MANIFEST_DIR"), "/conf/gatehouse.yaml"),
            "-t",
        ])
        .env("GATEHOUSE_ADMIN_TOKEN", "t0ken")
        .env("JWT_SECRET", "a-jwt-secret-that-is-32-bytes-long!")
        .env("PARTNER_A_KEY", "partner-a-key")
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "config OK",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success());
}

#[test]
fn test_mode_reports_every_error_with_path_and_position() {
    let f = write(
        "server:\n  listen: [\"nope\"]\n  grace_period: 5\nupstreams:\n  empty: { targets: [] }\n  u: { targets: [\"127.0.0.1:1\"], connect_timeout: 3 parsecs }\nroutes:\n  - name: a\n    upstream: u\n  - name: a\n    upstream: missing\n    match: { path_regex: \"([\" }\n",
    );
    let out = config_check(f.path()).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    for expected in [
        "server.listen[0]: invalid address `nope`",
        "(line 2, column",
        "server.grace_period: duration `5` needs a unit",
        "upstreams.empty.targets: an upstream needs at least one target",
        "upstreams.u.connect_timeout:",
        "routes[1].name: duplicate route name `a`",
        "routes[1].upstream: upstream `missing` is not defined",
        "(line 11, column 15)",
        "routes[1].match.path_regex: invalid regex",
    ] {
        assert!(err.contains(expected), "missing `{expected}` in:\n{err}");
    }
    assert!(!err.contains("panicked"));
    assert!(!String::from_utf8_lossy(&out.stdout).contains("config OK"));
}

#[test]
fn unknown_keys_are_rejected_with_their_path() {
    let f = write("upstreams:\n  u:\n    targets: [\"127.0.0.1:1\"]\n    bogus: 1\n");
    let out = config_check(f.path()).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("upstreams.u.bogus: unknown field `bogus`"),
        "{err}"
    );
    assert!(err.contains("line 4"), "{err}");
}

#[test]
fn env_vars_are_substituted_and_missing_ones_reported() {
    let f = write(
        "server:\n  listen: [\"127.0.0.1:${GH_TEST_PORT}\"]\n  threads: ${GH_TEST_THREADS:-2}\nupstreams: { u: { targets: [\"127.0.0.1:1\"] } }\nroutes: [{ name: r, upstream: u }]\n",
    );
    let out = config_check(f.path())
        .env("GH_TEST_PORT", "8181")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = config_check(f.path())
        .env_remove("GH_TEST_PORT")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("environment variable `GH_TEST_PORT` is not set"),
        "{err}"
    );
    assert!(err.contains("line 2"), "{err}");
}

#[test]
fn missing_file_is_one_clear_line() {
    let out = config_check(std::path::Path::new("/nonexistent/gatehouse.yaml"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(
        err.contains("cannot read config file /nonexistent/gatehouse.yaml"),
        "{err}"
    );
    assert!(!err.contains("panicked") && !err.contains("backtrace"));
}

#[test]
fn malformed_yaml_is_reported_with_position() {
    let f = write("server:\n  listen: [\"a\"\n  threads: 2\n");
    let out = config_check(f.path()).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("line "), "{err}");
    assert!(!err.contains("panicked"));
}

#[test]
fn version_and_help() {
    let out = bin().arg("--version").output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains(env!("CARGO_PKG_VERSION")));
    let out = bin().arg("--help").output().unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--conf",
        "--test",
        "--daemon",
        "--upgrade",
        "--demo",
        "--otlp",
        "explain",
    ] {
        assert!(help.contains(flag), "{flag} missing from --help");
    }
}

#[test]
fn binary_serves_and_stops_on_sigint() {
    let up = Upstream::start("up");
    let port = free_port();
    let f = write(&format!(
        "server: {{ listen: [\"127.0.0.1:{port}\"], grace_period: 1s }}\nupstreams: {{ u: {{ targets: [\"{}\"] }} }}\nroutes: [{{ name: all, upstream: u, strip_prefix: /api }}]\nlogging: {{ level: warn }}\n",
        up.addr
    ));
    let mut child = bin()
        .args(["-c", f.path().to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let addr = format!("127.0.0.1:{port}").parse().unwrap();
    wait_listening(addr);
    let r = get_raw(addr, "/api/hello?x=1", "");
    assert_eq!(r.status, 200);
    assert_eq!(up.last().target, "/hello?x=1");
    send_signal(child.id(), SIGINT);
    let status = wait_or_kill(&mut child, Duration::from_secs(10)).expect("did not exit on SIGINT");
    assert!(status.success() || status.code().is_none());
}

/// Waits for `child` to exit (bounded), killing it if it did not.
fn wait_or_kill(
    child: &mut std::process::Child,
    limit: Duration,
) -> Option<std::process::ExitStatus> {
    let deadline = std::time::Instant::now() + limit;
    while std::time::Instant::now() < deadline {
        if let Some(s) = child.try_wait().unwrap() {
            return Some(s);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    None
}

/// Runs `gatehouse --demo --otlp URL` and replays every curl command it
/// prints; the console it names answers and the traces arrive.
#[test]
fn demo_answers_its_printed_curl_commands() {
    use std::io::{BufRead, BufReader};
    let otlp = Otlp::start();
    let mut child = bin()
        .args(["--demo", "--otlp", &otlp.url()])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = Vec::new();
    for line in BufReader::new(stdout).lines() {
        let line = line.unwrap();
        if line.starts_with("Ctrl-C") {
            break;
        }
        lines.push(line);
    }
    wait_listening("127.0.0.1:8080".parse().unwrap());
    wait_listening("127.0.0.1:9090".parse().unwrap());
    let cmds: Vec<&String> = lines
        .iter()
        .filter(|l| l.trim_start().starts_with("curl "))
        .collect();
    assert!(cmds.len() >= 9, "{lines:?}");
    assert!(
        lines.iter().any(|l| l == "console: http://127.0.0.1:9090/"),
        "{lines:?}"
    );
    let console = get_raw("127.0.0.1:9090".parse().unwrap(), "/", "");
    assert_eq!(console.status, 200);
    assert!(String::from_utf8_lossy(&console.body).contains("<title>gatehouse console</title>"));
    // Give the health checks a moment to run once.
    assert!(eventually(Duration::from_secs(5), || get_raw(
        "127.0.0.1:9090".parse().unwrap(),
        "/ready",
        ""
    )
    .status
        == 200));
    let cmds_len = cmds.iter().filter(|c| c.contains(":8080")).count();
    for cmd in cmds {
        let (curl, comment) = cmd.split_once(" # ").unwrap();
        let auth = curl
            .split_once("-H '")
            .map(|(_, rest)| format!("{}\r\n", rest.split_once('\'').unwrap().0))
            .unwrap_or_default();
        let words: Vec<&str> = curl.split_whitespace().collect();
        let method = words
            .iter()
            .position(|w| *w == "-X")
            .map_or("GET", |i| words[i + 1]);
        let url = words.last().unwrap();
        let rest = url.strip_prefix("http://").unwrap();
        let (host, path) = rest.split_at(rest.find('/').unwrap());
        let req = format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\n{auth}Content-Length: 0\r\nConnection: close\r\n\r\n");
        let r = raw(host.parse().unwrap(), req.as_bytes()).unwrap();
        // A comment starting with a status code names the expected status.
        let digits: String = comment
            .trim()
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        let expected: u16 = digits.parse().unwrap_or(200);
        assert_eq!(r.status, expected, "{cmd}");
        if expected == 200 && host.ends_with(":8080") {
            assert_eq!(r.header("content-type"), Some("application/json"), "{cmd}");
        }
    }
    // Every demo request is traced when a collector is given.
    assert!(eventually(Duration::from_secs(10), || otlp.spans().len() >= cmds_len));
    assert!(otlp.spans().iter().all(|(svc, _)| svc == "gatehouse-demo"));
    send_signal(child.id(), SIGINT);
    assert!(wait_or_kill(&mut child, Duration::from_secs(10)).is_some());
}
