//! Mirroring: a copy of a share of a route's requests, as sent to the
//! primary upstream (after rewrites and header transforms), plus
//! `X-Gatehouse-Mirror: 1`, goes to the mirror upstream on a task of its
//! own; the answer is read and discarded. The client's request never waits
//! for it: the copy is taken from what streams past, bodies over 64 KiB are
//! not mirrored, and at most 64 copies per mirror upstream are in flight
//! (the rest are dropped and counted).

use crate::upstream::Pool;
use bytes::{Bytes, BytesMut};
use pingora::connectors::http::Connector;
use pingora::http::RequestHeader;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

/// Largest body copied.
const MAX_BODY: usize = 64 * 1024;
/// Copies in flight per mirror upstream.
pub(crate) const MAX_INFLIGHT: usize = 64;

/// The copy being taken of one request (the ctx slice of this module).
pub(crate) struct MirrorCtx {
    pool: Arc<Pool>,
    head: Option<Box<RequestHeader>>,
    body: BytesMut,
    too_big: bool,
}

impl MirrorCtx {
    pub(crate) fn new(pool: Arc<Pool>) -> MirrorCtx {
        MirrorCtx {
            pool,
            head: None,
            body: BytesMut::new(),
            too_big: false,
        }
    }

    /// The head as sent to the primary (first attempt only).
    pub(crate) fn head(&mut self, up: &RequestHeader) {
        if self.head.is_none() {
            let mut head = Box::new(up.clone());
            let _ = head.insert_header("x-gatehouse-mirror", "1");
            self.head = Some(head);
        }
    }

    /// A chunk of the body; false once the copy is given up.
    fn body(&mut self, chunk: &[u8]) {
        if self.too_big || self.body.len() + chunk.len() > MAX_BODY {
            self.too_big = true;
            self.body = BytesMut::new();
        } else {
            self.body.extend_from_slice(chunk);
        }
    }
}

/// Sends mirrored copies; one connection pool per gateway.
pub(crate) struct Mirrors {
    connector: Connector,
}

impl Mirrors {
    /// `upstream_ca`: the roots TLS mirrors are verified against, as for
    /// proxied requests (`server.upstream_ca`).
    pub(crate) fn new(upstream_ca: Option<String>) -> Mirrors {
        let mut options = pingora::connectors::ConnectorOptions::new(128);
        options.ca_file = upstream_ca;
        Mirrors {
            connector: Connector::new(Some(options)),
        }
    }

    /// `request_body_filter`: copies `chunk`; at the end of the body the
    /// copy is sent (spawned) and the slice emptied.
    pub(crate) fn on_body(
        self: &Arc<Self>,
        slot: &mut Option<MirrorCtx>,
        chunk: Option<&Bytes>,
        end: bool,
    ) {
        let Some(m) = slot.as_mut() else { return };
        if let Some(c) = chunk {
            m.body(c);
        }
        if !end {
            return;
        }
        let Some(m) = slot.take() else { return };
        let (Some(head), false) = (m.head, m.too_big) else {
            return;
        };
        let pool = m.pool;
        if pool.mirrors.fetch_add(1, Ordering::AcqRel) >= MAX_INFLIGHT {
            pool.mirrors.fetch_sub(1, Ordering::AcqRel);
            pool.metrics.mirror_dropped.inc();
            return;
        }
        let this = self.clone();
        tokio::spawn(async move {
            this.send(&pool, head, m.body.freeze()).await;
            pool.mirrors.fetch_sub(1, Ordering::AcqRel);
        });
    }

    async fn send(&self, pool: &Arc<Pool>, head: Box<RequestHeader>, body: Bytes) {
        let Ok(guard) = pool.pick(b"", &[]) else {
            return;
        };
        let peer = pool.peer(guard.addr(), None);
        let start = Instant::now();
        let (mut session, _) = match self.connector.get_http_session(&peer).await {
            Ok(s) => s,
            Err(e) => return log::debug!("mirror to `{}`: {e}", pool.name),
        };
        let exchange = async {
            session.write_request_header(head).await?;
            if !body.is_empty() {
                session.write_request_body(body, true).await?;
            }
            session.finish_request_body().await?;
            session.read_response_header().await?;
            while session.read_response_body().await?.is_some() {}
            Ok::<(), Box<pingora::Error>>(())
        };
        match exchange.await {
            Ok(()) => {
                pool.metrics.duration.observe(start.elapsed().as_secs_f64());
                guard.succeeded();
                self.connector
                    .release_http_session(session, &peer, peer.options.idle_timeout)
                    .await;
            }
            Err(e) => {
                guard.failed();
                log::debug!("mirror to `{}`: {e}", pool.name);
            }
        }
    }
}
