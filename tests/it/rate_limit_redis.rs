//! Cluster-wide rate limiting through a real redis-server shared by two
//! gateways, and what happens when Redis fails.

use crate::support::*;
use std::time::Duration;

fn gw(redis_url: &str, on_error: &str, up: &Upstream, requests: u32) -> Gateway {
    gateway(&format!(
        r#"
server: {{ listen: ["{{listen}}"] }}
admin: {{ listen: "{{admin}}" }}
upstreams: {{ svc: {{ targets: ["{}"] }} }}
redis: {{ url: "{redis_url}", on_error: {on_error}, timeout: 100ms }}
rate_limits:
  shared: {{ requests: {requests}, per: 1m, backend: redis, key: "header:X-Client" }}
routes:
  - {{ name: r, upstream: svc, rate_limit: shared }}
"#,
        up.addr
    ))
}

fn send(g: &Gateway, client: &str) -> RawResponse {
    get_raw(g.addr, "/x", &format!("X-Client: {client}\r\n"))
}

#[test]
fn two_instances_share_one_exact_limit() {
    let redis = RedisServer::start();
    let up = Upstream::start("svc");
    let a = gw(&redis.url(), "allow", &up, 10);
    let b = gw(&redis.url(), "allow", &up, 10);
    let mut ok = 0;
    for i in 0..30 {
        let g = if i % 2 == 0 { &a } else { &b };
        let r = send(g, "alice");
        if r.status == 200 {
            ok += 1;
            assert_eq!(
                r.header("x-ratelimit-remaining"),
                Some((10 - ok).to_string().as_str())
            );
        } else {
            assert_eq!(r.status, 429);
            let reset: u64 = r.header("retry-after").unwrap().parse().unwrap();
            assert!((1..=60).contains(&reset));
        }
    }
    assert_eq!(ok, 10);
    // Another key has its own budget.
    assert_eq!(send(&b, "bob").status, 200);
}

#[test]
fn concurrent_bursts_across_instances_stay_exact() {
    let redis = RedisServer::start();
    let up = Upstream::start("svc");
    let a = gw(&redis.url(), "allow", &up, 40);
    let b = gw(&redis.url(), "allow", &up, 40);
    let addrs = [a.addr, b.addr];
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let addr = addrs[t % 2];
            std::thread::spawn(move || {
                (0..20)
                    .filter(|_| get_raw(addr, "/x", "X-Client: burst\r\n").status == 200)
                    .count()
            })
        })
        .collect();
    let ok: usize = threads.into_iter().map(|t| t.join().unwrap()).sum();
    assert_eq!(ok, 40, "160 concurrent requests through two instances");
    assert_eq!(up.hits(), 40);
}

#[test]
fn redis_down_allow_serves_and_counts_errors_then_recovers() {
    let mut redis = RedisServer::start();
    let up = Upstream::start("svc");
    let g = gw(&redis.url(), "allow", &up, 3);
    for _ in 0..3 {
        assert_eq!(send(&g, "carol").status, 200);
    }
    assert_eq!(send(&g, "carol").status, 429);
    redis.stop();
    for _ in 0..5 {
        let r = send(&g, "carol");
        assert_eq!(r.status, 200, "fail open");
        assert_eq!(
            r.header("x-ratelimit-limit"),
            None,
            "no limit could be checked"
        );
    }
    assert!(metric(&scrape(&g), "gatehouse_redis_errors_total", &[]) >= 5.0);
    // Redis comes back (empty): limiting resumes by itself.
    redis.restart();
    assert!(eventually(Duration::from_secs(10), || send(&g, "dave")
        .header("x-ratelimit-limit")
        == Some("3")));
    assert!(eventually(Duration::from_secs(5), || send(&g, "dave")
        .status
        == 429));
}

#[test]
fn redis_down_deny_answers_503() {
    let mut redis = RedisServer::start();
    let up = Upstream::start("svc");
    let g = gw(&redis.url(), "deny", &up, 100);
    assert_eq!(send(&g, "erin").status, 200);
    redis.stop();
    let r = send(&g, "erin");
    assert_eq!(r.status, 503);
    assert_eq!(r.header("retry-after"), Some("1"));
    assert_eq!(
        r.json()["type"],
        "urn:gatehouse:problem:rate-limit-unavailable"
    );
    redis.restart();
    assert!(eventually(Duration::from_secs(10), || send(&g, "erin")
        .status
        == 200));
}

#[test]
fn a_hung_redis_does_not_hang_requests() {
    // Redis that accepts connections and never answers: every call must
    // give up after `redis.timeout` (100 ms) and follow `on_error`.
    let silent = Silent::start();
    let up = Upstream::start("svc");
    let g = gw(&format!("redis://{}", silent.addr), "allow", &up, 5);
    let client = reqwest::blocking::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(5)) // far above the configured bound
        .build()
        .unwrap();
    for _ in 0..5 {
        let r = client
            .get(g.url("/x"))
            .header("X-Client", "frank")
            .send()
            .expect("answered despite the hung Redis");
        assert_eq!(r.status(), 200);
    }
    assert!(silent.connections() >= 1, "the gateway did try Redis");
    let g2 = gw(&format!("redis://{}", silent.addr), "deny", &up, 5);
    let r = client
        .get(g2.url("/x"))
        .header("X-Client", "frank")
        .send()
        .unwrap();
    assert_eq!(r.status(), 503);
}
