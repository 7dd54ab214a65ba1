//! The caching decision on top of Pingora's Cache-Control parser: any
//! response and request headers give a decision without panicking, and
//! nothing marked `no-store`/`private`, or answering an authenticated
//! request without `public`/`s-maxage`, is ever stored.
#![no_main]
use arbitrary::Arbitrary;
use gatehouse::bench::{storable, variance, Storable};
use libfuzzer_sys::fuzz_target;
use pingora::http::{RequestHeader, ResponseHeader};
use std::time::Duration;

#[derive(Arbitrary, Debug)]
struct Input {
    status: u16,
    authenticated: bool,
    req: Vec<(u8, Vec<u8>)>,
    resp: Vec<(u8, Vec<u8>)>,
}

const NAMES: &[&str] = &[
    "cache-control",
    "expires",
    "date",
    "vary",
    "pragma",
    "set-cookie",
    "age",
    "authorization",
    "accept-encoding",
    "content-type",
    "etag",
    "last-modified",
];

fuzz_target!(|input: Input| {
    let mut req = RequestHeader::build("GET", b"/x", None).unwrap();
    for (n, v) in &input.req {
        if let Ok(v) = http::HeaderValue::from_bytes(v) {
            let _ = req.append_header(NAMES[*n as usize % NAMES.len()], v);
        }
    }
    let Ok(mut resp) = ResponseHeader::build(input.status, None) else {
        return;
    };
    for (n, v) in &input.resp {
        if let Ok(v) = http::HeaderValue::from_bytes(v) {
            let _ = resp.append_header(NAMES[*n as usize % NAMES.len()], v);
        }
    }
    let decision = storable(&req, &resp, input.authenticated, Duration::from_secs(60));
    let _ = variance(&resp.headers, &req, None);
    // On compress routes the negotiated coding stands for Accept-Encoding.
    let _ = variance(&resp.headers, &req, Some(b"gzip"));
    if let Storable::Store { .. } = decision {
        let cc: String = resp
            .headers
            .get_all("cache-control")
            .iter()
            .map(|v| String::from_utf8_lossy(v.as_bytes()).to_ascii_lowercase())
            .collect::<Vec<_>>()
            .join(",");
        let directives: Vec<String> = cc
            .split(',')
            .map(|d| d.trim().split('=').next().unwrap_or("").trim().to_string())
            .collect();
        let has = |d: &str| directives.iter().any(|x| x == d);
        assert!(!has("no-store"), "stored despite no-store: {cc}");
        assert!(!has("private"), "stored despite private: {cc}");
        assert!(
            !resp.headers.contains_key("set-cookie"),
            "stored a Set-Cookie response"
        );
        if input.authenticated {
            assert!(
                has("public") || has("s-maxage") || has("must-revalidate"),
                "stored an authenticated answer: {cc}"
            );
        }
    }
});
