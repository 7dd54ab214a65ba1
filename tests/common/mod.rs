//! Test harness: real upstream HTTP servers and real gateways on 127.0.0.1
//! ephemeral ports, in this process. Nothing here is mocked: upstreams speak
//! HTTP/1.1 over TCP, the gateway is the library's own server.
#![allow(dead_code)]

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// A port nobody in this process was handed before (the OS picks it).
pub fn free_port() -> u16 {
    static GIVEN: OnceLock<Mutex<HashSet<u16>>> = OnceLock::new();
    let given = GIVEN.get_or_init(Default::default);
    loop {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        if given.lock().unwrap().insert(port) {
            return port;
        }
    }
}

/// Waits until something accepts on `addr` (bounded).
pub fn wait_listening(addr: SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("nothing listening on {addr}");
}

/// A request as an upstream saw it.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub target: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Recorded {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    pub fn header_all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

struct UpstreamState {
    name: String,
    health_status: AtomicU16,
    status: AtomicU16,
    delay_ms: AtomicU64,
    running: AtomicBool,
    requests: Mutex<Vec<Recorded>>,
    extra_headers: Mutex<Vec<(String, String)>>,
    body: Mutex<Option<Vec<u8>>>,
    hits: AtomicUsize,
    health_hits: AtomicUsize,
    etag: Mutex<Option<String>>,
}

/// A real HTTP/1.1 upstream: answers every request with a JSON echo (or a
/// fixed body), can fail its health checks, stall, and stop/restart on the
/// same port.
pub struct Upstream {
    pub addr: SocketAddr,
    state: Arc<UpstreamState>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Upstream {
    pub fn start(name: &str) -> Upstream {
        let port = free_port();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let u = Upstream {
            addr,
            state: Arc::new(UpstreamState {
                name: name.to_string(),
                health_status: AtomicU16::new(200),
                status: AtomicU16::new(200),
                delay_ms: AtomicU64::new(0),
                running: AtomicBool::new(false),
                requests: Mutex::new(Vec::new()),
                extra_headers: Mutex::new(Vec::new()),
                body: Mutex::new(None),
                hits: AtomicUsize::new(0),
                health_hits: AtomicUsize::new(0),
                etag: Mutex::new(None),
            }),
            thread: Mutex::new(None),
        };
        u.restart();
        u
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    pub fn set_health(&self, status: u16) {
        self.state.health_status.store(status, Ordering::SeqCst);
    }
    pub fn set_status(&self, status: u16) {
        self.state.status.store(status, Ordering::SeqCst);
    }
    pub fn set_delay(&self, d: Duration) {
        self.state
            .delay_ms
            .store(d.as_millis() as u64, Ordering::SeqCst);
    }
    pub fn set_body(&self, body: &[u8]) {
        *self.state.body.lock().unwrap() = Some(body.to_vec());
    }
    /// Responses carry this `ETag`; a matching `If-None-Match` gets 304.
    pub fn set_etag(&self, etag: &str) {
        *self.state.etag.lock().unwrap() = Some(etag.to_string());
    }
    pub fn clear_response_headers(&self) {
        self.state.extra_headers.lock().unwrap().clear();
    }
    pub fn add_response_header(&self, name: &str, value: &str) {
        self.state
            .extra_headers
            .lock()
            .unwrap()
            .push((name.into(), value.into()));
    }
    /// Requests other than health checks.
    pub fn hits(&self) -> usize {
        self.state.hits.load(Ordering::SeqCst)
    }
    pub fn health_hits(&self) -> usize {
        self.state.health_hits.load(Ordering::SeqCst)
    }
    pub fn requests(&self) -> Vec<Recorded> {
        self.state.requests.lock().unwrap().clone()
    }
    pub fn last(&self) -> Recorded {
        self.requests()
            .last()
            .cloned()
            .expect("upstream saw no request")
    }

    /// Closes the listener; connections in progress are dropped.
    pub fn stop(&self) {
        self.state.running.store(false, Ordering::SeqCst);
        // Wake the accept loop.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_millis(200));
        if let Some(t) = self.thread.lock().unwrap().take() {
            let _ = t.join();
        }
    }

    /// Listens again on the same port.
    pub fn restart(&self) {
        let listener = {
            let deadline = Instant::now() + Duration::from_secs(5);
            loop {
                match TcpListener::bind(self.addr) {
                    Ok(l) => break l,
                    Err(e) if Instant::now() < deadline => {
                        let _ = e;
                        std::thread::sleep(Duration::from_millis(20))
                    }
                    Err(e) => panic!("cannot bind {}: {e}", self.addr),
                }
            }
        };
        self.state.running.store(true, Ordering::SeqCst);
        let state = self.state.clone();
        let t = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if !state.running.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let state = state.clone();
                std::thread::spawn(move || serve_conn(conn, state));
            }
        });
        *self.thread.lock().unwrap() = Some(t);
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.stop();
    }
}

