//! Validation of the `auth` section and of routes' `auth` keys.
//!
//! RFC 8725 rules enforced at load: an explicit algorithm allow-list, never
//! `none`; every algorithm must fit the key material (HMAC only with
//! `secret`, asymmetric only with `public_key`/`jwks`), so one provider can
//! never verify an RS256 key's PEM as an HS256 secret; HMAC secrets at least
//! as long as the hash output (RFC 7518 §3.2).

use super::file::{AuthFile, RouteAuthFile, StrOrList};
use super::model::*;
use super::validate::Errs;
use http::HeaderName;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

/// Headers gatehouse itself sets; identity headers may not reuse them.
const GATEWAY_HEADERS: &[&str] = &[
    "x-request-id",
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
    "host",
    "authorization",
    "connection",
    "content-length",
    "transfer-encoding",
];

fn is_hmac(a: Algorithm) -> bool {
    matches!(a, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512)
}

fn min_secret_len(a: Algorithm) -> usize {
    match a {
        Algorithm::HS384 => 48,
        Algorithm::HS512 => 64,
        _ => 32,
    }
}

fn header_name(errs: &mut Errs, path: &str, name: &str) -> Option<HeaderName> {
    match HeaderName::from_bytes(name.trim().as_bytes()) {
        Ok(h) if GATEWAY_HEADERS.contains(&h.as_str()) => {
            errs.push(
                path,
                format!("`{name}` is a header gatehouse sets or needs itself"),
            );
            None
        }
        Ok(h) => Some(h),
        Err(_) => {
            errs.push(path, format!("invalid header name `{name}`"));
            None
        }
    }
}

fn resolve(base: &Path, p: &str) -> std::path::PathBuf {
    let path = Path::new(p);
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        base.join(path)
    }
}

