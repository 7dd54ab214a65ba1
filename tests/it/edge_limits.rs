//! Protocol limits and ambiguous framing, over raw sockets, with a
//! recording upstream that shows what got through.

use crate::support::*;
use std::io::{BufReader, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

fn env(server_extra: &str) -> (Gateway, Upstream) {
    let up = Upstream::start("rec");
    let gw = gateway(&format!(
        "server: {{ listen: [\"{{listen}}\"] {server_extra} }}\nupstreams: {{ u: {{ targets: [\"{}\"] }} }}\nroutes: [{{ name: all, upstream: u, websocket: false }}]\n",
        up.addr
    ));
    (gw, up)
}

/// Sends raw bytes; returns the first response (if any) and whether the
/// connection was closed afterwards.
fn send(gw: &Gateway, bytes: &[u8]) -> (Option<RawResponse>, bool) {
    let mut s = TcpStream::connect(gw.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let _ = s.write_all(bytes);
    let mut r = BufReader::new(s.try_clone().unwrap());
    let resp = read_response(&mut r);
    let mut rest = [0u8; 1];
    let closed = matches!(r.read(&mut rest), Ok(0) | Err(_));
    (resp, closed)
}

#[test]
fn body_over_max_body_is_413_before_the_upstream() {
    let (gw, up) = env(", max_body: 1KiB");
    let (r, closed) = send(
        &gw,
        format!(
            "POST /x HTTP/1.1\r\nHost: h\r\nContent-Length: 2000\r\n\r\n{}",
            "a".repeat(2000)
        )
        .as_bytes(),
    );
    let r = r.unwrap();
    assert_eq!(r.status, 413);
    assert_eq!(r.header("content-type"), Some("application/problem+json"));
    assert!(closed, "the connection is closed");
    assert_eq!(up.hits(), 0, "the upstream was not contacted");
    // A body within the limit passes.
    let (r, _) = send(
        &gw,
        b"POST /x HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello",
    );
    assert_eq!(r.unwrap().status, 200);
    assert_eq!(up.last().body, b"hello");
}

#[test]
fn chunked_body_growing_past_max_body_is_stopped() {
    let (gw, up) = env(", max_body: 1KiB");
    let mut req = b"POST /x HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    for _ in 0..4 {
        req.extend_from_slice(format!("{:x}\r\n{}\r\n", 400, "b".repeat(400)).as_bytes());
    }
    req.extend_from_slice(b"0\r\n\r\n");
    let (r, closed) = send(&gw, &req);
    let r = r.expect("an answer");
    assert_eq!(r.status, 413);
    assert!(closed);
    // Whatever the upstream saw, it never got a complete oversized body.
    assert!(up.requests().iter().all(|r| r.body.len() <= 1024));
}

#[test]
fn oversized_heads_are_431_and_closed() {
    let (gw, up) = env(", max_header_bytes: 4KiB");
    let big = "x".repeat(5000);
    let (r, closed) = send(
        &gw,
        format!("GET / HTTP/1.1\r\nHost: h\r\nX-Big: {big}\r\n\r\n").as_bytes(),
    );
    let r = r.unwrap();
    assert_eq!(r.status, 431);
    assert_eq!(r.header("content-type"), Some("application/problem+json"));
    assert!(closed);
    assert_eq!(up.hits(), 0);
    // Above Pingora's own 1 MiB cap: 400 and closed.
    let huge = "y".repeat(1_100_000);
    let (r, closed) = send(
        &gw,
        format!("GET / HTTP/1.1\r\nHost: h\r\nX-Huge: {huge}\r\n\r\n").as_bytes(),
    );
    assert!(r
        .map(|r| r.status == 400 || r.status == 431)
        .unwrap_or(true));
    assert!(closed);
}

#[test]
fn long_uris_are_414() {
    let (gw, up) = env(", max_uri_bytes: 1KiB");
    let (r, _) = send(
        &gw,
        format!("GET /{} HTTP/1.1\r\nHost: h\r\n\r\n", "p".repeat(2000)).as_bytes(),
    );
    assert_eq!(r.unwrap().status, 414);
    assert_eq!(up.hits(), 0);
}

#[test]
fn slow_heads_are_cut_off_while_others_are_served() {
    let (gw, _up) = env(", header_timeout: 1s");
    let mut slow = TcpStream::connect(gw.addr).unwrap();
    slow.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let start = Instant::now();
    let mut closed_at = None;
    // One byte every 200 ms: each read is quick, the whole head never completes.
    for b in b"GET / HTTP/1.1\r\nHost: h\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa".iter() {
        if slow.write_all(&[*b]).is_err() {
            closed_at = Some(start.elapsed());
            break;
        }
        // Other clients are served meanwhile.
        if start.elapsed() < Duration::from_millis(600) {
            assert_eq!(get_raw(gw.addr, "/other", "").status, 200);
        }
        std::thread::sleep(Duration::from_millis(200));
        let mut buf = [0u8; 1];
        slow.set_nonblocking(true).unwrap();
        if let Ok(0) = slow.read(&mut buf) {
            closed_at = Some(start.elapsed());
            break;
        }
        slow.set_nonblocking(false).unwrap();
    }
    let at = closed_at.expect("the slow connection was never closed");
    assert!(
        at >= Duration::from_millis(900) && at < Duration::from_secs(5),
        "closed after {at:?}"
    );
}

#[test]
fn ambiguous_framing_never_reaches_the_upstream() {
    let (gw, up) = env("");
    let smuggled = "0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: h\r\n\r\n";
    let attacks: Vec<(&str, String)> = vec![
        ("CL+TE", format!("POST /a HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nContent-Length: {}\r\n\r\n{smuggled}", smuggled.len())),
        ("TE chunked, chunked", format!("POST /a HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked, chunked\r\n\r\n{smuggled}")),
        ("TE gzip, chunked", format!("POST /a HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip, chunked\r\n\r\n{smuggled}")),
        ("TE gzip alone", format!("POST /a HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip\r\n\r\n{smuggled}")),
        ("two TE headers", format!("POST /a HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n\r\n{smuggled}")),
        ("TE with space before colon", "POST /a HTTP/1.1\r\nHost: h\r\nTransfer-Encoding : chunked\r\nContent-Length: 3\r\n\r\nabc".to_string()),
        ("TE tab", "POST /a HTTP/1.1\r\nHost: h\r\nTransfer-Encoding:\tchunked\r\nContent-Length: 3\r\n\r\nabc".to_string()),
        ("xchunked", format!("POST /a HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: xchunked\r\n\r\n{smuggled}")),
        ("two different CL", "POST /a HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!".to_string()),
        ("CL list", "POST /a HTTP/1.1\r\nHost: h\r\nContent-Length: 5, 6\r\n\r\nhello!".to_string()),
        ("CL +5", "POST /a HTTP/1.1\r\nHost: h\r\nContent-Length: +5\r\n\r\nhello".to_string()),
        ("CL -1", "POST /a HTTP/1.1\r\nHost: h\r\nContent-Length: -1\r\n\r\nhello".to_string()),
        ("CL hex", "POST /a HTTP/1.1\r\nHost: h\r\nContent-Length: 0x5\r\n\r\nhello".to_string()),
        ("HTTP/1.0 with TE", format!("POST /a HTTP/1.0\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n{smuggled}")),
        ("obs-fold", "GET /a HTTP/1.1\r\nHost: h\r\nX-Folded: a\r\n b\r\n\r\n".to_string()),
        ("bare LF", "GET /a HTTP/1.1\nHost: h\n\n".to_string()),
        ("bad chunk size", "POST /a HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n".to_string()),
        ("overflowing chunk size", "POST /a HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffffffff\r\nhello\r\n0\r\n\r\n".to_string()),
    ];
    for (name, req) in attacks {
        let before = up.requests().len();
        let (r, closed) = send(&gw, req.as_bytes());
        let status = r.as_ref().map(|r| r.status);
        assert!(
            status.is_none_or(|s| s == 400) || (closed && status.is_none_or(|s| s >= 400)),
            "{name}: answered {status:?}"
        );
        let seen = &up.requests()[before..];
        assert!(
            seen.iter().all(|r| r.target != "/smuggled"),
            "{name}: a smuggled request reached the upstream"
        );
        assert!(
            seen.len() <= 1,
            "{name}: the upstream saw {} requests",
            seen.len()
        );
        if status == Some(400) {
            assert!(seen.is_empty(), "{name}: rejected yet forwarded");
        }
    }
}

#[test]
fn upgrade_without_101_does_not_tunnel_a_pipelined_request() {
    let (gw, up) = env("");
    // The route has websockets off; the upstream answers 200 to an Upgrade.
    let req = "GET /a HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: foo\r\n\r\nGET /second HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n";
    let mut s = TcpStream::connect(gw.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(req.as_bytes()).unwrap();
    let mut r = BufReader::new(s.try_clone().unwrap());
    let first = read_response(&mut r).unwrap();
    assert_eq!(first.status, 200);
    let second = read_response(&mut r);
    // Either the second request is served as its own HTTP request, or the
    // connection is closed; it is never passed on as tunnelled bytes.
    if let Some(second) = second {
        assert_eq!(second.status, 200);
    }
    let seen = up.requests();
    assert_eq!(
        seen[0].header("upgrade"),
        None,
        "the upgrade was not forwarded"
    );
    assert!(seen.iter().all(|r| r.method == "GET"));
}
