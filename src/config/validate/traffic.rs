//! `routes[i]`: where the traffic goes: `upstream`, or a weighted `split`
//! (with an optional sticky `split_key`), and `mirror`.

use super::{Errs, KeyPath};
use crate::config::file::*;
use crate::config::model::*;

pub(super) struct Traffic {
    pub upstream: RouteUpstream,
    pub split_key: Option<HashKey>,
    pub mirror: Option<MirrorConfig>,
}

/// Checks that `name` is one of `upstreams`.
fn known(path: KeyPath, name: &str, f: &FileConfig, errs: &mut Errs) {
    if !f.upstreams.contains_key(name) {
        errs.push(
            path,
            format!("upstream `{name}` is not defined in `upstreams`"),
        );
    }
}

pub(super) fn traffic(path: &KeyPath, r: &RouteFile, f: &FileConfig, errs: &mut Errs) -> Traffic {
    let upstream = match (&r.upstream, &r.split) {
        (Some(_), Some(_)) => {
            errs.push(
                path.key("split"),
                "a route has `upstream` or `split`, not both",
            );
            RouteUpstream::One(String::new())
        }
        (None, None) => {
            errs.push(
                path.key("upstream"),
                "a route needs `upstream` (or `split`)",
            );
            RouteUpstream::One(String::new())
        }
        (Some(u), None) => {
            known(path.key("upstream"), u, f, errs);
            RouteUpstream::One(u.clone())
        }
        (None, Some(list)) => split(&path.key("split"), list, f, errs),
    };
    let split_key = r.split_key.as_deref().map(|k| {
        if r.split.is_none() {
            errs.warn(
                path.key("split_key"),
                "split_key has no effect without `split`",
            );
        }
        super::upstream::hash_key(&path.key("split_key"), k, errs)
    });
    let mirror = r.mirror.as_ref().map(|m| {
        let mpath = path.key("mirror");
        known(mpath.key("upstream"), &m.upstream, f, errs);
        MirrorConfig {
            upstream: m.upstream.clone(),
            percent: errs.percent(&mpath.key("percent"), &m.percent, 1.0, (0.0, 100.0)) * 100.0,
        }
    });
    Traffic {
        upstream,
        split_key,
        mirror,
    }
}

fn split(path: &KeyPath, list: &[SplitFile], f: &FileConfig, errs: &mut Errs) -> RouteUpstream {
    if list.is_empty() {
        errs.push(path, "a split needs at least one upstream");
    } else if list.iter().all(|s| s.weight == 0) {
        errs.push(path, "at least one split weight must be above 0");
    }
    let mut entries: Vec<(String, u32)> = Vec::new();
    for (i, s) in list.iter().enumerate() {
        let epath = path.index(i);
        known(epath.key("upstream"), &s.upstream, f, errs);
        if entries.iter().any(|(n, _)| *n == s.upstream) {
            errs.push(
                epath.key("upstream"),
                format!("upstream `{}` is listed twice", s.upstream),
            );
        }
        entries.push((s.upstream.clone(), s.weight));
    }
    RouteUpstream::Split(entries)
}
