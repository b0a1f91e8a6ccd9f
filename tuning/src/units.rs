//! Byte sizes on the command line (`1GiB`, `256K`, `4096`) and in reports.
//!
//! The depot's config takes the same spellings (README, "Sizes take ..."), so an operator can
//! paste one into the other: `B`, `KiB`/`K`, `MiB`/`M`, `GiB`/`G`, `TiB`/`T` are powers of
//! 1024 and `kB`/`MB`/`GB` powers of 1000.

/// Largest size accepted anywhere in `ibp-bench` (1 PiB): a typo must not become a
/// multi-exabyte loop bound.
pub const MAX_SIZE_BYTES: u64 = 1 << 50;

/// Parses a size such as `1GiB`, `64K` or `4096`.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let bytes = ibp_client::units::parse_size(text).map_err(|e| e.to_string())?;
    if bytes > MAX_SIZE_BYTES {
        return Err(format!("`{text}` is larger than the 1 PiB limit"));
    }
    Ok(bytes)
}

/// Formats bytes with the largest binary unit that keeps the number ≥ 1 (`1GiB`, `64KiB`).
pub fn format_size(bytes: u64) -> String {
    const UNITS: [(&str, u64); 4] =
        [("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)];
    for (name, unit) in UNITS {
        if bytes >= unit {
            return if bytes.is_multiple_of(unit) {
                format!("{}{name}", bytes / unit)
            } else {
                format!("{:.1}{name}", bytes as f64 / unit as f64)
            };
        }
    }
    format!("{bytes}B")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_round_trip() {
        assert_eq!(parse_size("1GiB"), Ok(1 << 30));
        assert_eq!(parse_size("64K"), Ok(64 << 10));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("2MB"), Ok(2_000_000));
        assert!(parse_size("2XB").is_err());
        assert!(parse_size("99999999999T").is_err());
        assert_eq!(format_size(1 << 30), "1GiB");
        assert_eq!(format_size(4096), "4KiB");
        assert_eq!(format_size(1536), "1.5KiB");
    }
}
