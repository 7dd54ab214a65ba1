//! Response compression decisions (`compress` on a route): which coding a
//! client gets (RFC 9110 §12.5.3 `Accept-Encoding` with q-values, the
//! route's order breaking ties) and whether a response may be compressed
//! at all. The encoding itself is `proxy/compress.rs`.

use crate::config::{Coding, CompressConfig};
use http::header::{CACHE_CONTROL, CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_TYPE};
use http::{HeaderMap, HeaderValue};

/// The coding to use for a client that sent `accept` (every
/// `Accept-Encoding` value), or `None` for identity. Codings the client
/// does not name take the q of `*` (0 without one); `q=0` refuses. No
/// header at all: identity, as nginx and Envoy do.
pub(crate) fn negotiate<'a>(
    accept: impl Iterator<Item = &'a HeaderValue>,
    algorithms: &[Coding],
) -> Option<Coding> {
    // Thousandths, per coding in route order; None: not named.
    let mut named: [Option<u16>; 3] = [None; 3];
    let mut star: Option<u16> = None;
    let mut any = false;
    for value in accept {
        let Ok(text) = value.to_str() else { continue };
        for item in text.split(',') {
            let mut parts = item.split(';');
            let token = parts.next().unwrap_or("").trim();
            if token.is_empty() {
                continue;
            }
            any = true;
            let q = parts.find_map(qvalue).unwrap_or(1000);
            if token == "*" {
                star = Some(q);
            } else if let Some(i) = algorithms
                .iter()
                .position(|c| token.eq_ignore_ascii_case(c.token()))
            {
                named[i] = Some(q);
            }
        }
    }
    if !any {
        return None;
    }
    let mut best: Option<(Coding, u16)> = None;
    for (i, c) in algorithms.iter().enumerate() {
        let q = named[i].or(star).unwrap_or(0);
        if q > 0 && best.is_none_or(|(_, b)| q > b) {
            best = Some((*c, q));
        }
    }
    best.map(|(c, _)| c)
}

/// `q=0.5` as thousandths; a malformed q refuses the coding (q=0).
fn qvalue(param: &str) -> Option<u16> {
    let (k, v) = param.split_once('=')?;
    if !k.trim().eq_ignore_ascii_case("q") {
        return None;
    }
    let v = v.trim();
    let (int, frac) = v.split_once('.').unwrap_or((v, ""));
    let ok = matches!(int, "0" | "1")
        && frac.len() <= 3
        && frac.bytes().all(|b| b.is_ascii_digit())
        && (int == "0" || frac.bytes().all(|b| b == b'0'));
    if !ok {
        return Some(0);
    }
    let digits = format!("{frac:0<3}");
    Some(if int == "1" {
        1000
    } else {
        digits.parse().unwrap_or(0)
    })
}

/// Text, JSON, JavaScript, XML and SVG: the types worth compressing.
fn compressible_type(headers: &HeaderMap) -> bool {
    let Some(ct) = headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let media = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let Some((kind, sub)) = media.split_once('/') else {
        return false;
    };
    kind == "text"
        || sub.ends_with("+json")
        || sub.ends_with("+xml")
        || (kind == "application"
            && matches!(
                sub,
                "json" | "javascript" | "x-javascript" | "ecmascript" | "xml"
            ))
        || media == "image/svg+xml"
}

/// What a response on a `compress` route gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Decision {
    /// Not a compressible type: untouched.
    Untouched,
    /// Compressible type, but not this time (already encoded, 206,
    /// `no-transform`, too small, no acceptable coding, HEAD): only `Vary`.
    VaryOnly,
    /// Encode with this coding (and `Vary`).
    Compress(Coding),
}

/// Decides for a response head. `chosen` is what negotiation gave the
/// request; `head` is a HEAD request (no body to encode).
pub(crate) fn decide(
    cfg: &CompressConfig,
    chosen: Option<Coding>,
    status: u16,
    head: bool,
    headers: &HeaderMap,
) -> Decision {
    if !compressible_type(headers) {
        return Decision::Untouched;
    }
    let encoded = headers
        .get(CONTENT_ENCODING)
        .is_some_and(|v| !v.as_bytes().eq_ignore_ascii_case(b"identity"));
    let no_transform = headers.get_all(CACHE_CONTROL).iter().any(|v| {
        v.to_str().is_ok_and(|s| {
            s.split(',')
                .any(|d| d.trim().eq_ignore_ascii_case("no-transform"))
        })
    });
    let small = headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.trim().parse::<u64>().ok())
        .is_some_and(|n| n < cfg.min_size);
    let bodiless = head || status == 204 || status == 304 || status < 200;
    match chosen {
        Some(c) if !(encoded || no_transform || small || bodiless || status == 206) => {
            Decision::Compress(c)
        }
        _ => Decision::VaryOnly,
    }
}

