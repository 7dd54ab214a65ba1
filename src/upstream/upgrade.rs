//! The upstream connection of a WebSocket handshake, made so that Pingora
//! cannot end the tunnel right after the 101.
//!
//! Pingora 0.9.1 (cloudflare/pingora#946): a handshake has an empty body,
//! whose end its downstream half queues before the upstream half first
//! polls. If that upstream half reads the 101 before it takes the end of
//! the body off the queue, it takes that end for the end of the tunnel and
//! closes it: the client gets the 101, then EOF (about 1 handshake in 50
//! from a loopback upstream that answers at once).
//!
//! The seam is the peer's own L4 connector: the connection is a plain TCP
//! stream whose first read after a write reports "not yet" once (and asks
//! to be polled again). The upstream half's first look at the socket then
//! always finds the queued end of body first, as it does when the upstream
//! is slower. In a tunnel this costs one extra poll per change of
//! direction; other requests never use it.

use async_trait::async_trait;
use pingora::connectors::L4Connect;
use pingora::prelude::HttpPeer;
use pingora::protocols::l4::socket::SocketAddr;
use pingora::protocols::l4::stream::Stream;
use pingora::protocols::l4::virt::{VirtualSockOpt, VirtualSocket, VirtualSocketStream};
use pingora::{Error, ErrorType, Result};
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// Keeps handshake connections out of the pool the other requests share.
const HANDSHAKE_GROUP: u64 = 0x7773_2d68_616e_6473; // "ws-hands"

/// Makes `peer` connect through [`HandshakeConnect`], in a pool group of its
/// own (a pooled connection of another request would bypass it).
pub(crate) fn for_handshake(peer: &mut HttpPeer) {
    peer.options.custom_l4 = Some(Arc::new(HandshakeConnect));
    peer.group_key = HANDSHAKE_GROUP;
}

/// Connects like Pingora's own TCP connector (its connect timeouts still
/// apply around this), and wraps the stream in [`YieldAfterWrite`].
#[derive(Debug)]
struct HandshakeConnect;

#[async_trait]
impl L4Connect for HandshakeConnect {
    async fn connect(&self, addr: &SocketAddr) -> Result<Stream> {
        let SocketAddr::Inet(inet) = addr else {
            return Error::e_explain(
                ErrorType::ConnectError,
                format!("WebSocket upstream {addr}: only TCP addresses are supported"),
            );
        };
        match TcpStream::connect(inet).await {
            Ok(tcp) => {
                let socket = YieldAfterWrite { tcp, wrote: false };
                Ok(Stream::from(VirtualSocketStream::new(Box::new(socket))))
            }
            Err(e) => Err(Error::because(
                connect_error_type(&e),
                format!("Fail to connect to {addr}"),
                e,
            )),
        }
    }
}

/// The error types Pingora's own connector gives, which retries and
/// passive health go by.
fn connect_error_type(e: &io::Error) -> ErrorType {
    match e.kind() {
        io::ErrorKind::ConnectionRefused => ErrorType::ConnectRefused,
        io::ErrorKind::TimedOut => ErrorType::ConnectTimedout,
        io::ErrorKind::NetworkUnreachable | io::ErrorKind::HostUnreachable => {
            ErrorType::ConnectNoRoute
        }
        _ => ErrorType::ConnectError,
    }
}

/// A TCP stream whose first read after a write is pending once.
#[derive(Debug)]
struct YieldAfterWrite {
    tcp: TcpStream,
    wrote: bool,
}

impl AsyncRead for YieldAfterWrite {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if std::mem::take(&mut self.wrote) {
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        Pin::new(&mut self.tcp).poll_read(cx, buf)
    }
}

impl AsyncWrite for YieldAfterWrite {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.tcp).poll_write(cx, buf);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.wrote = true;
        }
        r
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_shutdown(cx)
    }
}

impl VirtualSocket for YieldAfterWrite {
    fn set_socket_option(&self, opt: VirtualSockOpt) -> io::Result<()> {
        match opt {
            VirtualSockOpt::NoDelay => self.tcp.set_nodelay(true),
            // gatehouse sets no TCP keepalive on upstream peers.
            other => Err(io::Error::new(
                io::ErrorKind::Unsupported,
                format!("{other:?} on a WebSocket upstream connection"),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A read right after a write is pending once, then reads; a read with
    /// no write before it is not delayed.
    #[tokio::test]
    async fn the_first_read_after_a_write_is_pending_once() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut b = [0u8; 2];
            s.read_exact(&mut b).await.unwrap();
            s.write_all(b"ab").await.unwrap();
        });
        let mut sock = YieldAfterWrite {
            tcp: TcpStream::connect(addr).await.unwrap(),
            wrote: false,
        };
        sock.write_all(b"hi").await.unwrap();
        server.await.unwrap();
        let mut buf = [0u8; 2];
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let mut rb = ReadBuf::new(&mut buf);
        assert!(Pin::new(&mut sock).poll_read(&mut cx, &mut rb).is_pending());
        sock.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"ab");
        assert!(!sock.wrote);
    }
}
