//! Pingora's own HTTP/1 rejections as problem+json.
//!
//! Pingora answers some requests before any gatehouse hook runs: a head it
//! cannot parse (too many headers, a malformed line, an ambiguous Host or
//! authority) gets its pre-generated `400` with an empty body, `CONNECT`
//! its `405`. Those are written by `HttpProxy` itself, so the only place to
//! reach them is the connection: [`Rejects`] wraps the client stream and
//! replaces exactly that pre-generated head (its `Server: Pingora` and fixed
//! `Cache-Control: private, no-store` tail) with the same status as an RFC
//! 9457 document. Every other write passes through untouched. HTTP/2
//! rejections are stream resets or HPACK-encoded frames, and stay as they
//! are.

use async_trait::async_trait;
use pingora::protocols::{
    GetProxyDigest, GetSocketDigest, GetTimingDigest, Peek, Shutdown, Ssl, UniqueID, UniqueIDType,
    ALPN, IO,
};
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The end of every head Pingora pre-generates for an error (`Connection:
/// close` is added because it closes the connection after it).
const PINGORA_TAIL: &[u8] =
    b"Content-Length: 0\r\nCache-Control: private, no-store\r\nConnection: close\r\n\r\n";
const PINGORA_SERVER: &[u8] = b"\r\nServer: Pingora\r\n";

/// Writes smaller than this are coalesced until a flush (or until they
/// would overflow it): one segment for a head and a small body, as
/// Pingora's own L4 write buffer does for streams from its listeners.
const WRITE_BUF: usize = 1460;

/// The client stream, with Pingora's bodiless error heads rewritten and
/// small writes coalesced. Generic over the concrete stream (TCP, TLS over
/// TCP), so the inner calls are static and the wrapper costs no second
/// dynamic dispatch.
#[derive(Debug)]
pub(crate) struct Rejects<S> {
    inner: S,
    /// A replacement being written: the bytes, how many are out, and how
    /// many of the caller's bytes it stands for.
    pending: Option<(Vec<u8>, usize, usize)>,
    /// Coalesced writes, and how many of them are out.
    wbuf: Vec<u8>,
    wpos: usize,
}

impl<S> Rejects<S> {
    pub(crate) fn new(inner: S) -> Rejects<S> {
        Rejects {
            inner,
            pending: None,
            wbuf: Vec::new(),
            wpos: 0,
        }
    }
}

impl<S: IO> Rejects<S> {
    /// Writes out what is coalesced.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.wpos < self.wbuf.len() {
            match Pin::new(&mut self.inner).poll_write(cx, &self.wbuf[self.wpos..]) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) => self.wpos += n,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
        self.wbuf.clear();
        self.wpos = 0;
        Poll::Ready(Ok(()))
    }

    /// A write that is not a rejection: coalesced if small.
    fn poll_buffered(&mut self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        if self.wbuf.len() + buf.len() > WRITE_BUF {
            std::task::ready!(self.poll_drain(cx))?;
        }
        if buf.len() >= WRITE_BUF {
            return Pin::new(&mut self.inner).poll_write(cx, buf);
        }
        if self.wbuf.capacity() == 0 {
            self.wbuf.reserve_exact(WRITE_BUF);
        }
        self.wbuf.extend_from_slice(buf);
        Poll::Ready(Ok(buf.len()))
    }
}

/// The cheap test every write pays: a 4xx status line long enough to end
/// in Pingora's tail. Bodies and 2xx/3xx/5xx heads fail at the first bytes.
#[inline]
fn maybe_rejection(buf: &[u8]) -> bool {
    buf.len() > PINGORA_TAIL.len() + PINGORA_SERVER.len() + 12 && buf[9] == b'4' && buf[0] == b'H'
}

/// The problem+json response for one of Pingora's error heads, or `None`
/// when `buf` is anything else.
#[cold]
fn rewrite(buf: &[u8]) -> Option<Vec<u8>> {
    if !(buf.starts_with(b"HTTP/1.1 4") && buf.ends_with(PINGORA_TAIL)) {
        return None;
    }
    let status_line_end = buf.windows(2).position(|w| w == b"\r\n")?;
    if !buf[status_line_end..].starts_with(PINGORA_SERVER) {
        return None;
    }
    let status: u16 = std::str::from_utf8(buf.get(9..12)?).ok()?.parse().ok()?;
    let (slug, detail) = match status {
        405 => ("method-not-allowed", "CONNECT is not proxied."),
        _ => (
            "bad-request",
            "The request head could not be parsed (a malformed line, too many headers, or an ambiguous Host).",
        ),
    };
    let body = crate::problem::Problem {
        status,
        slug,
        detail: detail.into(),
        errors: None,
    }
    .body(&crate::http::new_request_id());
    let mut out = Vec::with_capacity(256 + body.len());
    out.extend_from_slice(&buf[..status_line_end + 2]);
    // Pingora's `Date` line is kept (RFC 9110 §6.6.1).
    let date = buf
        .split(|b| *b == b'\n')
        .find(|l| l.starts_with(b"Date: "));
    if let Some(line) = date {
        out.extend_from_slice(line);
        out.push(b'\n');
    }
    let head = format!(
        "Content-Type: {}\r\nContent-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n",
        crate::problem::CONTENT_TYPE,
        body.len()
    );
    out.extend_from_slice(head.as_bytes());
    out.extend_from_slice(&body);
    Some(out)
}

