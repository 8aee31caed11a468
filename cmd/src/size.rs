//! Byte sizes for `--max-size`: a number with an optional unit, decimal (`kB`, `MB`, `GB`,
//! `TB`) or binary (`KiB`, `MiB`, `GiB`, `TiB`; `K`, `M`, `G`, `T` as Docker's `--shm-size`
//! reads them), case-insensitive; `B` or no unit is bytes.

/// Parses `10GiB`, `500MB`, `2g`, `1048576`.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let bad = || format!("invalid size {text:?}: expected e.g. 10GiB, 500MB, 2G or a byte count");
    let t = text.trim();
    let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let value: f64 = number.parse().map_err(|_| bad())?;
    let factor: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "kb" => 1e3,
        "mb" => 1e6,
        "gb" => 1e9,
        "tb" => 1e12,
        "k" | "kib" => 1024.0,
        "m" | "mib" => 1024f64.powi(2),
        "g" | "gib" => 1024f64.powi(3),
        "t" | "tib" => 1024f64.powi(4),
        _ => return Err(bad()),
    };
    let bytes = (value * factor).round();
    if !bytes.is_finite() || bytes < 0.0 || bytes > u64::MAX as f64 {
        return Err(bad());
    }
    // Checked above: finite, non-negative and in range.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    Ok(bytes as u64)
}

#[cfg(test)]
mod tests {
    use super::parse_size;

    #[rstest::rstest]
    #[case("1048576", Some(1_048_576))]
    #[case("10GiB", Some(10 * 1024 * 1024 * 1024))]
    #[case("2g", Some(2 * 1024 * 1024 * 1024))]
    #[case("500MB", Some(500_000_000))]
    #[case("1.5KiB", Some(1536))]
    #[case("0", Some(0))]
    #[case("", None)]
    #[case("10 parsecs", None)]
    #[case("GiB", None)]
    fn sizes(#[case] text: &str, #[case] want: Option<u64>) {
        assert_eq!(parse_size(text).ok(), want);
    }
}
