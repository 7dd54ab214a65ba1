//! Resilient upstreams: passive ejection, retries beyond connect failures
//! with their budget, `max_inflight` and `least_request`, against real
//! upstreams that answer 5xx, close the connection or hang.

use crate::support::*;
use std::collections::HashMap;
use std::time::{Duration, Instant};

fn gw_for(pool: &str) -> Gateway {
    gateway(&format!(
        "server: {{ listen: [\"{{listen}}\"] }}\nadmin: {{ listen: \"{{admin}}\" }}\nupstreams:\n  pool:\n{pool}\nroutes:\n  - {{ name: all, upstream: pool }}\n"
    ))
}

fn targets(ups: &[&Upstream]) -> String {
    let list: Vec<String> = ups.iter().map(|u| format!("\"{}\"", u.addr)).collect();
    format!("    targets: [{}]\n", list.join(", "))
}

fn pool_metric(gw: &Gateway, name: &str, extra: &[(&str, &str)]) -> f64 {
    let mut labels = vec![("upstream", "pool")];
    labels.extend_from_slice(extra);
    metric(&scrape(gw), name, &labels)
}

fn ejected_until(gw: &Gateway, u: &Upstream) -> Option<String> {
    gw.admin_json("/upstreams")["pool"]["targets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["addr"] == u.addr.to_string())
        .and_then(|t| t["ejected_until"].as_str().map(str::to_string))
}

#[test]
fn a_failing_target_is_ejected_then_readmitted_for_twice_as_long() {
    let (good1, good2, bad) = (
        Upstream::start("g1"),
        Upstream::start("g2"),
        Upstream::start("bad"),
    );
    bad.set_status(500);
    let gw = gw_for(&format!(
        "{}    passive_health: {{ consecutive_failures: 3, eject_for: 1s, max_ejected: 50% }}\n",
        targets(&[&good1, &good2, &bad])
    ));
    let c = client();
    let get = || c.get(gw.url("/x")).send().unwrap().status().as_u16();
    // Round robin: every third request meets the bad target; its third
    // 500 in a row ejects it.
    while bad.hits() < 3 {
        get();
    }
    let ejected_at = Instant::now();
    assert!(ejected_until(&gw, &bad).is_some());
    assert_eq!(
        pool_metric(&gw, "gatehouse_upstream_ejections_total", &[]),
        1.0
    );
    let during: Vec<u16> = (0..30).map(|_| get()).collect();
    assert!(during.iter().all(|s| *s == 200), "no 500 while ejected");
    assert_eq!(bad.hits(), 3);
    // Re-admitted after eject_for: it takes traffic again.
    while bad.hits() == 3 {
        get();
        std::thread::sleep(Duration::from_millis(20));
    }
    let readmitted = ejected_at.elapsed();
    eprintln!("first ejection (eject_for 1s): traffic again after {readmitted:?}");
    assert!(
        readmitted >= Duration::from_millis(950),
        "re-admitted after {readmitted:?}"
    );
    // Back on probation, one more failure ejects it for 2 s (the second
    // ejection in a row).
    while bad.hits() < 4 {
        get();
    }
    let second = Instant::now();
    assert_eq!(
        pool_metric(&gw, "gatehouse_upstream_ejections_total", &[]),
        2.0
    );
    let until = ejected_until(&gw, &bad).expect("ejected again");
    let until = httpdate_rfc3339(&until);
    let length = until
        .duration_since(std::time::SystemTime::now())
        .unwrap_or_default();
    assert!(
        length > Duration::from_millis(1500),
        "second ejection lasts 2 s, {length:?} left"
    );
    while bad.hits() == 4 {
        get();
        std::thread::sleep(Duration::from_millis(20));
    }
    eprintln!(
        "second ejection in a row: traffic again after {:?}",
        second.elapsed()
    );
    assert!(
        second.elapsed() >= Duration::from_millis(1900),
        "{:?}",
        second.elapsed()
    );
}

/// Parses `2026-12-01T23:59:01.123Z` (what `/upstreams` shows).
fn httpdate_rfc3339(s: &str) -> std::time::SystemTime {
    let (date, time) = s.trim_end_matches('Z').split_once('T').unwrap();
    let d: Vec<i64> = date.split('-').map(|x| x.parse().unwrap()).collect();
    let (hms, ms) = time.split_once('.').unwrap_or((time, "0"));
    let t: Vec<u64> = hms.split(':').map(|x| x.parse().unwrap()).collect();
    // Days from civil (Howard Hinnant).
    let (y, m) = if d[1] <= 2 {
        (d[0] - 1, d[1] + 9)
    } else {
        (d[0], d[1] - 3)
    };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * m + 2) / 5 + d[2] - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = (era * 146_097 + doe - 719_468) as u64;
    let secs = days * 86_400 + t[0] * 3600 + t[1] * 60 + t[2];
    std::time::UNIX_EPOCH + Duration::from_secs(secs) + Duration::from_millis(ms.parse().unwrap())
}

