//! HTTP Basic against argon2id and bcrypt hashes, through a real gateway.

use crate::support::*;
use base64::Engine;
use std::time::{Duration, Instant};

fn argon2id(password: &str) -> String {
    use argon2::password_hash::{PasswordHasher, SaltString};
    let params = argon2::Params::new(8192, 2, 1, None).unwrap();
    let a = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
    let salt = SaltString::encode_b64(b"gatehouse-test-salt").unwrap();
    a.hash_password(password.as_bytes(), &salt)
        .unwrap()
        .to_string()
}

fn basic(user: &str, pass: &str) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
    format!("Authorization: Basic {b64}\r\n")
}

fn gw(up: &Upstream) -> Gateway {
    let bob = bcrypt::hash("bobs-password", 6).unwrap();
    gateway(&format!(
        r#"
server: {{ listen: ["{{listen}}"] }}
admin: {{ listen: "{{admin}}" }}
upstreams: {{ ops: {{ targets: ["{}"] }} }}
auth:
  ops:
    type: basic
    users:
      - {{ name: alice, hash: "{}" }}
      - {{ name: bob, hash: "{bob}" }}
    forward_id: X-User-Id
routes:
  - {{ name: admin, match: {{ path_prefix: /admin }}, upstream: ops, auth: ops }}
"#,
        up.addr,
        argon2id("alices-password")
    ))
}

#[test]
fn right_credentials_pass_and_name_the_user() {
    let up = Upstream::start("ops");
    let gw = gw(&up);
    for (user, pass) in [("alice", "alices-password"), ("bob", "bobs-password")] {
        let r = get_raw(
            gw.addr,
            "/admin/x",
            &format!("{}X-User-Id: mallory\r\n", basic(user, pass)),
        );
        assert_eq!(r.status, 200, "{user}");
        assert_eq!(
            up.last().header("x-user-id"),
            Some(user),
            "set from the credentials"
        );
        assert_eq!(
            up.last().header_all("x-user-id").len(),
            1,
            "the client's copy is gone"
        );
    }
}

#[test]
fn wrong_missing_or_malformed_credentials_get_401_with_a_basic_challenge() {
    let up = Upstream::start("ops");
    let gw = gw(&up);
    for head in [
        String::new(),
        basic("alice", "wrong"),
        basic("nobody", "alices-password"),
        basic("bob", "alices-password"),
        "Authorization: Basic !!notbase64\r\n".to_string(),
    ] {
        let r = get_raw(gw.addr, "/admin/x", &head);
        assert_eq!(r.status, 401, "{head:?}");
        assert_eq!(
            r.header("www-authenticate"),
            Some("Basic realm=\"gatehouse\"")
        );
        assert_eq!(r.header("content-type"), Some("application/problem+json"));
    }
    assert_eq!(up.hits(), 0);
    let m = scrape(&gw);
    assert!(
        metric(
            &m,
            "gatehouse_auth_failures_total",
            &[("route", "admin"), ("reason", "password")]
        ) >= 4.0
    );
}

/// Unknown users cost what known ones with a wrong password do: medians of
/// interleaved samples, not one measurement.
#[test]
fn an_unknown_user_takes_as_long_as_a_wrong_password() {
    let up = Upstream::start("ops");
    let gw = gw(&up);
    let time = |head: &str| {
        let t = Instant::now();
        assert_eq!(get_raw(gw.addr, "/admin/x", head).status, 401);
        t.elapsed()
    };
    let (known, unknown) = (basic("alice", "not-it"), basic("zed", "not-it"));
    let (mut a, mut b): (Vec<Duration>, Vec<Duration>) = (Vec::new(), Vec::new());
    for i in 0..40 {
        if i % 2 == 0 {
            a.push(time(&known));
            b.push(time(&unknown));
        } else {
            b.push(time(&unknown));
            a.push(time(&known));
        }
    }
    a.sort();
    b.sort();
    let (ma, mb) = (a[20].as_secs_f64(), b[20].as_secs_f64());
    eprintln!(
        "median 401: known user {:.2} ms, unknown user {:.2} ms",
        ma * 1e3,
        mb * 1e3
    );
    let ratio = ma / mb;
    assert!((0.7..1.43).contains(&ratio), "known/unknown = {ratio:.2}");
}

#[test]
fn plain_passwords_and_weak_hashes_are_config_errors() {
    let errs = |hash: &str| {
        gatehouse::config::load_str(&format!(
            "upstreams: {{ u: {{ targets: [\"127.0.0.1:1\"] }} }}\nauth:\n  ops:\n    type: basic\n    users:\n      - {{ name: alice, hash: \"{hash}\" }}\nroutes:\n  - {{ name: r, upstream: u, auth: ops }}\n"
        ))
        .unwrap_err()
        .to_string()
    };
    let e = errs("hunter2");
    assert!(
        e.contains("auth.ops.users[0].hash")
            && e.contains("plain-text passwords are not accepted")
            && e.contains("line 6"),
        "{e}"
    );
    assert!(errs("$argon2i$v=19$m=16,t=2,p=1$c2FsdHNhbHQ$aGFzaA").contains("only argon2id"));
    assert!(errs("$2b$12$tooshort").contains("invalid bcrypt hash"));
    assert!(
        !errs("hunter2").contains("hunter2"),
        "the password is not echoed"
    );
}
