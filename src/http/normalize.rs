//! Request-path normalisation, done once before routing so that the path
//! routed on, authorised and forwarded are the same bytes (RFC 3986 §6).
//!
//! - percent-encoded unreserved characters (`A-Z a-z 0-9 - . _ ~`) are
//!   decoded, other escapes get upper-case hex;
//! - `.` and `..` segments are resolved; climbing above `/` is an error;
//! - repeated `/` are collapsed;
//! - encodings that upstreams decode into structure are refused: `%2F` (`/`),
//!   `%5C` and raw `\`, `%00`, dot segments carrying `;` parameters
//!   (`..;`, a Tomcat bypass) and percent-escapes that are not valid UTF-8
//!   (overlong `%c0%ae`).

use std::borrow::Cow;
use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NormalizeError {
    /// Not an absolute path (`*`, empty, relative).
    NotAbsolute,
    /// `..` went above `/`.
    AboveRoot,
    /// `%` not followed by two hex digits.
    BadEscape,
    /// An encoded `/`, `\`, NUL, or a raw `\`.
    ForbiddenEncoding,
    /// Percent-escapes that decode to invalid UTF-8.
    InvalidUtf8,
    /// A `.`/`..` segment with `;` parameters.
    DotSegmentParams,
}

impl fmt::Display for NormalizeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            NormalizeError::NotAbsolute => "the request path must start with `/`",
            NormalizeError::AboveRoot => "the request path climbs above `/`",
            NormalizeError::BadEscape => "the request path has a malformed percent-escape",
            NormalizeError::ForbiddenEncoding => {
                "the request path has an encoded `/`, `\\` or NUL, which is not allowed"
            }
            NormalizeError::InvalidUtf8 => "the request path's percent-escapes are not valid UTF-8",
            NormalizeError::DotSegmentParams => {
                "the request path has a dot segment with parameters"
            }
        })
    }
}

impl std::error::Error for NormalizeError {}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

const HEX: &[u8; 16] = b"0123456789ABCDEF";

/// True when the path needs no work (the common case): no escapes, no
/// backslash, no empty or dot segments.
fn already_normal(p: &[u8]) -> bool {
    if p.first() != Some(&b'/') {
        return false;
    }
    let mut prev = 0u8;
    for (i, &b) in p.iter().enumerate() {
        match b {
            b'%' | b'\\' | 0x80..=0xff => return false,
            b'/' if prev == b'/' => return false,
            b'.' if prev == b'/' => {
                // `/.` starts a dot segment only if followed by `/`, `.`, `;` or the end
                match p.get(i + 1) {
                    None | Some(b'/') | Some(b'.') | Some(b';') => return false,
                    _ => {}
                }
            }
            _ => {}
        }
        prev = b;
    }
    true
}