#[test]
fn max_ejected_keeps_targets_in_rotation() {
    let (a, b) = (Upstream::start("a"), Upstream::start("b"));
    a.set_status(503);
    b.set_status(503);
    let gw = gw_for(&format!(
        "{}    passive_health: {{ consecutive_failures: 1, eject_for: 30s, max_ejected: 50% }}\n",
        targets(&[&a, &b])
    ));
    for _ in 0..20 {
        client().get(gw.url("/x")).send().unwrap();
    }
    // 50% of two targets: one may be ejected, never both.
    assert_eq!(
        pool_metric(&gw, "gatehouse_upstream_ejections_total", &[]),
        1.0
    );
    assert!(a.hits() + b.hits() == 20 && a.hits().min(b.hits()) == 1);
}

const RETRYING: &str = "    retries: 2\n    retry_on: [connect, reset, timeout, 502, 503, 504]\n";

#[test]
fn retries_hide_a_bad_target_from_get_clients() {
    let (g1, g2, bad) = (
        Upstream::start("g1"),
        Upstream::start("g2"),
        Upstream::start("bad"),
    );
    bad.set_reset(true);
    let gw = gw_for(&format!(
        "{}{RETRYING}    passive_health: {{ consecutive_failures: 3, eject_for: 30s }}\n",
        targets(&[&g1, &g2, &bad])
    ));
    let c = client();
    let errors = (0..1000)
        .filter(|_| c.get(gw.url("/x")).send().unwrap().status() != 200)
        .count();
    assert_eq!(errors, 0, "client errors over 1,000 GETs");
    assert_eq!(g1.hits() + g2.hits(), 1000);
    let retried = pool_metric(
        &gw,
        "gatehouse_upstream_retries_total",
        &[("reason", "reset")],
    );
    // Three failures in a row eject it; each was retried (the default
    // budget always allows 3 retries a second).
    assert_eq!((retried, bad.hits()), (3.0, 3));
}

#[test]
fn statuses_and_timeouts_are_retried_on_another_target() {
    let (good, bad, hang) = (
        Upstream::start("good"),
        Upstream::start("bad"),
        Upstream::start("hang"),
    );
    bad.set_status(503);
    hang.set_delay(Duration::from_secs(3));
    for (failing, reason) in [(&bad, "503"), (&hang, "timeout")] {
        let gw = gw_for(&format!(
            "{}{RETRYING}    read_timeout: 300ms\n    retry_budget: 100%\n",
            targets(&[failing, &good])
        ));
        let c = client();
        for _ in 0..6 {
            let r = c.get(gw.url("/x")).send().unwrap();
            assert_eq!(r.status(), 200);
            assert_eq!(r.headers()["x-upstream"], "good");
        }
        let retries = pool_metric(
            &gw,
            "gatehouse_upstream_retries_total",
            &[("reason", reason)],
        );
        assert!(retries >= 1.0, "retried after {reason}");
        assert_eq!(
            retries as usize,
            failing.hits(),
            "every failed attempt was retried"
        );
    }
}

