//! `auth.NAME` with `type: basic`: users with argon2id or bcrypt hashes.
//! A password in plain text is refused, naming the key.

use super::{Errs, KeyPath};
use crate::config::file::AuthFile;
use crate::config::model::*;
use std::collections::HashSet;

/// The hash as written, if it is one gatehouse verifies.
fn parse_hash(h: &str) -> Result<PasswordHash, String> {
    let h = h.trim();
    if h.starts_with("$argon2id$") {
        return argon2::password_hash::PasswordHash::new(h)
            .map(|_| PasswordHash::Argon2id(h.to_string()))
            .map_err(|e| format!("invalid argon2id hash: {e}"));
    }
    if h.starts_with("$argon2") {
        return Err("only argon2id hashes are accepted (not argon2i or argon2d)".into());
    }
    let bcrypt_prefix = ["$2a$", "$2b$", "$2y$"].iter().any(|p| h.starts_with(p));
    if bcrypt_prefix {
        let cost_ok = PasswordHash::bcrypt_cost(h).is_some_and(|c| (4..=31).contains(&c));
        return if h.len() == 60 && cost_ok && h.as_bytes()[6] == b'$' {
            Ok(PasswordHash::Bcrypt(h.to_string()))
        } else {
            Err("invalid bcrypt hash (expected 60 characters, `$2b$<cost>$...`)".into())
        };
    }
    Err(
        "plain-text passwords are not accepted: give an argon2id or bcrypt hash \
         (e.g. `htpasswd -nbBC 12 USER PASSWORD`, or `argon2 SALT -id -e`)"
            .into(),
    )
}

pub(super) fn basic(path: &KeyPath, a: &AuthFile, errs: &mut Errs) -> Option<BasicConfig> {
    let before = errs.count();
    super::auth::foreign_keys(path, a, "basic", errs);
    let mut users = Vec::new();
    let mut names = HashSet::new();
    match &a.users {
        Some(list) if !list.is_empty() => {
            for (i, u) in list.iter().enumerate() {
                let upath = path.key("users").index(i);
                if u.name.is_empty() || u.name.contains(':') {
                    errs.push(upath.key("name"), "must be non-empty and without `:`");
                } else if !names.insert(u.name.clone()) {
                    errs.push(upath.key("name"), format!("duplicate user `{}`", u.name));
                }
                match parse_hash(&u.hash) {
                    Ok(h) => users.push((u.name.clone(), h)),
                    Err(e) => errs.push(upath.key("hash"), e),
                }
            }
        }
        _ => errs.push(path.key("users"), "required: at least one `{ name, hash }`"),
    }
    let forward_id = a
        .forward_id
        .as_deref()
        .and_then(|h| super::auth::identity_header(errs, &path.key("forward_id"), h));
    (errs.count() == before).then_some(BasicConfig { users, forward_id })
}
