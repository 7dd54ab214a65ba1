//! The downstream TLS certificate, swappable at run time.
//!
//! Pingora's rustls listener builds its acceptor once; handing it a resolver
//! instead of file paths lets a config reload (SIGHUP or `POST /reload`)
//! install a renewed certificate without dropping a connection. Loading is
//! done here rather than by Pingora because its loader panics on bad files;
//! ours returns an error naming the file, and a failed reload keeps the old
//! certificate.

use arc_swap::ArcSwap;
use pingora::tls::sign::CertifiedKey;
use pingora::tls::{ClientHello, CryptoProvider, ResolvesServerCert};
use std::fmt;
use std::sync::Arc;

/// Serves whatever certificate was loaded last.
pub struct CertResolver {
    current: ArcSwap<CertifiedKey>,
}

impl fmt::Debug for CertResolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CertResolver")
    }
}

impl CertResolver {
    pub fn load(cert: &str, key: &str) -> Result<CertResolver, TlsError> {
        Ok(CertResolver {
            current: ArcSwap::from_pointee(load_pair(cert, key)?),
        })
    }

    /// Replaces the served certificate; new handshakes use it at once.
    pub fn store(&self, key: CertifiedKey) {
        self.current.store(Arc::new(key));
    }
}

impl ResolvesServerCert for CertResolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
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
}
