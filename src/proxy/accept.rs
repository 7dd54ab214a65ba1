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
//! TLS handshakes happen in Pingora's listener before this runs; Pingora
//! bounds them to 60 s itself.

use super::edge::Edge;
use crate::runtime::GatewayState;
use async_trait::async_trait;
use pingora::apps::ServerApp;
use pingora::protocols::Stream;
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
        let served =
            super::edge::until_head(self.edge.process_new(stream, shutdown), budget, &first);
        served.await.unwrap_or_else(|| {
            log::debug!("no complete request head within {budget:?} of accept: connection closed");
            None
        })
    }

    async fn cleanup(&self) {
        ServerApp::cleanup(&*self.edge).await
    }
}
