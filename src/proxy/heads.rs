//! Request and response heads taken out of Pingora's types for editing.
//!
//! Pingora's `insert_header` parses the name again on every call (even a
//! `HeaderName`) and writes two maps, the values and the client's name
//! case, both full after Pingora's clone of the head, so each insert
//! also grows and rehashes them: about 1.4k instructions per header
//! (callgrind). gatehouse takes the head's `http` parts instead, reserves
//! room once, inserts pre-parsed names, and puts the parts back without
//! the case map. Header names then go out in lower case, as HAProxy and
//! Envoy send them (names are case-insensitive, RFC 9110 §5.1).

use http::{request, response, HeaderMap, HeaderName, HeaderValue};
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::{Error, ErrorType, Result};

/// `up`'s parts, owned, and its target kept when the URI cannot
/// reproduce it (a path that is not UTF-8 goes upstream byte for byte).
/// Put them back with [`request_from`].
pub(super) fn request_parts(up: &mut RequestHeader) -> (request::Parts, RequestExtra) {
    let extra = RequestExtra {
        raw: (!up.raw_path_is_utf8()).then(|| up.raw_path().to_vec()),
        hold_end_stream: up.send_end_stream() == Some(false),
    };
    let empty = http::Request::new(()).into_parts().0;
    let old = std::mem::replace(up, RequestHeader::from(empty));
    (request::Parts::from(old), extra)
}

/// What `RequestHeader::from(parts)` would reset.
pub(super) struct RequestExtra {
    raw: Option<Vec<u8>>,
    hold_end_stream: bool,
}

pub(super) fn request_from(parts: request::Parts, extra: RequestExtra) -> Result<RequestHeader> {
    let mut up = RequestHeader::from(parts);
    if let Some(raw) = extra.raw {
        up.set_raw_path(&raw)?;
    }
    if extra.hold_end_stream {
        up.set_send_end_stream(false);
    }
    Ok(up)
}

/// `resp`'s parts, owned, and a reason phrase other than the status's
/// usual one. Put them back with [`response_from`].
pub(super) fn response_parts(resp: &mut ResponseHeader) -> (response::Parts, Option<String>) {
    let canonical = resp.status.canonical_reason();
    let reason = resp
        .get_reason_phrase()
        .filter(|r| Some(*r) != canonical)
        .map(str::to_owned);
    let empty = http::Response::new(()).into_parts().0;
    let old = std::mem::replace(resp, ResponseHeader::from(empty));
    (response::Parts::from(old), reason)
}

pub(super) fn response_from(
    parts: response::Parts,
    reason: Option<String>,
) -> Result<ResponseHeader> {
    let mut resp = ResponseHeader::from(parts);
    if reason.is_some() {
        resp.set_reason_phrase(reason.as_deref())?;
    }
    Ok(resp)
}

/// Room for `n` more headers, so the inserts after it do not grow the
/// map. Fails (never panics) past `http`'s limit of 32,768 headers.
pub(super) fn reserve(h: &mut HeaderMap, n: usize) -> Result<()> {
    h.try_reserve(n)
        .map_err(|_| Error::explain(ErrorType::InvalidHTTPHeader, "too many headers"))
}

/// Sets `name` to `value`, replacing any value it had.
pub(super) fn put(h: &mut HeaderMap, name: HeaderName, value: HeaderValue) -> Result<()> {
    h.try_insert(name, value)
        .map(drop)
        .map_err(|_| Error::explain(ErrorType::InvalidHTTPHeader, "too many headers"))
}

/// A header value from text that came from the client or the config.
pub(super) fn value(s: &str) -> Result<HeaderValue> {
    HeaderValue::from_str(s)
        .map_err(|_| Error::explain(ErrorType::InvalidHTTPHeader, "invalid header value"))
}
