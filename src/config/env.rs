//! `${VAR}` / `${VAR:-default}` substitution, done on the text before YAML parsing.
//!
//! Values come from the environment (secrets never live in the file), so they
//! must never change the YAML structure: a secret holding `#`, `: ` or a quote
//! would otherwise be truncated or re-parsed. The scanner therefore tracks
//! whether a reference sits in a double-quoted, single-quoted or plain
//! scalar and escapes the value for that context; a plain scalar that is
//! nothing but the reference is re-quoted when the value is not plain-safe.
//! Line numbers never change, so parser errors still point at the right line.
//! `$${` writes a literal `${`. References inside comments are left alone.

/// A substitution failure with its 1-based position in the file.
#[derive(Debug, Clone, PartialEq)]
pub struct EnvError {
    pub line: usize,
    pub column: usize,
    pub message: String,
}

#[derive(Clone, Copy, PartialEq)]
enum Ctx {
    Plain,
    Double,
    Single,
}

/// Substitutes every reference, looking names up with `lookup`.
pub fn substitute(
    text: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<String, Vec<EnvError>> {
    let mut s = Scanner {
        lookup,
        out: String::with_capacity(text.len()),
        errors: Vec::new(),
        ctx: Ctx::Plain,
    };
    for (lineno, line) in text.split_inclusive('\n').enumerate() {
        s.line(lineno + 1, line);
    }
    if s.errors.is_empty() {
        Ok(s.out)
    } else {
        Err(s.errors)
    }
}

/// The substitution state carried from line to line (a quoted scalar may
/// span lines).
struct Scanner<'a> {
    lookup: &'a dyn Fn(&str) -> Option<String>,
    out: String,
    errors: Vec<EnvError>,
    ctx: Ctx,
}

impl Scanner<'_> {
    fn line(&mut self, lineno: usize, line: &str) {
        let chars: Vec<char> = line.chars().collect();
        let mut i = 0;
        // A scalar can start at the beginning of a line (after indentation).
        let mut at_start = self.ctx == Ctx::Plain;
        while i < chars.len() {
            let next = chars.get(i + 1).copied();
            if chars[i] == '$' && next == Some('$') && chars.get(i + 2) == Some(&'{') {
                self.out.push_str("${");
                i += 3;
                at_start = false;
            } else if chars[i] == '$' && next == Some('{') {
                i += self.reference(&chars, i, lineno, &mut at_start);
            } else {
                match self.copy(&chars, i, &mut at_start) {
                    Some(n) => i += n,
                    None => break,
                }
            }
        }
    }

    fn error(&mut self, line: usize, column: usize, message: String) {
        self.errors.push(EnvError {
            line,
            column,
            message,
        });
    }

    /// A `${` at `chars[i]`: substitutes it (or records why not) and
    /// returns how many characters it took.
    fn reference(&mut self, chars: &[char], i: usize, lineno: usize, at_start: &mut bool) -> usize {
        let col = i + 1;
        let (name, default, len) = match parse_ref(&chars[i..]) {
            Err(msg) => {
                self.error(lineno, col, msg);
                self.out.push('$');
                return 1;
            }
            Ok(parsed) => parsed,
        };
        // Header-template variables are gatehouse's, not the environment's.
        if default.is_none() && is_template_var(&name) {
            self.out.extend(&chars[i..i + len]);
            *at_start = false;
            return len;
        }
        let value = match ((self.lookup)(&name), default) {
            (Some(v), _) if !v.is_empty() => v,
            (_, Some(d)) => d,
            (Some(v), None) => v,
            (None, None) => {
                let msg = format!(
                    "environment variable `{name}` is not set (write `${{{name}:-default}}` to give a default)"
                );
                self.error(lineno, col, msg);
                return len;
            }
        };
        let whole_scalar = *at_start && plain_scalar_ends(&chars[i + len..]);
        match insert(&value, self.ctx, whole_scalar) {
            Ok(s) => self.out.push_str(&s),
            Err(msg) => self.error(lineno, col, format!("value of `{name}` {msg}")),
        }
        *at_start = false;
        len
    }

    /// Copies `chars[i]` (and an escaped partner), tracking the scalar
    /// context; `None` when the rest of the line was a comment.
    fn copy(&mut self, chars: &[char], i: usize, at_start: &mut bool) -> Option<usize> {
        let (c, next) = (chars[i], chars.get(i + 1).copied());
        self.out.push(c);
        match self.ctx {
            Ctx::Double if c == '\\' => {
                if let Some(n) = next {
                    self.out.push(n);
                    return Some(2);
                }
            }
            Ctx::Double if c == '"' => self.ctx = Ctx::Plain,
            Ctx::Single if c == '\'' && next == Some('\'') => {
                self.out.push('\'');
                return Some(2);
            }
            Ctx::Single if c == '\'' => self.ctx = Ctx::Plain,
            Ctx::Double | Ctx::Single => {}
            Ctx::Plain => {
                let prev_space = i == 0 || chars[i - 1].is_whitespace();
                if c == '#' && prev_space {
                    // Comment: copy the rest of the line untouched.
                    self.out.extend(&chars[i + 1..]);
                    return None;
                }
                if c.is_whitespace() {
                    // whitespace keeps the scalar-start state
                } else if (c == '"' || c == '\'') && *at_start {
                    self.ctx = if c == '"' { Ctx::Double } else { Ctx::Single };
                    *at_start = false;
                } else {
                    // After `: `, `- `, `? ` or a flow indicator a new scalar may start.
                    *at_start = (matches!(c, ':' | '-' | '?')
                        && next.is_none_or(|n| n.is_whitespace()))
                        || matches!(c, '[' | '{' | ',');
                }
            }
        }
        Some(1)
    }
}

