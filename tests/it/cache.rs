//! Response caching through the real gateway (RFC 9111 / 9211).

use crate::support::*;
use std::time::Duration;

struct Env {
    gw: Gateway,
    up: Upstream,
}

fn env(extra_routes: &str) -> Env {
    let up = Upstream::start("origin");
    let gw = gateway(&format!(
        r#"
server: {{ listen: ["{{listen}}"] }}
admin: {{ listen: "{{admin}}", token: purge-token }}
upstreams: {{ origin: {{ targets: ["{}"] }} }}
cache: {{ max_size: 16MiB, default_ttl: 60s }}
auth: {{ hs: {{ type: jwt, algorithms: [HS256], secret: "cache-test-secret-0123456789abcdef" }} }}
routes:
  - {{ name: cached, match: {{ path_prefix: /c }}, upstream: origin, cache: true }}
  - {{ name: short, match: {{ path_prefix: /short }}, upstream: origin, cache: {{ ttl: 1s }} }}
  - {{ name: other, match: {{ path_prefix: /c, host: other.example }}, upstream: origin, cache: true }}
  - {{ name: authed, match: {{ path_prefix: /authed }}, upstream: origin, cache: true, auth: hs }}
  - {{ name: plain, match: {{ path_prefix: /plain }}, upstream: origin }}
{extra_routes}
"#,
        up.addr
    ));
    Env { gw, up }
}

fn get(gw: &Gateway, path: &str, extra: &str) -> RawResponse {
    get_raw(gw.addr, path, extra)
}

fn status(r: &RawResponse) -> &str {
    r.header("cache-status").unwrap_or("<none>")
}

fn n(r: &RawResponse) -> u64 {
    r.json()["n"].as_u64().unwrap_or(0)
}

#[test]
fn miss_then_hit_with_age() {
    let e = env("");
    let a = get(&e.gw, "/c/item?id=1", "");
    assert_eq!(a.status, 200);
    assert_eq!(status(&a), "gatehouse; fwd=miss; stored");
    let b = get(&e.gw, "/c/item?id=1", "");
    assert_eq!(b.status, 200);
    assert!(
        status(&b).starts_with("gatehouse; hit; ttl="),
        "{}",
        status(&b)
    );
    assert!(b.header("age").is_some(), "hits carry Age");
    assert_eq!(n(&a), n(&b), "same body");
    assert_eq!(e.up.hits(), 1);
    // The query is part of the key.
    let c = get(&e.gw, "/c/item?id=2", "");
    assert_eq!(status(&c), "gatehouse; fwd=miss; stored");
    // Uncached routes carry no Cache-Status.
    assert_eq!(get(&e.gw, "/plain/x", "").header("cache-status"), None);
}

#[test]
fn unsafe_methods_bypass_and_invalidate() {
    let e = env("");
    get(&e.gw, "/c/doc", "");
    assert!(status(&get(&e.gw, "/c/doc", "")).contains("hit"));
    let r = raw(e.gw.addr, b"POST /c/doc HTTP/1.1\r\nHost: test.local\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}").unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(status(&r), "gatehouse; fwd=method");
    assert_eq!(e.up.last().method, "POST");
    let after = get(&e.gw, "/c/doc", "");
    assert_eq!(
        status(&after),
        "gatehouse; fwd=miss; stored",
        "POST invalidated the entry"
    );
}

#[test]
fn response_directives_decide_storage() {
    let cases = [
        ("no-store", false),
        ("private", false),
        ("private, no-store", false),
        ("private, max-age=60", false),
        ("public, max-age=60", true),
        ("max-age=0", false),
    ];
    for (cc, stored) in cases {
        let e = env("");
        e.up.add_response_header("cache-control", cc);
        let a = get(&e.gw, "/c/x", "");
        assert_eq!(
            status(&a).contains("stored"),
            stored,
            "{cc}: {}",
            status(&a)
        );
        get(&e.gw, "/c/x", "");
        assert_eq!(e.up.hits(), if stored { 1 } else { 2 }, "{cc}");
    }
}

