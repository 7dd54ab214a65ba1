//! Configuration: `${VAR}` substitution -> YAML (unknown keys rejected) ->
//! validated [`Config`]. Every stage reports errors with key path and
//! line/column; validation reports all errors at once.

mod env;
mod error;
mod file;
mod model;
mod position;
mod redact;
pub mod units;
mod validate;

pub use env::{substitute, EnvError};
pub use error::{ConfigError, LoadError};
pub use model::*;
pub use redact::redacted_json;
pub use validate::{system_resolve, Resolve};

use position::Positions;
use std::path::Path;

/// Reads and validates the config file at `path`.
pub fn load_file(path: &Path) -> Result<Config, LoadError> {
    // Refuse an oversized file before reading it into memory.
    if let Ok(meta) = std::fs::metadata(path) {
        if meta.len() > MAX_FILE_BYTES as u64 {
            return Err(too_big(meta.len()));
        }
    }
    let text = std::fs::read_to_string(path).map_err(|source| LoadError::Read {
        path: path.display().to_string(),
        source,
    })?;
    let base = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    load_with(&text, base, &|name| std::env::var(name).ok())
}

/// Validates config text, substituting variables from the process environment.
/// Relative file names in it (keys, JWKS) are taken from the working directory.
pub fn load_str(text: &str) -> Result<Config, LoadError> {
    load_with(text, Path::new("."), &|name| std::env::var(name).ok())
}

/// Validates config text with an explicit variable lookup; relative file
/// names are resolved against `base` (the config file's directory).
pub fn load_with(
    text: &str,
    base: &Path,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, LoadError> {
    load_with_resolver(text, base, lookup, validate::system_resolve)
}

/// As [`load_with`], with host names in addresses resolved by `resolve`
/// (a fuzzer or an offline config check passes one that never touches
/// the network).
pub fn load_with_resolver(
    text: &str,
    base: &Path,
    lookup: &dyn Fn(&str) -> Option<String>,
    resolve: validate::Resolve,
) -> Result<Config, LoadError> {
    let (parsed, positions) = parse(text, lookup)?;
    finish(parsed, validate::Part::Whole, &positions, base, resolve)
}

/// A cluster node's config: `doc`, the shared document from etcd (stored
/// as written; `${VAR}` expanded here from this node's environment), under
/// the `server`, `admin`, `logging` and `cluster` of the local file at
/// `local`. Errors in the document carry its lines.
pub fn load_merged(local: &Path, doc: &str) -> Result<Config, LoadError> {
    let text = std::fs::read_to_string(local).map_err(|source| LoadError::Read {
        path: local.display().to_string(),
        source,
    })?;
    let lookup = |name: &str| std::env::var(name).ok();
    let (local_file, _) = parse(&text, &lookup)?;
    let (doc_file, positions) = parse(doc, &lookup)?;
    let mut errors = Vec::new();
    for key in ["server", "admin", "logging", "cluster"] {
        if let Some((line, column)) = positions.exact(key) {
            errors.push(ConfigError {
                path: key.to_string(),
                line: Some(line),
                column: Some(column),
                message: format!(
                    "`{key}` belongs to each node's local file, not to the cluster's config"
                ),
            });
        }
    }
    if !errors.is_empty() {
        return Err(LoadError::Invalid { errors });
    }
    let merged = file::FileConfig {
        server: local_file.server,
        admin: local_file.admin,
        logging: local_file.logging,
        cluster: local_file.cluster,
        ..doc_file
    };
    let base = local
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    finish(
        merged,
        validate::Part::Merged,
        &positions,
        base,
        validate::system_resolve,
    )
}

/// `${VAR}` substitution and YAML: the serde surface and where each key is.
fn parse(
    text: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<(file::FileConfig, Positions), LoadError> {
    let too_deep = |(line, column): (usize, usize)| LoadError::Invalid {
        errors: vec![ConfigError {
            path: String::new(),
            line: Some(line),
            column: Some(column),
            message: format!(
                "mappings and sequences nest deeper than {} levels",
                position::MAX_DEPTH
            ),
        }],
    };
    if text.len() > MAX_FILE_BYTES {
        return Err(too_big(text.len() as u64));
    }
    if let Some(at) = position::flow_too_deep(text, position::MAX_DEPTH) {
        return Err(too_deep(at));
    }
    let text = env::substitute(text, lookup).map_err(|errs| LoadError::Invalid {
        errors: errs
            .into_iter()
            .map(|e| ConfigError {
                path: String::new(),
                line: Some(e.line),
                column: Some(e.column),
                message: e.message,
            })
            .collect(),
    })?;
    if text.len() > MAX_FILE_BYTES {
        return Err(too_big(text.len() as u64));
    }
    let positions = Positions::index(&text).map_err(too_deep)?;
    // An empty document is an empty mapping: every default applies.
    let parsed: file::FileConfig = if text.trim().is_empty() {
        file::FileConfig::default()
    } else {
        let de = serde_norway::Deserializer::from_str(&text);
        serde_path_to_error::deserialize(de).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner();
            let (line, column) = match inner.location() {
                Some(loc) => (Some(loc.line()), Some(loc.column())),
                None => positions
                    .find(&path)
                    .map_or((None, None), |(l, c)| (Some(l), Some(c))),
            };
            let path = if path == "." { String::new() } else { path };
            LoadError::Invalid {
                errors: vec![ConfigError {
                    path: path.clone(),
                    line,
                    column,
                    message: strip_path_prefix(&strip_location(&inner.to_string()), &path),
                }],
            }
        })?
    };
    Ok((parsed, positions))
}

/// Validation, with every error and warning placed at its line.
fn finish(
    parsed: file::FileConfig,
    part: validate::Part,
    positions: &Positions,
    base: &Path,
    resolve: validate::Resolve,
) -> Result<Config, LoadError> {
    let mut errs = validate::Errs::new(resolve);
    let mut config = validate::validate(parsed, part, base, &mut errs);
    let placed = |(path, message): (String, String)| {
        let pos = positions.find(&path);
        ConfigError {
            path,
            line: pos.map(|p| p.0),
            column: pos.map(|p| p.1),
            message,
        }
    };
    config.warnings = errs.take_warnings().into_iter().map(placed).collect();
    if errs.count() == 0 {
        Ok(config)
    } else {
        Err(LoadError::Invalid {
            errors: errs.into_errors().into_iter().map(placed).collect(),
        })
    }
}

/// The largest config accepted (after `${VAR}` substitution).
const MAX_FILE_BYTES: usize = 16 << 20;

fn too_big(len: u64) -> LoadError {
    LoadError::Invalid {
        errors: vec![ConfigError {
            path: String::new(),
            line: None,
            column: None,
            message: format!("the config is {len} bytes, over the limit of 16 MiB"),
        }],
    }
}

/// serde_norway appends " at line L column C"; we print the position ourselves.
fn strip_location(msg: &str) -> String {
    match msg.find(" at line ") {
        Some(i) => msg[..i].to_string(),
        None => msg.to_string(),
    }
}

/// serde_norway prefixes messages with the enclosing mapping's path, which
/// we already print in front; drop it when it is a prefix of ours.
fn strip_path_prefix(msg: &str, path: &str) -> String {
    match msg.split_once(": ") {
        Some((p, rest)) if !p.is_empty() && path.starts_with(p) => rest.to_string(),
        _ => msg.to_string(),
    }
}
