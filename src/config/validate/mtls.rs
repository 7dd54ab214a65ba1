//! `auth.NAME` with `type: mtls`: who among verified client certificates
//! is let in, and the identity headers their subject and fingerprint fill.

use super::{Errs, KeyPath};
use crate::config::file::AuthFile;
use crate::config::model::*;

pub(super) fn mtls(path: &KeyPath, a: &AuthFile, errs: &mut Errs) -> Option<MtlsConfig> {
    let before = errs.count();
    super::auth::foreign_keys(path, a, "mtls", errs);
    let list = |key: &str, v: &Option<Vec<String>>, errs: &mut Errs| {
        let mut out = Vec::new();
        for (i, s) in v.iter().flatten().enumerate() {
            let s = s.trim();
            if s.is_empty() {
                errs.push(path.key(key).index(i), "must not be empty");
            } else {
                out.push(s.to_string());
            }
        }
        out
    };
    let allow_subjects = list("allow_subjects", &a.allow_subjects, errs);
    for (i, s) in allow_subjects.iter().enumerate() {
        if !s.contains('=') {
            errs.push(
                path.key("allow_subjects").index(i),
                format!("`{s}` is not an RFC 4514 subject (`CN=name,O=org`)"),
            );
        }
    }
    let allow_sans = list("allow_sans", &a.allow_sans, errs);
    let fwd = a.forward.as_ref();
    let header = |key: &str, v: Option<&String>, errs: &mut Errs| {
        let p = path.key("forward").key(key);
        v.and_then(|h| super::auth::identity_header(errs, &p, h))
    };
    let forward_subject = header("subject", fwd.and_then(|f| f.subject.as_ref()), errs);
    let forward_fingerprint = header(
        "fingerprint",
        fwd.and_then(|f| f.fingerprint.as_ref()),
        errs,
    );
    (errs.count() == before).then_some(MtlsConfig {
        allow_subjects,
        allow_sans,
        forward_subject,
        forward_fingerprint,
    })
}