#[test]
fn set_cookie_vary_star_and_statuses_are_not_stored() {
    for (header, value) in [("set-cookie", "sid=1"), ("vary", "*")] {
        let e = env("");
        e.up.add_response_header(header, value);
        get(&e.gw, "/c/x", "");
        get(&e.gw, "/c/x", "");
        assert_eq!(e.up.hits(), 2, "{header}: {value}");
    }
    for (code, stored) in [
        (500, false),
        (302, false),
        (404, true),
        (410, true),
        (204, true),
    ] {
        let e = env("");
        e.up.set_status(code);
        get(&e.gw, "/c/x", "");
        get(&e.gw, "/c/x", "");
        assert_eq!(e.up.hits(), if stored { 1 } else { 2 }, "status {code}");
    }
}

#[test]
fn authorization_needs_public_or_s_maxage() {
    let e = env("");
    let token = mint(
        jsonwebtoken::Algorithm::HS256,
        "cache-test-secret-0123456789abcdef",
        claims("u"),
        None,
    );
    let auth = format!("Authorization: Bearer {token}\r\n");
    e.up.add_response_header("cache-control", "max-age=60");
    get(&e.gw, "/authed/a", &auth);
    get(&e.gw, "/authed/a", &auth);
    assert_eq!(
        e.up.hits(),
        2,
        "a plain max-age response to an authenticated request is not stored"
    );
    // Authorization on an open cached route: the same rule.
    get(&e.gw, "/c/a", "Authorization: Bearer whatever\r\n");
    get(&e.gw, "/c/a", "Authorization: Bearer whatever\r\n");
    assert_eq!(e.up.hits(), 4);
    e.up.clear_response_headers();
    e.up.add_response_header("cache-control", "public, max-age=60");
    get(&e.gw, "/authed/b", &auth);
    let r = get(&e.gw, "/authed/b", &auth);
    assert!(status(&r).contains("hit"), "{}", status(&r));
    // A hit still needs valid credentials.
    assert_eq!(get(&e.gw, "/authed/b", "").status, 401);
}

#[test]
fn freshness_s_maxage_and_route_ttl() {
    let e = env("");
    // No freshness from the upstream: the route's 1s TTL.
    get(&e.gw, "/short/a", "");
    assert!(status(&get(&e.gw, "/short/a", "")).contains("hit"));
    std::thread::sleep(Duration::from_millis(1300));
    let r = get(&e.gw, "/short/a", "");
    assert!(
        !status(&r).contains("hit"),
        "expired after the route ttl: {}",
        status(&r)
    );
    // Upstream freshness wins over the route ttl; s-maxage over max-age.
    e.up.add_response_header("cache-control", "max-age=0, s-maxage=60");
    get(&e.gw, "/short/b", "");
    std::thread::sleep(Duration::from_millis(1300));
    let r = get(&e.gw, "/short/b", "");
    assert!(
        status(&r).starts_with("gatehouse; hit; ttl=5"),
        "{}",
        status(&r)
    );
}

#[test]
fn vary_is_a_secondary_key() {
    let e = env("");
    e.up.add_response_header("vary", "Accept-Language");
    let en = get(&e.gw, "/c/v", "Accept-Language: en\r\n");
    let fr = get(&e.gw, "/c/v", "Accept-Language: fr\r\n");
    assert_ne!(n(&en), n(&fr), "fr did not get the en body");
    let en2 = get(&e.gw, "/c/v", "Accept-Language: en\r\n");
    assert!(status(&en2).contains("hit"), "{}", status(&en2));
    assert_eq!(n(&en2), n(&en));
    let fr2 = get(&e.gw, "/c/v", "Accept-Language: fr\r\n");
    assert_eq!(n(&fr2), n(&fr));
    assert_eq!(e.up.hits(), 2);
}

