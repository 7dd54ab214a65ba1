//! HTTP vocabulary shared by every layer (L0: it depends on no other
//! module of the crate): path and host normalisation, segment prefixes, the
//! request's host and scheme, request ids, bearer tokens and claim text.
//! Each of these had two to four copies that had started to disagree.

pub(crate) mod normalize;

use pingora::http::RequestHeader;
use pingora::proxy::Session;
use serde_json::Value;
use std::borrow::Cow;

/// Header names gatehouse reads or sets on every request, parsed once:
/// a lookup by `&str` parses the name each time.
pub(crate) mod names {
    use http::HeaderName;
    pub(crate) const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
    pub(crate) const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
    pub(crate) const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
    pub(crate) const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
    pub(crate) const CACHE_STATUS: HeaderName = HeaderName::from_static("cache-status");
}

pub(crate) use normalize::{normalize_path, NormalizeError};

/// Lower-cases a Host value and drops its port and trailing dot.
pub fn normalize_host(raw: &str) -> Cow<'_, str> {
    let h = if raw.starts_with('[') {
        // IPv6 literal: keep the brackets, drop `:port`.
        raw.find(']').map_or(raw, |i| &raw[..=i])
    } else {
        raw.rsplit_once(':').map_or(raw, |(h, port)| {
            if port.bytes().all(|b| b.is_ascii_digit()) {
                h
            } else {
                raw
            }
        })
    };
    let h = h.strip_suffix('.').unwrap_or(h);
    if h.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(h.to_ascii_lowercase())
    } else {
        Cow::Borrowed(h)
    }
}

/// True when `prefix` is a segment-aligned prefix of `path` (`/api` is a
/// prefix of `/api` and `/api/x`, not of `/apix`).
pub(crate) fn has_prefix(path: &str, prefix: &str) -> bool {
    path.starts_with(prefix)
        && (path.len() == prefix.len() || path.as_bytes()[prefix.len()] == b'/')
}

/// The host the client asked for: the authority of an absolute-form
/// target, else the `Host` header (as sent, not normalised).
pub(crate) fn request_host(req: &RequestHeader) -> Option<&str> {
    match req.uri.authority() {
        Some(a) => Some(a.as_str()),
        None => req
            .headers
            .get(http::header::HOST)
            .and_then(|h| h.to_str().ok()),
    }
}

/// A `Host` value is `host[:port]` (RFC 9112 §3.2, RFC 3986 §3.2.2): a
/// reg-name, IPv4 or `[IPv6]`, and an optional port of digits. Spaces,
/// `/`, `@`, `?`, `#`, `\\` and other delimiters make it invalid.
pub(crate) fn valid_host(v: &[u8]) -> bool {
    let (host, port) = if v.first() == Some(&b'[') {
        let Some(end) = v.iter().position(|&b| b == b']') else {
            return false;
        };
        let inner = &v[1..end];
        if inner.is_empty()
            || !inner
                .iter()
                .all(|b| b.is_ascii_hexdigit() || matches!(b, b':' | b'.'))
        {
            return false;
        }
        match &v[end + 1..] {
            [] => return true,
            [b':', port @ ..] => (&b"x"[..], port),
            _ => return false,
        }
    } else {
        match v.iter().rposition(|&b| b == b':') {
            Some(i) => (&v[..i], &v[i + 1..]),
            None => (v, &b""[..]),
        }
    };
    let reg_name = |b: &u8| {
        b.is_ascii_alphanumeric()
            || matches!(
                b,
                b'-' | b'.'
                    | b'_'
                    | b'~'
                    | b'!'
                    | b'$'
                    | b'&'
                    | b'\''
                    | b'('
                    | b')'
                    | b'*'
                    | b'+'
                    | b','
                    | b';'
                    | b'='
                    | b'%'
            )
    };
    !host.is_empty()
        && host.iter().all(reg_name)
        && port.len() <= 5
        && port.iter().all(u8::is_ascii_digit)
}

/// `https` when the client connection is TLS, else `http`.
pub(crate) fn scheme(session: &Session) -> &'static str {
    let tls = session.digest().and_then(|d| d.ssl_digest.as_ref());
    if tls.is_some() {
        "https"
    } else {
        "http"
    }
}

