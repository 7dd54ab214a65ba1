//! Authentication: JWT (`jwt.rs`, keys from `jwks.rs`) and API keys
//! (`apikey.rs`). A route names one provider, several (any of them may
//! succeed), or one with required scopes.
//!
//! Decision order for a route with several providers: the first provider
//! that accepts the request wins. If none does, the error shown is the one
//! about a credential the client actually sent (a bad token beats a missing
//! API key), and a missing credential otherwise. Scopes are checked on the
//! authenticated JWT: a valid token without them is 403, not 401.

pub(crate) mod apikey;
pub(crate) mod basic;
pub(crate) mod digest_cache;
pub(crate) mod forward;
pub(crate) mod jwks;
pub(crate) mod jwt;
pub(crate) mod mtls;
pub(crate) mod token_cache;

use crate::config::{AuthConfig, RouteAuthConfig};
use apikey::{ApiKeyError, ApiKeyProvider};
use basic::{BasicError, BasicProvider};
pub(crate) use forward::AuthRequest;
use forward::{ForwardProvider, Verdict};
use http::{HeaderName, HeaderValue};
use jwt::{JwtError, JwtProvider};
use mtls::{MtlsError, MtlsProvider};
use prometheus::IntCounter;
use std::collections::BTreeMap;
use std::sync::Arc;
use token_cache::Claims;

pub enum ProviderKind {
    Jwt(JwtProvider),
    ApiKey(ApiKeyProvider),
    Basic(Arc<BasicProvider>),
    /// With its answers counted by result (allow, deny, error, cached).
    Forward(ForwardProvider, [IntCounter; 4]),
    Mtls(MtlsProvider),
}

pub struct Provider {
    pub name: Arc<str>,
    pub config: AuthConfig,
    pub kind: ProviderKind,
    /// claim -> header, for JWT providers.
    forward_claims: Vec<(String, HeaderName)>,
}

