//! The downstream TLS listener, swappable at run time: its certificate and
//! the CA that client certificates are verified against (`client_ca`).
//!
//! gatehouse runs the handshake itself (`proxy/accept.rs`), inside the
//! `header_timeout` of the connection, with the [`Acceptor`] loaded last: a
//! config reload (SIGHUP, `POST /reload`) installs a renewed certificate or
//! CA without dropping a connection. Loading is done here rather than by
//! Pingora because its loader panics on bad files; ours returns an error
//! naming the file, and a failed reload keeps the old acceptor.

pub(crate) mod client;

use arc_swap::ArcSwap;
use pingora::listeners::tls::{Acceptor, TlsSettings};
use pingora::tls::sign::CertifiedKey;
use pingora::tls::{
    ClientCertVerifier, ClientHello, CryptoProvider, ResolvesServerCert, RootCertStore,
    WebPkiClientVerifier,
};
use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;

/// Where client certificates are checked: the CA bundle, and whether a
/// client without one is refused at the handshake.
#[derive(Debug, Clone, PartialEq)]
pub struct ClientCa<'a> {
    pub path: &'a str,
    pub required: bool,
}

/// The TLS listener: its address (fixed for the life of the process) and
/// the acceptor new handshakes use.
pub struct Listener {
    pub addr: SocketAddr,
    acceptor: ArcSwap<Acceptor>,
}

impl Listener {
    pub fn load(
        addr: SocketAddr,
        cert: &str,
        key: &str,
        ca: Option<ClientCa<'_>>,
    ) -> Result<Listener, TlsError> {
        Ok(Listener {
            addr,
            acceptor: ArcSwap::from_pointee(acceptor(cert, key, ca)?),
        })
    }

    /// Installs a prepared acceptor: new handshakes use it at once, open
    /// connections keep theirs.
    pub fn store(&self, acceptor: Acceptor) {
        self.acceptor.store(Arc::new(acceptor));
    }

    pub fn acceptor(&self) -> Arc<Acceptor> {
        self.acceptor.load_full()
    }
}

/// Loads the pair and the client CA, and builds the acceptor from them:
/// TLS 1.2 and 1.3, h2 then HTTP/1.1 by ALPN, the peer certificate parsed
/// at the end of the handshake.
pub(crate) fn acceptor(
    cert: &str,
    key: &str,
    ca: Option<ClientCa<'_>>,
) -> Result<Acceptor, TlsError> {
    let pair = load_pair(cert, key)?;
    let verifier = ca.map(|c| client_verifier(&c)).transpose()?;
    let mut settings = TlsSettings::with_callbacks(Box::new(client::PeerIdentity))
        .map_err(|e| TlsError::Unreadable(cert.into(), key.into(), e.to_string()))?;
    // With a resolver set, `build` neither reads files nor panics.
    settings.set_cert_resolver(Arc::new(CertResolver(Arc::new(pair))));
    if let Some(v) = verifier {
        settings.set_client_cert_verifier(v);
    }
    settings.enable_h2();
    Ok(settings.build())
}

/// rustls's WebPKI verifier over the certificates in `ca.path`: chain,
/// validity dates and key usage. `optional` lets clients without a
/// certificate through the handshake (an `mtls` provider answers them 401);
/// a certificate that is presented must verify either way.
pub(crate) fn client_verifier(ca: &ClientCa<'_>) -> Result<Arc<dyn ClientCertVerifier>, TlsError> {
    pingora::tls::install_default_crypto_provider();
    let fail = |e: String| TlsError::ClientCa(ca.path.to_string(), e);
    let mut roots = RootCertStore::empty();
    pingora::tls::load_ca_file_into_store(ca.path, &mut roots).map_err(|e| fail(e.to_string()))?;
    if roots.is_empty() {
        return Err(fail("no certificate in it".into()));
    }
    let builder = WebPkiClientVerifier::builder(Arc::new(roots));
    let builder = if ca.required {
        builder
    } else {
        builder.allow_unauthenticated()
    };
    builder.build().map_err(|e| fail(e.to_string()))
}

/// Serves the one certificate it was built with.
struct CertResolver(Arc<CertifiedKey>);

impl fmt::Debug for CertResolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CertResolver")
    }
}

impl ResolvesServerCert for CertResolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }
}

/// Reads a PEM chain (leaf first) and its private key, checking that the
/// key belongs to the leaf.
pub(crate) fn load_pair(cert: &str, key: &str) -> Result<CertifiedKey, TlsError> {
    pingora::tls::install_default_crypto_provider();
    let pair = || (cert.to_string(), key.to_string());
    let (chain, private) = match pingora::tls::load_certs_and_key_files(cert, key) {
        Ok(Some(pair)) => pair,
        Ok(None) => return Err(TlsError::Empty(pair().0, pair().1)),
        Err(e) => return Err(TlsError::Unreadable(pair().0, pair().1, e.to_string())),
    };
    let chain = chain.into_iter().map(|c| c.into_owned()).collect();
    let provider = CryptoProvider::get_default().ok_or(TlsError::NoProvider)?;
    CertifiedKey::from_der(chain, private.clone_key(), provider)
        .map_err(|e| TlsError::Mismatch(pair().0, pair().1, e.to_string()))
}

/// Why a certificate/key pair could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("no certificate in `{0}` or no private key in `{1}`")]
    Empty(String, String),
    #[error("cannot read `{0}` / `{1}`: {2}")]
    Unreadable(String, String, String),
    #[error("no TLS crypto provider installed")]
    NoProvider,
    #[error("`{1}` does not fit `{0}`: {2}")]
    Mismatch(String, String, String),
    #[error("client_ca `{0}`: {1}")]
    ClientCa(String, String),
}