type Headers = Vec<(String, String)>;

/// Reads one request head (method, target, headers); `None` at EOF.
fn read_head(r: &mut BufReader<TcpStream>) -> Option<(String, String, Headers)> {
    let mut line = String::new();
    if r.read_line(&mut line).ok()? == 0 {
        return None;
    }
    let mut parts = line.trim_end().splitn(3, ' ');
    let method = parts.next()?.to_string();
    let target = parts.next()?.to_string();
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        if r.read_line(&mut h).ok()? == 0 {
            return None;
        }
        let h = h.trim_end_matches(['\r', '\n']);
        if h.is_empty() {
            break;
        }
        if let Some((n, v)) = h.split_once(':') {
            headers.push((n.trim().to_string(), v.trim().to_string()));
        }
    }
    Some((method, target, headers))
}

fn read_body(r: &mut BufReader<TcpStream>, headers: &[(String, String)]) -> Option<Vec<u8>> {
    let get = |n: &str| {
        headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(n))
            .map(|(_, v)| v.clone())
    };
    if get("transfer-encoding").is_some_and(|v| v.to_ascii_lowercase().contains("chunked")) {
        let mut body = Vec::new();
        loop {
            let mut size = String::new();
            r.read_line(&mut size).ok()?;
            let n = usize::from_str_radix(size.trim().split(';').next()?, 16).ok()?;
            if n == 0 {
                let mut end = String::new();
                r.read_line(&mut end).ok()?;
                return Some(body);
            }
            let mut chunk = vec![0; n + 2];
            r.read_exact(&mut chunk).ok()?;
            body.extend_from_slice(&chunk[..n]);
        }
    }
    let len: usize = get("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; len];
    r.read_exact(&mut body).ok()?;
    Some(body)
}