#[test]
fn stale_entries_revalidate_with_304() {
    let e = env("");
    e.up.set_etag("\"v1\"");
    e.up.add_response_header("cache-control", "max-age=1");
    let first = get(&e.gw, "/c/r", "");
    std::thread::sleep(Duration::from_millis(1300));
    // The 304 makes the entry fresh for a minute.
    e.up.clear_response_headers();
    e.up.add_response_header("cache-control", "max-age=60");
    let r = get(&e.gw, "/c/r", "");
    assert_eq!(r.status, 200);
    assert_eq!(status(&r), "gatehouse; fwd=stale; fwd-status=304");
    assert_eq!(e.up.last().header("if-none-match"), Some("\"v1\""));
    assert_eq!(n(&r), n(&first), "the stored body was served");
    // The refreshed entry is a plain hit again, its Age counted from the
    // revalidation.
    let upstream_hits = e.up.hits();
    let again = get(&e.gw, "/c/r", "");
    assert!(
        status(&again).starts_with("gatehouse; hit"),
        "{}",
        status(&again)
    );
    assert!(
        matches!(again.header("age"), Some("0" | "1")),
        "{:?}",
        again.header("age")
    );
    assert_eq!((n(&again), e.up.hits()), (n(&first), upstream_hits));
    // A client's no-cache forces revalidation of a fresh entry too.
    let r = get(&e.gw, "/c/r", "Cache-Control: no-cache\r\n");
    assert_eq!(status(&r), "gatehouse; fwd=stale; fwd-status=304");
}

#[test]
fn stale_while_revalidate_serves_at_once() {
    let e = env("");
    e.up.add_response_header("cache-control", "max-age=1, stale-while-revalidate=30");
    let first = get(&e.gw, "/c/swr", "");
    std::thread::sleep(Duration::from_millis(1300));
    e.up.set_delay(Duration::from_millis(500));
    let stale = get(&e.gw, "/c/swr", "");
    assert_eq!(n(&stale), n(&first), "the stale body was served");
    assert!(
        status(&stale).starts_with("gatehouse; hit; ttl=-"),
        "{}",
        status(&stale)
    );
    // The background refresh reaches the upstream.
    assert!(eventually(Duration::from_secs(5), || e.up.hits() >= 2));
}

#[test]
fn stale_if_error_covers_upstream_failures() {
    let e = env("");
    e.up.add_response_header("cache-control", "max-age=1, stale-if-error=60");
    let first = get(&e.gw, "/c/sie", "");
    std::thread::sleep(Duration::from_millis(1300));
    e.up.set_status(503);
    let r = get(&e.gw, "/c/sie", "");
    assert_eq!(r.status, 200, "stale served instead of the 503");
    assert_eq!(n(&r), n(&first));
    e.up.stop();
    let r = get(&e.gw, "/c/sie", "");
    assert_eq!(r.status, 200, "stale served while the upstream is down");
}

#[test]
fn concurrent_misses_make_one_upstream_request() {
    let e = env("");
    e.up.set_delay(Duration::from_millis(400));
    let addr = e.gw.addr;
    let threads: Vec<_> = (0..10)
        .map(|_| std::thread::spawn(move || get_raw(addr, "/c/lock", "")))
        .collect();
    let rs: Vec<RawResponse> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    assert!(rs.iter().all(|r| r.status == 200));
    assert_eq!(
        e.up.hits(),
        1,
        "the cache lock collapsed 10 misses into one fetch"
    );
    assert!(
        rs.iter().any(|r| status(r).contains("collapsed")),
        "{:?}",
        rs.iter().map(status).collect::<Vec<_>>()
    );
}

#[test]
fn keys_separate_hosts_and_routes() {
    let e = env("");
    get_raw(e.gw.addr, "/c/same", "");
    let r = raw(
        e.gw.addr,
        b"GET /c/same HTTP/1.1\r\nHost: other.example\r\nConnection: close\r\n\r\n",
    )
    .unwrap();
    assert_eq!(status(&r), "gatehouse; fwd=miss; stored");
    let r = raw(
        e.gw.addr,
        b"GET /c/same HTTP/1.1\r\nHost: OTHER.example:8080\r\nConnection: close\r\n\r\n",
    )
    .unwrap();
    assert!(
        status(&r).contains("hit"),
        "host is lower-cased and port-less in the key"
    );
    assert_eq!(e.up.hits(), 2);
}

