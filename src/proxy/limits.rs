//! What a client may send: URI and head size, body size, and unambiguous
//! HTTP/1 framing. Checked on the parsed request (and its raw head bytes)
//! before any policy runs, so nothing oversized or ambiguous is forwarded.
//!
//! Framing rules (request smuggling): `Transfer-Encoding` must be exactly
//! `chunked`, appear once, not come with `Content-Length`, and not be used
//! with HTTP/1.0; every `Content-Length` must be plain digits and all equal;
//! no bare-LF line ends and no obs-fold continuation lines.

use super::errors::GatewayError;
use crate::config::Limits;
use pingora::protocols::http::ServerSession;
use pingora::proxy::Session;

fn framing_error() -> GatewayError {
    GatewayError::BadRequest("The request's message framing is ambiguous or invalid.")
}

/// Refuses ambiguous framing in the raw HTTP/1 head (bare LF, obs-fold,
/// CL with TE, duplicate CL, obfuscated TE, TE on HTTP/1.0): request
/// smuggling needs two parsers to disagree, so gatehouse refuses to guess.
pub(super) fn check_raw_head(raw: &[u8], http10: bool) -> Result<(), GatewayError> {
    let mut te = 0usize;
    let mut cl: Option<&[u8]> = None;
    // The pieces between line feeds, as `split(b'\n')` gives them, found
    // with `memchr`: a byte-at-a-time split cost ~5 instructions per byte
    // of every head, and tokens make heads long.
    let mut rest = Some(raw);
    let mut i = 0usize;
    while let Some(piece_and_rest) = rest {
        let (piece, next) = match memchr::memchr(b'\n', piece_and_rest) {
            Some(p) => (&piece_and_rest[..p], Some(&piece_and_rest[p + 1..])),
            None => (piece_and_rest, None),
        };
        rest = next;
        i += 1;
        let Some(line) = piece.strip_suffix(b"\r") else {
            if piece.is_empty() {
                continue;
            }
            return Err(framing_error());
        };
        if i == 1 || line.is_empty() {
            continue;
        }
        if line[0] == b' ' || line[0] == b'\t' {
            return Err(framing_error()); // obs-fold
        }
        let Some(colon) = memchr::memchr(b':', line) else {
            return Err(framing_error());
        };
        let name = &line[..colon];
        if name.eq_ignore_ascii_case(b"transfer-encoding") {
            let value = line[colon + 1..].trim_ascii();
            te += 1;
            if !value.eq_ignore_ascii_case(b"chunked") || http10 {
                return Err(framing_error());
            }
        } else if name.eq_ignore_ascii_case(b"content-length") {
            let value = line[colon + 1..].trim_ascii();
            if value.is_empty()
                || !value.iter().all(u8::is_ascii_digit)
                || cl.is_some_and(|c| c != value)
            {
                return Err(framing_error());
            }
            cl = Some(value);
        }
    }
    if te > 1 || (te == 1 && cl.is_some()) {
        return Err(framing_error());
    }
    Ok(())
}

/// Checks a request head against `limits` (before anything else runs).
pub(super) fn check_head(session: &Session, limits: &Limits) -> Result<(), GatewayError> {
    let req = session.req_header();
    if req.raw_path().len() > limits.max_uri_bytes {
        return Err(GatewayError::UriTooLong);
    }
    let head_len = match session.as_downstream() {
        ServerSession::H1(h1) => {
            let raw = h1.get_headers_raw_bytes();
            check_raw_head(&raw, req.version == http::Version::HTTP_10)?;
            raw.len()
        }
        _ => req
            .headers
            .iter()
            .map(|(k, v)| k.as_str().len() + v.len() + 4)
            .sum(),
    };
    if head_len > limits.max_header_bytes {
        return Err(GatewayError::HeadersTooLarge);
    }
    let declared = req
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > limits.max_body) {
        return Err(GatewayError::PayloadTooLarge);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(head: &str) -> bool {
        check_raw_head(head.as_bytes(), false).is_ok()
    }

    /// The scan before `memchr`, kept as the reference the fast one must
    /// agree with on every head.
    fn reference(raw: &[u8], http10: bool) -> bool {
        let (mut te, mut cl) = (0usize, None::<&[u8]>);
        for (i, line) in raw.split(|&b| b == b'\n').enumerate() {
            let Some(line) = line.strip_suffix(b"\r") else {
                if line.is_empty() {
                    continue;
                }
                return false;
            };
            if i == 0 || line.is_empty() {
                continue;
            }
            if line[0] == b' ' || line[0] == b'\t' {
                return false;
            }
            let Some(colon) = line.iter().position(|&b| b == b':') else {
                return false;
            };
            let (name, value) = (&line[..colon], line[colon + 1..].trim_ascii());
            if name.eq_ignore_ascii_case(b"transfer-encoding") {
                te += 1;
                if !value.eq_ignore_ascii_case(b"chunked") || http10 {
                    return false;
                }
            } else if name.eq_ignore_ascii_case(b"content-length") {
                if value.is_empty()
                    || !value.iter().all(u8::is_ascii_digit)
                    || cl.is_some_and(|c| c != value)
                {
                    return false;
                }
                cl = Some(value);
            }
        }
        !(te > 1 || (te == 1 && cl.is_some()))
    }

    #[test]
    fn the_fast_scan_agrees_with_the_reference() {
        const PARTS: [&str; 14] = [
            "GET / HTTP/1.1",
            "\r\n",
            "\n",
            "\r",
            "Host: a",
            "Content-Length: 5",
            "content-length: 6",
            "Transfer-Encoding: chunked",
            "TRANSFER-ENCODING:gzip",
            " folded",
            "\tx",
            "NoColon",
            ":",
            "X-A: b:c",
        ];
        for _ in 0..20_000 {
            let n = fastrand::usize(0..12);
            let head: String = (0..n)
                .map(|_| PARTS[fastrand::usize(..PARTS.len())])
                .collect();
            let http10 = fastrand::bool();
            assert_eq!(
                check_raw_head(head.as_bytes(), http10).is_ok(),
                reference(head.as_bytes(), http10),
                "{head:?}"
            );
        }
    }

    #[test]
    fn framing() {
        assert!(ok(
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\n"
        ));
        assert!(ok(
            "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
        ));
        assert!(ok(
            "POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n"
        ));
        for bad in [
            "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n",
            "POST / HTTP/1.1\r\nTransfer-Encoding: chunked, chunked\r\n\r\n",
            "POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
            "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
            "POST / HTTP/1.1\r\nTransfer-Encoding: xchunked\r\n\r\n",
            "POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
            "POST / HTTP/1.1\r\nContent-Length: +5\r\n\r\n",
            "POST / HTTP/1.1\r\nContent-Length: 0x5\r\n\r\n",
            "POST / HTTP/1.1\r\nContent-Length: 5, 6\r\n\r\n",
            "GET / HTTP/1.1\nHost: a\n\n",
            "GET / HTTP/1.1\r\nX-A: 1\r\n continued\r\n\r\n",
        ] {
            assert!(!ok(bad), "{bad:?}");
        }
        assert!(check_raw_head(
            b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
            true
        )
        .is_err());
    }
}