fn jwt(path: &str, a: &AuthFile, base: &Path, errs: &mut Errs) -> Option<JwtConfig> {
    let before = errs.0.len();
    for (key, present) in [
        ("header", a.header.is_some()),
        ("keys", a.keys.is_some()),
        ("forward_id", a.forward_id.is_some()),
    ] {
        if present {
            errs.push(
                format!("{path}.{key}"),
                "only for `type: api_key` providers",
            );
        }
    }
    let mut algorithms = Vec::new();
    match &a.algorithms {
        None => errs.push(
            format!("{path}.algorithms"),
            "required: the list of accepted algorithms",
        ),
        Some(list) if list.is_empty() => errs.push(
            format!("{path}.algorithms"),
            "must list at least one algorithm",
        ),
        Some(list) => {
            for (i, name) in list.iter().enumerate() {
                if name.eq_ignore_ascii_case("none") {
                    errs.push(
                        format!("{path}.algorithms[{i}]"),
                        "`none` is never accepted",
                    );
                    continue;
                }
                match Algorithm::from_str(name) {
                    Ok(alg) => algorithms.push(alg),
                    Err(_) => errs.push(
                        format!("{path}.algorithms[{i}]"),
                        format!("unknown algorithm `{name}` (HS256/384/512, RS256/384/512, PS256/384/512, ES256, ES384, EdDSA)"),
                    ),
                }
            }
        }
    }
    let sources = [a.secret.is_some(), a.public_key.is_some(), a.jwks.is_some()];
    let key = match sources.iter().filter(|s| **s).count() {
        0 => {
            errs.push(
                path,
                "a jwt provider needs `secret`, `public_key` or `jwks`",
            );
            None
        }
        1 => {
            if let Some(secret) = &a.secret {
                let bytes = secret.as_bytes().to_vec();
                if bytes.is_empty() {
                    errs.push(format!("{path}.secret"), "must not be empty");
                }
                for alg in &algorithms {
                    if !is_hmac(*alg) {
                        errs.push(
                            format!("{path}.algorithms"),
                            format!("{alg:?} needs `public_key` or `jwks`; `secret` only fits HS256/HS384/HS512"),
                        );
                    } else if !bytes.is_empty() && bytes.len() < min_secret_len(*alg) {
                        errs.push(
                            format!("{path}.secret"),
                            format!(
                                "{alg:?} needs a secret of at least {} bytes (RFC 7518 §3.2)",
                                min_secret_len(*alg)
                            ),
                        );
                    }
                }
                Some(JwtKey::Secret(bytes))
            } else if let Some(pk) = &a.public_key {
                let file = resolve(base, pk);
                match std::fs::read(&file) {
                    Err(e) => {
                        errs.push(
                            format!("{path}.public_key"),
                            format!("cannot read {}: {e}", file.display()),
                        );
                        None
                    }
                    Ok(pem) => match crate::keys::public_key_kind(&pem) {
                        Err(e) => {
                            errs.push(
                                format!("{path}.public_key"),
                                format!("{}: {e}", file.display()),
                            );
                            None
                        }
                        Ok(kind) => {
                            for alg in &algorithms {
                                if !kind.fits(*alg) {
                                    errs.push(
                                        format!("{path}.algorithms"),
                                        format!("{alg:?} does not fit the {kind:?} public key"),
                                    );
                                }
                            }
                            Some(JwtKey::PublicKey {
                                path: file.display().to_string(),
                                kind,
                                pem,
                            })
                        }
                    },
                }
            } else {
                let j = a.jwks.as_ref().expect("counted");
                for alg in &algorithms {
                    if is_hmac(*alg) {
                        errs.push(
                            format!("{path}.algorithms"),
                            format!(
                                "{alg:?} needs `secret`; JWKS keys are for asymmetric algorithms"
                            ),
                        );
                    }
                }
                match (&j.file, &j.url) {
                    (Some(f), None) => {
                        if j.refresh.is_some() {
                            errs.push(format!("{path}.jwks.refresh"), "only used with `jwks.url`");
                        }
                        let file = resolve(base, f);
                        match std::fs::read(&file) {
                            Err(e) => {
                                errs.push(
                                    format!("{path}.jwks.file"),
                                    format!("cannot read {}: {e}", file.display()),
                                );
                                None
                            }
                            Ok(json) => match crate::keys::KeySet::from_json(&json) {
                                Err(e) => {
                                    errs.push(
                                        format!("{path}.jwks.file"),
                                        format!("{}: {e}", file.display()),
                                    );
                                    None
                                }
                                Ok(_) => Some(JwtKey::JwksFile {
                                    path: file.display().to_string(),
                                    json,
                                }),
                            },
                        }
                    }
                    (None, Some(url)) => {
                        let ok = (url.starts_with("https://") || url.starts_with("http://"))
                            && url.parse::<http::Uri>().is_ok_and(|u| u.host().is_some());
                        if !ok {
                            errs.push(format!("{path}.jwks.url"), format!("invalid URL `{url}`"));
                        }
                        let refresh = errs.positive_duration(
                            &format!("{path}.jwks.refresh"),
                            &j.refresh,
                            Duration::from_secs(600),
                        );
                        Some(JwtKey::JwksUrl {
                            url: url.clone(),
                            refresh,
                        })
                    }
                    _ => {
                        errs.push(
                            format!("{path}.jwks"),
                            "give exactly one of `file` or `url`",
                        );
                        None
                    }
                }
            }
        }
        _ => {
            errs.push(path, "give only one of `secret`, `public_key` and `jwks`");
            None
        }
    };
    let leeway = errs.duration(
        &format!("{path}.leeway"),
        &a.leeway,
        Duration::from_secs(30),
    );
    if leeway > Duration::from_secs(300) {
        errs.push(
            format!("{path}.leeway"),
            "at most 5m (clock skew, not a grace period)",
        );
    }
    let mut forward_claims = Vec::new();
    for (claim, header) in a.forward_claims.iter().flatten() {
        if let Some(h) = header_name(errs, &format!("{path}.forward_claims.{claim}"), header) {
            forward_claims.push((claim.clone(), h));
        }
    }
    let cache = a.token_cache.as_ref();
    let cache_entries = cache.and_then(|c| c.entries).unwrap_or(10_000);
    let cache_ttl = errs.duration(
        &format!("{path}.token_cache.ttl"),
        &cache.and_then(|c| c.ttl.clone()),
        Duration::from_secs(30),
    );
    let cfg = JwtConfig {
        algorithms,
        key: key?,
        issuer: a.issuer.clone(),
        audience: a.audience.clone().unwrap_or(StrOrList(Vec::new())).0,
        leeway,
        forward_claims,
        cache_entries,
        cache_ttl,
    };
    (errs.0.len() == before).then_some(cfg)
}

