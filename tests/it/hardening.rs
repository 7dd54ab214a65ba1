//! Findings of the fault and attack probe (issue 18), each shown from
//! outside: the real binary for config checks, real gateways and
//! upstreams for the rest.

use crate::support::*;

fn check_text(text: &str) -> std::process::Output {
    let f = tempfile::Builder::new().suffix(".yaml").tempfile().unwrap();
    std::fs::write(f.path(), text).unwrap();
    config_check(f.path()).output().unwrap()
}

const ROUTED: &str =
    "upstreams: { u: { targets: [\"127.0.0.1:1\"] } }\nroutes: [{ name: r, upstream: u }]\n";

#[test]
fn a_huge_duration_is_an_error_naming_its_key() {
    let out = check_text(&format!(
        "server: {{ idle_timeout: 18446744073709551615d }}\n{ROUTED}"
    ));
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("server.idle_timeout") && err.contains("maximum of 30d"),
        "{err}"
    );
    let ok = check_text(&format!("server: {{ idle_timeout: 30d }}\n{ROUTED}"));
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
}

#[test]
fn an_empty_or_routeless_config_is_refused() {
    for text in [
        "",
        "\n# truncated\n",
        "server: { listen: [\"127.0.0.1:8080\"] }\n",
    ] {
        let out = check_text(text);
        assert!(!out.status.success(), "{text:?} was accepted");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("routes") && err.contains("no routes"), "{err}");
    }
}

#[test]
fn a_truncated_file_on_reload_keeps_the_running_config() {
    let up = Upstream::start("u");
    let yaml = format!(
        "server: {{ listen: [\"{{listen}}\"] }}\nadmin: {{ listen: \"{{admin}}\" }}\nupstreams: {{ u: {{ targets: [\"{}\"] }} }}\nroutes: [{{ name: r, upstream: u }}]\n",
        up.addr
    );
    let b = spawn_binary(&yaml, |_| {});
    wait_listening(b.admin);
    let c = client();
    assert_eq!(c.get(b.url("/x")).send().unwrap().status(), 200);
    std::fs::write(b.dir().join("gatehouse.yaml"), "").unwrap();
    let r = c.post(b.admin_url("/reload")).send().unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.text().unwrap().contains("no routes"));
    assert_eq!(
        c.get(b.url("/x")).send().unwrap().status(),
        200,
        "the old routes still serve"
    );
}

#[test]
fn a_reset_on_a_reused_connection_is_retried_on_another_target() {
    let (a, b) = (Upstream::start("a"), Upstream::start("b"));
    // Consistent hashing sends a key to the same target every time, so a
    // retry that does not record the failure goes straight back to it.
    let gw = gateway(&format!(
        "server: {{ listen: [\"{{listen}}\"] }}\nupstreams:\n  pool: {{ targets: [\"{}\", \"{}\"], retries: 2, balance: consistent_hash, hash_key: \"header:X-K\" }}\nroutes: [{{ name: r, upstream: pool }}]\n",
        a.addr, b.addr
    ));
    let c = client();
    let get = |k: u32| {
        c.get(gw.url("/x"))
            .header("x-k", k.to_string())
            .send()
            .unwrap()
    };
    let key_of_a = (0..100)
        .find(|k| get(*k).headers()["x-upstream"] == "a")
        .expect("some key hashes to a");
    // `a` now has a pooled keep-alive connection, and starts dropping every
    // request it reads (as a killed process would).
    let before = a.hits();
    a.set_reset(true);
    let r = get(key_of_a);
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["x-upstream"],
        "b",
        "the retry went to another target"
    );
    assert_eq!(
        a.hits(),
        before + 1,
        "the reused connection to `a` was tried once"
    );
}