/// The `Sec-WebSocket-Accept` for a key (RFC 6455).
fn ws_accept(key: &str) -> String {
    use base64::Engine;
    let mut h = sha1_smol::Sha1::new();
    h.update(key.as_bytes());
    h.update(b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11");
    base64::engine::general_purpose::STANDARD.encode(h.digest().bytes())
}

fn serve_conn(conn: TcpStream, state: Arc<UpstreamState>) {
    let mut writer = conn.try_clone().unwrap();
    let mut reader = BufReader::new(conn);
    while let Some((method, target, headers)) = read_head(&mut reader) {
        let get = |n: &str| {
            headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(n))
                .map(|(_, v)| v.clone())
        };
        if get("upgrade").is_some_and(|u| u.eq_ignore_ascii_case("websocket")) {
            // A WebSocket echo: answer 101, then send every byte back.
            state.hits.fetch_add(1, Ordering::SeqCst);
            state.requests.lock().unwrap().push(Recorded {
                method: method.clone(),
                target: target.clone(),
                headers: headers.clone(),
                body: Vec::new(),
            });
            let accept = ws_accept(&get("sec-websocket-key").unwrap_or_default());
            let resp = format!("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n");
            if writer.write_all(resp.as_bytes()).is_err() {
                return;
            }
            let mut buf = [0u8; 4096];
            loop {
                match reader.read(&mut buf) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => {
                        if writer.write_all(&buf[..n]).is_err() {
                            return;
                        }
                    }
                }
            }
        }
        let Some(body) = read_body(&mut reader, &headers) else {
            return;
        };
        let is_health = target == "/health";
        let hit_no = if is_health {
            0
        } else {
            state.hits.load(Ordering::SeqCst) + 1
        };
        let status = if is_health {
            state.health_hits.fetch_add(1, Ordering::SeqCst);
            state.health_status.load(Ordering::SeqCst)
        } else {
            state.hits.fetch_add(1, Ordering::SeqCst);
            state.requests.lock().unwrap().push(Recorded {
                method: method.clone(),
                target: target.clone(),
                headers: headers.clone(),
                body: body.clone(),
            });
            std::thread::sleep(Duration::from_millis(state.delay_ms.load(Ordering::SeqCst)));
            state.status.load(Ordering::SeqCst)
        };
        if !state.running.load(Ordering::SeqCst) {
            return;
        }
        let payload = match state.body.lock().unwrap().clone() {
            Some(b) if !is_health => b,
            _ => serde_json::to_vec(&serde_json::json!({
                "upstream": state.name,
                "method": method,
                "target": target,
                "n": hit_no,
                "headers": headers.iter().map(|(k, v)| (k.to_ascii_lowercase(), serde_json::Value::from(v.clone()))).collect::<serde_json::Map<_, _>>(),
            }))
            .unwrap(),
        };
        let etag = state.etag.lock().unwrap().clone();
        let not_modified = !is_health
            && etag.as_ref().is_some_and(|e| {
                headers
                    .iter()
                    .any(|(k, v)| k.eq_ignore_ascii_case("if-none-match") && v == e)
            });
        let status = if not_modified { 304 } else { status };
        let mut resp = format!(
            "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\nx-upstream: {}\r\n",
            state.name
        );
        for (n, v) in state.extra_headers.lock().unwrap().iter() {
            resp.push_str(&format!("{n}: {v}\r\n"));
        }
        if let Some(e) = &etag {
            resp.push_str(&format!("etag: {e}\r\n"));
        }
        let head_only = method == "HEAD" || not_modified;
        if not_modified {
            resp.push_str("\r\n");
        } else {
            resp.push_str(&format!("content-length: {}\r\n\r\n", payload.len()));
        }
        let mut out = resp.into_bytes();
        if !head_only {
            out.extend_from_slice(&payload);
        }
        if writer.write_all(&out).is_err() {
            return;
        }
    }
}

/// A gateway running in this process on an ephemeral port.
pub struct Gateway {
    pub addr: SocketAddr,
    pub admin: Option<SocketAddr>,
    pub state: Arc<gatehouse::app::GatewayState>,
    stop: tokio::sync::mpsc::UnboundedSender<pingora::server::ShutdownSignal>,
    thread: Option<JoinHandle<()>>,
}

/// Replaces `{listen}` and `{admin}` in `yaml` and starts a gateway.
pub fn gateway(yaml: &str) -> Gateway {
    let port = free_port();
    let admin_port = free_port();
    let mut text = yaml
        .replace("{listen}", &format!("127.0.0.1:{port}"))
        .replace("{admin}", &format!("127.0.0.1:{admin_port}"));
    // Keep the test output readable: no access log unless a test asks for one.
    if !text.contains("logging:") {
        text.push_str("\nlogging: { access_log: off }\n");
    }
    let cfg = gatehouse::config::load_str(&text)
        .unwrap_or_else(|e| panic!("test config invalid:\n{e}\n{text}"));
    gatehouse::logging::init(gatehouse::config::LogLevel::Warn);
    let has_admin = cfg.admin.is_some();
    let app = gatehouse::app::build(cfg, Default::default()).expect("gateway builds");
    let state = app.state.clone();
    let (stop, signal) = gatehouse::app::ChannelShutdown::new();
    let thread = std::thread::spawn(move || app.run(Box::new(signal)));
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    wait_listening(addr);
    let admin = has_admin.then(|| format!("127.0.0.1:{admin_port}").parse().unwrap());
    if let Some(a) = admin {
        wait_listening(a);
    }
    Gateway {
        addr,
        admin,
        state,
        stop,
        thread: Some(thread),
    }
}

