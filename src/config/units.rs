//! Durations (`250ms`, `5s`, `1m30s`) and sizes (`512KiB`, `10MiB`) as written in the config file.

use std::time::Duration;

/// The longest duration any key accepts: 30 days. Larger values are
/// refused rather than saturated, so sums of durations cannot overflow.
pub const MAX_DURATION: Duration = Duration::from_secs(30 * 86_400);

/// Parses a duration made of one or more `<integer><unit>` parts; units are
/// `ms`, `s`, `m`, `h` and `d`, at most [`MAX_DURATION`]. A bare number is
/// refused so that `timeout: 5` can never silently mean five milliseconds
/// or five hours.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let s = text.trim();
    if s.is_empty() {
        return Err("empty duration; write e.g. `250ms`, `5s`, `1m`, `1h`".into());
    }
    let bytes = s.as_bytes();
    let mut i = 0;
    let mut total = Duration::ZERO;
    while i < bytes.len() {
        let start = i;
        while i < bytes.len() && bytes[i].is_ascii_digit() {
            i += 1;
        }
        if start == i {
            return Err(format!(
                "invalid duration `{s}`; write e.g. `250ms`, `5s`, `1m`, `1h`"
            ));
        }
        let n: u64 = s[start..i]
            .parse()
            .map_err(|_| format!("duration `{s}` is too large"))?;
        let ustart = i;
        while i < bytes.len() && bytes[i].is_ascii_alphabetic() {
            i += 1;
        }
        let part = match &s[ustart..i] {
            "ms" => Duration::from_millis(n),
            "s" => Duration::from_secs(n),
            "m" => Duration::from_secs(n.saturating_mul(60)),
            "h" => Duration::from_secs(n.saturating_mul(3600)),
            "d" => Duration::from_secs(n.saturating_mul(86400)),
            "" if i == bytes.len() && start == 0 => {
                return Err(format!(
                    "duration `{s}` needs a unit (ms, s, m, h, d), e.g. `{n}s`"
                ))
            }
            "" => {
                return Err(format!(
                    "invalid duration `{s}`; write e.g. `250ms`, `5s`, `1m`, `1h`"
                ))
            }
            u => {
                return Err(format!(
                    "unknown duration unit `{u}` in `{s}` (use ms, s, m, h, d)"
                ))
            }
        };
        total = total.saturating_add(part);
        if total > MAX_DURATION {
            return Err(format!("duration `{s}` is over the maximum of 30d"));
        }
    }
    Ok(total)
}

/// Parses a size: a bare integer is bytes; suffixes `B`, `KiB`, `MiB`, `GiB`
/// (powers of 1024) and `KB`, `MB`, `GB` (powers of 1000).
pub fn parse_size(text: &str) -> Result<u64, String> {
    let s = text.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    if num.is_empty() {
        return Err(format!("invalid size `{s}`; write e.g. `512KiB`, `10MiB`"));
    }
    let n: u64 = num
        .parse()
        .map_err(|_| format!("size `{s}` is too large"))?;
    let mult: u64 = match unit.trim() {
        "" | "B" => 1,
        "KiB" | "K" | "k" => 1 << 10,
        "MiB" | "M" => 1 << 20,
        "GiB" | "G" => 1 << 30,
        "KB" | "kB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        u => {
            return Err(format!(
                "unknown size unit `{u}` in `{s}` (use B, KiB, MiB, GiB)"
            ))
        }
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("size `{s}` is too large"))
}

/// Renders a duration the way the config file writes it (used by `/config`).
pub fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms.is_multiple_of(3_600_000) && ms > 0 {
        format!("{}h", ms / 3_600_000)
    } else if ms.is_multiple_of(60_000) && ms > 0 {
        format!("{}m", ms / 60_000)
    } else if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("5s").unwrap(), Duration::from_secs(5));
        assert_eq!(parse_duration("1m").unwrap(), Duration::from_secs(60));
        assert_eq!(parse_duration("1h").unwrap(), Duration::from_secs(3600));
        assert_eq!(parse_duration("1m30s").unwrap(), Duration::from_secs(90));
        assert!(parse_duration("5").unwrap_err().contains("needs a unit"));
        assert!(parse_duration("5x")
            .unwrap_err()
            .contains("unknown duration unit"));
        assert!(parse_duration("").is_err());
        assert!(parse_duration("s").is_err());
        assert!(parse_duration("-1s").is_err());
        assert!(parse_duration("3 parsecs")
            .unwrap_err()
            .starts_with("invalid duration"));
        assert!(parse_duration("1m30")
            .unwrap_err()
            .starts_with("invalid duration"));
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("512KiB").unwrap(), 512 * 1024);
        assert_eq!(parse_size("10MiB").unwrap(), 10 * 1024 * 1024);
        assert_eq!(parse_size("1GiB").unwrap(), 1 << 30);
        assert_eq!(parse_size("100").unwrap(), 100);
        assert_eq!(parse_size("2MB").unwrap(), 2_000_000);
        assert!(parse_size("10XB").is_err());
        assert!(parse_duration("30d").is_ok());
        assert!(parse_duration("30d1ms")
            .unwrap_err()
            .contains("maximum of 30d"));
        assert!(parse_duration("18446744073709551615d").is_err());
        assert!(parse_size("MiB").is_err());
        assert!(parse_size("99999999999999999999GiB").is_err());
    }

    #[test]
    fn format_round_trips() {
        for s in ["250ms", "5s", "1m", "2h"] {
            assert_eq!(format_duration(parse_duration(s).unwrap()), s);
        }
    }
}
