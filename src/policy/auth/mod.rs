//! Authentication: JWT (`jwt.rs`, keys from `jwks.rs`) and API keys
//! (`apikey.rs`). A route names one provider, several (any of them may
//! succeed), or one with required scopes.
//!
//! Decision order for a route with several providers: the first provider
//! that accepts the request wins. If none does, the error shown is the one
//! about a credential the client actually sent (a bad token beats a missing
//! API key), and a missing credential otherwise. Scopes are checked on the
//! authenticated JWT: a valid token without them is 403, not 401.

pub mod apikey;
pub mod jwks;
pub mod jwt;
pub mod token_cache;

use crate::config::{AuthConfig, RouteAuthConfig};
use apikey::{ApiKeyError, ApiKeyProvider};
use http::{HeaderMap, HeaderName, HeaderValue};
use jwt::{JwtError, JwtProvider};
use std::collections::BTreeMap;
use std::sync::Arc;
use token_cache::Claims;

pub enum ProviderKind {
    Jwt(JwtProvider),
    ApiKey(ApiKeyProvider),
}

pub struct Provider {
    pub name: Arc<str>,
    pub config: AuthConfig,
    pub kind: ProviderKind,
    /// claim -> header, for JWT providers.
    forward_claims: Vec<(String, HeaderName)>,
}

impl Provider {
    pub fn new(name: &str, config: &AuthConfig) -> Result<Provider, crate::keys::KeyError> {
        let (kind, forward_claims) = match config {
            AuthConfig::Jwt(j) => (
                ProviderKind::Jwt(JwtProvider::new(j)?),
                j.forward_claims.clone(),
            ),
            AuthConfig::ApiKey(k) => (ProviderKind::ApiKey(ApiKeyProvider::new(k)), Vec::new()),
        };
        Ok(Provider {
            name: Arc::from(name),
            config: config.clone(),
            kind,
            forward_claims,
        })
    }

    /// True when a provider with `config` can be reused across a reload:
    /// only JWKS-URL providers carry state (fetched keys) worth keeping.
    pub fn reusable_for(&self, config: &AuthConfig) -> bool {
        matches!(&self.kind, ProviderKind::Jwt(j) if j.remote().is_some()) && self.config == *config
    }
}

/// Who the request is, once authenticated.
#[derive(Debug, Clone, Default)]
pub struct Identity {
    /// JWT `sub` or the API key's id.
    pub user: Option<String>,
    pub claims: Option<Claims>,
    /// Headers to send upstream (`forward_claims`, `forward_id`).
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

/// Why a request is refused.
#[derive(Debug, Clone, PartialEq)]
pub enum AuthDenied {
    /// 401. `challenges` are the `WWW-Authenticate` values.
    Unauthorized {
        reason: &'static str,
        detail: &'static str,
        challenges: Vec<String>,
    },
    /// 403: a valid token without the route's scopes.
    Forbidden { scopes: String },
    /// 503: keys are not loaded yet (JWKS URL not fetched).
    Unavailable,
}

impl AuthDenied {
    pub fn reason(&self) -> &'static str {
        match self {
            AuthDenied::Unauthorized { reason, .. } => reason,
            AuthDenied::Forbidden { .. } => "scope",
            AuthDenied::Unavailable => "unavailable",
        }
    }
}

/// Every `reason` label value, for pre-created metrics.
pub const REASONS: &[&str] = &[
    "missing",
    "malformed",
    "signature",
    "expired",
    "not_yet_valid",
    "issuer",
    "audience",
    "scope",
    "unknown_key",
    "algorithm",
    "api_key",
    "unavailable",
];

fn jwt_failure(e: JwtError) -> (&'static str, &'static str) {
    match e {
        JwtError::Malformed => ("malformed", "The bearer token is malformed."),
        JwtError::Algorithm => (
            "algorithm",
            "The token's signing algorithm is not accepted.",
        ),
        JwtError::Signature => ("signature", "The token signature is invalid."),
        JwtError::Expired => ("expired", "The token has expired."),
        JwtError::NotYetValid => ("not_yet_valid", "The token is not valid yet."),
        JwtError::Issuer => ("issuer", "The token's issuer is not accepted."),
        JwtError::Audience => ("audience", "The token's audience is not accepted."),
        JwtError::UnknownKey => ("unknown_key", "The token was signed with an unknown key."),
        JwtError::KeysUnavailable => ("unavailable", "Signing keys are not available yet."),
    }
}

/// The authentication a route requires.
pub struct RouteAuth {
    pub providers: Vec<Arc<Provider>>,
    pub scopes: Vec<String>,
}

