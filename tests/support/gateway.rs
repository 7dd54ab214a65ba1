//! A gateway running in this test process on ephemeral ports, and the
//! HTTP client the tests use against it.

use super::{free_port, loopback, wait_listening};
use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

pub struct Gateway {
    pub addr: SocketAddr,
    pub admin: Option<SocketAddr>,
    pub state: Arc<gatehouse::bench::GatewayState>,
    stop: tokio::sync::mpsc::UnboundedSender<pingora::server::ShutdownSignal>,
    thread: Option<JoinHandle<()>>,
}

/// Replaces `{listen}` and `{admin}` in `yaml` and starts a gateway.
pub fn gateway(yaml: &str) -> Gateway {
    let port = free_port();
    let admin_port = free_port();
    let mut text = yaml
        .replace("{listen}", &loopback(port).to_string())
        .replace("{admin}", &loopback(admin_port).to_string());
    // Keep the test output readable: no access log unless a test asks for one.
    if !text.contains("logging:") {
        text.push_str("\nlogging: { access_log: off }\n");
    }
    let cfg = gatehouse::config::load_str(&text)
        .unwrap_or_else(|e| panic!("test config invalid:\n{e}\n{text}"));
    gatehouse::bench::init_logging(gatehouse::config::LogLevel::Warn);
    let has_admin = cfg.admin.is_some();
    let app = gatehouse::app::build(cfg, Default::default()).expect("gateway builds");
    let state = app.state.clone();
    let (stop, signal) = gatehouse::app::ChannelShutdown::new();
    let thread = std::thread::spawn(move || app.run(Box::new(signal)));
    let addr = loopback(port);
    wait_listening(addr);
    let admin = has_admin.then(|| loopback(admin_port));
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

/// A gateway with one route, `all`, to `upstream` (and `route_extra` in
/// that route's map, such as `, websocket: true`).
pub fn gateway_to(upstream: SocketAddr, route_extra: &str) -> Gateway {
    gateway(&format!(
        "server: {{ listen: [\"{{listen}}\"] }}\nupstreams: {{ u: {{ targets: [\"{upstream}\"] }} }}\nroutes: [{{ name: all, upstream: u {route_extra} }}]\n"
    ))
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

    /// `GET path` on the admin listener, as JSON (`/upstreams`, say).
    pub fn admin_json(&self, path: &str) -> serde_json::Value {
        client()
            .get(self.admin_url(path))
            .send()
            .unwrap()
            .json()
            .unwrap()
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

/// A client speaking HTTP/2 with prior knowledge (h2c) on plain listeners.
pub fn h2c_client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .no_proxy()
        .http2_prior_knowledge()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}