#[test]
fn post_is_not_retried_after_it_was_sent() {
    let (good, bad) = (Upstream::start("good"), Upstream::start("bad"));
    bad.set_status(503);
    let gw = gw_for(&format!("{}{RETRYING}", targets(&[&good, &bad])));
    let c = client();
    let statuses: Vec<u16> = (0..20)
        .map(|_| {
            c.post(gw.url("/x"))
                .body("order")
                .send()
                .unwrap()
                .status()
                .as_u16()
        })
        .collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == 503).count(),
        10,
        "{statuses:?}"
    );
    assert_eq!(good.hits() + bad.hits(), 20, "each POST was sent once");
    // The same upstream with `retry_methods: all` retries them.
    let gw = gw_for(&format!(
        "{}{RETRYING}    retry_methods: all\n    retry_budget: 100%\n",
        targets(&[&good, &bad])
    ));
    for _ in 0..10 {
        assert_eq!(
            c.post(gw.url("/x")).body("order").send().unwrap().status(),
            200
        );
    }
}

#[test]
fn the_budget_caps_retries_when_every_target_fails() {
    let ups: Vec<Upstream> = (0..3).map(|i| Upstream::start(&format!("u{i}"))).collect();
    for u in &ups {
        u.set_status(503);
    }
    let gw = gw_for(&format!(
        "{}{RETRYING}    retry_budget: 20%\n",
        targets(&[&ups[0], &ups[1], &ups[2]])
    ));
    let c = client();
    let start = Instant::now();
    for _ in 0..300 {
        let r = c.get(gw.url("/x")).send().unwrap();
        assert_eq!(
            r.status(),
            503,
            "the upstream's answer goes to the client as it is"
        );
    }
    let secs = start.elapsed().as_secs() + 1;
    let sent: usize = ups.iter().map(|u| u.hits()).sum();
    let retries = sent - 300;
    // 20% of the requests, plus 3 per second always allowed.
    assert!(
        retries as u64 <= 60 + 3 * secs,
        "{retries} retries for 300 requests in {secs} s"
    );
    assert!(pool_metric(&gw, "gatehouse_upstream_retry_budget_exhausted_total", &[]) > 0.0);
    let counted: f64 = pool_metric(
        &gw,
        "gatehouse_upstream_retries_total",
        &[("reason", "503")],
    );
    assert_eq!(counted as usize, retries);
}

#[test]
fn over_max_inflight_the_answer_is_503_at_once() {
    let slow = Upstream::start("slow");
    slow.set_delay(Duration::from_millis(800));
    let gw = gw_for(&format!("{}    max_inflight: 2\n", targets(&[&slow])));
    let url = gw.url("/x");
    let first: Vec<_> = (0..2)
        .map(|_| {
            let url = url.clone();
            std::thread::spawn(move || client().get(url).send().unwrap().status().as_u16())
        })
        .collect();
    assert!(eventually(Duration::from_secs(2), || slow.hits() == 2));
    for _ in 0..4 {
        let r = client().get(&url).send().unwrap();
        assert_eq!(r.status(), 503);
        assert_eq!(r.headers()["retry-after"], "1");
        let body: serde_json::Value = r.json().unwrap();
        assert!(body["type"]
            .as_str()
            .unwrap()
            .ends_with("upstream-overloaded"));
    }
    assert_eq!(slow.hits(), 2, "nothing was sent upstream over the limit");
    for t in first {
        assert_eq!(t.join().unwrap(), 200);
    }
    assert_eq!(
        pool_metric(&gw, "gatehouse_upstream_overloaded_total", &[]),
        4.0
    );
}

