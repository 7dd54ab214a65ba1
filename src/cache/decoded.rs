//! A stored response's metadata kept decoded (for Pingora's hit path) and
//! what the hit fast path hands out (`MemoryStore::fresh`).

use bytes::Bytes;
use pingora::cache::key::HashBinary;
use pingora::cache::CacheMeta;

/// A stored response's metadata kept decoded. Pingora's hit path rebuilds
/// it with a header clone instead of parsing Pingora's serialized form
/// (zstd-compressed headers: decompressing and re-parsing them was 15% of a
/// hit's instructions), when `CacheMeta::new` can reproduce it exactly
/// (`exact`: never revalidated, no epoch override). The hit fast path
/// (`MemoryStore::fresh`) reads it either way.
pub(super) struct DecodedMeta {
    pub(super) fresh_until: std::time::SystemTime,
    pub(super) created: std::time::SystemTime,
    /// What `Age` counts from (Pingora's `CacheMeta::epoch`: the last
    /// validation, or an override).
    pub(super) epoch: std::time::SystemTime,
    pub(super) swr_secs: u32,
    pub(super) sie_secs: u32,
    pub(super) variance: Option<HashBinary>,
    pub(super) header: pingora::http::ResponseHeader,
    pub(super) exact: bool,
}

impl DecodedMeta {
    pub(super) fn capture(meta: &CacheMeta) -> DecodedMeta {
        let exact = meta.updated() == meta.created()
            && meta.provenance() == meta.created()
            && meta.epoch_override().is_none();
        DecodedMeta {
            fresh_until: meta.fresh_until(),
            created: meta.created(),
            epoch: meta.epoch(),
            swr_secs: meta.stale_while_revalidate_sec(),
            sie_secs: meta.stale_if_error_sec(),
            variance: meta.variance(),
            header: meta.response_header_copy(),
            exact,
        }
    }

    pub(super) fn rebuild(&self) -> CacheMeta {
        let mut meta = CacheMeta::new(
            self.fresh_until,
            self.created,
            self.swr_secs,
            self.sie_secs,
            self.header.clone(),
        );
        if let Some(v) = self.variance {
            meta.set_variance(v);
        }
        meta
    }
}

/// A fresh stored response, as [`super::store::MemoryStore::fresh`] hands it out.
pub(crate) struct Fresh {
    /// The stored head's parts: its header map cloned without Pingora's
    /// name-case map, which every response drops anyway
    /// (`proxy::heads`).
    pub head: http::response::Parts,
    /// A reason phrase other than the status's usual one.
    pub reason: Option<String>,
    pub body: Bytes,
    /// Whole seconds since it was stored: the `Age` field.
    pub age: u64,
    /// Whole seconds of freshness left.
    pub ttl: i64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, SystemTime};

    #[test]
    fn decoded_meta_rebuilds_the_same_metadata() {
        let now = SystemTime::now();
        let mut header = pingora::http::ResponseHeader::build(200, None).unwrap();
        header.insert_header("Content-Type", "text/plain").unwrap();
        header.insert_header("ETag", "\"v1\"").unwrap();
        header.append_header("Set-Thing", "a").unwrap();
        header.append_header("Set-Thing", "b").unwrap();
        let mut meta = CacheMeta::new(now + Duration::from_secs(60), now, 5, 7, header);
        meta.set_variance([7u8; 16]);
        let decoded = DecodedMeta::capture(&meta);
        assert!(decoded.exact, "plain metadata is rebuilt");
        let rebuilt = decoded.rebuild();
        assert_eq!(rebuilt.serialize().unwrap(), meta.serialize().unwrap());
        assert_eq!(rebuilt.variance(), Some([7u8; 16]));
        assert_eq!(
            rebuilt
                .response_header()
                .headers
                .get_all("set-thing")
                .iter()
                .count(),
            2
        );
    }
}
