//! mTLS: client certificates verified against `server.tls.client_ca`
//! (`client_auth: optional | required`), `type: mtls` providers that allow
//! by subject or SAN and forward the subject and fingerprint, reload of the
//! CA, and the TLS handshake inside `header_timeout`. Certificates are
//! minted per test with rcgen (valid, expired, other CA, other subject).

use super::tls::{ca_params, mint_pki, write_pki, Pki, HOST};
use crate::support::*;
use rcgen::{CertificateParams, CertifiedIssuer, DnType, KeyPair};
use sha2::{Digest, Sha256};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A CA for client certificates.
struct ClientCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

/// A client certificate: the PEM reqwest presents and its DER's SHA-256.
struct ClientCert {
    pem: String,
    sha256: String,
}

impl ClientCa {
    fn new(name: &str) -> ClientCa {
        let issuer = CertifiedIssuer::self_signed(ca_params(name), KeyPair::generate().unwrap());
        ClientCa {
            issuer: issuer.unwrap(),
        }
    }

    fn pem(&self) -> String {
        self.issuer.pem()
    }

    /// A certificate for `O=org, CN=cn` (RFC 4514: `CN=cn,O=org`) with
    /// `sans` as DNS names; `expired` puts its validity in 2020.
    fn issue(&self, cn: &str, org: &str, sans: &[&str], expired: bool) -> ClientCert {
        let mut p =
            CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
        p.distinguished_name = rcgen::DistinguishedName::new();
        p.distinguished_name.push(DnType::OrganizationName, org);
        p.distinguished_name.push(DnType::CommonName, cn);
        if expired {
            p.not_before = rcgen::date_time_ymd(2020, 1, 1);
            p.not_after = rcgen::date_time_ymd(2020, 6, 1);
        }
        let key = KeyPair::generate().unwrap();
        let cert = p.signed_by(&key, &self.issuer).unwrap();
        ClientCert {
            pem: format!("{}{}", cert.pem(), key.serialize_pem()),
            sha256: hex::encode(Sha256::digest(cert.der())),
        }
    }
}

/// An HTTPS client trusting `server`'s root, presenting `cert` if any.
fn mtls_client(
    server: &Pki,
    addr: SocketAddr,
    cert: Option<&ClientCert>,
) -> reqwest::blocking::Client {
    let mut b = reqwest::blocking::Client::builder()
        .no_proxy()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(server.root.as_bytes()).unwrap())
        .resolve(HOST, addr)
        .http1_only()
        .timeout(Duration::from_secs(10));
    if let Some(c) = cert {
        b = b.identity(reqwest::Identity::from_pem(c.pem.as_bytes()).unwrap());
    }
    b.build().unwrap()
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

/// The config: an HTTPS listener asking for client certificates of
/// `client_ca.pem`, `partners` (by subject or SAN, forwarding both
/// identity headers) on /partner and `anycert` on /any.
fn config(dir: &Path, pki: &Pki, tls: SocketAddr, up: &Upstream, auth_mode: &str) -> String {
    let (cert, key, _) = write_pki(dir, pki);
    format!(
        r#"server:
  listen: ["{{listen}}"]
  tls: {{ listen: "{tls}", cert: "{}", key: "{}", client_ca: "{}", client_auth: {auth_mode} }}
admin: {{ listen: "{{admin}}" }}
logging: {{ access_log: off }}
auth:
  partners:
    type: mtls
    allow_subjects: ["CN=partner-a,O=Partner A"]
    allow_sans: ["partner-c.example.com"]
    forward: {{ subject: X-Client-Subject, fingerprint: X-Client-Cert-Sha256 }}
  anycert: {{ type: mtls }}
upstreams: {{ u: {{ targets: ["{}"] }} }}
routes:
  - {{ name: partner, match: {{ path_prefix: /partner }}, upstream: u, auth: partners }}
  - {{ name: any, match: {{ path_prefix: /any }}, upstream: u, auth: anycert }}
"#,
        cert.display(),
        key.display(),
        dir.join("client_ca.pem").display(),
        up.addr
    )
}

