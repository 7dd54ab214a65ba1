//! TLS at both ends: the HTTPS listener (HTTP/1.1 and h2 by ALPN, chains,
//! certificate reload), h2c, and HTTPS to upstreams with verification.
//! Certificates are minted per test with rcgen; nothing is committed.

use crate::support::*;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub(crate) const HOST: &str = "gatehouse.test";

/// A root CA, an intermediate, and a leaf for `gatehouse.test` and
/// 127.0.0.1, written as PEM files (the leaf file carries the chain).
pub(crate) struct Pki {
    pub(crate) root: String,
    pub(crate) leaf_chain: String,
    pub(crate) leaf_key: String,
}

pub(crate) fn ca_params(name: &str) -> CertificateParams {
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.distinguished_name
        .push(rcgen::DnType::CommonName, name.to_string());
    p
}

pub(crate) fn mint_pki(tag: &str) -> Pki {
    let root = CertifiedIssuer::self_signed(
        ca_params(&format!("{tag} root")),
        KeyPair::generate().unwrap(),
    )
    .unwrap();
    let mid = CertifiedIssuer::signed_by(
        ca_params(&format!("{tag} intermediate")),
        KeyPair::generate().unwrap(),
        &root,
    )
    .unwrap();
    let key = KeyPair::generate().unwrap();
    let params = CertificateParams::new(vec![HOST.to_string(), "127.0.0.1".to_string()]).unwrap();
    let leaf = params.signed_by(&key, &mid).unwrap();
    Pki {
        root: root.pem(),
        leaf_chain: format!("{}{}", leaf.pem(), mid.pem()),
        leaf_key: key.serialize_pem(),
    }
}

/// Writes the listener files under `dir`; returns (cert, key, root CA) paths.
pub(crate) fn write_pki(dir: &Path, pki: &Pki) -> (PathBuf, PathBuf, PathBuf) {
    let (c, k, r) = (
        dir.join("cert.pem"),
        dir.join("key.pem"),
        dir.join("ca.pem"),
    );
    std::fs::write(&c, &pki.leaf_chain).unwrap();
    std::fs::write(&k, &pki.leaf_key).unwrap();
    std::fs::write(&r, &pki.root).unwrap();
    (c, k, r)
}

/// A client trusting only `root`, with `gatehouse.test` pointed at `addr`.
fn https_client(root: &str, addr: SocketAddr, http1_only: bool) -> reqwest::blocking::Client {
    let mut b = reqwest::blocking::Client::builder()
        .no_proxy()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(root.as_bytes()).unwrap())
        .resolve(HOST, addr)
        .timeout(Duration::from_secs(10));
    if http1_only {
        b = b.http1_only();
    }
    b.build().unwrap()
}

struct TlsGateway {
    gw: Gateway,
    tls: SocketAddr,
    _dir: tempfile::TempDir,
}

/// A gateway with an HTTPS listener in front of `up`.
fn tls_gateway(pki: &Pki, up: &Upstream, server_extra: &str) -> TlsGateway {
    tls_gateway_with(pki, up, server_extra, "")
}

/// [`tls_gateway`] with `route_extra` in its one route's map.
fn tls_gateway_with(pki: &Pki, up: &Upstream, server_extra: &str, route_extra: &str) -> TlsGateway {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key, _) = write_pki(dir.path(), pki);
    let tls: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let gw = gateway(&format!(
        "server:\n  listen: [\"{{listen}}\"]\n  tls: {{ listen: \"{tls}\", cert: \"{}\", key: \"{}\" }}\n{server_extra}upstreams: {{ u: {{ targets: [\"{}\"] }} }}\nroutes: [{{ name: all, upstream: u {route_extra} }}]\n",
        cert.display(),
        key.display(),
        up.addr
    ));
    wait_listening(tls);
    TlsGateway { gw, tls, _dir: dir }
}

#[test]
fn https_listener_speaks_http1_and_h2_by_alpn_and_serves_the_chain() {
    let up = Upstream::start("svc");
    let pki = mint_pki("a");
    let g = tls_gateway(&pki, &up, "");
    let url = format!("https://{HOST}:{}/hello", g.tls.port());

    let r = https_client(&pki.root, g.tls, true)
        .get(&url)
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.version(), reqwest::Version::HTTP_11);

    let r = https_client(&pki.root, g.tls, false)
        .get(&url)
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.version(), reqwest::Version::HTTP_2, "h2 chosen by ALPN");
    // The upstream sees the request and that it came in over TLS.
    let last = up.last();
    assert_eq!(last.target, "/hello");
    assert_eq!(last.header("x-forwarded-proto"), Some("https"));

    // The plain listener keeps working next to it.
    assert_eq!(client().get(g.gw.url("/x")).send().unwrap().status(), 200);
    // A client that does not trust the issuing root is refused.
    let other = mint_pki("b");
    assert!(https_client(&other.root, g.tls, false)
        .get(&url)
        .send()
        .is_err());
}