#[test]
fn absolute_form_targets_are_forwarded_in_origin_form_with_their_host() {
    let up = Upstream::start("u");
    let gw = gateway(&format!(
        "server: {{ listen: [\"{{listen}}\"] }}\nupstreams: {{ u: {{ targets: [\"{}\"] }} }}\nroutes:\n  - {{ name: x, match: {{ host: x.example }}, upstream: u }}\n",
        up.addr
    ));
    let r = raw(
        gw.addr,
        b"GET http://x.example/a/echo?q=1 HTTP/1.1\r\nHost: x.example\r\nConnection: close\r\n\r\n",
    )
    .unwrap();
    assert_eq!(
        r.status,
        200,
        "routed on the target authority: {}",
        String::from_utf8_lossy(&r.body)
    );
    let seen = up.last();
    assert_eq!(seen.target, "/a/echo?q=1", "origin form upstream");
    assert_eq!(
        seen.header("host"),
        Some("x.example"),
        "the authority replaces Host"
    );
    assert_eq!(seen.header("x-forwarded-host"), Some("x.example"));
    for bad in [
        &b"GET http://user@x.example/a HTTP/1.1\r\nHost: x.example\r\nConnection: close\r\n\r\n"[..],
        b"GET http://x.example/a HTTP/1.1\r\nHost: other.example\r\nConnection: close\r\n\r\n",
        b"GET http://x.ex%20ample/a HTTP/1.1\r\nHost: x.example\r\nConnection: close\r\n\r\n",
    ] {
        let r = raw(gw.addr, bad).unwrap();
        assert_eq!(r.status, 400, "{}", String::from_utf8_lossy(bad));
    }
    assert_eq!(up.hits(), 1, "invalid authorities are never forwarded");
    let r = raw(
        gw.addr,
        b"CONNECT x.example:443 HTTP/1.1\r\nHost: x.example:443\r\nConnection: close\r\n\r\n",
    )
    .unwrap();
    assert_eq!(r.status, 405);
}

#[test]
fn a_stalled_request_body_gets_408_and_frees_the_upstream_connection() {
    let up = Upstream::start("u");
    let gw = gateway(&format!(
        "server: {{ listen: [\"{{listen}}\"], body_timeout: 400ms }}\nupstreams: {{ u: {{ targets: [\"{}\"] }} }}\nroutes: [{{ name: r, upstream: u }}]\n",
        up.addr
    ));
    // 100,000 bytes announced, 5 sent, then nothing (a slow-body client).
    let r = raw(
        gw.addr,
        b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\nhello",
    )
    .expect("an answer before the connection closes");
    assert_eq!(r.status, 408);
    assert!(String::from_utf8_lossy(&r.body).contains("request-timeout"));
    // The stalled upstream connection was not pooled: the next request
    // opens a fresh one and succeeds.
    let conns = up.connections();
    assert_eq!(client().get(gw.url("/x")).send().unwrap().status(), 200);
    assert_eq!(up.connections(), conns + 1);
    // A body that keeps coming within the timeout is fine.
    let big = vec![b'x'; 256 * 1024];
    assert_eq!(
        client()
            .post(gw.url("/x"))
            .body(big)
            .send()
            .unwrap()
            .status(),
        200
    );
}

#[test]
fn the_head_deadline_runs_from_accept_on_plain_and_h2c_listeners() {
    use std::io::Write;
    let up = Upstream::start("u");
    for h2c in [false, true] {
        let gw = gateway(&format!(
            "server: {{ listen: [\"{{listen}}\"], header_timeout: 500ms, h2c: {h2c} }}\nupstreams: {{ u: {{ targets: [\"{}\"] }} }}\nroutes: [{{ name: r, upstream: u }}]\n",
            up.addr
        ));
        // Nothing at all, a partial request line (fewer bytes than an h2
        // preface), a bare h2 preface without HEADERS.
        let sends: [&[u8]; 3] = [
            b"",
            b"GET / HTTP/1.1\r\n",
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
        ];
        for bytes in sends {
            if !h2c && bytes.starts_with(b"PRI") {
                continue; // not HTTP/1: refused at once, rightly
            }
            let mut s = std::net::TcpStream::connect(gw.addr).unwrap();
            s.write_all(bytes).unwrap();
            let start = std::time::Instant::now();
            assert!(
                closed_within(&mut s, std::time::Duration::from_secs(5)),
                "h2c={h2c}: {:?} was not closed",
                String::from_utf8_lossy(bytes)
            );
            let took = start.elapsed();
            assert!(
                took >= std::time::Duration::from_millis(400),
                "closed early: {took:?}"
            );
        }
    }
}

