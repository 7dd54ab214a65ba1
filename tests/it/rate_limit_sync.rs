//! `sync:` limits: three gateways share a real redis-server without a
//! Redis call per request; over-admission stays within the stated bound.

use crate::support::*;
use std::process::Command;
use std::time::{Duration, Instant};

fn gw(redis_url: &str, on_error: &str, up: &Upstream, requests: u32) -> Gateway {
    gateway(&format!(
        r#"
server: {{ listen: ["{{listen}}"] }}
admin: {{ listen: "{{admin}}" }}
logging: {{ access_log: off }}
upstreams: {{ svc: {{ targets: ["{}"] }} }}
redis: {{ url: "{redis_url}", on_error: {on_error}, timeout: 100ms }}
rate_limits:
  api: {{ requests: {requests}, per: 1m, backend: redis, key: "header:X-Client", sync: 100ms }}
routes:
  - {{ name: r, upstream: svc, rate_limit: api }}
"#,
        up.addr
    ))
}

/// Script calls Redis has served (`INFO commandstats`).
fn redis_script_calls(port: u16) -> u64 {
    let out = Command::new("redis-cli")
        .args(["-p", &port.to_string(), "INFO", "commandstats"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.starts_with("cmdstat_eval"))
        .filter_map(|l| {
            l.split("calls=")
                .nth(1)?
                .split(',')
                .next()?
                .parse::<u64>()
                .ok()
        })
        .sum()
}

#[test]
fn three_synced_instances_stay_within_the_over_admission_bound() {
    let redis = RedisServer::start();
    let up = Upstream::start("svc");
    let gws: Vec<Gateway> = (0..3)
        .map(|_| gw(&redis.url(), "allow", &up, 1000))
        .collect();
    // Windows are aligned to the clock: start with at least 20 s of one left.
    let probe = get_raw(gws[0].addr, "/x", "X-Client: probe\r\n");
    let reset: u64 = probe.header("x-ratelimit-reset").unwrap().parse().unwrap();
    if reset < 20 {
        std::thread::sleep(Duration::from_secs(reset + 1));
    }
    let calls_before = redis_script_calls(redis.port);
    let start = Instant::now();
    let results: Vec<(u64, u64)> = std::thread::scope(|s| {
        let handles: Vec<_> = gws
            .iter()
            .map(|g| {
                s.spawn(move || {
                    let c = client();
                    let (mut ok, mut total, mut refused_in_a_row) = (0u64, 0u64, 0);
                    let deadline = Instant::now() + Duration::from_secs(10);
                    while refused_in_a_row < 50 && Instant::now() < deadline {
                        let r = c
                            .get(g.url("/x"))
                            .header("X-Client", "fleet")
                            .send()
                            .unwrap();
                        total += 1;
                        if r.status() == 200 {
                            ok += 1;
                            refused_in_a_row = 0;
                        } else {
                            assert_eq!(r.status(), 429);
                            refused_in_a_row += 1;
                        }
                    }
                    (ok, total)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let secs = start.elapsed().as_secs_f64();
    let admitted: u64 = results.iter().map(|r| r.0).sum();
    let total: u64 = results.iter().map(|r| r.1).sum();
    // README: at most what the other nodes admit within two sync intervals.
    let rate = total as f64 / secs;
    let bound = (2.0 * 0.1 * rate).ceil() as u64;
    println!(
        "synced 1000/min over 3 nodes: admitted {admitted} of {total} in {secs:.2} s ({rate:.0} req/s); bound 1000 + {bound}"
    );
    assert!(
        admitted >= 1000,
        "admitted {admitted}: fewer than the limit"
    );
    assert!(
        admitted <= 1000 + bound,
        "admitted {admitted} > 1000 + {bound} ({results:?})"
    );
    // No Redis call per request: about one script call per node and sync.
    let calls = redis_script_calls(redis.port) - calls_before;
    let syncs = (secs / 0.1).ceil() as u64 + 2;
    println!("{calls} script calls for {total} requests");
    assert!(
        calls <= 3 * syncs,
        "{calls} script calls for {total} requests"
    );
}

#[test]
fn synced_limits_follow_on_error_when_redis_is_down() {
    let mut redis = RedisServer::start();
    let up = Upstream::start("svc");
    let deny = gw(&redis.url(), "deny", &up, 5);
    let allow = gw(&redis.url(), "allow", &up, 5);
    assert_eq!(get_raw(deny.addr, "/x", "X-Client: a\r\n").status, 200);
    redis.stop();
    // After the next failed sync, deny answers 503.
    assert!(eventually(Duration::from_secs(3), || {
        get_raw(deny.addr, "/x", "X-Client: a\r\n").status == 503
    }));
    // allow keeps counting locally: 5 pass, the 6th is refused.
    let statuses: Vec<u16> = (0..6)
        .map(|_| get_raw(allow.addr, "/x", "X-Client: b\r\n").status)
        .collect();
    assert_eq!(statuses, [200, 200, 200, 200, 200, 429]);
    let errors = metric(&scrape(&deny), "gatehouse_redis_errors_total", &[]);
    assert!(errors >= 1.0, "{errors}");
    redis.restart();
    assert!(eventually(Duration::from_secs(5), || {
        get_raw(deny.addr, "/x", "X-Client: c\r\n").status == 200
    }));
}
