//! A whole-head deadline in front of Pingora's HTTP/1 server.
//!
//! Pingora bounds each *read* of a request head (60 s, or the keep-alive
//! timeout), not the whole head, so a client trickling one byte at a time
//! could hold a connection forever (slowloris). `Edge` wraps the proxy's
//! `HttpServerApp`: every request on a connection must deliver its complete
//! head within `header_timeout` (plus `idle_timeout` on a reused keep-alive
//! connection, which may idle first), else the connection is dropped. The
//! proxy reports "head complete" through the connection user context,
//! which Pingora hands to `ProxyHttp::on_connection_reuse` right after
//! parsing the head and before `early_request_filter`.

use super::Gateway;
use crate::runtime::GatewayState;
use async_trait::async_trait;
use pingora::apps::{HttpServerApp, HttpServerOptions, ReusedHttpStream};
use pingora::protocols::http::ServerSession;
use pingora::proxy::HttpProxy;
use pingora::server::ShutdownWatch;
use std::any::Any;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Set by the proxy once a request head has been parsed
/// ([`HeadSignal::arrived`]).
#[derive(Clone)]
pub(crate) struct HeadSignal {
    head: Arc<AtomicBool>,
    /// The connection's first request: its peer, to tell `Accept`.
    first_of: Option<std::net::SocketAddr>,
    /// A later request, counted in `awaiting_head` while its head is read.
    counted: bool,
}

impl HeadSignal {
    /// The head is complete: stop the deadlines, update the drain counts.
    pub(crate) fn arrived(&self, state: &GatewayState) {
        if self.head.swap(true, Ordering::AcqRel) {
            return;
        }
        if self.counted {
            state
                .connections
                .awaiting_head
                .fetch_sub(1, Ordering::AcqRel);
        }
        if let Some(peer) = self.first_of {
            super::accept::first_head_arrived(state, peer);
        }
    }
}

/// Left in the connection context after a request, so the next one on the
/// same connection knows it may idle first.
pub(crate) struct Reused;

pub(crate) struct Edge {
    pub proxy: Arc<HttpProxy<Gateway>>,
    pub state: Arc<GatewayState>,
}

/// Runs `inner`, giving up (`None`) if `head` is still unset after
/// `budget`. Once `head` is set the timer is dropped and never polled again:
/// a `select!` would poll it on every wake-up of the connection's task.
pub(crate) async fn until_head<F: Future>(
    inner: F,
    budget: std::time::Duration,
    head: &AtomicBool,
) -> Option<F::Output> {
    let mut inner = std::pin::pin!(inner);
    let mut timer = Some(Box::pin(tokio::time::sleep(budget)));
    std::future::poll_fn(|cx| {
        if let std::task::Poll::Ready(v) = inner.as_mut().poll(cx) {
            return std::task::Poll::Ready(Some(v));
        }
        if head.load(Ordering::Acquire) {
            timer = None;
        }
        match timer.as_mut().map(|t| t.as_mut().poll(cx)) {
            Some(std::task::Poll::Ready(())) => std::task::Poll::Ready(None),
            _ => std::task::Poll::Pending,
        }
    })
    .await
}

#[async_trait]
impl HttpServerApp for Edge {
    async fn process_new_http(
        self: &Arc<Self>,
        mut session: ServerSession,
        shutdown: &ShutdownWatch,
    ) -> Option<ReusedHttpStream> {
        let snap = self.state.snapshots.load();
        let server = &snap.config.server;
        let reused = session
            .take_connection_user_context()
            .is_some_and(|c| c.is::<Reused>());
        let idle = if reused {
            server.idle_timeout
        } else {
            Default::default()
        };
        let budget = server.limits.header_timeout.saturating_add(idle);
        drop(snap);
        let head = Arc::new(AtomicBool::new(false));
        let first_of = if reused {
            self.state
                .connections
                .awaiting_head
                .fetch_add(1, Ordering::AcqRel);
            None
        } else {
            session.client_addr().and_then(|a| a.as_inet()).copied()
        };
        let signal = HeadSignal {
            head: head.clone(),
            first_of,
            counted: reused,
        };
        session.set_connection_user_context(Some(
            Box::new(signal.clone()) as Box<dyn Any + Send + Sync>
        ));
        let served = until_head(
            self.proxy.process_new_http(session, shutdown),
            budget,
            &head,
        );
        let result = served.await.unwrap_or_else(|| {
            log::debug!("request head not complete within {budget:?}: connection closed");
            None
        });
        // Ended before a head (closed, timed out): it is no longer awaited.
        signal.arrived(&self.state);
        result
    }

    fn h2_options(&self) -> Option<pingora::protocols::http::v2::server::H2Options> {
        self.proxy.h2_options()
    }

    fn server_options(&self) -> Option<&HttpServerOptions> {
        self.proxy.server_options()
    }

    async fn http_cleanup(&self) {
        self.proxy.http_cleanup().await
    }
}