impl Gateway {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
    pub fn admin_url(&self, path: &str) -> String {
        format!(
            "http://{}{path}",
            self.admin.expect("no admin listener configured")
        )
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self
            .stop
            .send(pingora::server::ShutdownSignal::FastShutdown);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

pub fn client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap()
}

/// A response read off a raw socket.
#[derive(Debug)]
pub struct RawResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl RawResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

/// Sends raw bytes and reads one response (`None` if the connection closed
/// without one). Used where a client library would rewrite the request.
pub fn raw(addr: SocketAddr, request: &[u8]) -> Option<RawResponse> {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(request).unwrap();
    read_response(&mut BufReader::new(s))
}

/// Like [`raw`] for a request whose response has no body (HEAD).
pub fn raw_head(addr: SocketAddr, request: &[u8]) -> Option<RawResponse> {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(request).unwrap();
    let mut r = BufReader::new(s);
    let mut resp = read_head_only(&mut r)?;
    let mut rest = Vec::new();
    let _ = r.read_to_end(&mut rest);
    resp.body = rest;
    Some(resp)
}

fn read_head_only(r: &mut BufReader<TcpStream>) -> Option<RawResponse> {
    let mut line = String::new();
    if r.read_line(&mut line).ok()? == 0 {
        return None;
    }
    let status: u16 = line.split_whitespace().nth(1)?.parse().ok()?;
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        r.read_line(&mut h).ok()?;
        let h = h.trim_end_matches(['\r', '\n']);
        if h.is_empty() {
            break;
        }
        if let Some((n, v)) = h.split_once(':') {
            headers.push((n.trim().to_string(), v.trim().to_string()));
        }
    }
    Some(RawResponse {
        status,
        headers,
        body: Vec::new(),
    })
}

pub fn read_response(r: &mut BufReader<TcpStream>) -> Option<RawResponse> {
    let mut resp = read_head_only(r)?;
    resp.body = read_body_any(r, &resp.headers);
    Some(resp)
}

fn read_body_any(r: &mut BufReader<TcpStream>, headers: &[(String, String)]) -> Vec<u8> {
    let get = |n: &str| {
        headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(n))
            .map(|(_, v)| v.clone())
    };
    if get("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
        let mut body = Vec::new();
        loop {
            let mut size = String::new();
            if r.read_line(&mut size).unwrap_or(0) == 0 {
                return body;
            }
            let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
            let mut chunk = vec![0; n + 2];
            if r.read_exact(&mut chunk).is_err() {
                return body;
            }
            if n == 0 {
                return body;
            }
            body.extend_from_slice(&chunk[..n]);
        }
    }
    match get("content-length").and_then(|v| v.parse::<usize>().ok()) {
        Some(len) => {
            let mut body = vec![0; len];
            let _ = r.read_exact(&mut body);
            body
        }
        None => Vec::new(),
    }
}

/// `GET path` with the given extra header lines, over a fresh connection.
pub fn get_raw(addr: SocketAddr, path: &str, extra: &str) -> RawResponse {
    let req =
        format!("GET {path} HTTP/1.1\r\nHost: test.local\r\n{extra}Connection: close\r\n\r\n");
    raw(addr, req.as_bytes()).expect("gateway closed the connection without a response")
}

/// Polls `cond` every 50 ms until it holds or `limit` passes.
pub fn eventually(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// One sample of a Prometheus text exposition.
#[derive(Debug, Clone)]
pub struct Sample {
    pub name: String,
    pub labels: Vec<(String, String)>,
    pub value: f64,
}

impl Sample {
    pub fn label(&self, k: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.as_str())
    }
}

