//! A JSON object written field by field into a reused `String`: the access
//! log writes one per request, and `serde_json` through a derived
//! `Serialize` spent about 4,700 instructions per line on it (callgrind,
//! policies target); with this writer the whole request costs about
//! 1,900 fewer (BENCHMARKS.md, round 5).

use crate::netfmt;

/// `key!("ts")` is `"ts":`, the form [`Object`]'s methods take keys in.
macro_rules! key {
    ($k:literal) => {
        concat!("\"", $k, "\":")
    };
}
pub(crate) use key;

/// One object being written: `{"a":1,"b":"x"}`.
pub(crate) struct Object<'a> {
    out: &'a mut String,
    first: bool,
}

impl<'a> Object<'a> {
    pub(crate) fn begin(out: &'a mut String) -> Object<'a> {
        out.push('{');
        Object { out, first: true }
    }

    /// Writes a key, given already quoted with its colon (`"ts":`, see
    /// [`key!`]): one copy per field. Keys are this crate's literals.
    fn key(&mut self, key: &str) -> &mut String {
        if !self.first {
            self.out.push(',');
        }
        self.first = false;
        self.out.push_str(key);
        self.out
    }

    pub(crate) fn str(&mut self, key: &str, value: Option<&str>) {
        let out = self.key(key);
        match value {
            Some(v) => push_string(out, v),
            None => out.push_str("null"),
        }
    }

    /// A string value written by `write` (a timestamp, an address), quoted;
    /// `write` must not produce characters that need escaping.
    pub(crate) fn plain_with(&mut self, key: &str, write: impl FnOnce(&mut String)) {
        let out = self.key(key);
        out.push('"');
        write(out);
        out.push('"');
    }

    pub(crate) fn null(&mut self, key: &str) {
        self.key(key).push_str("null");
    }

    pub(crate) fn u64(&mut self, key: &str, value: u64) {
        netfmt::push_u64(self.key(key), value);
    }

    /// Milliseconds with three decimals (`1.235`); `null` for `None`.
    pub(crate) fn millis(&mut self, key: &str, value: Option<f64>) {
        let out = self.key(key);
        match value {
            Some(v) => push_millis(out, v),
            None => out.push_str("null"),
        }
    }

    pub(crate) fn end(self) {
        self.out.push('}');
    }
}

/// A non-negative duration in ms, rounded to 3 decimals (µs); anything
/// that is not a finite non-negative number is written as 0.
fn push_millis(out: &mut String, ms: f64) {
    let micros = if ms.is_finite() && ms > 0.0 {
        (ms * 1000.0).round() as u64
    } else {
        0
    };
    netfmt::push_u64(out, micros / 1000);
    out.push('.');
    let frac = micros % 1000;
    out.push((b'0' + (frac / 100) as u8) as char);
    out.push((b'0' + (frac / 10 % 10) as u8) as char);
    out.push((b'0' + (frac % 10) as u8) as char);
}

/// `s` as a JSON string (RFC 8259 §7): `"` and `\` are escaped, control
/// characters as `\uXXXX` (or their short forms); everything else is
/// copied, UTF-8 as is.
pub(crate) fn push_string(out: &mut String, s: &str) {
    out.push('"');
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        if b >= 0x20 && b != b'"' && b != b'\\' {
            continue;
        }
        // Only ASCII bytes stop here, so `start..i` is on char boundaries.
        out.push_str(&s[start..i]);
        match b {
            b'"' => out.push_str("\\\""),
            b'\\' => out.push_str("\\\\"),
            b'\n' => out.push_str("\\n"),
            b'\r' => out.push_str("\\r"),
            b'\t' => out.push_str("\\t"),
            _ => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                out.push_str("\\u00");
                out.push(HEX[usize::from(b >> 4)] as char);
                out.push(HEX[usize::from(b & 0xf)] as char);
            }
        }
        start = i + 1;
    }
    out.push_str(&s[start..]);
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn string(s: &str) -> String {
        let mut out = String::new();
        push_string(&mut out, s);
        out
    }

    #[test]
    fn strings_round_trip_through_a_json_parser() {
        for s in [
            "",
            "plain",
            "q\"uote",
            "back\\slash",
            "nl\nand\r\tand\u{1}\u{1f}",
            "ünïcödé ✓ 𝄞",
            "\u{7f}del",
        ] {
            let parsed: String = serde_json::from_str(&string(s)).unwrap();
            assert_eq!(parsed, s);
        }
        assert_eq!(string("a\u{1}b"), "\"a\\u0001b\"");
    }

    #[test]
    fn objects_and_numbers() {
        let mut out = String::new();
        let mut o = Object::begin(&mut out);
        o.str(key!("a"), Some("x"));
        o.str(key!("b"), None);
        o.u64(key!("n"), 42);
        o.millis(key!("d"), Some(1.23456));
        o.millis(key!("e"), Some(2.0));
        o.millis(key!("f"), Some(f64::NAN));
        o.millis(key!("g"), None);
        o.plain_with(key!("t"), |s| s.push_str("2026"));
        o.null(key!("z"));
        o.end();
        assert_eq!(
            out,
            r#"{"a":"x","b":null,"n":42,"d":1.235,"e":2.000,"f":0.000,"g":null,"t":"2026","z":null}"#
        );
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["d"], 1.235);
        assert_eq!(v["e"], 2.0);
    }
}
