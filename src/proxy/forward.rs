//! What gatehouse derives from a request to forward it: the client IP
//! (trusted proxies and `X-Forwarded-For`), the upstream path, and the
//! identity headers a client may not send.

use super::errors::GatewayError;
use ipnet::IpNet;
use pingora::proxy::Session;
use std::borrow::Cow;
use std::net::IpAddr;

/// Who sent the request (the ctx slice of this module).
#[derive(Debug, Default)]
pub(crate) struct ClientAddr {
    /// The client as derived from the peer and trusted `X-Forwarded-For`.
    pub ip: Option<IpAddr>,
    /// The TCP peer.
    pub peer: Option<IpAddr>,
    /// The peer is a trusted proxy.
    pub trusted: bool,
}

impl ClientAddr {
    pub(crate) fn of(session: &Session, trusted: &[IpNet]) -> ClientAddr {
        let Some(peer) = session
            .client_addr()
            .and_then(|a| a.as_inet())
            .map(|a| a.ip())
        else {
            return ClientAddr::default();
        };
        let peer_trusted = is_trusted(peer, trusted);
        let xff: Vec<&str> = if peer_trusted {
            session
                .req_header()
                .headers
                .get_all(crate::http::names::X_FORWARDED_FOR)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .collect()
        } else {
            Vec::new()
        };
        ClientAddr {
            ip: Some(client_ip(peer, &xff, trusted)),
            peer: Some(peer),
            trusted: peer_trusted,
        }
    }
}

/// The request id: the client's `X-Request-Id` when it is sane
/// ([`crate::http::sane_request_id`]), else a new one.
pub(crate) fn request_id(req: &pingora::http::RequestHeader) -> String {
    match req.headers.get(crate::http::names::X_REQUEST_ID) {
        Some(v) if crate::http::sane_request_id(v.as_bytes()) => {
            v.to_str().unwrap_or_default().to_string()
        }
        _ => crate::http::new_request_id(),
    }
}

pub(crate) fn is_trusted(ip: IpAddr, trusted: &[IpNet]) -> bool {
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    };
    trusted.iter().any(|net| net.contains(&ip))
}

/// The client address: the peer, unless the peer is a trusted proxy, in which
/// case the right-most untrusted address of `X-Forwarded-For` (skipping the
/// trusted hops). Malformed entries stop the walk.
pub(crate) fn client_ip(peer: IpAddr, xff: &[&str], trusted: &[IpNet]) -> IpAddr {
    if !is_trusted(peer, trusted) {
        return peer;
    }
    let mut client = peer;
    for part in xff.iter().rev().flat_map(|h| h.rsplit(',')) {
        let Ok(ip) = part.trim().parse::<IpAddr>() else {
            break;
        };
        client = ip;
        if !is_trusted(ip, trusted) {
            break;
        }
    }
    client
}

/// Headers gatehouse sets itself: a client's `Connection` may not name
/// them (Pingora would refuse the request; they are simply not removed).
const SET_BY_GATEHOUSE: [&str; 5] = [
    "host",
    "x-forwarded-for",
    "x-forwarded-host",
    "x-forwarded-proto",
    "x-request-id",
];

/// Before any policy: two `Authorization` headers are ambiguous (400);
/// header names with `_` are dropped unless allowed (as nginx does);
/// `Connection` tokens naming headers gatehouse sets are ignored.
pub(crate) fn sanitize(
    req: &mut pingora::http::RequestHeader,
    allow_underscores: bool,
) -> Result<(), GatewayError> {
    // One pass over the headers finds every case (usually none).
    let (mut auths, mut hosts, mut host_ok, mut underscores, mut connection) =
        (0, 0, true, false, false);
    for (k, v) in req.headers.iter() {
        match *k {
            http::header::AUTHORIZATION => auths += 1,
            http::header::HOST => {
                hosts += 1;
                host_ok &= crate::http::valid_host(v.as_bytes());
            }
            http::header::CONNECTION => connection = true,
            _ => underscores |= k.as_str().as_bytes().contains(&b'_'),
        }
    }
    // RFC 9112 §3.2: exactly one valid Host on HTTP/1.1 (HTTP/2 carries
    // :authority), at most one otherwise.
    let host_ok = match hosts {
        0 => req.version != http::Version::HTTP_11,
        1 => host_ok,
        _ => false,
    };
    if !host_ok {
        return Err(GatewayError::BadRequest(
            "The request needs exactly one valid Host header (host[:port]).",
        ));
    }
    if auths > 1 {
        return Err(GatewayError::BadRequest(
            "Two Authorization headers make the credentials ambiguous.",
        ));
    }
    if !allow_underscores && underscores {
        let drop: Vec<http::HeaderName> = req
            .headers
            .keys()
            .filter(|k| k.as_str().contains('_'))
            .cloned()
            .collect();
        for k in drop {
            req.remove_header(&k);
        }
    }
    if !connection {
        return Ok(());
    }
    match connection_without_protected(req) {
        Some(Some(v)) => req
            .insert_header(http::header::CONNECTION, v)
            .map_err(|_| GatewayError::BadRequest("The Connection header is invalid."))?,
        Some(None) => {
            req.remove_header(&http::header::CONNECTION);
        }
        None => {}
    }
    Ok(())
}