/// Parses the Prometheus text format (enough of it for our own output).
pub fn parse_metrics(text: &str) -> Vec<Sample> {
    let mut out = Vec::new();
    for line in text.lines() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').expect("sample line");
        let (name, labels) = match series.split_once('{') {
            None => (series.to_string(), Vec::new()),
            Some((n, rest)) => {
                let body = rest.strip_suffix('}').expect("closing brace");
                let mut labels = Vec::new();
                let mut s = body;
                while !s.is_empty() {
                    let (k, rest) = s.split_once("=\"").expect("label");
                    let end = rest.find("\"").expect("label end");
                    labels.push((
                        k.trim_start_matches(',').to_string(),
                        rest[..end].to_string(),
                    ));
                    s = rest[end + 1..].trim_start_matches(',');
                }
                (n.to_string(), labels)
            }
        };
        out.push(Sample {
            name,
            labels,
            value: value.parse().unwrap_or(f64::NAN),
        });
    }
    out
}

/// Scrapes the gateway's `/metrics`.
pub fn scrape(gw: &Gateway) -> Vec<Sample> {
    let text = client()
        .get(gw.admin_url("/metrics"))
        .send()
        .unwrap()
        .text()
        .unwrap();
    parse_metrics(&text)
}

/// The value of the sample `name` whose labels include all of `labels` (0 if absent).
pub fn metric(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
    samples
        .iter()
        .filter(|s| s.name == name && labels.iter().all(|(k, v)| s.label(k) == Some(v)))
        .map(|s| s.value)
        .sum()
}

