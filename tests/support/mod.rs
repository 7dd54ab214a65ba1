//! Test harness of the one integration binary (`tests/it`): real upstream
//! HTTP servers, real gateways, the real binary, a real `redis-server` and a
//! real DNS server (dnsmasq), a real etcd,
//! all on 127.0.0.1 ephemeral ports. Nothing here is mocked.
//!
//! One file per concern; everything is re-exported here so a test module
//! needs one `use crate::support::*;`.

pub mod binary;
pub mod dns;
pub mod etcd;
pub mod gateway;
pub mod http1;
pub mod jwt;
pub mod load;
pub mod otlp;
pub mod prom;
pub mod redis;
pub mod silent;
pub mod upstream;

pub use binary::*;
pub use dns::*;
pub use etcd::*;
pub use gateway::*;
pub use http1::*;
pub use jwt::*;
pub use load::*;
pub use otlp::*;
pub use prom::*;
pub use redis::*;
pub use silent::*;
pub use upstream::*;

use std::collections::HashSet;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// A free port nobody in this process was handed before. Ports come from
/// 10000-31999, below the kernel's ephemeral range (32768-60999): a port the
/// OS picked for `bind(0)` is released before the test binds it again, and
/// in that window any process's outgoing connection could take it.
pub fn free_port() -> u16 {
    static GIVEN: OnceLock<Mutex<HashSet<u16>>> = OnceLock::new();
    let given = GIVEN.get_or_init(Default::default);
    loop {
        let port = fastrand::u16(10_000..32_000);
        if TcpListener::bind(("127.0.0.1", port)).is_ok() && given.lock().unwrap().insert(port) {
            return port;
        }
    }
}

/// `127.0.0.1:port`.
pub fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
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
