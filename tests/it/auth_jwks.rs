//! JWKS from a URL: start-up, rotation, unknown-kid floods, IdP outages,
//! and URLs inside tokens that must never be fetched.

use crate::support::*;
use jsonwebtoken::Algorithm::*;
use std::time::Duration;

fn jwks_doc(names: &[&str]) -> String {
    let all: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture("jwks_all.json")).unwrap()).unwrap();
    let keys: Vec<_> = names.iter().map(|n| all[*n].clone()).collect();
    serde_json::json!({ "keys": keys }).to_string()
}

/// The gateway and its (kept alive) upstream.
fn setup(idp: &Upstream, refresh: &str) -> (Gateway, Upstream) {
    let svc = Upstream::start("svc");
    let gw = gateway(&format!(
        r#"
server: {{ listen: ["{{listen}}"] }}
upstreams:
  svc: {{ targets: ["{svc}"] }}
auth:
  idp:
    type: jwt
    algorithms: [RS256, ES256]
    jwks: {{ url: "http://{idp}/.well-known/jwks.json", refresh: {refresh} }}
    forward_claims: {{ sub: X-User-Id }}
    token_cache: {{ entries: 0 }}
routes:
  - {{ name: r, upstream: svc, auth: idp }}
"#,
        svc = svc.addr,
        idp = idp.addr,
    ));
    (gw, svc)
}

/// Fetch attempts of the `idp` provider so far.
fn fetches(gw: &Gateway) -> usize {
    let snap = gw.state.snapshots.load();
    match &snap.providers["idp"].kind {
        gatehouse::bench::ProviderKind::Jwt(j) => j.remote().unwrap().fetch_count(),
        _ => unreachable!(),
    }
}

fn status(gw: &Gateway, token: &str) -> u16 {
    get_raw(gw.addr, "/x", &format!("Authorization: Bearer {token}\r\n")).status
}

#[test]
fn keys_are_fetched_at_start_and_rotation_is_picked_up_at_once() {
    let idp = Upstream::start("idp");
    idp.set_body(jwks_doc(&["rsa1"]).as_bytes());
    let (gw, _svc) = setup(&idp, "10m");
    let t1 = mint(RS256, "rsa1", claims("alice"), Some("rsa1"));
    assert!(eventually(Duration::from_secs(5), || status(&gw, &t1) == 200));
    assert_eq!(idp.requests()[0].target, "/.well-known/jwks.json");
    // The IdP rotates to rsa2; a token with the new kid triggers a refetch
    // even though the periodic refresh is 10 minutes away.
    idp.set_body(jwks_doc(&["rsa2"]).as_bytes());
    std::thread::sleep(gatehouse::bench::MIN_REFETCH);
    let t2 = mint(RS256, "rsa2", claims("bob"), Some("rsa2"));
    assert_eq!(status(&gw, &t2), 200);
    // rsa1 is gone from the new set.
    assert_eq!(status(&gw, &t1), 401);
}

#[test]
fn an_unknown_kid_flood_does_not_hammer_the_idp() {
    let idp = Upstream::start("idp");
    idp.set_body(jwks_doc(&["rsa1"]).as_bytes());
    let (gw, _svc) = setup(&idp, "10m");
    let good = mint(RS256, "rsa1", claims("alice"), Some("rsa1"));
    assert!(eventually(Duration::from_secs(5), || status(&gw, &good) == 200));
    let before = idp.hits();
    let start = std::time::Instant::now();
    let mut threads = Vec::new();
    for t in 0..4 {
        let addr = gw.addr;
        threads.push(std::thread::spawn(move || {
            for i in 0..50 {
                let tok = mint(
                    RS256,
                    "rsa2",
                    claims("mallory"),
                    Some(&format!("random-{t}-{i}")),
                );
                let r = get_raw(addr, "/x", &format!("Authorization: Bearer {tok}\r\n"));
                assert_eq!(r.status, 401);
            }
        }));
    }
    for t in threads {
        t.join().unwrap();
    }
    let elapsed = start.elapsed().as_secs_f64();
    let fetches = idp.hits() - before;
    // At most one refetch per MIN_REFETCH window (plus the one at the start of the flood).
    let allowed = 1 + (elapsed / gatehouse::bench::MIN_REFETCH.as_secs_f64()).ceil() as usize;
    assert!(
        fetches <= allowed,
        "200 unknown-kid tokens caused {fetches} fetches in {elapsed:.1}s"
    );
}

#[test]
fn an_idp_outage_keeps_the_last_good_keys() {
    let idp = Upstream::start("idp");
    idp.set_body(jwks_doc(&["rsa1", "ec256"]).as_bytes());
    let (gw, _svc) = setup(&idp, "300ms");
    let t = mint(ES256, "ec256", claims("carol"), Some("ec256"));
    assert!(eventually(Duration::from_secs(5), || status(&gw, &t) == 200));
    idp.stop();
    let before = fetches(&gw);
    std::thread::sleep(Duration::from_millis(1200));
    assert!(
        fetches(&gw) >= before + 2,
        "refreshes kept trying during the outage"
    );
    assert_eq!(status(&gw, &t), 200, "last good keys kept");
    // A broken document is no better than an outage.
    idp.set_body(b"{not json");
    idp.restart();
    std::thread::sleep(Duration::from_millis(800));
    assert_eq!(status(&gw, &t), 200);
}

#[test]
fn before_the_first_fetch_requests_get_503() {
    let idp = Upstream::start("idp");
    idp.stop(); // the IdP is down at start
    let (gw, _svc) = setup(&idp, "300ms");
    let t = mint(RS256, "rsa1", claims("dave"), Some("rsa1"));
    let r = get_raw(gw.addr, "/x", &format!("Authorization: Bearer {t}\r\n"));
    assert_eq!(r.status, 503);
    assert_eq!(r.header("retry-after"), Some("5"));
    assert_eq!(r.json()["type"], "urn:gatehouse:problem:auth-unavailable");
    // Missing credentials are still a plain 401.
    assert_eq!(get_raw(gw.addr, "/x", "").status, 401);
    idp.set_body(jwks_doc(&["rsa1"]).as_bytes());
    idp.restart();
    assert!(eventually(Duration::from_secs(10), || status(&gw, &t) == 200));
}

#[test]
fn urls_named_in_tokens_are_never_fetched() {
    let idp = Upstream::start("idp");
    idp.set_body(jwks_doc(&["rsa1"]).as_bytes());
    let attacker = Upstream::start("attacker");
    attacker.set_body(jwks_doc(&["rsa2"]).as_bytes());
    let (gw, _svc) = setup(&idp, "10m");
    let good = mint(RS256, "rsa1", claims("x"), Some("rsa1"));
    assert!(eventually(Duration::from_secs(5), || status(&gw, &good) == 200));
    let url = format!("http://{}/jwks.json", attacker.addr);
    let forged = {
        let mut h = jsonwebtoken::Header::new(RS256);
        h.kid = Some("rsa2".into());
        h.jku = Some(url.clone());
        h.x5u = Some(url.clone());
        let k = jsonwebtoken::EncodingKey::from_rsa_pem(
            &std::fs::read(fixture("rsa2.key.pem")).unwrap(),
        )
        .unwrap();
        jsonwebtoken::encode(&h, &claims("x"), &k).unwrap()
    };
    assert_eq!(status(&gw, &forged), 401);
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(attacker.hits(), 0, "the gateway fetched a URL from a token");
}
