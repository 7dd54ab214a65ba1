//! Response compression on routes with `compress`, over Pingora's encoders
//! (zstd, brotli, gzip). It transforms the upstream response, before the
//! cache stores it: a cached route keeps one variant per coding (the cache
//! varies on the negotiated coding, not on the raw `Accept-Encoding`), and
//! a hit is served without encoding again. Decisions are
//! `policy/compress.rs`; routes without `compress` never reach this file.

use crate::config::{Coding, CompressConfig};
use crate::policy::compress::{self as policy, Decision};
use bytes::Bytes;
use http::header::{
    ACCEPT_RANGES, CONTENT_ENCODING, CONTENT_LENGTH, ETAG, TRANSFER_ENCODING, VARY,
};
use http::HeaderValue;
use pingora::http::ResponseHeader;
use pingora::protocols::http::compression::{Algorithm, Encode};

/// This module's ctx slice, on routes with `compress`.
pub(crate) struct CompressCtx {
    /// What negotiation gave the request (`None`: identity).
    pub chosen: Option<Coding>,
    encoder: Option<Box<dyn Encode + Send + Sync>>,
}

/// Request phase: negotiates the coding from `Accept-Encoding`.
pub(super) fn request(cfg: &CompressConfig, headers: &http::HeaderMap) -> CompressCtx {
    let accept = headers.get_all(http::header::ACCEPT_ENCODING).iter();
    CompressCtx {
        chosen: policy::negotiate(accept, &cfg.algorithms),
        encoder: None,
    }
}

/// Levels that favour CPU per request over the last percent of size (an
/// API gateway compresses every response, not once per release).
fn encoder(c: Coding) -> Option<Box<dyn Encode + Send + Sync>> {
    match c {
        Coding::Zstd => Algorithm::Zstd.compressor(3),
        Coding::Br => Some(Box::new(Brotli(Some(brotli::CompressorWriter::new(
            Vec::new(),
            4096,
            4,
            19,
        ))))),
        Coding::Gzip => Algorithm::Gzip.compressor(5),
    }
}

/// br, ended properly: the stream's last meta-block is written when the
/// body ends (`into_inner`), which Pingora's encoder leaves out.
struct Brotli(Option<brotli::CompressorWriter<Vec<u8>>>);

impl Encode for Brotli {
    fn encode(&mut self, input: &[u8], end: bool) -> pingora::Result<Bytes> {
        use std::io::Write;
        let failed = |e: std::io::Error| {
            pingora::Error::because(pingora::ErrorType::InternalError, "brotli", e)
        };
        let Some(w) = self.0.as_mut() else {
            return Ok(Bytes::new());
        };
        w.write_all(input).map_err(failed)?;
        if end {
            let out = self.0.take().map(|w| w.into_inner()).unwrap_or_default();
            return Ok(out.into());
        }
        Ok(std::mem::take(w.get_mut()).into())
    }

    fn stat(&self) -> (&'static str, usize, usize, std::time::Duration) {
        ("br", 0, 0, std::time::Duration::ZERO)
    }
}

/// Upstream response head: `Vary` on every compressible type; when
/// encoding, the coding, a weak `ETag`, and streamed framing.
pub(super) fn response_head(
    cfg: &CompressConfig,
    slot: &mut CompressCtx,
    head_request: bool,
    resp: &mut ResponseHeader,
) -> pingora::Result<()> {
    slot.encoder = None;
    let decision = policy::decide(
        cfg,
        slot.chosen,
        resp.status.as_u16(),
        head_request,
        &resp.headers,
    );
    if decision == Decision::Untouched {
        return Ok(());
    }
    add_vary(resp)?;
    let Decision::Compress(coding) = decision else {
        return Ok(());
    };
    let Some(enc) = encoder(coding) else {
        return Ok(());
    };
    slot.encoder = Some(enc);
    resp.insert_header(CONTENT_ENCODING, coding.token())?;
    resp.remove_header(&CONTENT_LENGTH);
    // Ranges of the identity bytes do not apply to the encoded ones.
    resp.remove_header(&ACCEPT_RANGES);
    // HTTP/1.1 streams it chunked; Pingora drops this on HTTP/2.
    resp.insert_header(TRANSFER_ENCODING, "chunked")?;
    if let Some(etag) = resp.headers.get(ETAG) {
        match policy::weaken_etag(etag) {
            Some(weak) => resp.insert_header(ETAG, weak)?,
            None => {
                resp.remove_header(&ETAG);
            }
        }
    }
    Ok(())
}

/// `Vary: Accept-Encoding`, unless the response already varies on it or
/// on everything.
fn add_vary(resp: &mut ResponseHeader) -> pingora::Result<()> {
    let covered = resp.headers.get_all(VARY).iter().any(|v| {
        v.to_str().is_ok_and(|s| {
            s.split(',').any(|n| {
                let n = n.trim();
                n == "*" || n.eq_ignore_ascii_case("accept-encoding")
            })
        })
    });
    if !covered {
        resp.append_header(VARY, HeaderValue::from_static("Accept-Encoding"))?;
    }
    Ok(())
}

/// Upstream body chunk: encoded in place; at the end the encoder's tail.
pub(super) fn body(
    slot: &mut CompressCtx,
    body: &mut Option<Bytes>,
    end: bool,
) -> pingora::Result<()> {
    let Some(enc) = slot.encoder.as_mut() else {
        return Ok(());
    };
    let input = body.as_deref().unwrap_or(&[]);
    if input.is_empty() && !end {
        return Ok(());
    }
    *body = Some(enc.encode(input, end)?);
    if end {
        slot.encoder = None;
    }
    Ok(())
}

/// The value the cache varies `Accept-Encoding` on: the coding this
/// request gets, so `gzip, br` and `br;q=0.9, gzip` share one variant.
pub(super) fn variant(slot: &CompressCtx) -> &'static [u8] {
    slot.chosen.map_or(b"identity", |c| c.token().as_bytes())
}