/// `${request_id}`, `${client_ip}`, `${route}`, `${claim.NAME}`: values of
/// header transforms, filled in per request, never from the environment.
fn is_template_var(name: &str) -> bool {
    matches!(name, "request_id" | "client_ip" | "route") || name.starts_with("claim.")
}

/// Parses `${NAME}` or `${NAME:-default}` at the start of `s`; returns the
/// name, the default and the length in chars.
fn parse_ref(s: &[char]) -> Result<(String, Option<String>, usize), String> {
    let close = s
        .iter()
        .position(|&c| c == '}' || c == '\n')
        .filter(|&p| s[p] == '}')
        .ok_or_else(|| "unterminated `${` (missing `}`)".to_string())?;
    let inner: String = s[2..close].iter().collect();
    let (name, default) = match inner.split_once(":-") {
        Some((n, d)) => (n.to_string(), Some(d.to_string())),
        None => (inner.clone(), None),
    };
    if default.as_deref().is_some_and(|d| d.contains("${")) {
        return Err(format!(
            "nested references (`${{{name}:-${{...}}}}`) are not supported: give a literal default"
        ));
    }
    let valid = is_template_var(&name)
        || (name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'));
    if !valid {
        return Err(format!("invalid variable reference `${{{inner}}}`"));
    }
    Ok((name, default, close + 1))
}

/// True when nothing but blanks, a comment or a flow terminator follows.
fn plain_scalar_ends(rest: &[char]) -> bool {
    for (i, &c) in rest.iter().enumerate() {
        if c == '\n' || c == '\r' || c == ',' || c == ']' || c == '}' {
            return true;
        }
        if c == '#' && (i == 0 || rest[i - 1].is_whitespace()) {
            return true;
        }
        if !c.is_whitespace() {
            return false;
        }
    }
    true
}

fn plain_safe(v: &str) -> bool {
    if v.is_empty() {
        return true;
    }
    let first_ok = v
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric() || matches!(c, '/' | '.' | '_' | '+'));
    first_ok
        && !v.ends_with(':')
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || "._/+=~-@%:".contains(c))
}

fn double_quote_escape(v: &str) -> String {
    let mut s = String::with_capacity(v.len() + 2);
    for c in v.chars() {
        match c {
            '\\' => s.push_str("\\\\"),
            '"' => s.push_str("\\\""),
            '\n' => s.push_str("\\n"),
            '\r' => s.push_str("\\r"),
            '\t' => s.push_str("\\t"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                s.push_str(&format!("\\x{:02x}", c as u32))
            }
            c => s.push(c),
        }
    }
    s
}