/// The real `gatehouse` binary, started on a config file.
pub struct Binary {
    pub child: std::process::Child,
    pub addr: SocketAddr,
    pub admin: SocketAddr,
    pub config: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

/// Writes `yaml` (with `{listen}`/`{admin}` filled in) and starts the binary
/// with `-c`. `setup` can adjust the command (stdio, env, extra args).
pub fn spawn_binary(yaml: &str, setup: impl FnOnce(&mut std::process::Command)) -> Binary {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let admin_port = free_port();
    let text = yaml
        .replace("{listen}", &format!("127.0.0.1:{port}"))
        .replace("{admin}", &format!("127.0.0.1:{admin_port}"))
        .replace("{dir}", dir.path().to_str().unwrap());
    let config = dir.path().join("gatehouse.yaml");
    std::fs::write(&config, text).unwrap();
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_gatehouse"));
    cmd.arg("-c").arg(&config);
    cmd.stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    setup(&mut cmd);
    let child = cmd.spawn().unwrap();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    wait_listening(addr);
    Binary {
        child,
        addr,
        admin: format!("127.0.0.1:{admin_port}").parse().unwrap(),
        config,
        _dir: dir,
    }
}

impl Binary {
    pub fn dir(&self) -> &std::path::Path {
        self._dir.path()
    }
    pub fn signal(&self, sig: i32) {
        send_signal(self.child.id(), sig);
    }
    /// Everything the process wrote to its piped stdout (read to EOF).
    pub fn read_stdout(&mut self) -> String {
        let mut out = String::new();
        let pipe = self.child.stdout.as_mut().expect("stdout piped");
        std::io::Read::read_to_string(pipe, &mut out).unwrap();
        out
    }
    /// Everything the process wrote to its piped stderr (read to EOF).
    pub fn read_stderr(&mut self) -> String {
        let mut err = String::new();
        let pipe = self.child.stderr.as_mut().expect("stderr piped");
        std::io::Read::read_to_string(pipe, &mut err).unwrap();
        err
    }
    /// Waits for the process to exit (bounded); `None` if it did not.
    pub fn wait(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Some(s) = self.child.try_wait().unwrap() {
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
    pub fn admin_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.admin)
    }
}

impl Drop for Binary {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub const SIGHUP: i32 = 1;
pub const SIGINT: i32 = 2;
pub const SIGQUIT: i32 = 3;
pub const SIGUSR1: i32 = 10;
pub const SIGTERM: i32 = 15;

extern "C" {
    fn kill(pid: i32, sig: i32) -> i32;
}

pub fn send_signal(pid: u32, sig: i32) {
    // SAFETY: kill(2) with a pid we spawned and a valid signal number.
    unsafe {
        kill(pid as i32, sig);
    }
}

/// A test fixture file (keys, JWKS).
pub fn fixture(name: &str) -> String {
    format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"))
}

pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Signs `claims` with `alg`; `key` is an HMAC secret for HS*, else the
/// name of a private-key fixture (`rsa1`, `ec256`, `ec384`, `ed25519`).
pub fn mint(
    alg: jsonwebtoken::Algorithm,
    key: &str,
    claims: serde_json::Value,
    kid: Option<&str>,
) -> String {
    use jsonwebtoken::{Algorithm::*, EncodingKey};
    let k = match alg {
        HS256 | HS384 | HS512 => EncodingKey::from_secret(key.as_bytes()).unwrap(),
        RS256 | RS384 | RS512 | PS256 | PS384 | PS512 => {
            EncodingKey::from_rsa_pem(&std::fs::read(fixture(&format!("{key}.key.pem"))).unwrap())
                .unwrap()
        }
        ES256 | ES384 => {
            EncodingKey::from_ec_pem(&std::fs::read(fixture(&format!("{key}.key.pem"))).unwrap())
                .unwrap()
        }
        EdDSA => {
            EncodingKey::from_ed_pem(&std::fs::read(fixture(&format!("{key}.key.pem"))).unwrap())
                .unwrap()
        }
        other => panic!("no test key for {other:?}"),
    };
    let mut header = jsonwebtoken::Header::new(alg);
    header.kid = kid.map(str::to_string);
    jsonwebtoken::encode(&header, &claims, &k).unwrap()
}

/// Claims valid for an hour with the given subject.
pub fn claims(sub: &str) -> serde_json::Value {
    serde_json::json!({"sub": sub, "exp": now() + 3600, "iat": now()})
}

/// A token assembled by hand (header and payload JSON, raw signature).
pub fn forge(header: &str, payload: &str, signature: &str) -> String {
    use base64::Engine;
    let e = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
    format!("{}.{}.{signature}", e(header), e(payload))
}

/// A real `redis-server` on a loopback ephemeral port (no persistence).
pub struct RedisServer {
    pub port: u16,
    child: Option<std::process::Child>,
    dir: tempfile::TempDir,
}

impl RedisServer {
    pub fn start() -> RedisServer {
        let mut r = RedisServer {
            port: free_port(),
            child: None,
            dir: tempfile::tempdir().unwrap(),
        };
        r.restart();
        r
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub fn restart(&mut self) {
        let child = std::process::Command::new("redis-server")
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .arg("--dir")
            .arg(self.dir.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("redis-server must be installed (scripts/deps.sh installs it)");
        self.child = Some(child);
        wait_listening(format!("127.0.0.1:{}", self.port).parse().unwrap());
    }

    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A TCP server that accepts connections and never answers (a hung peer).
pub struct Silent {
    pub addr: SocketAddr,
    _listener: TcpListener,
    conns: Arc<Mutex<Vec<TcpStream>>>,
}

impl Silent {
    pub fn start() -> Silent {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let conns = Arc::new(Mutex::new(Vec::new()));
        let l = listener.try_clone().unwrap();
        let c = conns.clone();
        std::thread::spawn(move || {
            for s in l.incoming().flatten() {
                c.lock().unwrap().push(s);
            }
        });
        Silent {
            addr,
            _listener: listener,
            conns,
        }
    }

    pub fn connections(&self) -> usize {
        self.conns.lock().unwrap().len()
    }
}
