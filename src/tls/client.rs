//! Client certificates (mTLS): what a verified certificate says about its
//! holder, read once per connection at the end of the handshake, when
//! Pingora hands the peer chain to [`PeerIdentity`]. The request path then
//! reads the parsed [`ClientCert`] from the connection's TLS digest; no
//! request parses DER.

use async_trait::async_trait;
use pingora::listeners::TlsAccept;
use pingora::protocols::tls::TlsRef;
use sha2::{Digest, Sha256};
use std::any::Any;
use std::fmt::Write;
use std::sync::Arc;
use x509_parser::extensions::GeneralName;
use x509_parser::x509::{AttributeTypeAndValue, X509Name};

/// The verified leaf certificate of a TLS client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientCert {
    /// The subject as an RFC 4514 string (`CN=partner-a,O=Partner A`).
    pub subject: String,
    /// DNS and URI subject alternative names.
    pub sans: Vec<String>,
    /// Lower-case hex SHA-256 of the certificate's DER.
    pub sha256: String,
}

impl ClientCert {
    /// Parses a DER certificate; `None` when it is not one.
    pub fn from_der(der: &[u8]) -> Option<ClientCert> {
        let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
        let mut sans = Vec::new();
        if let Ok(Some(ext)) = cert.subject_alternative_name() {
            for name in &ext.value.general_names {
                match name {
                    GeneralName::DNSName(n) | GeneralName::URI(n) => sans.push(n.to_string()),
                    _ => {}
                }
            }
        }
        Some(ClientCert {
            subject: rfc4514(cert.subject()),
            sans,
            sha256: hex::encode(Sha256::digest(der)),
        })
    }
}

/// RFC 4514 §2: the last RDN first, `,` between RDNs, `+` inside one.
fn rfc4514(name: &X509Name<'_>) -> String {
    let rdns: Vec<_> = name.iter_rdn().collect();
    let mut out = String::new();
    for (i, rdn) in rdns.iter().rev().enumerate() {
        if i > 0 {
            out.push(',');
        }
        for (j, attr) in rdn.iter().enumerate() {
            if j > 0 {
                out.push('+');
            }
            push_attr(&mut out, attr);
        }
    }
    out
}

/// The short names of RFC 4514 §3; other types are written as dotted OIDs.
const SHORT_NAMES: &[(&str, &str)] = &[
    ("2.5.4.3", "CN"),
    ("2.5.4.7", "L"),
    ("2.5.4.8", "ST"),
    ("2.5.4.10", "O"),
    ("2.5.4.11", "OU"),
    ("2.5.4.6", "C"),
    ("2.5.4.9", "STREET"),
    ("0.9.2342.19200300.100.1.25", "DC"),
    ("0.9.2342.19200300.100.1.1", "UID"),
];

fn push_attr(out: &mut String, attr: &AttributeTypeAndValue<'_>) {
    let oid = attr.attr_type().to_id_string();
    match SHORT_NAMES.iter().find(|(o, _)| *o == oid) {
        Some((_, short)) => out.push_str(short),
        None => out.push_str(&oid),
    }
    out.push('=');
    match attr.as_str() {
        Ok(text) => escape(out, text),
        // Not a string type: `#` and the hex of its BER encoding (§2.4).
        Err(_) => {
            let value = attr.attr_value();
            let data = value.data;
            out.push('#');
            let _ = write!(out, "{:02x}", value.tag().0 as u8);
            if data.len() < 128 {
                let _ = write!(out, "{:02x}", data.len());
            } else {
                let len = (data.len() as u32).to_be_bytes();
                let skip = len.iter().take_while(|b| **b == 0).count();
                let _ = write!(out, "{:02x}", 0x80 | (4 - skip) as u8);
                out.push_str(&hex::encode(&len[skip..]));
            }
            out.push_str(&hex::encode(data));
        }
    }
}

/// RFC 4514 §2.4 escaping of an attribute value.
fn escape(out: &mut String, v: &str) {
    let last = v.chars().count().saturating_sub(1);
    for (i, c) in v.chars().enumerate() {
        let special = matches!(c, '"' | '+' | ',' | ';' | '<' | '>' | '\\')
            || (i == 0 && matches!(c, '#' | ' '))
            || (i == last && c == ' ');
        if c == '\0' {
            out.push_str("\\00");
        } else {
            if special {
                out.push('\\');
            }
            out.push(c);
        }
    }
}

/// Parses the client's leaf certificate when the handshake completes; the
/// result rides on the connection's `SslDigest` extension.
pub(super) struct PeerIdentity;

#[async_trait]
impl TlsAccept for PeerIdentity {
    async fn handshake_complete_callback(
        &self,
        tls: &TlsRef,
    ) -> Option<Arc<dyn Any + Send + Sync>> {
        let cert = ClientCert::from_der(tls.peer_certificate_der()?)?;
        Some(Arc::new(cert))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_escaped_as_rfc_4514_says() {
        let mut s = String::new();
        escape(&mut s, " a,b+c#\\ ");
        assert_eq!(s, "\\ a\\,b\\+c#\\\\\\ ");
        let mut s = String::new();
        escape(&mut s, "#x");
        assert_eq!(s, "\\#x");
    }

    #[test]
    fn garbage_is_not_a_certificate() {
        assert_eq!(ClientCert::from_der(b"not der"), None);
    }
}
