//! API keys from a request header. Keys are held only as SHA-256 digests;
//! the presented key is hashed and compared with every configured digest in
//! constant time, without stopping at a match.

use crate::config::ApiKeyConfig;
use http::{HeaderMap, HeaderName};
use sha2::{Digest, Sha256};
use subtle::{ConditionallySelectable, ConstantTimeEq};

pub struct ApiKeyProvider {
    pub header: HeaderName,
    keys: Vec<(String, [u8; 32])>,
    pub forward_id: Option<HeaderName>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApiKeyError {
    Missing,
    Unknown,
}

impl ApiKeyProvider {
    pub fn new(cfg: &ApiKeyConfig) -> ApiKeyProvider {
        ApiKeyProvider {
            header: cfg.header.clone(),
            keys: cfg.keys.iter().map(|k| (k.id.clone(), k.sha256)).collect(),
            forward_id: cfg.forward_id.clone(),
        }
    }

    pub fn presented(&self, headers: &HeaderMap) -> bool {
        headers.contains_key(&self.header)
    }

    /// The id of the key in the request's header.
    pub fn check(&self, headers: &HeaderMap) -> Result<&str, ApiKeyError> {
        let given = headers.get(&self.header).ok_or(ApiKeyError::Missing)?;
        let digest: [u8; 32] = Sha256::digest(given.as_bytes()).into();
        let mut found = u32::MAX;
        for (i, (_, d)) in self.keys.iter().enumerate() {
            found.conditional_assign(&(i as u32), d.ct_eq(&digest));
        }
        self.keys
            .get(found as usize)
            .map(|(id, _)| id.as_str())
            .ok_or(ApiKeyError::Unknown)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ApiKeyEntry;

    #[test]
    fn plain_and_hashed_keys() {
        let p = ApiKeyProvider::new(&ApiKeyConfig {
            header: HeaderName::from_static("x-api-key"),
            keys: vec![
                ApiKeyEntry {
                    id: "a".into(),
                    sha256: Sha256::digest(b"key-a").into(),
                },
                ApiKeyEntry {
                    id: "b".into(),
                    sha256: Sha256::digest(b"key-b").into(),
                },
            ],
            forward_id: None,
        });
        let mut h = HeaderMap::new();
        assert_eq!(p.check(&h), Err(ApiKeyError::Missing));
        h.insert("x-api-key", "key-b".parse().unwrap());
        assert_eq!(p.check(&h), Ok("b"));
        h.insert("x-api-key", "key-c".parse().unwrap());
        assert_eq!(p.check(&h), Err(ApiKeyError::Unknown));
    }
}
