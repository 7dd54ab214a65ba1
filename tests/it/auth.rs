//! Authentication through the real gateway: JWT (every algorithm family,
//! every rejection), JWKS file and URL, scopes, claims forwarding and
//! anti-spoofing, API keys, any-of lists.

use crate::support::*;
use jsonwebtoken::Algorithm::{self, *};
use serde_json::json;
use std::time::Duration;

const SECRET: &str = "an-hmac-secret-of-at-least-64-bytes-for-hs512-0123456789abcdefgh";

struct Env {
    gw: Gateway,
    up: Upstream,
}

fn env(extra_auth: &str, extra_routes: &str) -> Env {
    let up = Upstream::start("svc");
    let gw = gateway(&format!(
        r#"
server: {{ listen: ["{{listen}}"] }}
admin: {{ listen: "{{admin}}" }}
upstreams:
  svc: {{ targets: ["{up}"] }}
auth:
  hs:
    type: jwt
    algorithms: [HS256, HS384, HS512]
    secret: "{SECRET}"
    forward_claims: {{ sub: X-User-Id, scope: X-User-Scopes, roles: X-User-Roles }}
  rsa:
    type: jwt
    algorithms: [RS256, RS384, RS512, PS256, PS384, PS512]
    public_key: "{rsa}"
    issuer: https://idp.example
    audience: [shop-api, admin-api]
    forward_claims: {{ sub: X-User-Id }}
  ec256: {{ type: jwt, algorithms: [ES256], public_key: "{ec256}", forward_claims: {{ sub: X-User-Id }} }}
  ec384: {{ type: jwt, algorithms: [ES384], public_key: "{ec384}", forward_claims: {{ sub: X-User-Id }} }}
  ed: {{ type: jwt, algorithms: [EdDSA], public_key: "{ed}", forward_claims: {{ sub: X-User-Id }} }}
  jwksfile:
    type: jwt
    algorithms: [RS256, ES256, EdDSA]
    jwks: {{ file: "{jwks}" }}
    forward_claims: {{ sub: X-User-Id }}
  partners:
    type: api_key
    header: X-API-Key
    keys:
      - {{ id: partner-a, key: "key-for-partner-a" }}
      - {{ id: partner-b, sha256: "{sha_b}" }}
    forward_id: X-Consumer-Id
{extra_auth}
routes:
  - {{ name: hs, match: {{ path_prefix: /hs }}, upstream: svc, auth: hs }}
  - {{ name: rsa, match: {{ path_prefix: /rsa }}, upstream: svc, auth: rsa }}
  - {{ name: ec256, match: {{ path_prefix: /ec256 }}, upstream: svc, auth: ec256 }}
  - {{ name: ec384, match: {{ path_prefix: /ec384 }}, upstream: svc, auth: ec384 }}
  - {{ name: ed, match: {{ path_prefix: /ed }}, upstream: svc, auth: ed }}
  - {{ name: jwks, match: {{ path_prefix: /jwks }}, upstream: svc, auth: jwksfile }}
  - {{ name: orders, match: {{ path_prefix: /api/orders }}, upstream: svc, auth: {{ provider: hs, scopes: ["orders:write"] }} }}
  - {{ name: partners, match: {{ path_prefix: /partners }}, upstream: svc, auth: partners }}
  - {{ name: either, match: {{ path_prefix: /either }}, upstream: svc, auth: [hs, partners] }}
  - {{ name: public, match: {{ path_prefix: /api/public }}, upstream: svc }}
{extra_routes}
"#,
        up = up.addr,
        rsa = fixture("rsa1.pub.pem"),
        ec256 = fixture("ec256.pub.pem"),
        ec384 = fixture("ec384.pub.pem"),
        ed = fixture("ed25519.pub.pem"),
        jwks = fixture("jwks.json"),
        sha_b = sha256_hex("key-for-partner-b"),
    ));
    Env { gw, up }
}

fn sha256_hex(s: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(s.as_bytes()))
}

fn get(gw: &Gateway, path: &str, token: &str) -> RawResponse {
    get_raw(gw.addr, path, &format!("Authorization: Bearer {token}\r\n"))
}

