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
    let mut i = clean_until(bytes, 0);
    while let Some(&b) = bytes.get(i) {
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
        i = clean_until(bytes, start);
    }
    out.push_str(&s[start..]);
    out.push('"');
}

/// The index of the first byte from `i` on that needs escaping (`"`, `\`,
/// below 0x20), or the length. Eight bytes per step while none does (the
/// exact "has a byte below / equal to" word tests), then byte by byte: most
/// logged values (paths, user agents) have nothing to escape.
fn clean_until(bytes: &[u8], mut i: usize) -> usize {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let zero_byte = |v: u64| v.wrapping_sub(ONES) & !v & HIGH;
    while let Some(Ok(word)) = bytes.get(i..i + 8).map(<[u8; 8]>::try_from) {
        let x = u64::from_le_bytes(word);
        let below_space = x.wrapping_sub(ONES * 0x20) & !x & HIGH;
        let quote = zero_byte(x ^ (ONES * u64::from(b'"')));
        let backslash = zero_byte(x ^ (ONES * u64::from(b'\\')));
        if below_space | quote | backslash != 0 {
            break;
        }
        i += 8;
    }
    while bytes
        .get(i)
        .is_some_and(|&b| b >= 0x20 && b != b'"' && b != b'\\')
    {
        i += 1;
    }
    i
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

    /// Every ASCII byte at every position of a 19-byte string (over two
    /// words and a tail) is escaped as the plain byte-by-byte rule says.
    #[test]
    fn the_word_scan_finds_every_byte_that_needs_escaping() {
        for b in 0u8..0x80 {
            for at in 0..19 {
                let mut s = "abcdefghijklmnopqrs".to_string().into_bytes();
                s[at] = b;
                let s = String::from_utf8(s).unwrap();
                let parsed: String = serde_json::from_str(&string(&s)).unwrap();
                assert_eq!(parsed, s, "byte {b:#x} at {at}");
                let escaped = b < 0x20 || b == b'"' || b == b'\\';
                assert_eq!(
                    string(&s).len() > s.len() + 2,
                    escaped,
                    "byte {b:#x} at {at}"
                );
            }
        }
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