/// A strong `ETag` names the identity bytes; the encoded ones get its weak
/// form (RFC 9110 §8.8.1). Weak ones stay; malformed ones are dropped.
pub(crate) fn weaken_etag(etag: &HeaderValue) -> Option<HeaderValue> {
    let b = etag.as_bytes();
    if b.starts_with(b"W/") {
        return Some(etag.clone());
    }
    if b.len() >= 2 && b[0] == b'"' && b[b.len() - 1] == b'"' {
        let mut v = b"W/".to_vec();
        v.extend_from_slice(b);
        return HeaderValue::from_bytes(&v).ok();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [Coding; 3] = [Coding::Zstd, Coding::Br, Coding::Gzip];

    fn pick(ae: &str) -> Option<Coding> {
        let v = HeaderValue::from_str(ae).unwrap();
        negotiate(std::iter::once(&v), &ALL)
    }

    #[test]
    fn q_values_decide_and_route_order_breaks_ties() {
        assert_eq!(pick("gzip"), Some(Coding::Gzip));
        assert_eq!(pick("gzip, br"), Some(Coding::Br), "equal q: route order");
        assert_eq!(pick("gzip;q=1, br;q=0.5"), Some(Coding::Gzip));
        assert_eq!(pick("zstd;q=0, br;q=0.1"), Some(Coding::Br));
        assert_eq!(pick("*"), Some(Coding::Zstd));
        assert_eq!(pick("*;q=0"), None);
        assert_eq!(pick("*;q=0, gzip"), Some(Coding::Gzip));
        assert_eq!(pick("br;q=0, *;q=0.2"), Some(Coding::Zstd));
        assert_eq!(pick("identity"), None);
        assert_eq!(pick("deflate, compress"), None);
        assert_eq!(pick("gzip;q=2"), None, "malformed q refuses");
        assert_eq!(pick("GZIP;Q=0.8"), Some(Coding::Gzip));
        assert_eq!(negotiate(std::iter::empty(), &ALL), None);
        let only_gzip = [Coding::Gzip];
        let v = HeaderValue::from_static("zstd, br");
        assert_eq!(negotiate(std::iter::once(&v), &only_gzip), None);
    }

    #[test]
    fn only_text_like_types_of_enough_size_are_compressed() {
        let cfg = CompressConfig {
            algorithms: ALL.to_vec(),
            min_size: 1024,
        };
        let h = |pairs: &[(&'static str, &'static str)]| {
            let mut m = HeaderMap::new();
            for (k, v) in pairs {
                m.append(*k, HeaderValue::from_static(v));
            }
            m
        };
        let json = h(&[("content-type", "application/json; charset=utf-8")]);
        let z = Some(Coding::Zstd);
        assert_eq!(
            decide(&cfg, z, 200, false, &json),
            Decision::Compress(Coding::Zstd)
        );
        assert_eq!(decide(&cfg, None, 200, false, &json), Decision::VaryOnly);
        assert_eq!(decide(&cfg, z, 206, false, &json), Decision::VaryOnly);
        assert_eq!(decide(&cfg, z, 200, true, &json), Decision::VaryOnly);
        for t in [
            "text/html",
            "application/problem+json",
            "image/svg+xml",
            "application/javascript",
        ] {
            let m = h(&[("content-type", t)]);
            assert!(
                matches!(decide(&cfg, z, 200, false, &m), Decision::Compress(_)),
                "{t}"
            );
        }
        for t in ["image/png", "application/octet-stream", "application/zip"] {
            let m = h(&[("content-type", t)]);
            assert_eq!(decide(&cfg, z, 200, false, &m), Decision::Untouched, "{t}");
        }
        let small = h(&[("content-type", "text/plain"), ("content-length", "1023")]);
        assert_eq!(decide(&cfg, z, 200, false, &small), Decision::VaryOnly);
        let enc = h(&[("content-type", "text/plain"), ("content-encoding", "gzip")]);
        assert_eq!(decide(&cfg, z, 200, false, &enc), Decision::VaryOnly);
        let nt = h(&[
            ("content-type", "text/plain"),
            ("cache-control", "public, no-transform"),
        ]);
        assert_eq!(decide(&cfg, z, 200, false, &nt), Decision::VaryOnly);
    }

    #[test]
    fn strong_etags_become_weak() {
        let w = |s: &'static str| weaken_etag(&HeaderValue::from_static(s));
        assert_eq!(w("\"abc\"").unwrap(), "W/\"abc\"");
        assert_eq!(w("W/\"abc\"").unwrap(), "W/\"abc\"");
        assert_eq!(w("abc"), None);
    }
}
