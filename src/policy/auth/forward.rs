//! Forward auth (`type: forward`): ask another service, as nginx's
//! `auth_request` and Traefik's ForwardAuth do.
//!
//! The auth request is a `GET` to `url` with the configured `send_headers`
//! plus `X-Forwarded-Method`, `-Uri` (path and query), `-Host` and `-For`;
//! never a body. A 2xx allows (its `copy_headers` become identity headers),
//! 401/403 are passed on (with the service's `WWW-Authenticate`), anything
//! else, a timeout or a failed connection is 503: fail closed. One pooled
//! client per provider; 2xx answers may be cached by a hash of everything
//! sent, for `cache`, at most [`CACHE_ENTRIES`].

use super::digest_cache::DigestCache;
use crate::config::ForwardConfig;
use http::{HeaderMap, HeaderName, HeaderValue, Method};
use sha2::{Digest, Sha256};
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// 2xx answers remembered at most.
pub(crate) const CACHE_ENTRIES: usize = 10_000;

/// What the auth service is told about a request.
pub struct AuthRequest<'a> {
    pub headers: &'a HeaderMap,
    pub method: &'a Method,
    /// Path and query as the client sent them.
    pub uri: &'a str,
    pub host: Option<&'a str>,
    pub client_ip: Option<IpAddr>,
    /// The verified TLS client certificate of the connection (`mtls`).
    pub client_cert: Option<&'a crate::tls::client::ClientCert>,
}

/// What the auth service decided.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// 2xx: the `copy_headers` it answered with.
    Allow(Vec<(HeaderName, HeaderValue)>),
    /// 401 or 403, with its `WWW-Authenticate` values.
    Deny {
        status: u16,
        challenges: Vec<String>,
    },
    /// Anything else, a timeout, a connection failure.
    Unavailable,
}

impl Verdict {
    /// Its counter among those of `Metrics::forward_auth` (allow, deny,
    /// error; 3 is `cached`).
    pub fn slot(&self) -> usize {
        match self {
            Verdict::Allow(_) => 0,
            Verdict::Deny { .. } => 1,
            Verdict::Unavailable => 2,
        }
    }
}

pub struct ForwardProvider {
    url: String,
    send: Vec<HeaderName>,
    pub copy: Vec<HeaderName>,
    client: reqwest::Client,
    /// Digest of what was sent -> the `copy_headers` of the 2xx answer.
    cache: Option<DigestCache<Vec<(HeaderName, HeaderValue)>>>,
}

impl ForwardProvider {
    pub fn new(cfg: &ForwardConfig) -> ForwardProvider {
        let client = reqwest::Client::builder()
            .timeout(cfg.timeout)
            .connect_timeout(cfg.timeout)
            .redirect(reqwest::redirect::Policy::none())
            .pool_idle_timeout(Duration::from_secs(60))
            .no_proxy()
            .build()
            .unwrap_or_default();
        ForwardProvider {
            url: cfg.url.clone(),
            send: cfg.send_headers.clone(),
            copy: cfg.copy_headers.clone(),
            client,
            cache: cfg.cache.map(|ttl| DigestCache::new(ttl, CACHE_ENTRIES)),
        }
    }

    /// The headers of the auth request, in a fixed order (the cache key).
    fn outgoing(&self, r: &AuthRequest<'_>) -> Vec<(HeaderName, HeaderValue)> {
        let mut out: Vec<(HeaderName, HeaderValue)> = Vec::new();
        for name in &self.send {
            for v in r.headers.get_all(name) {
                out.push((name.clone(), v.clone()));
            }
        }
        let mut put = |n: &'static str, v: &str| {
            if let Ok(v) = HeaderValue::from_str(v) {
                out.push((HeaderName::from_static(n), v));
            }
        };
        put("x-forwarded-method", r.method.as_str());
        put("x-forwarded-uri", r.uri);
        if let Some(h) = r.host {
            put("x-forwarded-host", h);
        }
        if let Some(ip) = r.client_ip {
            put("x-forwarded-for", &ip.to_string());
        }
        out
    }

    fn key(sent: &[(HeaderName, HeaderValue)]) -> [u8; 32] {
        let mut h = Sha256::new();
        for (n, v) in sent {
            h.update(n.as_str().as_bytes());
            h.update(b"\0");
            h.update(v.as_bytes());
            h.update(b"\n");
        }
        h.finalize().into()
    }

    /// Asks the auth service (or the cache) about `r`.
    pub async fn check(&self, r: &AuthRequest<'_>) -> (Verdict, bool) {
        let sent = self.outgoing(r);
        let key = Self::key(&sent);
        let now = Instant::now();
        if let Some(copied) = self.cache.as_ref().and_then(|c| c.get(&key, now)) {
            return (Verdict::Allow(copied), true);
        }
        let mut req = self.client.get(&self.url);
        for (n, v) in sent {
            req = req.header(n, v);
        }
        let verdict = match req.send().await {
            Ok(resp) => self.judge(resp),
            Err(e) => {
                log::warn!("forward auth `{}`: {e}", self.url);
                Verdict::Unavailable
            }
        };
        if let (Verdict::Allow(copied), Some(cache)) = (&verdict, &self.cache) {
            cache.put(key, copied.clone(), now);
        }
        (verdict, false)
    }

    fn judge(&self, resp: reqwest::Response) -> Verdict {
        let status = resp.status().as_u16();
        let headers = resp.headers();
        match status {
            200..=299 => Verdict::Allow(
                self.copy
                    .iter()
                    .filter_map(|n| Some((n.clone(), headers.get(n)?.clone())))
                    .collect(),
            ),
            401 | 403 => Verdict::Deny {
                status,
                challenges: headers
                    .get_all(http::header::WWW_AUTHENTICATE)
                    .iter()
                    .filter_map(|v| v.to_str().ok().map(str::to_string))
                    .collect(),
            },
            _ => Verdict::Unavailable,
        }
    }
}