#[test]
fn least_request_sends_most_traffic_to_the_faster_target() {
    let (fast, slow) = (Upstream::start("fast"), Upstream::start("slow"));
    slow.set_delay(Duration::from_millis(100));
    let gw = gw_for(&format!(
        "{}    balance: least_request\n",
        targets(&[&fast, &slow])
    ));
    let url = gw.url("/x");
    let workers: Vec<_> = (0..8)
        .map(|_| {
            let url = url.clone();
            std::thread::spawn(move || {
                let c = client();
                let mut seen: HashMap<String, usize> = HashMap::new();
                for _ in 0..25 {
                    let r = c.get(&url).send().unwrap();
                    *seen
                        .entry(r.headers()["x-upstream"].to_str().unwrap().into())
                        .or_default() += 1;
                }
                seen
            })
        })
        .collect();
    let mut total: HashMap<String, usize> = HashMap::new();
    for w in workers {
        for (k, v) in w.join().unwrap() {
            *total.entry(k).or_default() += v;
        }
    }
    let fast_share = total["fast"] as f64 / 200.0;
    assert!(fast_share > 0.75, "fast target got {total:?}");
}

#[test]
fn bodies_up_to_64k_are_replayed_on_retry_and_larger_ones_are_not_retried() {
    let (bad, good) = (Upstream::start("bad"), Upstream::start("good"));
    bad.set_status(503);
    let gw = gw_for(&format!(
        "{}{RETRYING}    retry_budget: 100%\n",
        targets(&[&bad, &good])
    ));
    let c = client();
    let body: Vec<u8> = (0..60 * 1024).map(|i| (i % 251) as u8).collect();
    for _ in 0..4 {
        let r = c.put(gw.url("/x")).body(body.clone()).send().unwrap();
        assert_eq!(r.status(), 200);
    }
    assert!(bad.hits() >= 1, "some PUTs met the bad target first");
    assert!(
        good.requests().iter().all(|r| r.body == body),
        "the replayed body is whole"
    );
    // Over 64 KiB the body cannot be replayed: the 503 goes to the client.
    let big = vec![b'x'; 100 * 1024];
    let statuses: Vec<u16> = (0..4)
        .map(|_| {
            c.put(gw.url("/x"))
                .body(big.clone())
                .send()
                .unwrap()
                .status()
                .as_u16()
        })
        .collect();
    assert!(statuses.contains(&503), "{statuses:?}");
}

/// An upstream that answers a head and part of its body, then closes: the
/// client has seen the response start, so it is never retried.
#[test]
fn nothing_is_retried_once_the_response_has_started() {
    use std::io::{BufRead, BufReader, Write};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let served = Arc::new(AtomicUsize::new(0));
    let count = served.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            count.fetch_add(1, Ordering::SeqCst);
            let mut r = BufReader::new(conn.try_clone().unwrap());
            let mut line = String::new();
            while r.read_line(&mut line).is_ok_and(|n| n > 2) {
                line.clear();
            }
            let mut w = conn;
            let _ = w.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\npartial");
            let _ = w.flush();
            // The head and the first bytes travel alone (a slow upstream):
            // the client must still get them when the reset comes.
            std::thread::sleep(std::time::Duration::from_millis(200));
            // Dropped here: a reset halfway through the body.
        }
    });
    // A retry after a reset would go to this same target (no other is
    // there), so a second connection would show it.
    let gw = gw_for(&format!(
        "    targets: [\"{addr}\"]\n{RETRYING}    retry_budget: 100%\n"
    ));
    let r = raw(
        gw.addr,
        b"GET /x HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
    );
    let r = r.expect("the response head reached the client");
    assert_eq!(r.status, 200);
    // What arrived is the cut body (the harness pads a short read with
    // zeros), never another target's answer.
    assert!(r.body.starts_with(b"partial") && r.body[7..].iter().all(|b| *b == 0));
    assert_eq!(
        served.load(Ordering::SeqCst),
        1,
        "no retry after the first byte"
    );
}
