//! A real HTTP/1.1 upstream on a loopback port: answers every request with
//! a JSON echo (or a fixed body), can fail its health checks, stall, serve
//! a WebSocket echo, and stop/restart on the same port.

use super::http1::{header, read_body, read_head, Headers};
use super::{free_port, loopback};
use std::io::{BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

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
        header(&self.headers, name)
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
    /// Close the connection instead of answering (a reset, to the gateway).
    reset: AtomicBool,
    /// Connections accepted.
    connections: AtomicUsize,
    etag: Mutex<Option<String>>,
}

pub struct Upstream {
    pub addr: SocketAddr,
    state: Arc<UpstreamState>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Upstream {
    pub fn start(name: &str) -> Upstream {
        Upstream::start_at(name, loopback(free_port()))
    }

    /// Listens on `addr` (any 127.0.0.0/8 address: several upstreams can
    /// share a port, as the targets of one DNS name do).
    pub fn start_at(name: &str, addr: SocketAddr) -> Upstream {
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
                reset: AtomicBool::new(false),
                connections: AtomicUsize::new(0),
                etag: Mutex::new(None),
            }),
            thread: Mutex::new(None),
        };
        u.restart();
        u
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
    /// Requests are read and counted, then the connection is closed
    /// without an answer.
    pub fn set_reset(&self, on: bool) {
        self.state.reset.store(on, Ordering::SeqCst);
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
    /// TCP connections accepted so far (pooled connections are reused).
    pub fn connections(&self) -> usize {
        self.state.connections.load(Ordering::SeqCst)
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
        let deadline = Instant::now() + Duration::from_secs(5);
        let listener = loop {
            match TcpListener::bind(self.addr) {
                Ok(l) => break l,
                Err(_) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                Err(e) => panic!("cannot bind {}: {e}", self.addr),
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
                state.connections.fetch_add(1, Ordering::SeqCst);
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

/// Serves requests on one connection until it closes or upgrades.
fn serve_conn(conn: TcpStream, state: Arc<UpstreamState>) {
    let mut writer = conn.try_clone().unwrap();
    let mut reader = BufReader::new(conn);
    while let Some((line, headers)) = read_head(&mut reader) {
        let mut parts = line.splitn(3, ' ');
        let (Some(method), Some(target)) = (parts.next(), parts.next()) else {
            return;
        };
        let (method, target) = (method.to_string(), target.to_string());
        if header(&headers, "upgrade").is_some_and(|u| u.eq_ignore_ascii_case("websocket")) {
            ws_echo(&state, reader, writer, method, target, headers);
            return;
        }
        let Ok(body) = read_body(&mut reader, &headers) else {
            return;
        };
        let req = Recorded {
            method,
            target,
            headers,
            body,
        };
        let Some(out) = respond(&state, req) else {
            return;
        };
        if writer.write_all(&out).is_err() {
            return;
        }
    }
}

/// A WebSocket echo: answers 101, then sends every byte back.
fn ws_echo(
    state: &UpstreamState,
    mut reader: BufReader<TcpStream>,
    mut writer: TcpStream,
    method: String,
    target: String,
    headers: Headers,
) {
    state.hits.fetch_add(1, Ordering::SeqCst);
    let accept = ws_accept(header(&headers, "sec-websocket-key").unwrap_or_default());
    state.requests.lock().unwrap().push(Recorded {
        method,
        target,
        headers,
        body: Vec::new(),
    });
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

/// The `Sec-WebSocket-Accept` for a key (RFC 6455).
fn ws_accept(key: &str) -> String {
    use base64::Engine;
    let mut h = sha1_smol::Sha1::new();
    h.update(key.as_bytes());
    h.update(b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11");
    base64::engine::general_purpose::STANDARD.encode(h.digest().bytes())
}

/// Records `req` and builds the response bytes; `None` when the upstream
/// was stopped meanwhile (the connection is dropped unanswered).
fn respond(state: &UpstreamState, req: Recorded) -> Option<Vec<u8>> {
    let is_health = req.target == "/health";
    let (status, hit_no) = if is_health {
        state.health_hits.fetch_add(1, Ordering::SeqCst);
        (state.health_status.load(Ordering::SeqCst), 0)
    } else {
        let hit_no = state.hits.fetch_add(1, Ordering::SeqCst) + 1;
        state.requests.lock().unwrap().push(req.clone());
        std::thread::sleep(Duration::from_millis(state.delay_ms.load(Ordering::SeqCst)));
        (state.status.load(Ordering::SeqCst), hit_no)
    };
    if !state.running.load(Ordering::SeqCst) || (!is_health && state.reset.load(Ordering::SeqCst)) {
        return None;
    }
    let payload = match state.body.lock().unwrap().clone() {
        Some(b) if !is_health => b,
        _ => serde_json::to_vec(&serde_json::json!({
            "upstream": state.name,
            "method": req.method,
            "target": req.target,
            "n": hit_no,
            "headers": req.headers.iter().map(|(k, v)| (k.to_ascii_lowercase(), serde_json::Value::from(v.clone()))).collect::<serde_json::Map<_, _>>(),
        }))
        .unwrap(),
    };
    let etag = state.etag.lock().unwrap().clone();
    let not_modified = !is_health
        && etag
            .as_ref()
            .is_some_and(|e| req.header_all("if-none-match").contains(&e.as_str()));
    let status = if not_modified { 304 } else { status };
    let extra = state.extra_headers.lock().unwrap().clone();
    // An added Content-Type replaces the JSON one.
    let ct = if extra
        .iter()
        .any(|(n, _)| n.eq_ignore_ascii_case("content-type"))
    {
        ""
    } else {
        "content-type: application/json\r\n"
    };
    let mut resp = format!("HTTP/1.1 {status} X\r\n{ct}x-upstream: {}\r\n", state.name);
    for (n, v) in extra.iter() {
        resp.push_str(&format!("{n}: {v}\r\n"));
    }
    if let Some(e) = &etag {
        resp.push_str(&format!("etag: {e}\r\n"));
    }
    if not_modified {
        resp.push_str("\r\n");
    } else {
        resp.push_str(&format!("content-length: {}\r\n\r\n", payload.len()));
    }
    let mut out = resp.into_bytes();
    if !(req.method == "HEAD" || not_modified) {
        out.extend_from_slice(&payload);
    }
    Some(out)
}
