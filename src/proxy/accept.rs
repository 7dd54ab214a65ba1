//! A client connection from accept to close, before and between requests:
//! - `max_connections`: over it, the connection is closed at once and
//!   counted in `gatehouse_connections_rejected_total`;
//! - on the TLS listener, the handshake (with the acceptor loaded last, so
//!   a reload's certificate or `client_ca` applies to the next connection);
//! - the head deadlines (slowloris): the first request head must be
//!   complete within `header_timeout` of accept, whatever the client sends
//!   (nothing, part of a request line, a TLS handshake, a bare h2 preface,
//!   an h2 preface without HEADERS); every later head on a keep-alive
//!   connection within `header_timeout` of its first byte, which may take
//!   `idle_timeout` to come. Pingora bounds each *read*, not the head;
//! - the HTTP/1 keep-alive loop. Between requests a connection holds only
//!   its socket: it waits for the next request's first bytes itself, and
//!   only then builds the next HTTP session (buffers, the proxy's request
//!   future) and hands it the bytes read. An idle connection costs a few
//!   KiB, not the ~56 KiB of a session waiting inside Pingora;
//! - the counts the drain waits for (`signals.rs`): open connections and
//!   those whose head is still arriving.

use super::Gateway;
use crate::runtime::GatewayState;
use async_trait::async_trait;
use bytes::BytesMut;
use pingora::apps::{HttpServerApp, HttpServerOptions, ReusedHttpStream, ServerApp};
use pingora::protocols::http::ServerSession;
use pingora::protocols::l4::stream::Stream as Tcp;
use pingora::protocols::{GetSocketDigest, Stream, ALPN};
use pingora::proxy::HttpProxy;
use pingora::server::ShutdownWatch;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncReadExt;
use tokio::time::{Instant, Sleep};

pub(crate) struct Accept {
    pub proxy: Arc<HttpProxy<Gateway>>,
    pub state: Arc<GatewayState>,
}

/// The first read of a request, made before its session exists. Heads
/// that are longer continue in Pingora's own buffer.
const FIRST_READ: usize = 1024;

/// HTTP/2's connection preface.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// One connection's "a head is awaited" flag: while it is false the
/// connection is counted in `awaiting_head`. The proxy receives it in the
/// connection user context and sets it once the head is parsed.
#[derive(Clone)]
pub(crate) struct HeadSignal(Arc<AtomicBool>);

impl HeadSignal {
    /// The head is complete (or will never be): uncount it, stop the deadline.
    pub(crate) fn arrived(&self, state: &GatewayState) {
        if !self.0.swap(true, Ordering::AcqRel) {
            state
                .connections
                .awaiting_head
                .fetch_sub(1, Ordering::AcqRel);
        }
    }

    /// The next head starts arriving.
    fn awaited(&self, state: &GatewayState) {
        if self.0.swap(false, Ordering::AcqRel) {
            state
                .connections
                .awaiting_head
                .fetch_add(1, Ordering::AcqRel);
        }
    }
}

/// Undoes one connection's counts when it ends.
struct Open<'a> {
    state: &'a GatewayState,
    head: HeadSignal,
}

impl Drop for Open<'_> {
    fn drop(&mut self) {
        self.state.connections.open.fetch_sub(1, Ordering::AcqRel);
        self.state.metrics.connections_open.dec();
        self.head.arrived(self.state);
    }
}