fn assert_401(r: &RawResponse, token_sent: bool, what: &str) {
    assert_eq!(r.status, 401, "{what}");
    let challenge = r.header("www-authenticate").unwrap_or_default();
    assert!(challenge.starts_with("Bearer"), "{what}: {challenge}");
    assert_eq!(
        challenge.contains("error=\"invalid_token\""),
        token_sent,
        "{what}: {challenge}"
    );
    assert_eq!(
        r.header("content-type"),
        Some("application/problem+json"),
        "{what}"
    );
    assert_eq!(r.json()["status"], 401);
}

#[test]
fn every_algorithm_family_verifies_and_forwards_claims() {
    let e = env("", "");
    let rsa_claims =
        json!({"sub": "rita", "exp": now() + 600, "iss": "https://idp.example", "aud": "shop-api"});
    let cases: Vec<(&str, Algorithm, &str, serde_json::Value, Option<&str>)> = vec![
        ("/hs", HS256, SECRET, claims("hana"), None),
        ("/hs", HS384, SECRET, claims("hana"), None),
        ("/hs", HS512, SECRET, claims("hana"), None),
        ("/rsa", RS256, "rsa1", rsa_claims.clone(), None),
        ("/rsa", RS384, "rsa1", rsa_claims.clone(), None),
        ("/rsa", RS512, "rsa1", rsa_claims.clone(), None),
        ("/rsa", PS256, "rsa1", rsa_claims.clone(), None),
        ("/rsa", PS384, "rsa1", rsa_claims.clone(), None),
        ("/rsa", PS512, "rsa1", rsa_claims.clone(), None),
        ("/ec256", ES256, "ec256", claims("eve"), None),
        ("/ec384", ES384, "ec384", claims("eve"), None),
        ("/ed", EdDSA, "ed25519", claims("ed"), None),
        ("/jwks", RS256, "rsa1", claims("jay"), Some("rsa1")),
        ("/jwks", ES256, "ec256", claims("jay"), Some("ec256")),
        ("/jwks", EdDSA, "ed25519", claims("jay"), Some("ed25519")),
    ];
    for (path, alg, key, c, kid) in cases {
        let sub = c["sub"].as_str().unwrap().to_string();
        let r = get(&e.gw, path, &mint(alg, key, c, kid));
        assert_eq!(
            r.status,
            200,
            "{path} {alg:?}: {:?}",
            String::from_utf8_lossy(&r.body)
        );
        assert_eq!(
            e.up.last().header("x-user-id"),
            Some(sub.as_str()),
            "{alg:?}"
        );
        assert!(
            e.up.last().header("authorization").is_some(),
            "the token itself is forwarded"
        );
    }
}

#[test]
fn claims_are_forwarded_as_headers() {
    let e = env("", "");
    let c =
        json!({"sub": "hana", "exp": now() + 600, "scope": "a b", "roles": ["admin", "ops", 7]});
    assert_eq!(get(&e.gw, "/hs", &mint(HS256, SECRET, c, None)).status, 200);
    let seen = e.up.last();
    assert_eq!(seen.header("x-user-scopes"), Some("a b"));
    assert_eq!(seen.header("x-user-roles"), Some("admin ops 7"));
}

