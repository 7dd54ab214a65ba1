//! `auth.NAME` with `type: forward`: the auth service's URL, what is sent
//! to it and copied from its answers, its timeout and the answer cache.

use super::{Errs, KeyPath};
use crate::config::file::AuthFile;
use crate::config::model::*;

pub(super) fn forward(path: &KeyPath, a: &AuthFile, errs: &mut Errs) -> Option<ForwardConfig> {
    let before = errs.count();
    super::auth::foreign_keys(path, a, "forward", errs);
    let url = a.url.clone().unwrap_or_default();
    match url.parse::<http::Uri>() {
        Ok(u) if matches!(u.scheme_str(), Some("http" | "https")) && u.host().is_some() => {}
        _ if a.url.is_none() => errs.push(path.key("url"), "required: the auth service's URL"),
        _ => errs.push(
            path.key("url"),
            format!("`{url}` is not an http:// or https:// URL"),
        ),
    }
    let names = |key: &str, list: &Option<Vec<String>>, errs: &mut Errs, identity: bool| {
        let mut out = Vec::new();
        for (i, n) in list.iter().flatten().enumerate() {
            let p = path.key(key).index(i);
            let h = if identity {
                super::auth::identity_header(errs, &p, n)
            } else {
                errs.header_name(&p, n)
            };
            out.extend(h);
        }
        out
    };
    let send_headers = match &a.send_headers {
        None => vec![http::header::AUTHORIZATION, http::header::COOKIE],
        some => names("send_headers", some, errs, false),
    };
    let copy_headers = names("copy_headers", &a.copy_headers, errs, true);
    let timeout = errs.positive_duration(
        &path.key("timeout"),
        &a.timeout,
        std::time::Duration::from_secs(1),
    );
    let cache = a.cache.as_ref().map(|c| {
        errs.positive_duration(
            &path.key("cache"),
            &Some(c.clone()),
            std::time::Duration::from_secs(30),
        )
    });
    (errs.count() == before).then_some(ForwardConfig {
        url,
        timeout,
        send_headers,
        copy_headers,
        cache,
    })
}
