//! The proxy's listening sockets and accept loop: a Pingora `Service` in
//! place of Pingora's listening service.
//!
//! Why not Pingora's: it spawns each connection as one task whose future
//! keeps room for its own TLS handshake and a 60 s handshake timer (which
//! stays registered after the handshake), about 10 KiB per connection for
//! as long as the connection lives, and gatehouse uses neither (`Accept`
//! runs the handshake). Here a connection's task is `Accept`'s future only.
//!
//! Upgrades (`-u`) work as with Pingora's listeners: a socket inherited
//! from the old process is looked up by its address in Pingora's fd table,
//! and a socket bound here is put in the table for the next process.

use super::accept::Accept;
use async_trait::async_trait;
use pingora::apps::ServerApp;
use pingora::protocols::l4::stream::Stream as Tcp;
use pingora::protocols::{GetSocketDigest, SocketDigest};
use pingora::server::{ListenFds, ShutdownWatch};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpSocket};

/// Pingora's accept backlog.
const BACKLOG: u32 = 65535;

pub(crate) struct Listen {
    pub addrs: Vec<String>,
    pub app: Arc<Accept>,
}

/// A listener on `addr`: the old process's socket when upgrading, else a
/// new one (recorded in `fds` for the next upgrade).
async fn listener(addr: &str, fds: Option<&ListenFds>) -> std::io::Result<TcpListener> {
    let inherited = fds.and_then(|f| f.lock().get(addr).copied());
    if let Some(fd) = inherited {
        return inherit(fd);
    }
    let l = bind(addr).await?;
    if let Some(f) = fds {
        f.lock().add(addr.to_string(), l.as_raw_fd());
    }
    Ok(l)
}

/// The listening socket `fd` passed by the old process on upgrade.
#[allow(unsafe_code)]
fn inherit(fd: std::os::fd::RawFd) -> std::io::Result<TcpListener> {
    use std::os::fd::FromRawFd;
    // SAFETY: `fd` is an open listening TCP socket that Pingora received
    // from the old process and recorded in its fd table for this address;
    // nothing else in this process wraps it (Pingora's own listeners do
    // exactly this for their addresses, and this address is only ours).
    let std = unsafe { std::net::TcpListener::from_raw_fd(fd) };
    std.set_nonblocking(true)?;
    TcpListener::from_std(std)
}

/// A new listening socket, `SO_REUSEADDR` like Pingora's; retried briefly
/// while the address is still in use.
async fn bind(addr: &str) -> std::io::Result<TcpListener> {
    let sock_addr: std::net::SocketAddr = addr.parse().map_err(|e| {
        std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("{addr}: {e}"))
    })?;
    let mut tries = 0;
    loop {
        let socket = match sock_addr {
            std::net::SocketAddr::V4(_) => TcpSocket::new_v4()?,
            std::net::SocketAddr::V6(_) => TcpSocket::new_v6()?,
        };
        socket.set_reuseaddr(true)?;
        match socket.bind(sock_addr) {
            Ok(()) => return socket.listen(BACKLOG),
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse && tries < 10 => {
                tries += 1;
                log::warn!("{addr} is in use, trying again");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => return Err(e),
        }
    }
}

/// Accepts until shutdown; each connection is one task on one of the
/// service's threads (Pingora's choice of runtime, as its listeners do).
async fn accept_loop(listener: TcpListener, app: Arc<Accept>, mut shutdown: ShutdownWatch) {
    loop {
        let accepted = tokio::select! {
            biased;
            () = super::accept::shutting_down(&mut shutdown) => break,
            r = listener.accept() => r,
        };
        match accepted {
            Ok((tcp, _)) => {
                let fd = tcp.as_raw_fd();
                let mut stream = Tcp::from(tcp);
                stream.set_socket_digest(SocketDigest::from_raw_fd(fd));
                if let Err(e) = stream.set_nodelay() {
                    log::debug!("TCP_NODELAY on an accepted connection: {e}");
                }
                let app = app.clone();
                let shutdown = shutdown.clone();
                pingora_runtime::current_handle().spawn(async move {
                    app.process_new(Box::new(stream), &shutdown).await;
                });
            }
            Err(e) => {
                log::error!("accept() failed: {e}");
                // Out of file descriptors: accept() fails at once until some
                // close, so wait instead of spinning.
                if e.raw_os_error() == Some(24) {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    }
}

#[async_trait]
impl pingora::services::Service for Listen {
    async fn start_service(
        &mut self,
        fds: Option<ListenFds>,
        shutdown: ShutdownWatch,
        _listeners_per_fd: usize,
    ) {
        let mut loops = Vec::new();
        for addr in &self.addrs {
            match listener(addr, fds.as_ref()).await {
                Ok(l) => loops.push(tokio::spawn(accept_loop(
                    l,
                    self.app.clone(),
                    shutdown.clone(),
                ))),
                Err(e) => {
                    log::error!("cannot listen on {addr}: {e}");
                    std::process::exit(1);
                }
            }
        }
        for l in loops {
            let _ = l.await;
        }
        self.app.cleanup().await;
    }

    fn name(&self) -> &str {
        "gatehouse proxy"
    }

    fn listen_addresses(&self) -> Option<Vec<String>> {
        Some(self.addrs.clone())
    }
}
