//! The `auth` section and routes' `auth` keys.
//!
//! RFC 8725 rules enforced at load: an explicit algorithm allow-list, never
//! `none`; every algorithm must fit the key material (HMAC only with
//! `secret`, asymmetric only with `public_key`/`jwks`), so one provider can
//! never verify an RS256 key's PEM as an HS256 secret; HMAC secrets at least
//! as long as the hash output (RFC 7518 §3.2).

use super::{Errs, KeyPath};
use crate::config::file::{AuthFile, JwksFile, RouteAuthFile, StrOrList};
use crate::config::model::*;
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

/// Whether a provider sets one key.
type Present = fn(&AuthFile) -> bool;

/// The keys only some provider `type`s take, and how to see one is set.
const TYPE_KEYS: &[(&str, &[&str], Present)] = &[
    ("header", &["api_key"], |a| a.header.is_some()),
    ("keys", &["api_key"], |a| a.keys.is_some()),
    ("forward_id", &["api_key", "basic"], |a| {
        a.forward_id.is_some()
    }),
    ("users", &["basic"], |a| a.users.is_some()),
    ("url", &["forward"], |a| a.url.is_some()),
    ("timeout", &["forward"], |a| a.timeout.is_some()),
    ("send_headers", &["forward"], |a| a.send_headers.is_some()),
    ("copy_headers", &["forward"], |a| a.copy_headers.is_some()),
    ("cache", &["forward"], |a| a.cache.is_some()),
    ("allow_subjects", &["mtls"], |a| a.allow_subjects.is_some()),
    ("allow_sans", &["mtls"], |a| a.allow_sans.is_some()),
    ("forward", &["mtls"], |a| a.forward.is_some()),
    ("algorithms", &["jwt"], |a| a.algorithms.is_some()),
    ("secret", &["jwt"], |a| a.secret.is_some()),
    ("public_key", &["jwt"], |a| a.public_key.is_some()),
    ("jwks", &["jwt"], |a| a.jwks.is_some()),
    ("issuer", &["jwt"], |a| a.issuer.is_some()),
    ("audience", &["jwt"], |a| a.audience.is_some()),
    ("leeway", &["jwt"], |a| a.leeway.is_some()),
    ("forward_claims", &["jwt"], |a| a.forward_claims.is_some()),
    ("token_cache", &["jwt"], |a| a.token_cache.is_some()),
];

/// Refuses keys of the other provider types.
pub(super) fn foreign_keys(path: &KeyPath, a: &AuthFile, kind: &str, errs: &mut Errs) {
    for (key, owners, present) in TYPE_KEYS {
        if !owners.contains(&kind) && present(a) {
            let types: Vec<String> = owners.iter().map(|o| format!("`type: {o}`")).collect();
            errs.push(
                path.key(key),
                format!("only for {} providers", types.join(" or ")),
            );
        }
    }
}

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

/// An identity header: a valid name gatehouse does not set itself.
pub(super) fn identity_header(errs: &mut Errs, path: &KeyPath, name: &str) -> Option<HeaderName> {
    let h = errs.header_name(path, name)?;
    if GATEWAY_HEADERS.contains(&h.as_str()) {
        errs.push(
            path,
            format!("`{name}` is a header gatehouse sets or needs itself"),
        );
        return None;
    }
    Some(h)
}

fn resolve(base: &Path, p: &str) -> std::path::PathBuf {
    let path = Path::new(p);
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        base.join(path)
    }
}

fn algorithms(path: &KeyPath, a: &AuthFile, errs: &mut Errs) -> Vec<Algorithm> {
    let apath = path.key("algorithms");
    let mut algorithms = Vec::new();
    match &a.algorithms {
        None => errs.push(apath, "required: the list of accepted algorithms"),
        Some(list) if list.is_empty() => errs.push(apath, "must list at least one algorithm"),
        Some(list) => {
            for (i, name) in list.iter().enumerate() {
                if name.eq_ignore_ascii_case("none") {
                    errs.push(apath.index(i), "`none` is never accepted");
                    continue;
                }
                match Algorithm::from_str(name) {
                    Ok(alg) => algorithms.push(alg),
                    Err(_) => errs.push(
                        apath.index(i),
                        format!("unknown algorithm `{name}` (HS256/384/512, RS256/384/512, PS256/384/512, ES256, ES384, EdDSA)"),
                    ),
                }
            }
        }
    }
    algorithms
}