/// The `Connection` value without tokens naming headers gatehouse sets:
/// `None` when nothing changes, `Some(None)` when nothing is left.
fn connection_without_protected(req: &pingora::http::RequestHeader) -> Option<Option<String>> {
    let tokens = || {
        req.headers
            .get_all(http::header::CONNECTION)
            .iter()
            .flat_map(|v| v.to_str().unwrap_or("").split(','))
            .map(str::trim)
            .filter(|t| !t.is_empty())
    };
    let protected = |t: &str| SET_BY_GATEHOUSE.iter().any(|p| t.eq_ignore_ascii_case(p));
    // The usual `Connection: keep-alive` allocates nothing.
    if !tokens().any(protected) {
        return None;
    }
    let kept: Vec<&str> = tokens().filter(|t| !protected(t)).collect();
    Some((!kept.is_empty()).then(|| kept.join(", ")))
}

/// RFC 9110 §7.6.1: the headers an upstream response's `Connection` names
/// are for that hop only; they never reach the client. Pingora writes the
/// client's own `Connection`; framing headers stay (Pingora re-frames the
/// body). The common `Connection: keep-alive` / `close` costs one lookup.
pub(crate) fn strip_response_hop_by_hop(resp: &mut pingora::http::ResponseHeader) {
    // A 101 switches protocols with `Connection: Upgrade`: that is the hop.
    if resp.status == http::StatusCode::SWITCHING_PROTOCOLS {
        return;
    }
    let Some(conn) = resp.headers.get(http::header::CONNECTION) else {
        return;
    };
    let mut named: Vec<http::HeaderName> = Vec::new();
    for t in conn.as_bytes().split(|b| *b == b',') {
        let t = t.trim_ascii();
        if t.is_empty() || t.eq_ignore_ascii_case(b"close") {
            continue;
        }
        if t.eq_ignore_ascii_case(b"keep-alive") {
            if resp.headers.contains_key(&KEEP_ALIVE) {
                named.push(KEEP_ALIVE);
            }
            continue;
        }
        if let Ok(n) = http::HeaderName::from_bytes(t) {
            if n != http::header::CONTENT_LENGTH && n != http::header::TRANSFER_ENCODING {
                named.push(n);
            }
        }
    }
    for n in named {
        resp.remove_header(&n);
    }
}

/// Parsed once: a `&str` name is parsed again on every lookup.
const KEEP_ALIVE: http::HeaderName = http::HeaderName::from_static("keep-alive");

/// Removes identity headers (and their `_` spellings, which some upstream
/// frameworks read as `-`) from a client request.
pub(crate) fn strip_identity_headers(
    req: &mut pingora::http::RequestHeader,
    names: &[http::HeaderName],
) {
    if names.is_empty() {
        return;
    }
    for n in names {
        req.remove_header(n);
    }
    let variants: Vec<http::HeaderName> = req
        .headers
        .keys()
        .filter(|k| {
            let k = k.as_str();
            k.contains('_')
                && names
                    .iter()
                    .any(|n| n.as_str().eq_ignore_ascii_case(&k.replace('_', "-")))
        })
        .cloned()
        .collect();
    for v in variants {
        req.remove_header(&v);
    }
}

/// The path sent upstream: `strip` removed (if it prefixes the path on a
/// segment boundary), then `add` prepended.
pub(crate) fn upstream_path<'a>(
    path: &'a str,
    strip: Option<&str>,
    add: Option<&str>,
) -> Cow<'a, str> {
    let rest = match strip {
        Some(s) if crate::http::has_prefix(path, s) => {
            let r = &path[s.len()..];
            if r.is_empty() {
                "/"
            } else {
                r
            }
        }
        _ => path,
    };
    match add {
        Some(a) => Cow::Owned(format!("{a}{rest}")),
        None => Cow::Borrowed(rest),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_ip_trusts_only_configured_proxies() {
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let ext: IpAddr = "203.0.113.9".parse().unwrap();
        let proxy: IpAddr = "10.1.2.3".parse().unwrap();
        // untrusted peer: XFF ignored
        assert_eq!(client_ip(ext, &["1.2.3.4"], &trusted), ext);
        // trusted peer: right-most untrusted entry
        assert_eq!(
            client_ip(proxy, &["1.2.3.4, 198.51.100.7"], &trusted),
            "198.51.100.7".parse::<IpAddr>().unwrap()
        );
        assert_eq!(
            client_ip(proxy, &["1.2.3.4", "10.9.9.9"], &trusted),
            "1.2.3.4".parse::<IpAddr>().unwrap()
        );
        assert_eq!(client_ip(proxy, &[], &trusted), proxy);
        assert_eq!(client_ip(proxy, &["garbage"], &trusted), proxy);
    }

    #[test]
    fn rewrites() {
        assert_eq!(
            upstream_path("/api/users/7", Some("/api"), None),
            "/users/7"
        );
        assert_eq!(upstream_path("/api", Some("/api"), None), "/");
        assert_eq!(
            upstream_path("/apix/users", Some("/api"), None),
            "/apix/users"
        );
        assert_eq!(
            upstream_path("/api/users", Some("/api"), Some("/v1")),
            "/v1/users"
        );
        assert_eq!(upstream_path("/users", None, None), "/users");
    }
}