#[test]
fn client_certificates_are_verified_and_allowed_by_subject_or_san() {
    let up = Upstream::start("svc");
    let pki = mint_pki("mtls");
    let ca = ClientCa::new("partners CA");
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "client_ca.pem", &ca.pem());
    let tls: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let gw = gateway(&config(dir.path(), &pki, tls, &up, "optional"));
    wait_listening(tls);
    let url = |p: &str| format!("https://{HOST}:{}{p}", tls.port());

    // The allowed subject: through, with its identity headers; a client's
    // own copy of them is stripped.
    let a = ca.issue("partner-a", "Partner A", &[], false);
    let r = mtls_client(&pki, tls, Some(&a))
        .get(url("/partner/x"))
        .header("X-Client-Subject", "CN=forged")
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let seen = up.last();
    assert_eq!(
        seen.header("x-client-subject"),
        Some("CN=partner-a,O=Partner A")
    );
    assert_eq!(seen.header("x-client-cert-sha256"), Some(a.sha256.as_str()));
    let r = mtls_client(&pki, tls, Some(&a))
        .get(url("/any"))
        .header("X-Client-Subject", "CN=forged")
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        up.last().header("x-client-subject"),
        None,
        "client copy stripped"
    );

    // Allowed by SAN, whatever its subject.
    let c = ca.issue("someone", "Partner C", &["partner-c.example.com"], false);
    let r = mtls_client(&pki, tls, Some(&c))
        .get(url("/partner"))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);

    // Verified, but neither subject nor SAN allowed: 403 problem+json; any
    // verified certificate passes where no list is set.
    let b = ca.issue("partner-b", "Partner B", &["partner-b.example.com"], false);
    let r = mtls_client(&pki, tls, Some(&b))
        .get(url("/partner"))
        .send()
        .unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(
        r.headers()["content-type"].to_str().unwrap(),
        "application/problem+json"
    );
    let hits = up.hits();
    let r = mtls_client(&pki, tls, Some(&b))
        .get(url("/any"))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(up.hits(), hits + 1);

    // No certificate (optional): 401, nothing forwarded; same on the plain
    // listener, where no certificate can be.
    let r = mtls_client(&pki, tls, None)
        .get(url("/partner"))
        .send()
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(
        client().get(gw.url("/partner")).send().unwrap().status(),
        401
    );
    assert_eq!(up.hits(), hits + 1);

    // Expired, or from another CA: the handshake fails.
    let expired = ca.issue("partner-a", "Partner A", &[], true);
    assert!(mtls_client(&pki, tls, Some(&expired))
        .get(url("/partner"))
        .send()
        .is_err());
    let other = ClientCa::new("other CA").issue("partner-a", "Partner A", &[], false);
    assert!(mtls_client(&pki, tls, Some(&other))
        .get(url("/partner"))
        .send()
        .is_err());
    assert_eq!(up.hits(), hits + 1);

    let refused = metric(
        &scrape(&gw),
        "gatehouse_auth_failures_total",
        &[("route", "partner"), ("reason", "certificate")],
    );
    assert_eq!(refused, 1.0);
}

#[test]
fn required_client_auth_fails_the_handshake_without_a_certificate() {
    let up = Upstream::start("svc");
    let pki = mint_pki("mtls-req");
    let ca = ClientCa::new("req CA");
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "client_ca.pem", &ca.pem());
    let tls: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let _gw = gateway(&config(dir.path(), &pki, tls, &up, "required"));
    wait_listening(tls);
    let url = format!("https://{HOST}:{}/any", tls.port());
    assert!(mtls_client(&pki, tls, None).get(&url).send().is_err());
    assert_eq!(up.hits(), 0);
    let ok = ca.issue("anyone", "Any", &[], false);
    assert_eq!(
        mtls_client(&pki, tls, Some(&ok))
            .get(&url)
            .send()
            .unwrap()
            .status(),
        200
    );
}

#[test]
fn a_reload_rereads_the_client_ca() {
    let up = Upstream::start("svc");
    let pki = mint_pki("mtls-reload");
    let (first, second) = (ClientCa::new("first CA"), ClientCa::new("second CA"));
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "client_ca.pem", &first.pem());
    let tls: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let mut bin = spawn_binary(&config(dir.path(), &pki, tls, &up, "optional"), |_| {});
    wait_listening(tls);
    let url = format!("https://{HOST}:{}/any", tls.port());
    let by_first = first.issue("a", "A", &[], false);
    let by_second = second.issue("b", "B", &[], false);
    let status = |c: &ClientCert| {
        mtls_client(&pki, tls, Some(c))
            .get(&url)
            .send()
            .map(|r| r.status().as_u16())
    };
    assert_eq!(status(&by_first).unwrap(), 200);
    assert!(status(&by_second).is_err());

    write(dir.path(), "client_ca.pem", &second.pem());
    let r = client().post(bin.admin_url("/reload")).send().unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().unwrap_or_default());
    assert_eq!(status(&by_second).unwrap(), 200);
    assert!(status(&by_first).is_err());

    // A CA file that is not one: the reload fails, the second CA stays.
    write(
        dir.path(),
        "client_ca.pem",
        "-----BEGIN CERTIFICATE-----\nnope\n-----END CERTIFICATE-----\n",
    );
    let r = client().post(bin.admin_url("/reload")).send().unwrap();
    assert!(r.status().is_client_error() || r.status().is_server_error());
    assert_eq!(status(&by_second).unwrap(), 200);
    bin.signal(nix::sys::signal::Signal::SIGTERM);
    bin.wait(Duration::from_secs(10));
}

