//! `HEALTHCHECK [OPTIONS] CMD command` or `HEALTHCHECK NONE`.

use super::command::CommandLine;
use super::flags::{FlagKind, Flags};
use super::{InstructionErrorKind, RawArgs};
use serde::Serialize;

/// What the health check runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HealthcheckTest {
    /// `NONE`: disable any check inherited from the base image.
    None,
    Cmd(CommandLine),
}

/// A health check; durations are nanoseconds, as the image config stores them (0 = inherit).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Healthcheck {
    pub test: HealthcheckTest,
    pub interval: u64,
    pub timeout: u64,
    pub start_period: u64,
    pub start_interval: u64,
    pub retries: u32,
}

/// A malformed HEALTHCHECK.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HealthcheckError {
    #[error("HEALTHCHECK NONE takes no arguments")]
    NoneWithArgs,
    #[error("unknown type {0:?} in HEALTHCHECK (try CMD)")]
    Type(String),
    #[error("missing command after HEALTHCHECK CMD")]
    NoCommand,
    #[error("invalid duration {value:?} for --{flag}")]
    Duration { flag: &'static str, value: String },
    #[error("--{flag} cannot be less than 1ms")]
    TooShort { flag: &'static str },
    #[error("invalid --retries {0:?}: expected a non-negative integer")]
    Retries(String),
}

pub(super) fn parse(raw: &RawArgs<'_>) -> Result<Healthcheck, InstructionErrorKind> {
    let flags = Flags::parse(
        "HEALTHCHECK",
        raw.flags,
        &[
            ("interval", FlagKind::String),
            ("timeout", FlagKind::String),
            ("start-period", FlagKind::String),
            ("start-interval", FlagKind::String),
            ("retries", FlagKind::String),
        ],
    )?;
    let Some((kind, rest)) = raw.words.split_first() else {
        return Err(InstructionErrorKind::Arity { instruction: "HEALTHCHECK", expected: "at least one argument" });
    };
    let test = match kind.to_ascii_uppercase().as_str() {
        "NONE" if rest.is_empty() && raw.flags.is_empty() => HealthcheckTest::None,
        "NONE" => return Err(HealthcheckError::NoneWithArgs.into()),
        "CMD" if rest.is_empty() => return Err(HealthcheckError::NoCommand.into()),
        "CMD" if raw.json => HealthcheckTest::Cmd(CommandLine::Exec(rest.to_vec())),
        "CMD" => HealthcheckTest::Cmd(CommandLine::Shell(rest.join(" "))),
        _ => return Err(HealthcheckError::Type(kind.clone()).into()),
    };
    let retries = match flags.string("retries") {
        None => 0,
        Some(r) => r.parse().map_err(|_| HealthcheckError::Retries(r))?,
    };
    Ok(Healthcheck {
        test,
        interval: duration(&flags, "interval")?,
        timeout: duration(&flags, "timeout")?,
        start_period: duration(&flags, "start-period")?,
        start_interval: duration(&flags, "start-interval")?,
        retries,
    })
}

fn duration(flags: &Flags, flag: &'static str) -> Result<u64, HealthcheckError> {
    let Some(value) = flags.string(flag) else { return Ok(0) };
    let nanos = parse_go_duration(&value).ok_or_else(|| HealthcheckError::Duration { flag, value: value.clone() })?;
    if nanos != 0 && nanos < 1_000_000 {
        return Err(HealthcheckError::TooShort { flag });
    }
    Ok(nanos)
}

/// Parses a Go duration (`1h2m3.5s`, `300ms`, `0`) into nanoseconds; negative values are refused.
pub(crate) fn parse_go_duration(s: &str) -> Option<u64> {
    if s == "0" {
        return Some(0);
    }
    let mut total: f64 = 0.0;
    let mut rest = s;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let num_len = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
        let (num, tail) = rest.split_at(num_len);
        let value: f64 = num.parse().ok()?;
        let unit_len = tail.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(unit_len);
        let scale = match unit {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return None,
        };
        total += value * scale;
        rest = tail;
    }
    (total.is_finite() && total < u64::MAX as f64).then_some(total as u64)
}

#[cfg(test)]
mod tests {
    use super::parse_go_duration;

    #[test]
    fn go_durations() {
        for (input, want) in [
            ("0", Some(0)),
            ("5s", Some(5_000_000_000)),
            ("1m30s", Some(90_000_000_000)),
            ("1.5h", Some(5_400_000_000_000)),
            ("300ms", Some(300_000_000)),
            ("10", None),
            ("", None),
            ("-1s", None),
            ("5x", None),
        ] {
            assert_eq!(parse_go_duration(input), want, "{input}");
        }
    }
}