#[test]
fn h2c_prior_knowledge_on_the_plain_listener_when_enabled() {
    let up = Upstream::start("svc");
    let h2 = h2c_client();
    let cfg = |h2c: bool| {
        format!(
            "server: {{ listen: [\"{{listen}}\"], h2c: {h2c} }}\nupstreams: {{ u: {{ targets: [\"{}\"] }} }}\nroutes: [{{ name: all, upstream: u }}]\n",
            up.addr
        )
    };
    let on = gateway(&cfg(true));
    let r = h2.get(on.url("/h2c")).send().unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.version(), reqwest::Version::HTTP_2);
    // HTTP/1.1 still works on the same listener.
    assert_eq!(client().get(on.url("/h1")).send().unwrap().status(), 200);

    let off = gateway(&cfg(false));
    assert!(h2.get(off.url("/h2c")).send().is_err(), "h2c is opt-in");
}

/// Gateway A proxies to gateway B's HTTPS listener, which proxies to `up`.
fn via_tls_upstream(b: &TlsGateway, upstream_opts: &str, server_extra: &str) -> Gateway {
    gateway(&format!(
        "server: {{ listen: [\"{{listen}}\"] {server_extra} }}\nupstreams: {{ b: {{ targets: [\"{}\"], tls: true {upstream_opts} }} }}\nroutes: [{{ name: all, upstream: b }}]\n",
        b.tls
    ))
}

#[test]
fn upstream_tls_is_verified_by_default() {
    let up = Upstream::start("svc");
    let pki = mint_pki("up");
    let b = tls_gateway(&pki, &up, "");
    let ca = b._dir.path().join("ca.pem");
    let c = client();

    // Not in the system roots: refused.
    let a = via_tls_upstream(&b, &format!(", sni: {HOST}"), "");
    assert_eq!(c.get(a.url("/v")).send().unwrap().status(), 502);
    assert_eq!(up.hits(), 0);

    // Trusted through server.upstream_ca and the name matches: served.
    let a = via_tls_upstream(
        &b,
        &format!(", sni: {HOST}"),
        &format!(", upstream_ca: \"{}\"", ca.display()),
    );
    let r = c.get(a.url("/v")).send().unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(up.last().target, "/v");

    // Trusted issuer but a name the certificate does not carry: refused.
    let a = via_tls_upstream(
        &b,
        ", sni: other.test",
        &format!(", upstream_ca: \"{}\"", ca.display()),
    );
    assert_eq!(c.get(a.url("/v")).send().unwrap().status(), 502);
}