#[test]
fn missing_and_bad_tokens_are_401() {
    let e = env("", "");
    let gw = &e.gw;
    let r = get_raw(gw.addr, "/hs", "");
    assert_401(&r, false, "missing");
    assert_401(
        &get_raw(gw.addr, "/hs", "Authorization: Basic dXNlcjpwYXNz\r\n"),
        false,
        "basic auth",
    );

    let good = mint(HS256, SECRET, claims("hana"), None);
    let (h, p, _s) = {
        let mut it = good.split('.');
        (
            it.next().unwrap().to_string(),
            it.next().unwrap().to_string(),
            it.next().unwrap().to_string(),
        )
    };
    let cases: Vec<(&str, String)> = vec![
        (
            "alg none",
            forge(
                r#"{"alg":"none","typ":"JWT"}"#,
                &format!(r#"{{"sub":"x","exp":{}}}"#, now() + 600),
                "",
            ),
        ),
        (
            "alg None",
            forge(
                r#"{"alg":"None"}"#,
                &format!(r#"{{"sub":"x","exp":{}}}"#, now() + 600),
                "",
            ),
        ),
        (
            "wrong secret",
            mint(
                HS256,
                "another-secret-that-is-long-enough-0123456789",
                claims("x"),
                None,
            ),
        ),
        (
            "tampered payload",
            format!(
                "{h}.{}.{_s}",
                forge(
                    "{}",
                    &format!(r#"{{"sub":"admin","exp":{}}}"#, now() + 600),
                    ""
                )
                .split('.')
                .nth(1)
                .unwrap()
            ),
        ),
        ("stripped signature", format!("{h}.{p}.")),
        ("no signature part", format!("{h}.{p}")),
        (
            "expired",
            mint(
                HS256,
                SECRET,
                json!({"sub": "x", "exp": now() - 3600}),
                None,
            ),
        ),
        (
            "not yet valid",
            mint(
                HS256,
                SECRET,
                json!({"sub": "x", "exp": now() + 3600, "nbf": now() + 1800}),
                None,
            ),
        ),
        ("no exp", mint(HS256, SECRET, json!({"sub": "x"}), None)),
        ("malformed base64", "!!!.@@@.###".to_string()),
        ("garbage", "not-a-jwt".to_string()),
        ("oversized", format!("{h}.{}.{_s}", "A".repeat(20_000))),
        (
            "RS256 to the HS provider",
            mint(RS256, "rsa1", claims("x"), None),
        ),
        (
            "duplicate claim keys",
            forge(
                r#"{"alg":"HS256"}"#,
                &format!(r#"{{"sub":"a","sub":"admin","exp":{}}}"#, now() + 600),
                "x",
            ),
        ),
    ];
    for (what, token) in cases {
        let r = get(gw, "/hs", &token);
        assert_401(&r, true, what);
        let body = String::from_utf8_lossy(&r.body);
        assert!(
            !body.contains(&token) || token.is_empty(),
            "{what}: token echoed"
        );
    }
    assert_eq!(e.up.hits(), 0, "nothing reached the upstream");
}

#[test]
fn issuer_and_audience_are_enforced() {
    let e = env("", "");
    let tok = |iss: Option<&str>, aud: Option<serde_json::Value>| {
        let mut c = json!({"sub": "x", "exp": now() + 600});
        if let Some(i) = iss {
            c["iss"] = json!(i);
        }
        if let Some(a) = aud {
            c["aud"] = a;
        }
        mint(RS256, "rsa1", c, None)
    };
    let good_iss = Some("https://idp.example");
    assert_eq!(
        get(&e.gw, "/rsa", &tok(good_iss, Some(json!("shop-api")))).status,
        200
    );
    assert_eq!(
        get(
            &e.gw,
            "/rsa",
            &tok(good_iss, Some(json!(["other", "admin-api"])))
        )
        .status,
        200
    );
    assert_401(
        &get(
            &e.gw,
            "/rsa",
            &tok(Some("https://evil.example"), Some(json!("shop-api"))),
        ),
        true,
        "wrong iss",
    );
    assert_401(
        &get(&e.gw, "/rsa", &tok(None, Some(json!("shop-api")))),
        true,
        "missing iss",
    );
    assert_401(
        &get(&e.gw, "/rsa", &tok(good_iss, Some(json!("other-api")))),
        true,
        "wrong aud",
    );
    assert_401(
        &get(&e.gw, "/rsa", &tok(good_iss, None)),
        true,
        "missing aud",
    );
}

#[test]
fn key_confusion_is_refused() {
    let e = env("", "");
    // HS256 signed with the RSA public key's PEM text as the HMAC secret.
    let pem = std::fs::read_to_string(fixture("rsa1.pub.pem")).unwrap();
    let c =
        json!({"sub": "x", "exp": now() + 600, "iss": "https://idp.example", "aud": "shop-api"});
    let confused = {
        let k = jsonwebtoken::EncodingKey::from_secret(pem.as_bytes()).unwrap();
        jsonwebtoken::encode(&jsonwebtoken::Header::new(HS256), &c, &k).unwrap()
    };
    assert_401(
        &get(&e.gw, "/rsa", &confused),
        true,
        "HS256 with the RSA PEM",
    );
    // A key from another pair.
    assert_401(
        &get(&e.gw, "/rsa", &mint(RS256, "rsa2", c, None)),
        true,
        "other RSA key",
    );
    // ECDSA r = s = 0 (CVE-2022-21449 "psychic signatures").
    let zero_sig = {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode([0u8; 64])
    };
    let psychic = forge(
        r#"{"alg":"ES256"}"#,
        &format!(r#"{{"sub":"x","exp":{}}}"#, now() + 600),
        &zero_sig,
    );
    assert_401(&get(&e.gw, "/ec256", &psychic), true, "psychic signature");
}

#[test]
fn jwks_file_unknown_kid_and_kid_tricks() {
    let e = env("", "");
    assert_401(
        &get(
            &e.gw,
            "/jwks",
            &mint(RS256, "rsa2", claims("x"), Some("rsa2")),
        ),
        true,
        "unknown kid",
    );
    assert_401(
        &get(
            &e.gw,
            "/jwks",
            &mint(RS256, "rsa1", claims("x"), Some("../../dev/null")),
        ),
        true,
        "path kid",
    );
    // A kid naming an EC key with an RSA algorithm.
    assert_401(
        &get(
            &e.gw,
            "/jwks",
            &mint(RS256, "rsa1", claims("x"), Some("ec256")),
        ),
        true,
        "kid/alg mismatch",
    );
}

#[test]
fn scopes_give_403_with_insufficient_scope() {
    let e = env("", "");
    let with = |scope: serde_json::Value, field: &str| {
        let mut c = claims("x");
        c[field] = scope;
        mint(HS256, SECRET, c, None)
    };
    let r = get(&e.gw, "/api/orders", &with(json!("orders:read"), "scope"));
    assert_eq!(r.status, 403);
    let challenge = r.header("www-authenticate").unwrap();
    assert!(
        challenge.contains("error=\"insufficient_scope\""),
        "{challenge}"
    );
    assert!(challenge.contains("scope=\"orders:write\""), "{challenge}");
    assert_eq!(r.header("content-type"), Some("application/problem+json"));
    assert_eq!(
        get(
            &e.gw,
            "/api/orders",
            &with(json!("orders:read orders:write"), "scope")
        )
        .status,
        200
    );
    assert_eq!(
        get(&e.gw, "/api/orders", &with(json!(["orders:write"]), "scp")).status,
        200
    );
    assert_eq!(
        get(&e.gw, "/api/orders", &with(json!(["orders:read"]), "scp")).status,
        403
    );
    assert_401(
        &get_raw(e.gw.addr, "/api/orders", ""),
        false,
        "no token on a scoped route",
    );
}

#[test]
fn identity_headers_cannot_be_spoofed() {
    let e = env("", "");
    let spoof = "X-User-Id: admin\r\nX_User_Id: admin\r\nX-Consumer-Id: partner-z\r\nx-user-scopes: everything\r\n";
    // Open route: stripped.
    let r = get_raw(e.gw.addr, "/api/public/x", spoof);
    assert_eq!(r.status, 200);
    let seen = e.up.last();
    for h in ["x-user-id", "x_user_id", "x-consumer-id", "x-user-scopes"] {
        assert_eq!(
            seen.header(h),
            None,
            "{h} reached the upstream of an open route"
        );
    }
    // Authenticated route: replaced with the token's values.
    let token = mint(HS256, SECRET, claims("hana"), None);
    let r = get_raw(
        e.gw.addr,
        "/hs",
        &format!("{spoof}Authorization: Bearer {token}\r\n"),
    );
    assert_eq!(r.status, 200);
    let seen = e.up.last();
    assert_eq!(seen.header_all("x-user-id"), vec!["hana"]);
    assert_eq!(seen.header("x_user_id"), None);
    assert_eq!(
        seen.header("x-user-scopes"),
        None,
        "the token has no scope claim"
    );
    assert_eq!(seen.header("x-consumer-id"), None);
}

#[test]
fn api_keys_plain_hashed_and_wrong() {
    let e = env("", "");
    let key = |k: &str| get_raw(e.gw.addr, "/partners/x", &format!("X-API-Key: {k}\r\n"));
    assert_eq!(key("key-for-partner-a").status, 200);
    assert_eq!(e.up.last().header("x-consumer-id"), Some("partner-a"));
    assert_eq!(key("key-for-partner-b").status, 200);
    assert_eq!(e.up.last().header("x-consumer-id"), Some("partner-b"));
    let r = key("key-for-partner-c");
    assert_eq!(r.status, 401);
    assert!(r.header("www-authenticate").unwrap().starts_with("ApiKey"));
    assert!(!String::from_utf8_lossy(&r.body).contains("key-for-partner-c"));
    let r = get_raw(e.gw.addr, "/partners/x", "");
    assert_eq!(r.status, 401);
    // The sha256 itself is not a key.
    assert_eq!(key(&sha256_hex("key-for-partner-b")).status, 401);
}

#[test]
fn any_of_lists_accept_either_credential() {
    let e = env("", "");
    assert_eq!(
        get(&e.gw, "/either", &mint(HS256, SECRET, claims("hana"), None)).status,
        200
    );
    assert_eq!(e.up.last().header("x-user-id"), Some("hana"));
    assert_eq!(
        get_raw(e.gw.addr, "/either", "X-API-Key: key-for-partner-a\r\n").status,
        200
    );
    assert_eq!(e.up.last().header("x-consumer-id"), Some("partner-a"));
    let r = get_raw(e.gw.addr, "/either", "");
    assert_eq!(r.status, 401);
    let challenges: Vec<&str> = r
        .headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("www-authenticate"))
        .map(|(_, v)| v.as_str())
        .collect();
    assert_eq!(challenges.len(), 2, "{challenges:?}");
    // A bad token is reported even though an API-key provider is also allowed.
    let r = get(&e.gw, "/either", "bad.token.here");
    assert_401(&r, true, "bad token on any-of");
}

#[test]
fn normalisation_cannot_reach_a_protected_upstream() {
    let e = env("", "");
    for path in [
        "/api/public/../orders",
        "/api/public/%2e%2e/orders",
        "//api//orders",
        "/api/./orders",
        "/api/public/..%2Forders",
        "/API/orders/../../api/orders",
    ] {
        let r = get_raw(e.gw.addr, path, "");
        assert!(r.status == 401 || r.status == 400, "{path} -> {}", r.status);
    }
    assert_eq!(e.up.hits(), 0);
}

#[test]
fn failures_are_counted_by_reason() {
    let e = env("", "");
    get_raw(e.gw.addr, "/hs", "");
    get(
        &e.gw,
        "/hs",
        &mint(
            HS256,
            SECRET,
            json!({"sub": "x", "exp": now() - 3600}),
            None,
        ),
    );
    get(
        &e.gw,
        "/api/orders",
        &mint(HS256, SECRET, claims("x"), None),
    );
    let m = scrape(&e.gw);
    assert_eq!(
        metric(
            &m,
            "gatehouse_auth_failures_total",
            &[("route", "hs"), ("reason", "missing")]
        ),
        1.0
    );
    assert_eq!(
        metric(
            &m,
            "gatehouse_auth_failures_total",
            &[("route", "hs"), ("reason", "expired")]
        ),
        1.0
    );
    assert_eq!(
        metric(
            &m,
            "gatehouse_auth_failures_total",
            &[("route", "orders"), ("reason", "scope")]
        ),
        1.0
    );
    // Label sets exist before any failure.
    assert!(m.iter().any(|s| s.name == "gatehouse_auth_failures_total"
        && s.label("route") == Some("rsa")
        && s.label("reason") == Some("signature")));
}

#[test]
fn user_is_in_the_access_log() {
    let dir = tempfile::tempdir().unwrap();
    let up = Upstream::start("svc");
    let log = dir.path().join("a.log");
    let gw = gateway(&format!(
        "server: {{ listen: [\"{{listen}}\"] }}\nlogging: {{ access_log: \"{}\" }}\nupstreams: {{ svc: {{ targets: [\"{}\"] }} }}\n\
         auth: {{ hs: {{ type: jwt, algorithms: [HS256], secret: \"{SECRET}\" }} }}\nroutes: [{{ name: r, upstream: svc, auth: hs }}]\n",
        log.display(),
        up.addr
    ));
    let token = mint(HS256, SECRET, claims("logged-user"), None);
    assert_eq!(get(&gw, "/x", &token).status, 200);
    assert!(eventually(Duration::from_secs(5), || {
        gw.state.access_log.flush();
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .contains("\"user\":\"logged-user\"")
    }));
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(!text.contains(&token));
    drop(gw);
}
