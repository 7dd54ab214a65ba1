//! `type: mtls`: the client certificate the TLS listener verified is the
//! credential. The handshake already checked the chain and dates against
//! `server.tls.client_ca`; this decides who among verified holders may
//! pass, by exact RFC 4514 subject or by DNS/URI SAN.

use crate::config::MtlsConfig;
use crate::tls::client::ClientCert;
use http::{HeaderName, HeaderValue};

pub struct MtlsProvider {
    pub config: MtlsConfig,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MtlsError {
    /// No verified certificate on this connection (plain listener, or the
    /// client sent none): 401.
    Missing,
    /// Verified, but neither its subject nor a SAN is allowed: 403.
    NotAllowed,
}

impl MtlsProvider {
    pub fn new(c: &MtlsConfig) -> MtlsProvider {
        MtlsProvider { config: c.clone() }
    }

    /// The allowed certificate, or why not. With neither allow list, any
    /// verified certificate passes.
    pub fn check<'a>(&self, cert: Option<&'a ClientCert>) -> Result<&'a ClientCert, MtlsError> {
        let cert = cert.ok_or(MtlsError::Missing)?;
        let c = &self.config;
        let open = c.allow_subjects.is_empty() && c.allow_sans.is_empty();
        let subject_ok = c.allow_subjects.contains(&cert.subject);
        let san_ok = cert.sans.iter().any(|s| c.allow_sans.contains(s));
        if open || subject_ok || san_ok {
            Ok(cert)
        } else {
            Err(MtlsError::NotAllowed)
        }
    }

    /// The identity headers for an allowed `cert`. A subject that cannot be
    /// a header value (control characters) is left out rather than sent
    /// mangled; the fingerprint is always hex.
    pub fn headers(&self, cert: &ClientCert) -> Vec<(HeaderName, HeaderValue)> {
        let mut out = Vec::new();
        if let Some(h) = &self.config.forward_subject {
            if let Ok(v) = HeaderValue::from_bytes(cert.subject.as_bytes()) {
                out.push((h.clone(), v));
            }
        }
        if let Some(h) = &self.config.forward_fingerprint {
            if let Ok(v) = HeaderValue::from_str(&cert.sha256) {
                out.push((h.clone(), v));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert(subject: &str, sans: &[&str]) -> ClientCert {
        ClientCert {
            subject: subject.into(),
            sans: sans.iter().map(|s| s.to_string()).collect(),
            sha256: "ab".repeat(32),
        }
    }

    #[test]
    fn subject_or_san_allows_and_neither_list_allows_any() {
        let p = MtlsProvider::new(&MtlsConfig {
            allow_subjects: vec!["CN=a,O=A".into()],
            allow_sans: vec!["b.example".into()],
            ..Default::default()
        });
        assert_eq!(p.check(None), Err(MtlsError::Missing));
        let a = cert("CN=a,O=A", &[]);
        assert_eq!(p.check(Some(&a)), Ok(&a));
        let b = cert("CN=x", &["b.example"]);
        assert_eq!(p.check(Some(&b)), Ok(&b));
        assert_eq!(
            p.check(Some(&cert("CN=a", &["c.example"]))),
            Err(MtlsError::NotAllowed)
        );
        let any = MtlsProvider::new(&MtlsConfig::default());
        let z = cert("CN=z", &[]);
        assert_eq!(any.check(Some(&z)), Ok(&z));
        assert_eq!(any.check(None), Err(MtlsError::Missing));
    }
}
