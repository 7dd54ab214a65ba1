//! The one HTTP/1 head and body parser of the tests, shared by the fake
//! upstream (requests) and the raw client (responses).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

pub type Headers = Vec<(String, String)>;

/// The first value of header `name` (case-insensitive).
pub fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// Reads a start line and the header lines after it; `None` at EOF.
pub fn read_head<R: BufRead>(r: &mut R) -> Option<(String, Headers)> {
    let mut line = String::new();
    if r.read_line(&mut line).ok()? == 0 {
        return None;
    }
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
    Some((line.trim_end().to_string(), headers))
}

/// Reads a body framed by `headers` (chunked or `Content-Length`; neither
/// means none). `Err` holds what arrived before the framing broke.
pub fn read_body<R: BufRead>(r: &mut R, headers: &[(String, String)]) -> Result<Vec<u8>, Vec<u8>> {
    let chunked = header(headers, "transfer-encoding")
        .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
    if chunked {
        let mut body = Vec::new();
        loop {
            let mut size = String::new();
            if r.read_line(&mut size).unwrap_or(0) == 0 {
                return Err(body);
            }
            let size = size.trim().split(';').next().unwrap_or("");
            let Ok(n) = usize::from_str_radix(size, 16) else {
                return Err(body);
            };
            let mut chunk = vec![0; n + 2];
            if r.read_exact(&mut chunk).is_err() {
                return Err(body);
            }
            if n == 0 {
                return Ok(body);
            }
            body.extend_from_slice(&chunk[..n]);
        }
    }
    let len: usize = header(headers, "content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; len];
    match r.read_exact(&mut body) {
        Ok(()) => Ok(body),
        Err(_) => Err(body),
    }
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
        header(&self.headers, name)
    }
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

fn read_status_head<R: BufRead>(r: &mut R) -> Option<RawResponse> {
    let (line, headers) = read_head(r)?;
    let status: u16 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(RawResponse {
        status,
        headers,
        body: Vec::new(),
    })
}

/// Reads one response with its body (what arrived of it).
pub fn read_response<R: BufRead>(r: &mut R) -> Option<RawResponse> {
    let mut resp = read_status_head(r)?;
    resp.body = read_body(r, &resp.headers).unwrap_or_else(|partial| partial);
    Some(resp)
}

fn send(addr: SocketAddr, request: &[u8]) -> BufReader<TcpStream> {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(request).unwrap();
    BufReader::new(s)
}

/// Sends raw bytes and reads one response (`None` if the connection closed
/// without one). Used where a client library would rewrite the request.
pub fn raw(addr: SocketAddr, request: &[u8]) -> Option<RawResponse> {
    read_response(&mut send(addr, request))
}

/// Like [`raw`] for a request whose response has no body (HEAD): the body
/// is whatever arrives until the connection closes.
pub fn raw_head(addr: SocketAddr, request: &[u8]) -> Option<RawResponse> {
    let mut r = send(addr, request);
    let mut resp = read_status_head(&mut r)?;
    let _ = r.read_to_end(&mut resp.body);
    Some(resp)
}

/// `GET path` with the given extra header lines, over a fresh connection.
pub fn get_raw(addr: SocketAddr, path: &str, extra: &str) -> RawResponse {
    let req =
        format!("GET {path} HTTP/1.1\r\nHost: test.local\r\n{extra}Connection: close\r\n\r\n");
    raw(addr, req.as_bytes()).expect("gateway closed the connection without a response")
}

/// Whether the peer closes `s` (EOF or reset) within `limit`, reading and
/// dropping whatever it sends first.
pub fn closed_within(s: &mut std::net::TcpStream, limit: std::time::Duration) -> bool {
    use std::io::Read;
    s.set_read_timeout(Some(limit)).unwrap();
    let mut buf = [0u8; 256];
    let start = std::time::Instant::now();
    loop {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
            Err(_) => return start.elapsed() < limit,
        }
    }
}