#[test]
fn the_tls_handshake_runs_inside_header_timeout() {
    use std::io::Write;
    let up = Upstream::start("svc");
    let pki = mint_pki("hs");
    let dir = tempfile::tempdir().unwrap();
    let (cert, key, _) = write_pki(dir.path(), &pki);
    let tls: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let _gw = gateway(&format!(
        "server:\n  listen: [\"{{listen}}\"]\n  header_timeout: 500ms\n  tls: {{ listen: \"{tls}\", cert: \"{}\", key: \"{}\" }}\nupstreams: {{ u: {{ targets: [\"{}\"] }} }}\nroutes: [{{ name: all, upstream: u }}]\n",
        cert.display(),
        key.display(),
        up.addr
    ));
    wait_listening(tls);
    // Nothing, then the first bytes of a ClientHello record.
    for bytes in [&b""[..], &[0x16, 0x03, 0x01, 0x02, 0x00, 0x01][..]] {
        let mut s = std::net::TcpStream::connect(tls).unwrap();
        s.write_all(bytes).unwrap();
        let start = std::time::Instant::now();
        assert!(
            closed_within(&mut s, Duration::from_secs(5)),
            "{bytes:?}: still open"
        );
        assert!(
            start.elapsed() >= Duration::from_millis(400),
            "closed early"
        );
    }
    // A completed handshake still gets the rest of the budget for its head,
    // and a normal request is served.
    let ok = reqwest::blocking::Client::builder()
        .no_proxy()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(pki.root.as_bytes()).unwrap())
        .resolve(HOST, tls)
        .build()
        .unwrap();
    let r = ok
        .get(format!("https://{HOST}:{}/x", tls.port()))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
}

/// The errors of a config with `tls_extra` in `server.tls` and `auth`.
fn config_errors(dir: &Path, tls_extra: &str, auth: &str) -> Result<Vec<String>, Vec<String>> {
    let (cert, key, _) = write_pki(dir, &mint_pki("cfg"));
    let text = format!(
        "server:\n  tls: {{ listen: \"127.0.0.1:0\", cert: \"{}\", key: \"{}\" {tls_extra} }}\nauth:\n{auth}\nupstreams: {{ u: {{ targets: [\"127.0.0.1:1\"] }} }}\nroutes: [{{ name: r, upstream: u }}]\n",
        cert.display(),
        key.display()
    );
    match gatehouse::config::load_str(&text) {
        Ok(c) => Ok(c.warnings.iter().map(|w| w.to_string()).collect()),
        Err(e) => Err(e.errors()),
    }
}

#[test]
fn mtls_keys_are_validated_with_their_paths() {
    let dir = tempfile::tempdir().unwrap();
    let ca = write(dir.path(), "ca.pem", &ClientCa::new("cfg CA").pem());
    let not_pem = write(dir.path(), "bad.pem", "hello");
    let ok = "  m: { type: mtls, allow_subjects: [\"CN=a,O=A\"], forward: { subject: X-Client-Subject } }";
    let has = |r: Result<Vec<String>, Vec<String>>, want: &str| {
        let list = r.clone().unwrap_or_else(|e| e);
        assert!(
            list.iter().any(|e| e.contains(want)),
            "expected `{want}` in {r:#?}"
        );
    };
    let with_ca = format!(", client_ca: \"{}\"", ca.display());
    assert_eq!(config_errors(dir.path(), &with_ca, ok), Ok(vec![]));
    has(
        config_errors(dir.path(), ", client_auth: required", ok),
        "server.tls.client_auth",
    );
    has(
        config_errors(
            dir.path(),
            &format!("{with_ca}, client_auth: sometimes"),
            ok,
        ),
        "unknown client_auth `sometimes`",
    );
    has(
        config_errors(
            dir.path(),
            &format!(", client_ca: \"{}\"", not_pem.display()),
            ok,
        ),
        "server.tls.client_ca",
    );
    // Without client_ca an mtls provider can only refuse: a warning.
    let w = config_errors(dir.path(), "", ok).unwrap();
    assert!(
        w.iter()
            .any(|w| w.contains("auth.m") && w.contains("client_ca")),
        "{w:?}"
    );
    // Keys of other provider types, gatehouse's own headers, bad subjects.
    has(
        config_errors(
            dir.path(),
            &with_ca,
            "  m: { type: mtls, allow_sans: [x], users: [] }",
        ),
        "auth.m.users",
    );
    has(
        config_errors(
            dir.path(),
            &with_ca,
            "  m: { type: mtls, forward: { subject: Host } }",
        ),
        "auth.m.forward.subject",
    );
    has(
        config_errors(
            dir.path(),
            &with_ca,
            "  m: { type: mtls, allow_subjects: [partner-a] }",
        ),
        "auth.m.allow_subjects[0]",
    );
    has(
        config_errors(
            dir.path(),
            &with_ca,
            "  j: { type: jwt, algorithms: [HS256], secret: x, allow_sans: [a] }",
        ),
        "auth.j.allow_sans",
    );
}