/// Runs `inner`, giving up (`None`) if `head` is still unset after
/// `budget`. The timer is armed only if `inner` is pending without a head
/// (a complete head read ahead needs none), and dropped once the head is
/// there: a `select!` would poll it on every wake-up of the connection.
async fn until_head<F: Future>(inner: F, budget: Duration, head: &AtomicBool) -> Option<F::Output> {
    let mut inner = std::pin::pin!(inner);
    let deadline = Instant::now() + budget;
    let mut timer: Option<Pin<Box<Sleep>>> = None;
    let mut armed = false;
    std::future::poll_fn(|cx| {
        if let std::task::Poll::Ready(v) = inner.as_mut().poll(cx) {
            return std::task::Poll::Ready(Some(v));
        }
        if head.load(Ordering::Acquire) {
            timer = None;
            armed = true;
        } else if !armed {
            armed = true;
            timer = Some(Box::pin(tokio::time::sleep_until(deadline)));
        }
        match timer.as_mut().map(|t| t.as_mut().poll(cx)) {
            Some(std::task::Poll::Ready(())) => std::task::Poll::Ready(None),
            _ => std::task::Poll::Pending,
        }
    })
    .await
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

/// Resolves when the process starts shutting down (never if it cannot).
pub(super) async fn shutting_down(watch: &mut ShutdownWatch) {
    while !*watch.borrow() {
        if watch.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

/// The next request's first bytes, read by `deadline` with no session
/// built. `None`: the client closed, the deadline passed, or (on a kept-alive
/// connection only) the process is shutting down. A new connection's first
/// request is awaited through a shutdown: the client may have sent it
/// already, and the drain waits for it (`signals::drain_until_done`). One
/// timer per connection, reset for each wait.
async fn first_bytes(
    stream: &mut Stream,
    deadline: Instant,
    timer: &mut Option<Pin<Box<Sleep>>>,
    watch: Option<&mut ShutdownWatch>,
) -> Option<BytesMut> {
    let mut first = [0u8; FIRST_READ];
    let sleep = match timer {
        Some(t) => {
            t.as_mut().reset(deadline);
            t
        }
        None => timer.insert(Box::pin(tokio::time::sleep_until(deadline))),
    };
    let n = tokio::select! {
        biased;
        r = stream.read(&mut first) => r.ok().filter(|n| *n > 0)?,
        () = sleep.as_mut() => return None,
        () = async {
            match watch {
                Some(w) => shutting_down(w).await,
                None => std::future::pending().await,
            }
        } => return None,
    };
    // Sized to what arrived: the buffer holds the request head for the
    // whole request (4 KiB each was 4 MB at 1,000 busy connections). A
    // longer head grows it as Pingora reads on (doubling).
    let mut buf = BytesMut::with_capacity(n);
    buf.extend_from_slice(&first[..n]);
    Some(buf)
}

impl Accept {
    /// HTTP/1: one Pingora session per request, none while idle.
    async fn serve_h1(
        &self,
        mut stream: Stream,
        shutdown: &ShutdownWatch,
        first: Instant,
        head: &HeadSignal,
    ) {
        let mut watch = shutdown.clone();
        let mut timer = None;
        let mut settings = None;
        let mut deadline = first;
        let mut reused = false;
        loop {
            let watch = reused.then_some(&mut watch);
            let Some(bytes) = first_bytes(&mut stream, deadline, &mut timer, watch).await else {
                return;
            };
            head.awaited(&self.state);
            let mut session = ServerSession::new_http1(stream);
            match settings.take() {
                Some(s) => pingora::apps::HttpPersistentSettings::apply_to_session(s, &mut session),
                None => {
                    session.set_keepalive(if *shutdown.borrow() { None } else { Some(60) });
                    let limit = self
                        .proxy
                        .server_options()
                        .and_then(|o| o.keepalive_request_limit);
                    session.set_keepalive_reuses_remaining(limit);
                }
            }
            session.set_pipelined_prefix(bytes);
            session.set_connection_user_context(Some(Box::new(head.clone())));
            let (header_timeout, idle) = {
                let snap = self.state.snapshots.load();
                let s = &snap.config.server;
                (s.limits.header_timeout, s.idle_timeout)
            };
            // The first head's budget counts from accept; a later one's
            // from its first byte.
            let budget = if reused {
                header_timeout
            } else {
                first.saturating_duration_since(Instant::now())
            };
            let served = until_head(
                self.proxy.process_new_http(session, shutdown),
                budget,
                &head.0,
            );
            let served = served.await;
            head.arrived(&self.state);
            (stream, settings) = match served {
                Some(Some(reused)) => reused.consume(),
                Some(None) => return,
                None => {
                    log::debug!("request head not complete within {budget:?}: connection closed");
                    return;
                }
            };
            deadline = Instant::now() + idle;
            reused = true;
        }
    }

    /// HTTP/2: Pingora's own connection loop, through [`H2Conn`].
    async fn serve_h2(
        &self,
        stream: Stream,
        shutdown: &ShutdownWatch,
        first: Instant,
        head: &HeadSignal,
    ) {
        let conn = Arc::new(H2Conn {
            proxy: self.proxy.clone(),
            state: self.state.clone(),
            head: head.clone(),
        });
        let budget = first.saturating_duration_since(Instant::now());
        let served = until_head(
            ServerApp::process_new(&conn, stream, shutdown),
            budget,
            &head.0,
        )
        .await;
        if served.is_none() {
            log::debug!("no HTTP/2 request within {budget:?} of accept: connection closed");
        }
    }

    /// Whether the client speaks HTTP/2: ALPN on TLS, the preface with
    /// `h2c` (read within the first head's deadline, then put back).
    async fn is_h2(&self, stream: &mut Stream, first: Instant) -> Option<bool> {
        if stream.get_ssl_digest().is_some() {
            return Some(matches!(stream.selected_alpn_proto(), Some(ALPN::H2)));
        }
        if !self.proxy.server_options().is_some_and(|o| o.h2c) {
            return Some(false);
        }
        let mut buf = [0u8; H2_PREFACE.len()];
        match tokio::time::timeout_at(first, stream.try_peek(&mut buf)).await {
            Ok(Ok(true)) => Some(buf == H2_PREFACE),
            Ok(Ok(false)) => Some(false),
            Ok(Err(e)) => {
                log::debug!("read error while peeking for the h2c preface: {e}");
                None
            }
            Err(_) => None,
        }
    }

    /// Admits the connection (`max_connections`) and counts it, with the
    /// deadline of its first head (one snapshot load), or `None`.
    fn admit(&self) -> Option<(Open<'_>, Instant)> {
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
        let open = Open {
            state: &self.state,
            head: HeadSignal(Arc::new(AtomicBool::new(false))),
        };
        Some((open, Instant::now() + budget))
    }

    /// The TLS handshake on the TLS listener's connections, by `first`.
    async fn handshake(&self, tcp: Tcp, first: Instant) -> Option<Stream> {
        let Some(l) = self
            .state
            .tls
            .as_ref()
            .filter(|l| on_listener(&tcp, l.addr))
        else {
            return Some(guarded(tcp));
        };
        let acceptor = l.acceptor();
        // Boxed: the handshake's state (rustls's) stays out of the future
        // every plain connection carries.
        let hs = Box::pin(acceptor.tls_handshake(tcp));
        match tokio::time::timeout_at(first, hs).await {
            Ok(Ok(s)) => Some(guarded(s)),
            Ok(Err(e)) => {
                log::debug!("TLS handshake failed: {e}");
                None
            }
            Err(_) => {
                log::debug!("TLS handshake not complete within the head deadline of accept");
                None
            }
        }
    }
}

/// One HTTP/2 connection: its first stream (HEADERS received) ends the
/// accept deadline. Per connection, because Pingora's h2 loop calls the
/// app once per stream with no connection context.
struct H2Conn {
    proxy: Arc<HttpProxy<Gateway>>,
    state: Arc<GatewayState>,
    head: HeadSignal,
}

#[async_trait]
impl HttpServerApp for H2Conn {
    async fn process_new_http(
        self: &Arc<Self>,
        session: ServerSession,
        shutdown: &ShutdownWatch,
    ) -> Option<ReusedHttpStream> {
        self.head.arrived(&self.state);
        self.proxy.process_new_http(session, shutdown).await
    }

    fn h2_options(&self) -> Option<pingora::protocols::http::v2::server::H2Options> {
        self.proxy.h2_options()
    }

    fn server_options(&self) -> Option<&HttpServerOptions> {
        self.proxy.server_options()
    }
}

#[async_trait]
impl ServerApp for Accept {
    async fn process_new(
        self: &Arc<Self>,
        stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        let (open, first) = self.admit()?;
        let Some(tcp) = tcp(stream) else {
            log::error!("accepted a connection that is not TCP: closed");
            return None;
        };
        let mut stream = self.handshake(tcp, first).await?;
        match self.is_h2(&mut stream, first).await? {
            true => self.serve_h2(stream, shutdown, first, &open.head).await,
            false => self.serve_h1(stream, shutdown, first, &open.head).await,
        }
        None
    }

    async fn cleanup(&self) {
        self.proxy.http_cleanup().await
    }
}