#[test]
fn over_max_connections_new_ones_are_closed_and_counted() {
    let up = Upstream::start("u");
    let gw = gateway(&format!(
        "server: {{ listen: [\"{{listen}}\"], max_connections: 3 }}\nadmin: {{ listen: \"{{admin}}\" }}\nupstreams: {{ u: {{ targets: [\"{}\"] }} }}\nroutes: [{{ name: r, upstream: u }}]\n",
        up.addr
    ));
    // The start-up probe (`wait_listening`) is a connection too: wait until
    // its close is seen, or it could take one of the three places.
    assert!(eventually(std::time::Duration::from_secs(5), || {
        metric(&scrape(&gw), "gatehouse_connections_open", &[]) == 0.0
    }));
    let idle: Vec<std::net::TcpStream> = (0..3)
        .map(|_| std::net::TcpStream::connect(gw.addr).unwrap())
        .collect();
    assert!(eventually(std::time::Duration::from_secs(5), || {
        metric(&scrape(&gw), "gatehouse_connections_open", &[]) == 3.0
    }));
    let mut extra = std::net::TcpStream::connect(gw.addr).unwrap();
    assert!(
        closed_within(&mut extra, std::time::Duration::from_secs(5)),
        "the 4th is closed at once"
    );
    assert_eq!(
        metric(&scrape(&gw), "gatehouse_connections_rejected_total", &[]),
        1.0
    );
    // The connections already open are served.
    use std::io::{BufReader, Write};
    let mut s = idle.into_iter().next().unwrap();
    s.write_all(b"GET /x HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        .unwrap();
    let r = read_response(&mut BufReader::new(s)).unwrap();
    assert_eq!(r.status, 200);
}

#[test]
fn deep_nesting_and_huge_files_are_refused_quickly() {
    for (name, text) in [
        ("flow", format!("routes: {}", "[".repeat(200_000))),
        ("block", format!("routes:\n{}x", "- ".repeat(50_000))),
    ] {
        let start = std::time::Instant::now();
        let out = check_text(&text);
        eprintln!("{name} nesting of 200 KB refused in {:?}", start.elapsed());
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("nest deeper than 64 levels") && err.contains("line"),
            "{name}: {err}"
        );
    }
    let huge = format!("{ROUTED}# {}\n", "x".repeat(17 << 20));
    let out = check_text(&huge);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("over the limit of 16 MiB"),
        "{err}"
    );
}

#[test]
fn a_config_of_10000_routes_validates_in_linear_time() {
    let mut text = String::from("upstreams: { u: { targets: [\"127.0.0.1:1\"] } }\nroutes:\n");
    for i in 0..10_000 {
        text.push_str(&format!("  - {{ name: r{i}, match: {{ path_prefix: /svc{i}/api, methods: [GET] }}, upstream: u }}\n"));
    }
    let start = std::time::Instant::now();
    let cfg = gatehouse::config::load_str(&text).unwrap();
    eprintln!(
        "10,000 routes ({} KB) validated in {:?}",
        text.len() / 1024,
        start.elapsed()
    );
    assert_eq!(cfg.routes.len(), 10_000);
}

fn echo_gateway(up: &Upstream, server_extra: &str) -> Gateway {
    gateway(&format!(
        "server: {{ listen: [\"{{listen}}\"]{server_extra} }}\nupstreams: {{ u: {{ targets: [\"{}\"] }} }}\nroutes: [{{ name: r, upstream: u }}]\n",
        up.addr
    ))
}

#[test]
fn headers_with_underscores_are_dropped_unless_allowed() {
    let up = Upstream::start("u");
    let gw = echo_gateway(&up, "");
    let r = get_raw(gw.addr, "/x", "X_Custom: 1\r\nX-Normal: 2\r\n");
    assert_eq!(r.status, 200);
    let seen = up.last();
    assert_eq!(seen.header("x_custom"), None, "dropped as nginx does");
    assert_eq!(seen.header("x-normal"), Some("2"));
    let gw = echo_gateway(&up, ", underscores_in_headers: allow");
    assert_eq!(get_raw(gw.addr, "/x", "X_Custom: 1\r\n").status, 200);
    assert_eq!(up.last().header("x_custom"), Some("1"));
}

#[test]
fn two_authorization_headers_are_ambiguous() {
    let up = Upstream::start("u");
    let gw = echo_gateway(&up, "");
    let r = get_raw(
        gw.addr,
        "/x",
        "Authorization: Bearer a\r\nAuthorization: Bearer b\r\n",
    );
    assert_eq!(r.status, 400);
    assert_eq!(up.hits(), 0);
}

#[test]
fn connection_cannot_remove_headers_gatehouse_sets() {
    let up = Upstream::start("u");
    let gw = echo_gateway(&up, "");
    let r = get_raw(
        gw.addr,
        "/x",
        "Connection: keep-alive, X-Forwarded-For, X-Request-Id\r\nX-Other: 1\r\n",
    );
    assert_eq!(r.status, 200);
    let seen = up.last();
    assert!(seen.header("x-forwarded-for").is_some());
    assert!(seen.header("x-request-id").is_some());
}