impl<S: IO> AsyncRead for Rejects<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: IO> AsyncWrite for Rejects<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.pending.is_none() {
            if !maybe_rejection(buf) {
                return this.poll_buffered(cx, buf);
            }
            match rewrite(buf) {
                Some(out) => this.pending = Some((out, 0, buf.len())),
                None => return this.poll_buffered(cx, buf),
            }
        }
        std::task::ready!(this.poll_drain(cx))?;
        let Some((out, sent, stands_for)) = this.pending.as_mut() else {
            return Poll::Ready(Ok(0));
        };
        while *sent < out.len() {
            match Pin::new(&mut this.inner).poll_write(cx, &out[*sent..]) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) => *sent += n,
                Poll::Ready(Err(e)) => {
                    this.pending = None;
                    return Poll::Ready(Err(e));
                }
                Poll::Pending => return Poll::Pending,
            }
        }
        let n = *stands_for;
        this.pending = None;
        Poll::Ready(Ok(n))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let first = bufs.iter().find(|b| !b.is_empty());
        let rejection = first.is_some_and(|b| maybe_rejection(b) && rewrite(b).is_some());
        let total: usize = bufs.iter().map(|b| b.len()).sum();
        if this.pending.is_some() || rejection || this.wbuf.len() + total <= WRITE_BUF {
            // A partial write of the first slice is a valid vectored write.
            let first = first.map(|b| &b[..]).unwrap_or_default();
            return Pin::new(this).poll_write(cx, first);
        }
        std::task::ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        std::task::ready!(self.poll_drain(cx))?;
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        std::task::ready!(self.poll_drain(cx))?;
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[async_trait]
impl<S: IO> Shutdown for Rejects<S> {
    /// Coalesced bytes go out first (bounded: a stalled client does not
    /// hold the shutdown), so a response cut by its upstream still delivers
    /// the head and body bytes it had.
    async fn shutdown(&mut self) {
        let flush = tokio::io::AsyncWriteExt::flush(self);
        let _ = tokio::time::timeout(std::time::Duration::from_secs(1), flush).await;
        self.inner.shutdown().await
    }
}

impl<S: IO> UniqueID for Rejects<S> {
    fn id(&self) -> UniqueIDType {
        self.inner.id()
    }
}

impl<S: IO> Ssl for Rejects<S> {
    fn get_ssl(&self) -> Option<&pingora::protocols::tls::TlsRef> {
        self.inner.get_ssl()
    }
    fn get_ssl_digest(&self) -> Option<Arc<pingora::protocols::tls::SslDigest>> {
        self.inner.get_ssl_digest()
    }
    fn selected_alpn_proto(&self) -> Option<ALPN> {
        self.inner.selected_alpn_proto()
    }
}

impl<S: IO> GetTimingDigest for Rejects<S> {
    fn get_timing_digest(&self) -> Vec<Option<pingora::protocols::TimingDigest>> {
        self.inner.get_timing_digest()
    }
    fn get_read_pending_time(&self) -> std::time::Duration {
        self.inner.get_read_pending_time()
    }
    fn get_write_pending_time(&self) -> std::time::Duration {
        self.inner.get_write_pending_time()
    }
}

impl<S: IO> GetProxyDigest for Rejects<S> {
    fn get_proxy_digest(&self) -> Option<Arc<pingora::protocols::raw_connect::ProxyDigest>> {
        self.inner.get_proxy_digest()
    }
    fn set_proxy_digest(&mut self, digest: pingora::protocols::raw_connect::ProxyDigest) {
        self.inner.set_proxy_digest(digest)
    }
}

impl<S: IO> GetSocketDigest for Rejects<S> {
    fn get_socket_digest(&self) -> Option<Arc<pingora::protocols::SocketDigest>> {
        self.inner.get_socket_digest()
    }
    fn set_socket_digest(&mut self, digest: pingora::protocols::SocketDigest) {
        self.inner.set_socket_digest(digest)
    }
}

#[async_trait]
impl<S: IO> Peek for Rejects<S> {
    async fn try_peek(&mut self, buf: &mut [u8]) -> io::Result<bool> {
        self.inner.try_peek(buf).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_pingoras_own_error_heads_are_rewritten() {
        let pingora = b"HTTP/1.1 400 Bad Request\r\nServer: Pingora\r\nDate: Wed, 02 Dec 2026 03:55:30 GMT\r\nContent-Length: 0\r\nCache-Control: private, no-store\r\nConnection: close\r\n\r\n";
        let out = String::from_utf8(rewrite(pingora).unwrap()).unwrap();
        assert!(out.starts_with("HTTP/1.1 400 Bad Request\r\nDate: "));
        assert!(out.contains("\r\nContent-Type: application/problem+json\r\n"));
        assert!(!out.contains("Pingora"));
        assert!(out.contains("\"status\":400"));
        assert!(out.contains("\r\nDate: Wed, 02 Dec 2026 03:55:30 GMT\r\n"));
        let upstream = b"HTTP/1.1 400 Bad Request\r\nServer: nginx\r\nContent-Length: 0\r\nCache-Control: private, no-store\r\nConnection: close\r\n\r\n";
        assert_eq!(rewrite(upstream), None);
        assert_eq!(
            rewrite(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"),
            None
        );
    }
}
