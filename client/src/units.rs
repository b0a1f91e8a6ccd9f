//! Sizes and durations as people type them (`4GiB`, `1.5G`, `2h30m`), and back.
//!
//! Binary units are the default for single letters because allocations are sized in powers
//! of two: `K`/`Ki`/`KiB` = 1024, `M` = 1024², … `KB`/`MB`/`GB`/`TB` are decimal.

use std::fmt;

/// Why a size or duration did not parse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnitError(pub String);

impl fmt::Display for UnitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UnitError {}

fn size_multiplier(unit: &str) -> Option<u64> {
    const K: u64 = 1024;
    Some(match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "ki" | "kib" => K,
        "m" | "mi" | "mib" => K * K,
        "g" | "gi" | "gib" => K * K * K,
        "t" | "ti" | "tib" => K * K * K * K,
        "p" | "pi" | "pib" => K * K * K * K * K,
        "kb" => 1000,
        "mb" => 1000 * 1000,
        "gb" => 1000 * 1000 * 1000,
        "tb" => 1000 * 1000 * 1000 * 1000,
        "pb" => 1000 * 1000 * 1000 * 1000 * 1000,
        _ => return None,
    })
}

/// Splits `1.5GiB` into (`1.5`, `GiB`).
fn split_number(text: &str) -> (&str, &str) {
    let end = text.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(text.len());
    text.split_at(end)
}

/// Parses a byte count: `4096`, `64k`, `4GiB`, `1.5G`, `10MB`. Fractions are truncated to
/// whole bytes.
pub fn parse_size(text: &str) -> Result<u64, UnitError> {
    let text = text.trim();
    let bad = || UnitError(format!("not a size: {text:?} (try 4096, 64KiB, 4GiB, 1.5G)"));
    let (number, unit) = split_number(text);
    if number.is_empty() || number.len() > 24 {
        return Err(bad());
    }
    let mult = size_multiplier(unit.trim()).ok_or_else(bad)?;
    match number.split_once('.') {
        None => number.parse::<u64>().ok().and_then(|n| n.checked_mul(mult)).ok_or_else(bad),
        Some((whole, frac)) => {
            if frac.contains('.') || (whole.is_empty() && frac.is_empty()) {
                return Err(bad());
            }
            let whole: u64 = if whole.is_empty() { 0 } else { whole.parse().map_err(|_| bad())? };
            let mut value = whole.checked_mul(mult).ok_or_else(bad)?;
            // Exact: whole × mult + frac × mult / 10^digits, in u128 (truncating).
            let digits = &frac[..frac.len().min(18)];
            let numerator: u128 =
                if digits.is_empty() { 0 } else { digits.parse().map_err(|_| bad())? };
            let denominator = 10u128.pow(u32::try_from(digits.len()).unwrap_or(0));
            let part =
                u64::try_from(numerator * u128::from(mult) / denominator).map_err(|_| bad())?;
            value = value.checked_add(part).ok_or_else(bad)?;
            Ok(value)
        }
    }
}

/// Parses a duration in seconds: `3600`, `90s`, `15m`, `2h`, `1d`, `1w`, `2h30m`. `inf`,
/// `infinite`, `max` and `-1` give −1 (the depot's maximum, PROTOCOL.md §5).
pub fn parse_duration(text: &str) -> Result<i64, UnitError> {
    let text = text.trim();
    if matches!(text.to_ascii_lowercase().as_str(), "inf" | "infinite" | "max" | "-1") {
        return Ok(-1);
    }
    let bad = || UnitError(format!("not a duration: {text:?} (try 3600, 90s, 15m, 2h, 1d, 2h30m)"));
    let mut rest = text;
    let mut total: i64 = 0;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
        if digits == 0 || digits > 18 {
            return Err(bad());
        }
        let n: i64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit()).unwrap_or(rest.len());
        let mult = match rest[..unit_len].trim().to_ascii_lowercase().as_str() {
            "" | "s" | "sec" | "secs" => 1,
            "m" | "min" | "mins" => 60,
            "h" | "hr" | "hrs" | "hour" | "hours" => 3600,
            "d" | "day" | "days" => 86_400,
            "w" | "week" | "weeks" => 604_800,
            _ => return Err(bad()),
        };
        if unit_len == 0 && !rest.is_empty() {
            return Err(bad());
        }
        rest = &rest[unit_len..];
        total = n.checked_mul(mult).and_then(|v| total.checked_add(v)).ok_or_else(bad)?;
    }
    if text.is_empty() {
        return Err(bad());
    }
    Ok(total)
}

/// `1536` → `1.50 KiB`.
pub fn format_size(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.2} {}", UNITS[unit])
    }
}

/// `9000` → `2h 30m`; `-1` → `infinite`.
pub fn format_duration(secs: i64) -> String {
    if secs < 0 {
        return "infinite".to_owned();
    }
    let (d, h, m, s) = (secs / 86_400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    let parts: Vec<String> = [(d, "d"), (h, "h"), (m, "m"), (s, "s")]
        .iter()
        .filter(|(v, _)| *v > 0)
        .map(|(v, u)| format!("{v}{u}"))
        .collect();
    if parts.is_empty() {
        "0s".to_owned()
    } else {
        parts.join(" ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        let cases: &[(&str, u64)] = &[
            ("0", 0),
            ("4096", 4096),
            ("64k", 65536),
            ("64KiB", 65536),
            ("4GiB", 4 << 30),
            ("4 GiB", 4 << 30),
            ("1.5G", 3 << 29),
            ("0.5k", 512),
            (".5k", 512),
            ("10MB", 10_000_000),
            ("10mi", 10 << 20),
            ("1T", 1 << 40),
            ("7b", 7),
        ];
        for (text, want) in cases {
            assert_eq!(parse_size(text), Ok(*want), "{text}");
        }
        for bad in ["", "x", "-1", "1.2.3", "4XB", "99999999999999999999", "16777216T", "."] {
            assert!(parse_size(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn durations() {
        let cases: &[(&str, i64)] = &[
            ("3600", 3600),
            ("90s", 90),
            ("15m", 900),
            ("2h", 7200),
            ("1d", 86_400),
            ("1w", 604_800),
            ("2h30m", 9000),
            ("1d 2h", 93_600),
            ("inf", -1),
            ("-1", -1),
            ("MAX", -1),
        ];
        for (text, want) in cases {
            assert_eq!(parse_duration(text), Ok(*want), "{text}");
        }
        for bad in ["", "h", "2x", "1.5h", "-2", "99999999999999999999s", "9999999999999999w"] {
            assert!(parse_duration(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn formatting() {
        assert_eq!(format_size(0), "0 B");
        assert_eq!(format_size(1536), "1.50 KiB");
        assert_eq!(format_size(4 << 30), "4.00 GiB");
        assert_eq!(format_duration(9000), "2h 30m");
        assert_eq!(format_duration(0), "0s");
        assert_eq!(format_duration(-1), "infinite");
        assert_eq!(format_duration(90_061), "1d 1h 1m 1s");
    }
}