/// Normalises a request path (without its query). Borrowed when unchanged.
pub fn normalize_path(path: &str) -> Result<Cow<'_, str>, NormalizeError> {
    let p = path.as_bytes();
    if already_normal(p) {
        return Ok(Cow::Borrowed(path));
    }
    if p.first() != Some(&b'/') {
        return Err(NormalizeError::NotAbsolute);
    }
    // Pass 1: decode unreserved escapes, canonicalise the rest.
    let mut decoded: Vec<u8> = Vec::with_capacity(p.len());
    let mut high_bytes: Vec<u8> = Vec::new();
    let mut has_high = false;
    let mut i = 0;
    while i < p.len() {
        let b = p[i];
        if b == b'%' {
            let (h, l) = match (
                p.get(i + 1).and_then(|&c| hex(c)),
                p.get(i + 2).and_then(|&c| hex(c)),
            ) {
                (Some(h), Some(l)) => (h, l),
                _ => return Err(NormalizeError::BadEscape),
            };
            let v = h * 16 + l;
            if matches!(v, b'/' | b'\\' | 0) {
                return Err(NormalizeError::ForbiddenEncoding);
            }
            if is_unreserved(v) {
                decoded.push(v);
            } else {
                decoded.extend_from_slice(&[b'%', HEX[(v >> 4) as usize], HEX[(v & 15) as usize]]);
            }
            if v >= 0x80 {
                has_high = true;
            }
            high_bytes.push(v);
            i += 3;
            continue;
        }
        if b == b'\\' {
            return Err(NormalizeError::ForbiddenEncoding);
        }
        if b >= 0x80 {
            // Raw non-ASCII: keep it valid in a URI by escaping it.
            decoded.extend_from_slice(&[b'%', HEX[(b >> 4) as usize], HEX[(b & 15) as usize]]);
            has_high = true;
            high_bytes.push(b);
        } else {
            high_bytes.push(b);
            decoded.push(b);
        }
        i += 1;
    }
    if has_high && std::str::from_utf8(&high_bytes).is_err() {
        return Err(NormalizeError::InvalidUtf8);
    }
    // Pass 2: segments.
    let mut segs: Vec<&[u8]> = Vec::new();
    let mut trailing_slash = false;
    for seg in decoded[1..].split(|&c| c == b'/') {
        trailing_slash = false;
        match seg {
            b"" => trailing_slash = true,
            b"." => trailing_slash = true,
            b".." => {
                if segs.pop().is_none() {
                    return Err(NormalizeError::AboveRoot);
                }
                trailing_slash = true;
            }
            s if s.starts_with(b"..;") || s.starts_with(b".;") => {
                return Err(NormalizeError::DotSegmentParams)
            }
            s => segs.push(s),
        }
    }
    let mut out = String::with_capacity(decoded.len());
    for s in &segs {
        out.push('/');
        // Only ASCII is left: non-ASCII was escaped above.
        out.push_str(std::str::from_utf8(s).expect("ascii"));
    }
    if trailing_slash || segs.is_empty() {
        out.push('/');
    }
    Ok(Cow::Owned(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(p: &str) -> Result<String, NormalizeError> {
        normalize_path(p).map(|c| c.into_owned())
    }

    #[test]
    fn common_paths_are_borrowed() {
        assert!(matches!(
            normalize_path("/api/users/7"),
            Ok(Cow::Borrowed(_))
        ));
        assert!(matches!(normalize_path("/"), Ok(Cow::Borrowed(_))));
        assert!(matches!(
            normalize_path("/a/.hidden/b.txt"),
            Ok(Cow::Borrowed(_))
        ));
    }

    #[test]
    fn dot_segments_and_slashes() {
        assert_eq!(n("/api/public/../orders").unwrap(), "/api/orders");
        assert_eq!(n("/a/./b").unwrap(), "/a/b");
        assert_eq!(n("//a///b//").unwrap(), "/a/b/");
        assert_eq!(n("/a/b/..").unwrap(), "/a/");
        assert_eq!(n("/a/b/.").unwrap(), "/a/b/");
        assert_eq!(n("/..").unwrap_err(), NormalizeError::AboveRoot);
        assert_eq!(n("/a/../..").unwrap_err(), NormalizeError::AboveRoot);
        assert_eq!(n("/a/..").unwrap(), "/");
    }

    #[test]
    fn escapes() {
        assert_eq!(n("/api/public/%2e%2e/orders").unwrap(), "/api/orders");
        assert_eq!(n("/api/public/%2E%2E/orders").unwrap(), "/api/orders");
        assert_eq!(n("/%7euser/%41bc").unwrap(), "/~user/Abc");
        assert_eq!(n("/a%20b/%3f").unwrap(), "/a%20b/%3F");
        assert_eq!(n("/caf%c3%a9").unwrap(), "/caf%C3%A9");
        assert_eq!(
            n("/public%2F..%2Fadmin").unwrap_err(),
            NormalizeError::ForbiddenEncoding
        );
        assert_eq!(n("/a%5cb").unwrap_err(), NormalizeError::ForbiddenEncoding);
        assert_eq!(
            n("/a\\..\\b").unwrap_err(),
            NormalizeError::ForbiddenEncoding
        );
        assert_eq!(n("/a%00").unwrap_err(), NormalizeError::ForbiddenEncoding);
        assert_eq!(n("/a%zz").unwrap_err(), NormalizeError::BadEscape);
        assert_eq!(n("/a%4").unwrap_err(), NormalizeError::BadEscape);
        assert_eq!(
            n("/%c0%ae%c0%ae/x").unwrap_err(),
            NormalizeError::InvalidUtf8
        );
        assert_eq!(
            n("/public/..;/admin").unwrap_err(),
            NormalizeError::DotSegmentParams
        );
        assert_eq!(n("*").unwrap_err(), NormalizeError::NotAbsolute);
        assert_eq!(n("").unwrap_err(), NormalizeError::NotAbsolute);
    }

    #[test]
    fn semicolons_elsewhere_are_literal() {
        assert_eq!(n("/admin;x=y").unwrap(), "/admin;x=y");
    }
}
