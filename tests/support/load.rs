//! Continuous load against a gateway: keep-alive connections and fresh
//! connections, counting successes and failures. A request on a reused
//! keep-alive connection that the server closed before sending any byte is
//! retried once on a new connection, as real clients do; every other
//! failure counts.

use super::http1::read_response;
use std::io::{BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub struct Load {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicUsize>,
    failures: Arc<Mutex<Vec<String>>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

/// One `GET /api/load`; `Err((closed_early, why))`.
fn request(stream: &mut TcpStream, close: bool) -> Result<u16, (bool, String)> {
    let req = format!(
        "GET /api/load HTTP/1.1\r\nHost: load\r\n{}\r\n",
        if close { "Connection: close\r\n" } else { "" }
    );
    stream
        .write_all(req.as_bytes())
        .map_err(|e| (true, format!("write: {e}")))?;
    let mut r = BufReader::new(stream.try_clone().unwrap());
    match read_response(&mut r) {
        Some(resp) => Ok(resp.status),
        // Nothing came back: the connection was closed before any response byte.
        None => Err((true, "closed before a response".into())),
    }
}

fn connect(addr: SocketAddr) -> std::io::Result<TcpStream> {
    let s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    Ok(s)
}

/// One request on the kept connection `conn` (opened if there is none).
fn keepalive_request(
    addr: SocketAddr,
    conn: &mut Option<(TcpStream, usize)>,
) -> Result<u16, String> {
    let (mut s, used) = match conn.take() {
        Some(c) => c,
        None => (connect(addr).map_err(|e| format!("connect: {e}"))?, 0),
    };
    match request(&mut s, false) {
        Ok(st) => {
            *conn = Some((s, used + 1));
            Ok(st)
        }
        Err((true, _)) if used > 0 => {
            // Reused connection closed by the server: retry once.
            let mut s = connect(addr).map_err(|e| e.to_string())?;
            let r = request(&mut s, false).map_err(|e| e.1);
            *conn = Some((s, 1));
            r
        }
        Err((_, e)) => Err(e),
    }
}

impl Load {
    pub fn start(addr: SocketAddr, keepalive: usize, fresh: usize) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let ok = Arc::new(AtomicUsize::new(0));
        let failures = Arc::new(Mutex::new(Vec::new()));
        let mut threads = Vec::new();
        for i in 0..keepalive + fresh {
            let (stop, ok, failures) = (stop.clone(), ok.clone(), failures.clone());
            let keep = i < keepalive;
            threads.push(std::thread::spawn(move || {
                let mut conn = None;
                while !stop.load(Ordering::Relaxed) {
                    let outcome = if keep {
                        keepalive_request(addr, &mut conn)
                    } else {
                        connect(addr)
                            .map_err(|e| format!("connect: {e}"))
                            .and_then(|mut s| request(&mut s, true).map_err(|e| e.1))
                    };
                    match outcome {
                        Ok(200) => {
                            ok.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok(st) => failures.lock().unwrap().push(format!("status {st}")),
                        Err(e) => failures.lock().unwrap().push(e),
                    }
                    std::thread::sleep(Duration::from_millis(2));
                }
            }));
        }
        Load {
            stop,
            ok,
            failures,
            threads,
        }
    }

    /// Successful requests so far.
    pub fn ok(&self) -> usize {
        self.ok.load(Ordering::Relaxed)
    }

    /// Stops the load; the successes and every failure seen.
    pub fn finish(self) -> (usize, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads {
            let _ = t.join();
        }
        (
            self.ok.load(Ordering::Relaxed),
            self.failures.lock().unwrap().clone(),
        )
    }
}
