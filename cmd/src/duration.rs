//! Durations in Go's `time.ParseDuration` syntax (`336h`, `1h30m`, `90s`, `500ms`), the
//! syntax of Kaniko's `--cache-ttl`.

use std::time::Duration;

/// Parses a Go duration (no sign; units `ns`, `us`, `µs`, `ms`, `s`, `m`, `h`, and `d` as
/// 24 h for convenience); `0` alone is zero.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let bad = || format!("invalid duration {text:?}: expected e.g. 336h, 1h30m, 90s");
    if text == "0" {
        return Ok(Duration::ZERO);
    }
    let mut rest = text.trim();
    if rest.is_empty() {
        return Err(bad());
    }
    let mut total = 0f64;
    while !rest.is_empty() {
        let number_end = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).ok_or_else(bad)?;
        let (number, tail) = rest.split_at(number_end);
        let value: f64 = number.parse().map_err(|_| bad())?;
        let unit_end = tail.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(unit_end);
        let seconds = match unit {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            "d" => 86_400.0,
            _ => return Err(bad()),
        };
        total += value * seconds;
        rest = tail;
    }
    Duration::try_from_secs_f64(total).map_err(|_| bad())
}

#[cfg(test)]
mod tests {
    use super::parse_duration;
    use std::time::Duration;

    #[rstest::rstest]
    #[case("336h", Some(336 * 3600))]
    #[case("1h30m", Some(5400))]
    #[case("90s", Some(90))]
    #[case("2d", Some(172_800))]
    #[case("0", Some(0))]
    #[case("1.5h", Some(5400))]
    #[case("", None)]
    #[case("10", None)]
    #[case("5 parsecs", None)]
    #[case("-1h", None)]
    fn parses(#[case] text: &str, #[case] secs: Option<u64>) {
        assert_eq!(parse_duration(text).ok(), secs.map(Duration::from_secs));
    }
}
