//! The first thing a client connection meets, before any HTTP parsing:
//! - `max_connections`: over it, the connection is closed at once and
//!   counted in `gatehouse_connections_rejected_total`;
//! - the head deadline from accept: until its first request head is
//!   complete, a connection has `header_timeout` in all, whatever it sends
//!   (nothing, part of a request line, a bare h2 preface, an h2 preface
//!   without HEADERS). `Edge` then bounds every later head;
//! - the counts the drain waits for (`signals.rs`): open connections and
//!   those still before their first head.
//!
//! - on the TLS listener, the handshake (with the acceptor loaded last, so
//!   a reload's certificate or `client_ca` applies to the next connection),
//!   inside that same deadline.

use super::edge::Edge;
use crate::runtime::GatewayState;
use async_trait::async_trait;
use pingora::apps::ServerApp;
use pingora::protocols::l4::stream::Stream as Tcp;
use pingora::protocols::{GetSocketDigest, Stream};
use pingora::server::ShutdownWatch;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

pub(crate) struct Accept {
    pub edge: Arc<Edge>,
    pub state: Arc<GatewayState>,
}

/// Undoes one connection's counts when it ends.
struct Open<'a> {
    state: &'a GatewayState,
    peer: Option<std::net::SocketAddr>,
    first: Arc<AtomicBool>,
}

impl Drop for Open<'_> {
    fn drop(&mut self) {
        let c = &self.state.connections;
        c.open.fetch_sub(1, Ordering::AcqRel);
        self.state.metrics.connections_open.dec();
        if !self.first.swap(true, Ordering::AcqRel) {
            c.awaiting_head.fetch_sub(1, Ordering::AcqRel);
        }
        if let Some(peer) = self.peer {
            let mut map = c.first_head.lock().unwrap_or_else(|p| p.into_inner());
            if map.get(&peer).is_some_and(|f| Arc::ptr_eq(f, &self.first)) {
                map.remove(&peer);
            }
        }
    }
}

/// Marks the first head of the connection from `peer` as arrived.
pub(crate) fn first_head_arrived(state: &GatewayState, peer: std::net::SocketAddr) {
    let c = &state.connections;
    let flag = c
        .first_head
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(&peer)
        .cloned();
    if let Some(f) = flag {
        if !f.swap(true, Ordering::AcqRel) {
            c.awaiting_head.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

/// The listener's TCP stream, concrete again (Pingora hands it over boxed).
fn tcp(stream: Stream) -> Option<Tcp> {
    stream.into_any().downcast::<Tcp>().ok().map(|b| *b)
}

/// Pingora's own bodiless rejections become problem+json (`reject.rs`).
fn guarded<S: pingora::protocols::IO + 'static>(s: S) -> Stream {
    Box::new(super::reject::Rejects::new(s))
}

/// Whether `stream` was accepted on `addr` (an unspecified IP matches any
/// local address on that port).
fn on_listener(stream: &Tcp, addr: std::net::SocketAddr) -> bool {
    let local = stream
        .get_socket_digest()
        .and_then(|d| d.local_addr().and_then(|a| a.as_inet()).copied());
    local.is_some_and(|l| {
        l.port() == addr.port() && (addr.ip().is_unspecified() || l.ip() == addr.ip())
    })
}

#[async_trait]
impl ServerApp for Accept {
    async fn process_new(
        self: &Arc<Self>,
        stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        let (max, budget) = {
            let snap = self.state.snapshots.load();
            let l = &snap.config.server.limits;
            (l.max_connections, l.header_timeout)
        };
        let c = &self.state.connections;
        if c.open.fetch_add(1, Ordering::AcqRel) >= max {
            c.open.fetch_sub(1, Ordering::AcqRel);
            self.state.metrics.connections_rejected.inc();
            return None;
        }
        self.state.metrics.connections_open.inc();
        c.awaiting_head.fetch_add(1, Ordering::AcqRel);
        let peer = stream
            .get_socket_digest()
            .and_then(|d| d.peer_addr().and_then(|a| a.as_inet()).copied());
        let first = Arc::new(AtomicBool::new(false));
        if let Some(p) = peer {
            let mut map = c.first_head.lock().unwrap_or_else(|p| p.into_inner());
            map.insert(p, first.clone());
        }
        let _open = Open {
            state: &self.state,
            peer,
            first: first.clone(),
        };
        let tls = self.state.tls.as_ref();
        let Some(tcp) = tcp(stream) else {
            log::error!("accepted a connection that is not TCP: closed");
            return None;
        };
        // What is left of the head budget once the handshake is done.
        let (stream, left) = match tls.filter(|l| on_listener(&tcp, l.addr)) {
            None => (guarded(tcp), budget),
            // Boxed: the handshake's state (rustls's) stays out of the
            // future every plain connection carries.
            Some(l) => {
                let start = tokio::time::Instant::now();
                let acceptor = l.acceptor();
                let hs = Box::pin(acceptor.tls_handshake(tcp));
                match tokio::time::timeout(budget, hs).await {
                    Ok(Ok(s)) => (guarded(s), budget.saturating_sub(start.elapsed())),
                    Ok(Err(e)) => {
                        log::debug!("TLS handshake failed: {e}");
                        return None;
                    }
                    Err(_) => {
                        log::debug!("TLS handshake not complete within {budget:?} of accept");
                        return None;
                    }
                }
            }
        };
        let served = super::edge::until_head(self.edge.process_new(stream, shutdown), left, &first);
        served.await.unwrap_or_else(|| {
            log::debug!("no complete request head within {budget:?} of accept: connection closed");
            None
        })
    }

    async fn cleanup(&self) {
        ServerApp::cleanup(&*self.edge).await
    }
}