/// A WebSocket through a TLS upstream: the handshake connection
/// (`upstream/upgrade.rs`) carries Pingora's TLS like any other.
#[test]
fn websocket_tunnels_reach_a_tls_upstream() {
    use std::io::{BufReader, Read, Write};
    let up = Upstream::start("svc");
    let pki = mint_pki("ws");
    let b = tls_gateway_with(&pki, &up, "", ", websocket: true");
    let a = gateway(&format!(
        "server: {{ listen: [\"{{listen}}\"], upstream_ca: \"{}\" }}\nupstreams: {{ b: {{ targets: [\"{}\"], tls: true, sni: {HOST} }} }}\nroutes: [{{ name: all, upstream: b, websocket: true }}]\n",
        b._dir.path().join("ca.pem").display(),
        b.tls
    ));
    let mut s = std::net::TcpStream::connect(a.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"GET /ws HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
        .unwrap();
    let head = read_response(&mut BufReader::new(s.try_clone().unwrap())).unwrap();
    assert_eq!(head.status, 101);
    let frame = [0x81u8, 0x82, 7, 7, 7, 7, b'o' ^ 7, b'k' ^ 7];
    s.write_all(&frame).unwrap();
    let mut back = [0u8; 8];
    s.read_exact(&mut back).unwrap();
    assert_eq!(back, frame);
}

#[test]
fn tls_verify_false_skips_verification() {
    let up = Upstream::start("svc");
    let pki = mint_pki("noverify");
    let b = tls_gateway(&pki, &up, "");
    let a = via_tls_upstream(&b, &format!(", sni: {HOST}, tls_verify: false"), "");
    let r = client().get(a.url("/nv")).send().unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(up.last().target, "/nv");
}

#[test]
fn certificate_files_are_reread_on_sighup_and_bad_ones_are_refused() {
    let up = Upstream::start("svc");
    let first = mint_pki("first");
    let dir = tempfile::tempdir().unwrap();
    let (cert, key, _) = write_pki(dir.path(), &first);
    let tls: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let mut bin = spawn_binary(
        &format!(
            "server:\n  listen: [\"{{listen}}\"]\n  tls: {{ listen: \"{tls}\", cert: \"{}\", key: \"{}\" }}\nadmin: {{ listen: \"{{admin}}\" }}\nlogging: {{ access_log: off }}\nupstreams: {{ u: {{ targets: [\"{}\"] }} }}\nroutes: [{{ name: all, upstream: u }}]\n",
            cert.display(),
            key.display(),
            up.addr
        ),
        |_| {},
    );
    wait_listening(tls);
    let url = format!("https://{HOST}:{}/r", tls.port());
    let trusts_first = https_client(&first.root, tls, true);
    assert_eq!(trusts_first.get(&url).send().unwrap().status(), 200);

    // Renewal: new files at the same paths, then SIGHUP.
    let second = mint_pki("second");
    let trusts_second = https_client(&second.root, tls, true);
    write_pki(dir.path(), &second);
    bin.signal(SIGHUP);
    assert!(
        eventually(Duration::from_secs(10), || trusts_second
            .get(&url)
            .send()
            .is_ok_and(|r| r.status() == 200)),
        "the renewed certificate is served after SIGHUP"
    );
    assert!(https_client(&first.root, tls, true)
        .get(&url)
        .send()
        .is_err());

    // A key that does not match the certificate: the reload fails and the
    // served certificate stays.
    std::fs::write(&key, KeyPair::generate().unwrap().serialize_pem()).unwrap();
    let r = client()
        .post(format!("http://{}/reload", bin.admin))
        .send()
        .unwrap();
    assert_eq!(r.status(), 400, "{:?}", r.text());
    assert_eq!(
        https_client(&second.root, tls, true)
            .get(&url)
            .send()
            .unwrap()
            .status(),
        200
    );
    assert!(
        bin.wait(Duration::from_millis(100)).is_none(),
        "still running"
    );
}

#[test]
fn an_upgrade_serves_the_certificate_on_disk_without_closing_the_listener() {
    let up = Upstream::start("svc");
    let first = mint_pki("before");
    let dir = tempfile::tempdir().unwrap();
    let (cert, key, _) = write_pki(dir.path(), &first);
    let tls: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let mut old = spawn_binary(
        &format!(
            "server:\n  listen: [\"{{listen}}\"]\n  upgrade_sock: \"{{dir}}/u.sock\"\n  tls: {{ listen: \"{tls}\", cert: \"{}\", key: \"{}\" }}\nlogging: {{ access_log: off }}\nupstreams: {{ u: {{ targets: [\"{}\"] }} }}\nroutes: [{{ name: all, upstream: u }}]\n",
            cert.display(),
            key.display(),
            up.addr
        ),
        |_| {},
    );
    wait_listening(tls);
    let url = format!("https://{HOST}:{}/u", tls.port());
    assert_eq!(
        https_client(&first.root, tls, false)
            .get(&url)
            .send()
            .unwrap()
            .status(),
        200
    );
    let second = mint_pki("after");
    write_pki(dir.path(), &second);
    old.signal(SIGQUIT);
    let mut new = spawn_successor(&old.config);
    assert!(old
        .wait(Duration::from_secs(30))
        .is_some_and(|s| s.success()));
    let r = https_client(&second.root, tls, false)
        .get(&url)
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.version(), reqwest::Version::HTTP_2);
    let _ = new.kill();
    let _ = new.wait();
}

#[test]
fn config_check_rejects_a_key_that_does_not_belong_to_the_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key, _) = write_pki(dir.path(), &mint_pki("check"));
    let yaml = |key: &Path| {
        format!(
            "server:\n  listen: [\"127.0.0.1:1\"]\n  tls: {{ listen: \"127.0.0.1:2\", cert: \"{}\", key: \"{}\" }}\nupstreams: {{ u: {{ targets: [\"127.0.0.1:3\"] }} }}\nroutes: [{{ name: all, upstream: u }}]\n",
            cert.display(),
            key.display()
        )
    };
    let check = |text: String| {
        let file = dir.path().join("g.yaml");
        std::fs::write(&file, text).unwrap();
        std::process::Command::new(env!("CARGO_BIN_EXE_gatehouse"))
            .arg("-t")
            .arg("-c")
            .arg(&file)
            .output()
            .unwrap()
    };
    assert!(check(yaml(&key)).status.success());
    let other = dir.path().join("other.pem");
    std::fs::write(&other, KeyPair::generate().unwrap().serialize_pem()).unwrap();
    let out = check(yaml(&other));
    assert!(!out.status.success());
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        text.contains("server.tls.key") && text.contains("does not fit"),
        "{text}"
    );
}