#[test]
fn unkeyed_headers_cannot_poison() {
    let e = env("");
    let r = get(
        &e.gw,
        "/c/poison",
        "X-Forwarded-Host: evil.example\r\nX-Original-URL: /admin\r\nX-HTTP-Method-Override: DELETE\r\nForwarded: host=evil.example\r\n",
    );
    assert_eq!(r.status, 200);
    let seen = e.up.last();
    assert_eq!(seen.header("x-forwarded-host"), Some("test.local"));
    for h in ["x-original-url", "x-http-method-override", "forwarded"] {
        assert_eq!(
            seen.header(h),
            None,
            "{h} reached the upstream of a cached route"
        );
    }
    // A clean request gets the same (unpoisoned) entry.
    let clean = get(&e.gw, "/c/poison", "");
    assert!(status(&clean).contains("hit"));
    assert_eq!(clean.json()["headers"]["x-forwarded-host"], "test.local");
}

#[test]
fn error_responses_of_odd_requests_are_not_cached() {
    let e = env("");
    e.up.set_status(400);
    get(&e.gw, "/c/cpdos", "X-Oversized: aaaa\r\n");
    e.up.set_status(200);
    let r = get(&e.gw, "/c/cpdos", "");
    assert_eq!(r.status, 200, "the 400 was not stored");
}

/// A plain GET on a fresh entry is answered in `request_filter` from the
/// store; a request that needs a validator or a range goes through
/// Pingora's hit path. Both must give the same answer.
#[test]
fn fresh_hits_answer_like_pingoras_hit_path() {
    let e = env("");
    e.up.set_etag("\"v1\"");
    let first = get(&e.gw, "/c/fast?q=1", "");
    assert_eq!(status(&first), "gatehouse; fwd=miss; stored");
    let fast = get(&e.gw, "/c/fast?q=1", "");
    // A validator that matches nothing: Pingora's hit path, a full 200.
    let slow = get(&e.gw, "/c/fast?q=1", "If-None-Match: \"other\"\r\n");
    for r in [&fast, &slow] {
        assert_eq!(r.status, 200);
        assert!(
            status(r).starts_with("gatehouse; hit; ttl="),
            "{}",
            status(r)
        );
        assert_eq!(r.body, first.body);
    }
    // Same fields, apart from the per-request id and the clocks.
    let fields = |r: &RawResponse| {
        let mut v: Vec<(String, String)> = r
            .headers
            .iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
            .filter(|(k, _)| !["x-request-id", "age", "cache-status"].contains(&k.as_str()))
            .collect();
        v.sort();
        v
    };
    assert_eq!(fields(&fast), fields(&slow));
    assert!(fast.header("age").is_some() && fast.header("x-request-id").is_some());
    // Validators and ranges on a fresh entry still work.
    let not_modified = get(&e.gw, "/c/fast?q=1", "If-None-Match: \"v1\"\r\n");
    assert_eq!(not_modified.status, 304);
    let part = get(&e.gw, "/c/fast?q=1", "Range: bytes=0-3\r\n");
    assert_eq!(part.status, 206);
    assert_eq!(part.body, first.body[..4]);
    assert_eq!(e.up.hits(), 1, "every answer came from the store");
}

#[test]
fn head_after_get_is_a_hit() {
    let e = env("");
    let g = get(&e.gw, "/c/h", "");
    let r = raw_head(
        e.gw.addr,
        b"HEAD /c/h HTTP/1.1\r\nHost: test.local\r\nConnection: close\r\n\r\n",
    )
    .unwrap();
    assert_eq!(r.status, 200);
    assert!(status(&r).contains("hit"), "{}", status(&r));
    assert!(r.body.is_empty());
    assert_eq!(
        r.header("content-length")
            .map(|l| l.parse::<usize>().unwrap()),
        Some(g.body.len())
    );
    assert_eq!(e.up.hits(), 1);
}