fn api_key(path: &str, a: &AuthFile, errs: &mut Errs) -> Option<ApiKeyConfig> {
    let before = errs.0.len();
    for (key, present) in [
        ("algorithms", a.algorithms.is_some()),
        ("secret", a.secret.is_some()),
        ("public_key", a.public_key.is_some()),
        ("jwks", a.jwks.is_some()),
        ("issuer", a.issuer.is_some()),
        ("audience", a.audience.is_some()),
        ("leeway", a.leeway.is_some()),
        ("forward_claims", a.forward_claims.is_some()),
        ("token_cache", a.token_cache.is_some()),
    ] {
        if present {
            errs.push(format!("{path}.{key}"), "only for `type: jwt` providers");
        }
    }
    let header = match a.header.as_deref() {
        None => HeaderName::from_static("x-api-key"),
        Some(h) => header_name(errs, &format!("{path}.header"), h)?,
    };
    let mut keys = Vec::new();
    let mut ids = HashSet::new();
    match &a.keys {
        None => errs.push(format!("{path}.keys"), "required: at least one key"),
        Some(list) if list.is_empty() => {
            errs.push(format!("{path}.keys"), "required: at least one key")
        }
        Some(list) => {
            for (i, k) in list.iter().enumerate() {
                let kpath = format!("{path}.keys[{i}]");
                if k.id.trim().is_empty() {
                    errs.push(format!("{kpath}.id"), "must not be empty");
                } else if !ids.insert(k.id.clone()) {
                    errs.push(
                        format!("{kpath}.id"),
                        format!("duplicate key id `{}`", k.id),
                    );
                }
                let digest = match (&k.key, &k.sha256) {
                    (Some(plain), None) if !plain.is_empty() => {
                        Some(Sha256::digest(plain.as_bytes()).into())
                    }
                    (Some(_), None) => {
                        errs.push(format!("{kpath}.key"), "must not be empty");
                        None
                    }
                    (None, Some(h)) => match hex::decode(h.trim()) {
                        Ok(b) if b.len() == 32 => b.try_into().ok(),
                        _ => {
                            errs.push(
                                format!("{kpath}.sha256"),
                                "must be 64 hex digits (the SHA-256 of the key)",
                            );
                            None
                        }
                    },
                    _ => {
                        errs.push(kpath.clone(), "give exactly one of `key` and `sha256`");
                        None
                    }
                };
                if let Some(sha256) = digest {
                    keys.push(ApiKeyEntry {
                        id: k.id.clone(),
                        sha256,
                    });
                }
            }
        }
    }
    let forward_id = match &a.forward_id {
        None => None,
        Some(h) => Some(header_name(errs, &format!("{path}.forward_id"), h)?),
    };
    (errs.0.len() == before).then_some(ApiKeyConfig {
        header,
        keys,
        forward_id,
    })
}

pub fn providers(
    f: &BTreeMap<String, AuthFile>,
    base: &Path,
    errs: &mut Errs,
) -> BTreeMap<String, AuthConfig> {
    let mut out = BTreeMap::new();
    for (name, a) in f {
        let path = format!("auth.{name}");
        let cfg = match a.kind.as_deref() {
            Some("jwt") => jwt(&path, a, base, errs).map(AuthConfig::Jwt),
            Some("api_key") => api_key(&path, a, errs).map(AuthConfig::ApiKey),
            Some(other) => {
                errs.push(
                    format!("{path}.type"),
                    format!("unknown type `{other}` (jwt, api_key)"),
                );
                None
            }
            None => {
                errs.push(format!("{path}.type"), "required: `jwt` or `api_key`");
                None
            }
        };
        if let Some(c) = cfg {
            out.insert(name.clone(), c);
        }
    }
    out
}

pub fn route_auth(
    path: &str,
    r: &RouteAuthFile,
    all: &BTreeMap<String, AuthFile>,
    errs: &mut Errs,
) -> Option<RouteAuthConfig> {
    let (providers, scopes, ppath) = match r {
        RouteAuthFile::One(n) => (vec![n.clone()], Vec::new(), path.to_string()),
        RouteAuthFile::AnyOf(list) => (list.clone(), Vec::new(), path.to_string()),
        RouteAuthFile::Scoped(s) => (
            s.provider.0.clone(),
            s.scopes.clone(),
            format!("{path}.provider"),
        ),
    };
    if providers.is_empty() {
        errs.push(path, "name at least one provider");
        return None;
    }
    let mut ok = true;
    for p in &providers {
        match all.get(p) {
            None => {
                errs.push(
                    &ppath,
                    format!("auth provider `{p}` is not defined in `auth`"),
                );
                ok = false;
            }
            Some(a) if !scopes.is_empty() && a.kind.as_deref() != Some("jwt") => {
                errs.push(
                    format!("{path}.scopes"),
                    format!("scopes need a jwt provider; `{p}` is not one"),
                );
                ok = false;
            }
            Some(_) => {}
        }
    }
    ok.then_some(RouteAuthConfig { providers, scopes })
}