/// The best refusal so far; a failure about a presented credential outranks
/// a missing one.
struct Worst {
    presented: Option<AuthDenied>,
    unavailable: bool,
}

impl RouteAuth {
    pub fn new(cfg: &RouteAuthConfig, providers: &BTreeMap<String, Arc<Provider>>) -> RouteAuth {
        RouteAuth {
            providers: cfg
                .providers
                .iter()
                .filter_map(|p| providers.get(p).cloned())
                .collect(),
            scopes: cfg.scopes.clone(),
        }
    }

    fn challenges(&self, error: Option<&str>) -> Vec<String> {
        let mut out = Vec::new();
        for p in &self.providers {
            let c = match &p.kind {
                ProviderKind::Jwt(_) => match error {
                    Some(e) => format!("Bearer realm=\"gatehouse\", error=\"invalid_token\", error_description=\"{e}\""),
                    None => "Bearer realm=\"gatehouse\"".to_string(),
                },
                ProviderKind::ApiKey(k) => format!("ApiKey realm=\"gatehouse\", header=\"{}\"", k.header),
            };
            if !out.contains(&c) {
                out.push(c);
            }
        }
        out
    }

    /// Authenticates a request by its headers.
    pub async fn authenticate(&self, headers: &HeaderMap) -> Result<Identity, AuthDenied> {
        let bearer = crate::http::bearer_token(headers);
        let mut worst = Worst {
            presented: None,
            unavailable: false,
        };
        for p in &self.providers {
            match &p.kind {
                ProviderKind::Jwt(j) => {
                    let Some(token) = bearer else { continue };
                    match j.verify(token).await {
                        Ok(claims) => return self.jwt_identity(p, claims),
                        Err(JwtError::KeysUnavailable) => worst.unavailable = true,
                        Err(e) => {
                            if worst.presented.is_none() {
                                let (reason, detail) = jwt_failure(e);
                                let challenges =
                                    self.challenges(Some(detail.trim_end_matches('.')));
                                worst.presented = Some(AuthDenied::Unauthorized {
                                    reason,
                                    detail,
                                    challenges,
                                });
                            }
                        }
                    }
                }
                ProviderKind::ApiKey(k) => match k.check(headers) {
                    Ok(id) => {
                        let mut identity = Identity {
                            user: Some(id.to_string()),
                            ..Default::default()
                        };
                        if let (Some(h), Ok(v)) = (&k.forward_id, HeaderValue::from_str(id)) {
                            identity.headers.push((h.clone(), v));
                        }
                        return Ok(identity);
                    }
                    Err(ApiKeyError::Missing) => {}
                    Err(ApiKeyError::Unknown) => {
                        if worst.presented.is_none() {
                            worst.presented = Some(AuthDenied::Unauthorized {
                                reason: "api_key",
                                detail: "The API key is not valid.",
                                challenges: self.challenges(None),
                            });
                        }
                    }
                },
            }
        }
        if let Some(d) = worst.presented {
            return Err(d);
        }
        if worst.unavailable {
            return Err(AuthDenied::Unavailable);
        }
        Err(AuthDenied::Unauthorized {
            reason: "missing",
            detail: "This route needs credentials.",
            challenges: self.challenges(None),
        })
    }

    fn jwt_identity(&self, p: &Provider, claims: Claims) -> Result<Identity, AuthDenied> {
        if !jwt::has_scopes(&claims, &self.scopes) {
            return Err(AuthDenied::Forbidden {
                scopes: self.scopes.join(" "),
            });
        }
        let headers = p
            .forward_claims
            .iter()
            .filter_map(|(claim, h)| {
                Some((h.clone(), jwt::claim_header_value(claims.get(claim)?)?))
            })
            .collect();
        Ok(Identity {
            user: claims
                .get("sub")
                .and_then(|v| v.as_str())
                .map(str::to_string),
            claims: Some(claims),
            headers,
        })
    }
}

/// Every header name any provider sets from identity; these are removed
/// from all client requests.
pub fn identity_headers(providers: &BTreeMap<String, Arc<Provider>>) -> Vec<HeaderName> {
    let mut out: Vec<HeaderName> = Vec::new();
    for p in providers.values() {
        let names: Vec<&HeaderName> = match &p.kind {
            ProviderKind::Jwt(_) => p.forward_claims.iter().map(|(_, h)| h).collect(),
            ProviderKind::ApiKey(k) => k.forward_id.iter().collect(),
        };
        for h in names {
            if !out.contains(h) {
                out.push(h.clone());
            }
        }
    }
    out
}