impl Provider {
    pub fn new(
        name: &str,
        config: &AuthConfig,
        metrics: &crate::observability::metrics::Metrics,
    ) -> Result<Provider, crate::keys::KeyError> {
        let (kind, forward_claims) = match config {
            AuthConfig::Jwt(j) => (
                ProviderKind::Jwt(JwtProvider::new(j)?),
                j.forward_claims.clone(),
            ),
            AuthConfig::ApiKey(k) => (ProviderKind::ApiKey(ApiKeyProvider::new(k)), Vec::new()),
            AuthConfig::Basic(b) => (
                ProviderKind::Basic(Arc::new(BasicProvider::new(b))),
                Vec::new(),
            ),
            AuthConfig::Forward(f) => (
                ProviderKind::Forward(ForwardProvider::new(f), metrics.forward_auth(name)),
                Vec::new(),
            ),
            AuthConfig::Mtls(m) => (ProviderKind::Mtls(MtlsProvider::new(m)), Vec::new()),
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

impl Identity {
    /// A user known by name (API-key id, Basic user), sent upstream in
    /// `forward_id` when one is configured.
    fn named(user: &str, forward_id: Option<&HeaderName>) -> Identity {
        let header = forward_id.zip(HeaderValue::from_str(user).ok());
        Identity {
            user: Some(user.to_string()),
            claims: None,
            headers: header.map(|(h, v)| (h.clone(), v)).into_iter().collect(),
        }
    }
}

/// Why a request is refused.
#[derive(Debug, Clone, PartialEq)]
pub enum AuthDenied {
    /// 401. `challenges` are the `WWW-Authenticate` values.
    Unauthorized {
        failure: AuthFailure,
        challenges: Vec<String>,
    },
    /// 403: a valid token without the route's scopes.
    Forbidden { scopes: String },
    /// 503: keys are not loaded yet (JWKS URL not fetched), or the auth
    /// service did not answer usefully (forward auth fails closed).
    Unavailable,
    /// 403 from a forward-auth service (with its `WWW-Authenticate`), or
    /// a verified client certificate that is not allowed.
    Refused {
        failure: AuthFailure,
        challenges: Vec<String>,
    },
}

impl AuthDenied {
    pub fn reason(&self) -> AuthFailure {
        match self {
            AuthDenied::Unauthorized { failure, .. } => *failure,
            AuthDenied::Forbidden { .. } => AuthFailure::Scope,
            AuthDenied::Unavailable => AuthFailure::Unavailable,
            AuthDenied::Refused { failure, .. } => *failure,
        }
    }
}

/// Every reason credentials are refused: the `reason` label of
/// `gatehouse_auth_failures_total` and, for 401s, the problem detail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthFailure {
    Missing,
    Malformed,
    Signature,
    Expired,
    NotYetValid,
    Issuer,
    Audience,
    Scope,
    UnknownKey,
    Algorithm,
    ApiKey,
    Unavailable,
    /// HTTP Basic: unknown user, wrong password, or malformed credentials.
    Password,
    /// A forward-auth service answered 401 or 403.
    Forward,
    /// A verified client certificate whose subject and SANs are not allowed.
    Certificate,
}

impl AuthFailure {
    /// In label order: `ALL[f as usize] == f`.
    pub const ALL: [AuthFailure; 15] = [
        AuthFailure::Missing,
        AuthFailure::Malformed,
        AuthFailure::Signature,
        AuthFailure::Expired,
        AuthFailure::NotYetValid,
        AuthFailure::Issuer,
        AuthFailure::Audience,
        AuthFailure::Scope,
        AuthFailure::UnknownKey,
        AuthFailure::Algorithm,
        AuthFailure::ApiKey,
        AuthFailure::Unavailable,
        AuthFailure::Password,
        AuthFailure::Forward,
        AuthFailure::Certificate,
    ];

    pub fn label(self) -> &'static str {
        match self {
            AuthFailure::Missing => "missing",
            AuthFailure::Malformed => "malformed",
            AuthFailure::Signature => "signature",
            AuthFailure::Expired => "expired",
            AuthFailure::NotYetValid => "not_yet_valid",
            AuthFailure::Issuer => "issuer",
            AuthFailure::Audience => "audience",
            AuthFailure::Scope => "scope",
            AuthFailure::UnknownKey => "unknown_key",
            AuthFailure::Algorithm => "algorithm",
            AuthFailure::ApiKey => "api_key",
            AuthFailure::Unavailable => "unavailable",
            AuthFailure::Password => "password",
            AuthFailure::Forward => "forward",
            AuthFailure::Certificate => "certificate",
        }
    }

    /// Every label, in [`AuthFailure::ALL`] order.
    pub fn labels() -> [&'static str; 15] {
        AuthFailure::ALL.map(AuthFailure::label)
    }

    /// What a client is told.
    pub fn detail(self) -> &'static str {
        match self {
            AuthFailure::Missing => "This route needs credentials.",
            AuthFailure::Malformed => "The bearer token is malformed.",
            AuthFailure::Signature => "The token signature is invalid.",
            AuthFailure::Expired => "The token has expired.",
            AuthFailure::NotYetValid => "The token is not valid yet.",
            AuthFailure::Issuer => "The token's issuer is not accepted.",
            AuthFailure::Audience => "The token's audience is not accepted.",
            AuthFailure::Scope => "The token lacks a required scope.",
            AuthFailure::UnknownKey => "The token was signed with an unknown key.",
            AuthFailure::Algorithm => "The token's signing algorithm is not accepted.",
            AuthFailure::ApiKey => "The API key is not valid.",
            AuthFailure::Unavailable => "Credentials cannot be checked right now.",
            AuthFailure::Password => "The user name or password is not valid.",
            AuthFailure::Forward => "The auth service refused this request.",
            AuthFailure::Certificate => "This client certificate may not use this route.",
        }
    }
}