fn insert(value: &str, ctx: Ctx, whole_plain: bool) -> Result<String, String> {
    match ctx {
        Ctx::Double => Ok(double_quote_escape(value)),
        Ctx::Single => {
            if value.contains(['\n', '\r']) {
                Err("contains a line break, which a single-quoted value cannot hold; use double quotes".into())
            } else {
                Ok(value.replace('\'', "''"))
            }
        }
        Ctx::Plain if plain_safe(value) => Ok(value.to_string()),
        Ctx::Plain if whole_plain => Ok(format!("\"{}\"", double_quote_escape(value))),
        Ctx::Plain => {
            if value
                .chars()
                .any(|c| c.is_control() || "#:,[]{}'\"".contains(c))
            {
                Err("contains characters that would change the YAML structure here; put the whole value in double quotes".into())
            } else {
                Ok(value.to_string())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sub(text: &str) -> Result<String, Vec<EnvError>> {
        substitute(text, &|name| match name {
            "PLAIN" => Some("abc123".into()),
            "HASH" => Some("p@ss #1: x".into()),
            "QUOTE" => Some("a\"b'c\\d".into()),
            "NUM" => Some("4".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        })
    }

    #[test]
    fn plain_and_defaults() {
        assert_eq!(sub("a: ${PLAIN}\n").unwrap(), "a: abc123\n");
        assert_eq!(sub("a: ${NOPE:-dflt}\n").unwrap(), "a: dflt\n");
        assert_eq!(sub("a: ${EMPTY:-dflt}\n").unwrap(), "a: dflt\n");
        assert_eq!(sub("a: ${NOPE:-}\n").unwrap(), "a: \n");
        let nested = sub("a: ${NOPE:-${OTHER}}\n").unwrap_err();
        assert!(
            nested
                .iter()
                .any(|e| e.message.contains("nested references")),
            "{nested:?}"
        );
        assert_eq!(sub("threads: ${NUM}\n").unwrap(), "threads: 4\n");
        assert_eq!(
            sub("url: redis://${PLAIN}:6379\n").unwrap(),
            "url: redis://abc123:6379\n"
        );
    }

    #[test]
    fn unsafe_values_are_quoted_or_escaped() {
        let out = sub("secret: ${HASH}\n").unwrap();
        assert_eq!(out, "secret: \"p@ss #1: x\"\n");
        let v: serde_norway::Value = serde_norway::from_str(&out).unwrap();
        assert_eq!(v["secret"].as_str(), Some("p@ss #1: x"));

        let out = sub("s: \"x${QUOTE}y\"\n").unwrap();
        let v: serde_norway::Value = serde_norway::from_str(&out).unwrap();
        assert_eq!(v["s"].as_str(), Some("xa\"b'c\\dy"));

        let out = sub("s: 'x${QUOTE}y'\n").unwrap();
        let v: serde_norway::Value = serde_norway::from_str(&out).unwrap();
        assert_eq!(v["s"].as_str(), Some("xa\"b'c\\dy"));

        let out = sub("list: [${HASH}, b]\n").unwrap();
        let v: serde_norway::Value = serde_norway::from_str(&out).unwrap();
        assert_eq!(v["list"][0].as_str(), Some("p@ss #1: x"));

        let err = sub("url: x${HASH}y\n").unwrap_err();
        assert!(err[0].message.contains("double quotes"));
    }

    #[test]
    fn missing_and_malformed_are_errors_with_positions() {
        let err = sub("a: 1\nb: ${MISSING}\nc: ${bad-name}\nd: ${OPEN\n").unwrap_err();
        assert_eq!(err.len(), 3);
        assert_eq!((err[0].line, err[0].column), (2, 4));
        assert!(err[0].message.contains("MISSING"));
        assert!(err[1].message.contains("invalid variable reference"));
        assert!(err[2].message.contains("unterminated"));
    }

    #[test]
    fn header_template_variables_are_not_substituted() {
        let text = "v: \"${request_id}/${claim.sub}/${route}\"\n";
        assert_eq!(sub(text).unwrap(), text);
    }

    #[test]
    fn comments_and_escapes_are_left_alone() {
        assert_eq!(sub("a: 1 # ${MISSING}\n").unwrap(), "a: 1 # ${MISSING}\n");
        assert_eq!(sub("a: $${LITERAL}\n").unwrap(), "a: ${LITERAL}\n");
        assert_eq!(sub("# ${X}\n").unwrap(), "# ${X}\n");
    }
}
