//! Hot reload in-process: what carries over, what restarts, and requests in
//! flight finishing on the rules they started with.

use crate::support::*;
use gatehouse::bench::apply;
use std::time::Duration;

fn cfg(gw: &Gateway, text: &str) -> gatehouse::config::Config {
    let mut text = text
        .replace("{listen}", &gw.addr.to_string())
        .replace("{admin}", &gw.admin.unwrap().to_string());
    text.push_str("\nlogging: { access_log: off, level: warn }\n");
    gatehouse::config::load_str(&text).unwrap()
}

fn targets(gw: &Gateway) -> serde_json::Value {
    gw.admin_json("/upstreams")
}

#[test]
fn unchanged_upstreams_keep_their_health_and_changed_ones_restart() {
    let a = Upstream::start("a");
    let b = Upstream::start("b");
    b.set_health(500);
    let base = format!(
        "server: {{ listen: [\"{{listen}}\"] }}\nadmin: {{ listen: \"{{admin}}\" }}\nupstreams:\n  pool: {{ targets: [\"{}\", \"{}\"], health_check: {{ path: /health, interval: 200ms, unhealthy_after: 1 }} }}\nroutes:\n  - {{ name: r, upstream: pool }}\n",
        a.addr, b.addr
    );
    let gw = gateway(&base);
    assert!(eventually(Duration::from_secs(5), || targets(&gw)["pool"]
        ["targets"][1]["healthy"]
        == false));
    // An unrelated change: the pool is kept, so b stays out at once.
    let report = apply(
        &gw.state,
        cfg(
            &gw,
            &format!("{base}  - {{ name: extra, match: {{ path: /extra }}, upstream: pool }}\n"),
        ),
    )
    .unwrap();
    assert_eq!(report.generation, 2);
    assert_eq!(
        targets(&gw)["pool"]["targets"][1]["healthy"],
        false,
        "no flap back to healthy"
    );
    assert_eq!(targets(&gw)["pool"]["ready"], true);
    for _ in 0..10 {
        assert_eq!(get_raw(gw.addr, "/x", "").header("x-upstream"), Some("a"));
    }
    // Changing the pool builds a new one, which must check before it is ready.
    let changed = base.replace("interval: 200ms", "interval: 250ms");
    apply(&gw.state, cfg(&gw, &changed)).unwrap();
    assert!(eventually(Duration::from_secs(5), || targets(&gw)["pool"]
        ["targets"][1]["healthy"]
        == false));
}

#[test]
fn requests_in_flight_finish_on_their_snapshot() {
    let slow = Upstream::start("slow");
    slow.set_delay(Duration::from_millis(800));
    let base = format!(
        "server: {{ listen: [\"{{listen}}\"] }}\nadmin: {{ listen: \"{{admin}}\" }}\nupstreams: {{ s: {{ targets: [\"{}\"] }} }}\nroutes:\n  - {{ name: old, match: {{ path_prefix: /old }}, upstream: s }}\n",
        slow.addr
    );
    let gw = gateway(&base);
    let addr = gw.addr;
    let t = std::thread::spawn(move || get_raw(addr, "/old/x", "").status);
    assert!(eventually(Duration::from_secs(5), || slow.hits() == 1));
    apply(&gw.state, cfg(&gw, &base.replace("/old", "/new"))).unwrap();
    assert_eq!(
        t.join().unwrap(),
        200,
        "the request that started on the old routes finished"
    );
    assert_eq!(get_raw(gw.addr, "/old/x", "").status, 404);
}

#[test]
fn rate_limit_counts_survive_a_reload() {
    let up = Upstream::start("u");
    let base = format!(
        "server: {{ listen: [\"{{listen}}\"] }}\nadmin: {{ listen: \"{{admin}}\" }}\nupstreams: {{ s: {{ targets: [\"{}\"] }} }}\nrate_limits: {{ two: {{ requests: 2, per: 1m }} }}\nroutes:\n  - {{ name: r, upstream: s, rate_limit: two }}\n",
        up.addr
    );
    let gw = gateway(&base);
    assert_eq!(get_raw(gw.addr, "/", "").status, 200);
    assert_eq!(get_raw(gw.addr, "/", "").status, 200);
    apply(
        &gw.state,
        cfg(
            &gw,
            &format!("{base}  - {{ name: other, match: {{ path: /o }}, upstream: s }}\n"),
        ),
    )
    .unwrap();
    assert_eq!(
        get_raw(gw.addr, "/", "").status,
        429,
        "a reload is no way around a limit"
    );
}

#[test]
fn jwks_keys_carry_over_an_unchanged_provider() {
    let idp = Upstream::start("idp");
    let all: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture("jwks_all.json")).unwrap()).unwrap();
    idp.set_body(
        serde_json::json!({"keys": [all["rsa1"]]})
            .to_string()
            .as_bytes(),
    );
    let up = Upstream::start("u");
    let base = format!(
        "server: {{ listen: [\"{{listen}}\"] }}\nadmin: {{ listen: \"{{admin}}\" }}\nupstreams: {{ s: {{ targets: [\"{}\"] }} }}\n\
         auth: {{ idp: {{ type: jwt, algorithms: [RS256], jwks: {{ url: \"http://{}/jwks\", refresh: 10m }} }} }}\nroutes:\n  - {{ name: r, upstream: s, auth: idp }}\n",
        up.addr, idp.addr
    );
    let gw = gateway(&base);
    let token = mint(
        jsonwebtoken::Algorithm::RS256,
        "rsa1",
        claims("x"),
        Some("rsa1"),
    );
    let auth = format!("Authorization: Bearer {token}\r\n");
    assert!(eventually(Duration::from_secs(5), || get_raw(
        gw.addr, "/", &auth
    )
    .status
        == 200));
    let fetches = idp.hits();
    idp.stop(); // the IdP is down during the reload
    apply(
        &gw.state,
        cfg(
            &gw,
            &format!("{base}  - {{ name: other, match: {{ path: /o }}, upstream: s }}\n"),
        ),
    )
    .unwrap();
    assert_eq!(get_raw(gw.addr, "/", &auth).status, 200, "keys were kept");
    assert_eq!(idp.hits(), fetches);
}