#[test]
fn purge_by_path_and_host() {
    let e = env("");
    let c = client();
    for host in ["test.local", "other.example"] {
        raw(
            e.gw.addr,
            format!("GET /c/p?x=1 HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        );
        raw(
            e.gw.addr,
            format!("GET /c/p?x=2 HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        );
    }
    let r = c
        .post(e.gw.admin_url("/cache/purge?path=/c/p"))
        .send()
        .unwrap();
    assert_eq!(r.status(), 401, "the admin token is required");
    let purge = |q: &str| -> serde_json::Value {
        c.post(e.gw.admin_url(&format!("/cache/purge?{q}")))
            .bearer_auth("purge-token")
            .send()
            .unwrap()
            .json()
            .unwrap()
    };
    assert_eq!(purge("path=/c/p&host=other.example")["purged"], 2);
    assert!(
        status(&get(&e.gw, "/c/p?x=1", "")).contains("hit"),
        "test.local kept its entries"
    );
    assert_eq!(purge("path=/c/p%3Fx%3D1")["purged"], 1, "exact query");
    assert_eq!(purge("path=/c//p")["purged"], 1, "normalised like requests");
    assert_eq!(purge("path=/c/p")["purged"], 0);
    assert_eq!(
        status(&get(&e.gw, "/c/p?x=1", "")),
        "gatehouse; fwd=miss; stored"
    );
}

#[test]
fn memory_stays_under_max_size() {
    let up = Upstream::start("big");
    up.set_body(&vec![b'x'; 60_000]);
    let gw = gateway(&format!(
        "server: {{ listen: [\"{{listen}}\"] }}\nadmin: {{ listen: \"{{admin}}\" }}\nupstreams: {{ o: {{ targets: [\"{}\"] }} }}\n\
         cache: {{ max_size: 1MiB }}\nroutes: [{{ name: c, upstream: o, cache: true }}]\n",
        up.addr
    ));
    let bytes = |gw: &Gateway| metric(&scrape(gw), "gatehouse_cache_bytes", &[]);
    let mut max_seen = 0.0f64;
    // 200 distinct 60 kB objects: about 11x max_size.
    for i in 0..200 {
        let r = get_raw(gw.addr, &format!("/obj/{i}"), "");
        assert_eq!(r.status, 200);
        assert_eq!(r.body.len(), 60_000);
        if i % 20 == 19 {
            max_seen = max_seen.max(bytes(&gw));
        }
    }
    assert!(max_seen <= 1048576.0, "cache held {max_seen} bytes");
    assert!(max_seen > 500_000.0, "the cache was used: {max_seen}");
    let entries = metric(&scrape(&gw), "gatehouse_cache_entries", &[]);
    assert!(entries > 5.0 && entries < 20.0, "{entries}");
    // The most recent object is still there; the first was evicted.
    assert!(get_raw(gw.addr, "/obj/199", "")
        .header("cache-status")
        .unwrap()
        .contains("hit"));
    assert!(get_raw(gw.addr, "/obj/0", "")
        .header("cache-status")
        .unwrap()
        .contains("miss"));
}

#[test]
fn lookups_are_counted_and_logged() {
    let e = env("");
    get(&e.gw, "/c/m", "");
    get(&e.gw, "/c/m", "");
    raw(
        e.gw.addr,
        b"DELETE /c/m HTTP/1.1\r\nHost: test.local\r\nConnection: close\r\n\r\n",
    );
    let m = scrape(&e.gw);
    assert_eq!(
        metric(
            &m,
            "gatehouse_cache_lookups_total",
            &[("route", "cached"), ("result", "miss")]
        ),
        1.0
    );
    assert_eq!(
        metric(
            &m,
            "gatehouse_cache_lookups_total",
            &[("route", "cached"), ("result", "hit")]
        ),
        1.0
    );
    assert_eq!(
        metric(
            &m,
            "gatehouse_cache_lookups_total",
            &[("route", "cached"), ("result", "method")]
        ),
        1.0
    );
}

#[test]
fn errors_on_cached_routes_carry_cache_status() {
    let e = env("");
    let r = get(&e.gw, "/authed/x", "");
    assert_eq!(r.status, 401);
    assert!(r.header("cache-status").is_some());
    e.up.stop();
    let r = get(&e.gw, "/c/down", "");
    assert_eq!(r.status, 502);
    assert_eq!(status(&r), "gatehouse; fwd=miss");
}