/// A client-supplied `X-Request-Id` is kept when it is 1-128 characters of
/// `[A-Za-z0-9._-]`; anything else is replaced.
pub(crate) fn sane_request_id(v: &[u8]) -> bool {
    !v.is_empty()
        && v.len() <= 128
        && v.iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// A random UUID v4 (non-cryptographic RNG: ids need to be unique, not secret).
/// Built in a byte array and copied once: pushing 36 chars one by one costs
/// ~150 instructions more per request (callgrind).
pub fn new_request_id() -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut v = fastrand::u128(..);
    v = (v & !(0xf << 76)) | (0x4 << 76); // version 4
    v = (v & !(0x3 << 62)) | (0x2 << 62); // RFC 4122 variant
    let mut out = [0u8; 36];
    let mut j = 0;
    for i in 0..16 {
        if matches!(i, 4 | 6 | 8 | 10) {
            out[j] = b'-';
            j += 1;
        }
        let byte = (v >> (120 - i * 8)) as u8;
        out[j] = HEX[(byte >> 4) as usize];
        out[j + 1] = HEX[(byte & 15) as usize];
        j += 2;
    }
    // Hex digits and dashes: always ASCII.
    std::str::from_utf8(&out).unwrap_or_default().to_string()
}

/// The token of `Authorization: Bearer <token>` (the scheme is
/// case-insensitive, RFC 7235 §2.1).
pub(crate) fn bearer_token(headers: &http::HeaderMap) -> Option<&str> {
    let v = headers.get(http::header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// A JWT claim as text, wherever one is used as text (header values,
/// templates, rate-limit and hash keys): strings as they are, arrays joined
/// by spaces (as `scope` is), anything else as JSON.
pub(crate) fn claim_text(v: &Value) -> Cow<'_, str> {
    match v {
        Value::String(s) => Cow::Borrowed(s),
        Value::Array(items) => {
            let mut out = String::new();
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(' ');
                }
                match item {
                    Value::String(s) => out.push_str(s),
                    other => out.push_str(&other.to_string()),
                }
            }
            Cow::Owned(out)
        }
        other => Cow::Owned(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_values() {
        for ok in [
            "a.example",
            "a.example:8080",
            "127.0.0.1",
            "[::1]",
            "[::1]:443",
            "x_y.example",
            "a",
        ] {
            assert!(valid_host(ok.as_bytes()), "{ok}");
        }
        for bad in [
            "", "a b", "a/b", "user@a", "a?b", "a#b", "a:80x", "[::1", "[zz]", "a\\b", ":80",
            "a:123456",
        ] {
            assert!(!valid_host(bad.as_bytes()), "{bad}");
        }
    }

    #[test]
    fn request_ids() {
        assert!(sane_request_id(b"abc-123_X.y"));
        assert!(!sane_request_id(b""));
        assert!(!sane_request_id(b"a b"));
        assert!(!sane_request_id(b"a\"b"));
        assert!(!sane_request_id(&[b'a'; 129]));
        let id = new_request_id();
        assert_eq!(id.len(), 36);
        assert_eq!(&id[14..15], "4");
        assert!(matches!(&id[19..20], "8" | "9" | "a" | "b"));
        assert!(sane_request_id(id.as_bytes()));
        assert_ne!(new_request_id(), id);
    }

    #[test]
    fn hosts() {
        assert_eq!(normalize_host("Example.COM:8080"), "example.com");
        assert_eq!(normalize_host("example.com."), "example.com");
        assert_eq!(normalize_host("[::1]:8080"), "[::1]");
        assert_eq!(normalize_host("api.example.com"), "api.example.com");
    }

    #[test]
    fn segment_prefixes() {
        assert!(has_prefix("/api", "/api"));
        assert!(has_prefix("/api/x", "/api"));
        assert!(!has_prefix("/apix", "/api"));
    }

    #[test]
    fn bearer_scheme_is_case_insensitive() {
        let mut h = http::HeaderMap::new();
        h.insert("authorization", "bearer abc ".parse().unwrap());
        assert_eq!(bearer_token(&h), Some("abc"));
        h.insert("authorization", "Basic abc".parse().unwrap());
        assert_eq!(bearer_token(&h), None);
        h.insert("authorization", "Bearer ".parse().unwrap());
        assert_eq!(bearer_token(&h), None);
    }

    #[test]
    fn claims_as_text() {
        assert_eq!(claim_text(&Value::from("x")), "x");
        assert_eq!(claim_text(&serde_json::json!(["a", "b", 3])), "a b 3");
        assert_eq!(claim_text(&serde_json::json!({"k": 1})), "{\"k\":1}");
        assert_eq!(claim_text(&serde_json::json!(7)), "7");
    }
}