const HS_SECRET: &str = "hardening-test-secret-0123456789abcdef";

fn jwt_gateway(up: &Upstream) -> Gateway {
    gateway(&format!(
        "server: {{ listen: [\"{{listen}}\"] }}\nupstreams: {{ u: {{ targets: [\"{}\"] }} }}\nauth:\n  hs: {{ type: jwt, algorithms: [HS256], secret: \"{HS_SECRET}\", forward_claims: {{ sub: X-User-Id }} }}\nroutes: [{{ name: r, upstream: u, auth: hs }}]\n",
        up.addr
    ))
}

#[test]
fn a_claim_that_cannot_be_a_header_refuses_the_token() {
    let up = Upstream::start("u");
    let gw = jwt_gateway(&up);
    for sub in ["alice\r\nX-Admin: 1", "bob\u{0}", "carol\nx"] {
        let mut c = claims("x");
        c["sub"] = serde_json::Value::from(sub);
        let token = mint(jsonwebtoken::Algorithm::HS256, HS_SECRET, c, None);
        let r = get_raw(gw.addr, "/x", &format!("Authorization: Bearer {token}\r\n"));
        assert_eq!(r.status, 401, "{sub:?}");
        assert!(r
            .header("www-authenticate")
            .unwrap()
            .contains("invalid_token"));
    }
    assert_eq!(up.hits(), 0);
    let token = mint(
        jsonwebtoken::Algorithm::HS256,
        HS_SECRET,
        claims("dave"),
        None,
    );
    assert_eq!(
        get_raw(gw.addr, "/x", &format!("Authorization: Bearer {token}\r\n")).status,
        200
    );
    assert_eq!(up.last().header("x-user-id"), Some("dave"));
}

#[test]
fn only_the_base64url_alphabet_is_accepted_in_tokens() {
    let up = Upstream::start("u");
    let gw = jwt_gateway(&up);
    let token = mint(
        jsonwebtoken::Algorithm::HS256,
        HS_SECRET,
        claims("eve"),
        None,
    );
    assert_eq!(
        get_raw(gw.addr, "/x", &format!("Authorization: Bearer {token}\r\n")).status,
        200
    );
    let (head, rest) = token.split_once('.').unwrap();
    // The same bytes with padding, or in the standard alphabet where it differs.
    let padded = format!("{head}=.{rest}");
    let padded_signature = format!("{token}=");
    let std_alphabet = token.replace('-', "+").replace('_', "/");
    for bad in [padded, padded_signature, std_alphabet]
        .iter()
        .filter(|t| **t != token)
    {
        let r = get_raw(gw.addr, "/x", &format!("Authorization: Bearer {bad}\r\n"));
        assert_eq!(r.status, 401, "{bad}");
    }
}

#[test]
fn nested_env_defaults_are_named_and_refused() {
    let out = check_text(&format!(
        "server: {{ listen: [\"${{A:-${{B}}}}\"] }}\n{ROUTED}"
    ));
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("nested references") && err.contains("not supported"),
        "{err}"
    );
}

#[test]
fn pingoras_own_rejections_answer_problem_json() {
    let up = Upstream::start("u");
    let gw = echo_gateway(&up, "");
    let many: String = (0..300).map(|i| format!("X-H{i}: 1\r\n")).collect();
    let cases: [(String, u16); 3] = [
        (format!("GET / HTTP/1.1\r\nHost: a\r\n{many}\r\n"), 400),
        (
            "GET / HTTP/1.1\r\nHost: a\r\nBad Header Line\r\n\r\n".to_string(),
            400,
        ),
        (
            "CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n".to_string(),
            405,
        ),
    ];
    for (req, status) in cases {
        let r = raw(gw.addr, req.as_bytes()).expect("an answer");
        assert_eq!(r.status, status, "{req:.40}");
        assert_eq!(r.header("content-type"), Some("application/problem+json"));
        let doc = r.json();
        assert_eq!(doc["status"], status);
        assert!(doc["type"]
            .as_str()
            .unwrap()
            .starts_with("urn:gatehouse:problem:"));
    }
    assert_eq!(up.hits(), 0, "nothing forwarded");
    // Everything else is untouched: a normal answer still streams through.
    assert_eq!(client().get(gw.url("/x")).send().unwrap().status(), 200);
}