impl From<JwtError> for AuthFailure {
    fn from(e: JwtError) -> AuthFailure {
        match e {
            JwtError::Malformed => AuthFailure::Malformed,
            JwtError::Algorithm => AuthFailure::Algorithm,
            JwtError::Signature => AuthFailure::Signature,
            JwtError::Expired => AuthFailure::Expired,
            JwtError::NotYetValid => AuthFailure::NotYetValid,
            JwtError::Issuer => AuthFailure::Issuer,
            JwtError::Audience => AuthFailure::Audience,
            JwtError::UnknownKey => AuthFailure::UnknownKey,
            JwtError::KeysUnavailable => AuthFailure::Unavailable,
        }
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
                ProviderKind::Basic(_) => "Basic realm=\"gatehouse\"".to_string(),
                // The auth service's own challenges come with its answer;
                // TLS client certificates have no HTTP challenge.
                ProviderKind::Forward(..) | ProviderKind::Mtls(_) => continue,
            };
            if !out.contains(&c) {
                out.push(c);
            }
        }
        out
    }

    /// Authenticates a request (its headers; forward auth also tells the
    /// auth service the method, target, host and client).
    pub async fn authenticate(&self, req: &AuthRequest<'_>) -> Result<Identity, AuthDenied> {
        let headers = req.headers;
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
                                let failure = AuthFailure::from(e);
                                let detail = failure.detail().trim_end_matches('.');
                                worst.presented = Some(AuthDenied::Unauthorized {
                                    failure,
                                    challenges: self.challenges(Some(detail)),
                                });
                            }
                        }
                    }
                }
                ProviderKind::Forward(f, counts) => {
                    let (verdict, cached) = f.check(req).await;
                    counts[if cached { 3 } else { verdict.slot() }].inc();
                    match verdict {
                        Verdict::Allow(headers) => {
                            return Ok(Identity {
                                headers,
                                ..Default::default()
                            })
                        }
                        Verdict::Deny { status, challenges } if worst.presented.is_none() => {
                            worst.presented = Some(if status == 403 {
                                AuthDenied::Refused {
                                    failure: AuthFailure::Forward,
                                    challenges,
                                }
                            } else {
                                AuthDenied::Unauthorized {
                                    failure: AuthFailure::Forward,
                                    challenges,
                                }
                            });
                        }
                        Verdict::Deny { .. } => {}
                        Verdict::Unavailable => worst.unavailable = true,
                    }
                }
                ProviderKind::Basic(b) => match b.check(headers).await {
                    Ok(user) => return Ok(Identity::named(&user, b.forward_id.as_ref())),
                    Err(BasicError::Missing) => {}
                    Err(BasicError::Malformed | BasicError::Wrong) => {
                        if worst.presented.is_none() {
                            worst.presented = Some(AuthDenied::Unauthorized {
                                failure: AuthFailure::Password,
                                challenges: self.challenges(None),
                            });
                        }
                    }
                },
                ProviderKind::Mtls(m) => match m.check(req.client_cert) {
                    Ok(cert) => {
                        return Ok(Identity {
                            user: Some(cert.subject.clone()),
                            claims: None,
                            headers: m.headers(cert),
                        })
                    }
                    Err(MtlsError::NotAllowed) if worst.presented.is_none() => {
                        worst.presented = Some(AuthDenied::Refused {
                            failure: AuthFailure::Certificate,
                            challenges: Vec::new(),
                        });
                    }
                    Err(_) => {}
                },
                ProviderKind::ApiKey(k) => match k.check(headers) {
                    Ok(id) => return Ok(Identity::named(id, k.forward_id.as_ref())),
                    Err(ApiKeyError::Missing) => {}
                    Err(ApiKeyError::Unknown) => {
                        if worst.presented.is_none() {
                            worst.presented = Some(AuthDenied::Unauthorized {
                                failure: AuthFailure::ApiKey,
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
            failure: AuthFailure::Missing,
            challenges: self.challenges(None),
        })
    }

    fn jwt_identity(&self, p: &Provider, claims: Claims) -> Result<Identity, AuthDenied> {
        if !jwt::has_scopes(&claims, &self.scopes) {
            return Err(AuthDenied::Forbidden {
                scopes: self.scopes.join(" "),
            });
        }
        // A forwarded claim that cannot be a header value (CR, LF, NUL...)
        // refuses the token: it must not pass without its identity header.
        let mut headers = Vec::with_capacity(p.forward_claims.len());
        for (claim, h) in &p.forward_claims {
            let Some(v) = claims.get(claim).filter(|v| !v.is_null()) else {
                continue;
            };
            match jwt::claim_header_value(v) {
                Some(value) => headers.push((h.clone(), value)),
                None => {
                    let failure = AuthFailure::Malformed;
                    let detail = failure.detail().trim_end_matches('.');
                    return Err(AuthDenied::Unauthorized {
                        failure,
                        challenges: self.challenges(Some(detail)),
                    });
                }
            }
        }
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
pub(crate) fn identity_headers(providers: &BTreeMap<String, Arc<Provider>>) -> Vec<HeaderName> {
    let mut out: Vec<HeaderName> = Vec::new();
    for p in providers.values() {
        let names: Vec<&HeaderName> = match &p.kind {
            ProviderKind::Jwt(_) => p.forward_claims.iter().map(|(_, h)| h).collect(),
            ProviderKind::ApiKey(k) => k.forward_id.iter().collect(),
            ProviderKind::Basic(b) => b.forward_id.iter().collect(),
            ProviderKind::Forward(f, _) => f.copy.iter().collect(),
            ProviderKind::Mtls(m) => {
                let c = &m.config;
                c.forward_subject
                    .iter()
                    .chain(&c.forward_fingerprint)
                    .collect()
            }
        };
        for h in names {
            if !out.contains(h) {
                out.push(h.clone());
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_index_their_labels() {
        for (i, f) in AuthFailure::ALL.iter().enumerate() {
            assert_eq!(*f as usize, i);
        }
        let labels = AuthFailure::labels();
        assert!(labels
            .iter()
            .all(|l| labels.iter().filter(|m| m == &l).count() == 1));
        assert_eq!(AuthFailure::from(JwtError::Expired).label(), "expired");
        assert_eq!(
            AuthFailure::Missing.detail(),
            "This route needs credentials."
        );
    }
}