fn secret(path: &KeyPath, secret: &str, algorithms: &[Algorithm], errs: &mut Errs) -> JwtKey {
    let bytes = secret.as_bytes().to_vec();
    if bytes.is_empty() {
        errs.push(path.key("secret"), "must not be empty");
    }
    for alg in algorithms {
        if !is_hmac(*alg) {
            errs.push(
                path.key("algorithms"),
                format!(
                    "{alg:?} needs `public_key` or `jwks`; `secret` only fits HS256/HS384/HS512"
                ),
            );
        } else if !bytes.is_empty() && bytes.len() < min_secret_len(*alg) {
            errs.push(
                path.key("secret"),
                format!(
                    "{alg:?} needs a secret of at least {} bytes (RFC 7518 §3.2)",
                    min_secret_len(*alg)
                ),
            );
        }
    }
    JwtKey::Secret(bytes)
}

fn public_key(
    path: &KeyPath,
    pk: &str,
    base: &Path,
    algorithms: &[Algorithm],
    errs: &mut Errs,
) -> Option<JwtKey> {
    let kpath = path.key("public_key");
    let file = resolve(base, pk);
    let pem = std::fs::read(&file)
        .map_err(|e| errs.push(&kpath, format!("cannot read {}: {e}", file.display())))
        .ok()?;
    let kind = crate::keys::public_key_kind(&pem)
        .map_err(|e| errs.push(&kpath, format!("{}: {e}", file.display())))
        .ok()?;
    for alg in algorithms {
        if !kind.fits(*alg) {
            errs.push(
                path.key("algorithms"),
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

fn jwks(
    path: &KeyPath,
    j: &JwksFile,
    base: &Path,
    algorithms: &[Algorithm],
    errs: &mut Errs,
) -> Option<JwtKey> {
    for alg in algorithms.iter().filter(|a| is_hmac(**a)) {
        errs.push(
            path.key("algorithms"),
            format!("{alg:?} needs `secret`; JWKS keys are for asymmetric algorithms"),
        );
    }
    let jpath = path.key("jwks");
    match (&j.file, &j.url) {
        (Some(f), None) => {
            if j.refresh.is_some() {
                errs.push(jpath.key("refresh"), "only used with `jwks.url`");
            }
            let fpath = jpath.key("file");
            let file = resolve(base, f);
            let json = std::fs::read(&file)
                .map_err(|e| errs.push(&fpath, format!("cannot read {}: {e}", file.display())))
                .ok()?;
            crate::keys::KeySet::from_json(&json)
                .map_err(|e| errs.push(&fpath, format!("{}: {e}", file.display())))
                .ok()?;
            Some(JwtKey::JwksFile {
                path: file.display().to_string(),
                json,
            })
        }
        (None, Some(url)) => {
            let ok = (url.starts_with("https://") || url.starts_with("http://"))
                && url.parse::<http::Uri>().is_ok_and(|u| u.host().is_some());
            if !ok {
                errs.push(jpath.key("url"), format!("invalid URL `{url}`"));
            }
            let refresh =
                errs.positive_duration(&jpath.key("refresh"), &j.refresh, Duration::from_secs(600));
            Some(JwtKey::JwksUrl {
                url: url.clone(),
                refresh,
            })
        }
        _ => {
            errs.push(jpath, "give exactly one of `file` or `url`");
            None
        }
    }
}

fn jwt(path: &KeyPath, a: &AuthFile, base: &Path, errs: &mut Errs) -> Option<JwtConfig> {
    let before = errs.count();
    foreign_keys(path, a, "jwt", errs);
    let algorithms = algorithms(path, a, errs);
    let key = match (&a.secret, &a.public_key, &a.jwks) {
        (None, None, None) => {
            errs.push(
                path,
                "a jwt provider needs `secret`, `public_key` or `jwks`",
            );
            None
        }
        (Some(s), None, None) => Some(secret(path, s, &algorithms, errs)),
        (None, Some(pk), None) => public_key(path, pk, base, &algorithms, errs),
        (None, None, Some(j)) => jwks(path, j, base, &algorithms, errs),
        _ => {
            errs.push(path, "give only one of `secret`, `public_key` and `jwks`");
            None
        }
    };
    let leeway = errs.duration(&path.key("leeway"), &a.leeway, Duration::from_secs(30));
    if leeway > Duration::from_secs(300) {
        errs.push(
            path.key("leeway"),
            "at most 5m (clock skew, not a grace period)",
        );
    }
    let mut forward_claims = Vec::new();
    for (claim, header) in a.forward_claims.iter().flatten() {
        let hpath = path.key("forward_claims").key(claim);
        if let Some(h) = identity_header(errs, &hpath, header) {
            forward_claims.push((claim.clone(), h));
        }
    }
    let cache = a.token_cache.as_ref();
    let cache_ttl = errs.duration(
        &path.key("token_cache").key("ttl"),
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
        cache_entries: cache.and_then(|c| c.entries).unwrap_or(10_000),
        cache_ttl,
    };
    (errs.count() == before).then_some(cfg)
}

/// One entry of an API-key provider's `keys`.
fn api_key_entry(
    kpath: &KeyPath,
    k: &crate::config::file::ApiKeyFile,
    ids: &mut HashSet<String>,
    errs: &mut Errs,
) -> Option<ApiKeyEntry> {
    if k.id.trim().is_empty() {
        errs.push(kpath.key("id"), "must not be empty");
    } else if !ids.insert(k.id.clone()) {
        errs.push(kpath.key("id"), format!("duplicate key id `{}`", k.id));
    }
    let sha256 = match (&k.key, &k.sha256) {
        (Some(plain), None) if !plain.is_empty() => Some(Sha256::digest(plain.as_bytes()).into()),
        (Some(_), None) => {
            errs.push(kpath.key("key"), "must not be empty");
            None
        }
        (None, Some(h)) => match hex::decode(h.trim()) {
            Ok(b) if b.len() == 32 => b.try_into().ok(),
            _ => {
                errs.push(
                    kpath.key("sha256"),
                    "must be 64 hex digits (the SHA-256 of the key)",
                );
                None
            }
        },
        _ => {
            errs.push(kpath, "give exactly one of `key` and `sha256`");
            None
        }
    }?;
    Some(ApiKeyEntry {
        id: k.id.clone(),
        sha256,
    })
}

fn api_key(path: &KeyPath, a: &AuthFile, errs: &mut Errs) -> Option<ApiKeyConfig> {
    let before = errs.count();
    foreign_keys(path, a, "api_key", errs);
    let header = match a.header.as_deref() {
        None => HeaderName::from_static("x-api-key"),
        Some(h) => identity_header(errs, &path.key("header"), h)?,
    };
    let mut keys = Vec::new();
    let mut ids = HashSet::new();
    match &a.keys {
        Some(list) if !list.is_empty() => {
            for (i, k) in list.iter().enumerate() {
                let kpath = path.key("keys").index(i);
                keys.extend(api_key_entry(&kpath, k, &mut ids, errs));
            }
        }
        _ => errs.push(path.key("keys"), "required: at least one key"),
    }
    let forward_id = match &a.forward_id {
        None => None,
        Some(h) => Some(identity_header(errs, &path.key("forward_id"), h)?),
    };
    (errs.count() == before).then_some(ApiKeyConfig {
        header,
        keys,
        forward_id,
    })
}

pub(super) fn providers(
    f: &BTreeMap<String, AuthFile>,
    base: &Path,
    errs: &mut Errs,
) -> BTreeMap<String, AuthConfig> {
    let mut out = BTreeMap::new();
    for (name, a) in f {
        let path = KeyPath::root("auth").key(name);
        let cfg = match a.kind.as_deref() {
            Some("jwt") => jwt(&path, a, base, errs).map(AuthConfig::Jwt),
            Some("api_key") => api_key(&path, a, errs).map(AuthConfig::ApiKey),
            Some("basic") => super::basic::basic(&path, a, errs).map(AuthConfig::Basic),
            Some("forward") => super::forward::forward(&path, a, errs).map(AuthConfig::Forward),
            Some("mtls") => super::mtls::mtls(&path, a, errs).map(AuthConfig::Mtls),
            Some(other) => {
                errs.push(
                    path.key("type"),
                    format!("unknown type `{other}` (jwt, api_key, basic, forward, mtls)"),
                );
                None
            }
            None => {
                errs.push(
                    path.key("type"),
                    "required: `jwt`, `api_key`, `basic`, `forward` or `mtls`",
                );
                None
            }
        };
        if let Some(c) = cfg {
            out.insert(name.clone(), c);
        }
    }
    out
}

pub(super) fn route_auth(
    path: &KeyPath,
    r: &RouteAuthFile,
    all: &BTreeMap<String, AuthFile>,
    errs: &mut Errs,
) -> Option<RouteAuthConfig> {
    let (providers, scopes, ppath) = match r {
        RouteAuthFile::One(n) => (vec![n.clone()], Vec::new(), path.clone()),
        RouteAuthFile::AnyOf(list) => (list.clone(), Vec::new(), path.clone()),
        RouteAuthFile::Scoped(s) => (s.provider.0.clone(), s.scopes.clone(), path.key("provider")),
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
                    path.key("scopes"),
                    format!("scopes need a jwt provider; `{p}` is not one"),
                );
                ok = false;
            }
            Some(_) => {}
        }
    }
    ok.then_some(RouteAuthConfig { providers, scopes })
}
