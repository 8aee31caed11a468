//! How `rbuild build` shows what it does: a [`Display`] per `--progress` mode ([`plain`]
//! lines, a [`live`] terminal view, [`json`] events), the [`record`] of every step and of the
//! bytes moved, and the final [`BuildSummary`] (also what `--output-dir` writes).

pub mod failure;
pub mod json;
pub mod live;
pub mod plain;
pub mod record;

use std::io::IsTerminal as _;
use std::sync::Arc;

use indicatif::HumanBytes;
use rbuild_builder::executor::{Progress, StepEvent, StepReport};
use rbuild_cache::registry::TransferProgress;
use serde::Serialize;

pub use failure::Failure;
pub use record::{StepLog, StepRecord, TransferTally};

/// `--progress` (BuildKit's names; `json` is BuildKit's `rawjson` idea in rbuild's own schema).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum ProgressMode {
    /// `tty` when stderr is a terminal, else `plain`.
    #[default]
    Auto,
    /// One line per step on stderr, step output prefixed.
    Plain,
    /// A live view on the terminal: running steps, transfer bars.
    Tty,
    /// One JSON object per event on stdout.
    Json,
}

/// Receives everything a build reports: steps (as [`Progress`]), blob transfers (as
/// [`TransferProgress`]) and the phases, warnings and summary of the build command.
pub trait Display: Progress + TransferProgress {
    /// A phase outside the step loop begins (pulling bases, pushing to a repository).
    fn phase(&self, text: &str);
    /// A warning for the user (e.g. an unused build arg).
    fn warning(&self, text: &str);
    /// The build is done; shows the summary (and puts the digest on stdout).
    fn summary(&self, summary: &BuildSummary);
    /// The build failed: the failed step and its last output lines (the error chain itself
    /// goes to stderr after this, from `main`).
    fn failed(&self, failure: &Failure);
}

/// The display for `mode`; `tty` needs stderr to be a terminal. The live view has no colour
/// with `NO_COLOR` set.
pub fn display(mode: ProgressMode) -> anyhow::Result<Arc<dyn Display>> {
    let terminal = std::io::stderr().is_terminal();
    let colour = std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    Ok(match mode {
        ProgressMode::Auto if terminal => Arc::new(live::Live::new(colour)),
        ProgressMode::Auto | ProgressMode::Plain => Arc::new(plain::Plain),
        ProgressMode::Tty if terminal => Arc::new(live::Live::new(colour)),
        ProgressMode::Tty => anyhow::bail!("--progress tty needs stderr to be a terminal; use --progress plain"),
        ProgressMode::Json => Arc::new(json::Json),
    })
}

/// What a build did: the JSON of `--output-dir`, the `summary` event, the closing lines.
#[derive(Debug, Clone, Serialize)]
pub struct BuildSummary {
    /// The image manifest digest.
    pub digest: String,
    /// Every pushed reference, `REGISTRY/REPO:TAG@DIGEST`.
    pub references: Vec<String>,
    /// Wall time of the whole command.
    pub elapsed_seconds: f64,
    /// Steps that ran or came from the cache (FROM included).
    pub steps_total: usize,
    /// Steps whose result came from the cache.
    pub cache_hits: usize,
    /// Blob bytes sent to registries (retries included).
    pub bytes_uploaded: u64,
    /// Blob bytes received from registries (retries included).
    pub bytes_downloaded: u64,
    /// Every step, in the order they finished.
    pub steps: Vec<StepRecord>,
}

/// `[stage 1/2] STEP 3/7`
fn step_prefix(e: &StepEvent<'_>) -> String {
    format!("[stage {}/{}] STEP {}/{}", e.stage, e.stages, e.step, e.steps)
}

/// `cached in 0.00s` / `done in 1.23s, layer 4.5 KiB`
fn step_outcome(r: &StepReport) -> String {
    let how = if r.cached { "cached" } else { "done" };
    let layer = r.layer_size.map(|n| format!(", layer {}", HumanBytes(n))).unwrap_or_default();
    format!("{how} in {:.2}s{layer}", r.elapsed.as_secs_f64())
}

/// The closing lines (stderr) of the human displays.
fn summary_lines(s: &BuildSummary) -> Vec<String> {
    let mut lines = vec![format!("digest: {}", s.digest)];
    lines.extend(s.references.iter().map(|r| format!("pushed: {r}")));
    lines.push(format!(
        "{} steps ({} cached), uploaded {}, downloaded {}, {:.1}s",
        s.steps_total,
        s.cache_hits,
        HumanBytes(s.bytes_uploaded),
        HumanBytes(s.bytes_downloaded),
        s.elapsed_seconds
    ));
    lines
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[rstest::rstest]
    #[case::run(StepReport { elapsed: Duration::from_millis(1234), layer_size: Some(4608), ..StepReport::default() }, "done in 1.23s, layer 4.50 KiB")]
    #[case::cached(StepReport { cached: true, ..StepReport::default() }, "cached in 0.00s")]
    #[case::config_only(StepReport { elapsed: Duration::from_millis(7), ..StepReport::default() }, "done in 0.01s")]
    fn step_outcomes(#[case] report: StepReport, #[case] expected: &str) {
        assert_eq!(step_outcome(&report), expected);
    }

    #[test]
    fn summary_names_digest_every_reference_and_totals() {
        let s = BuildSummary {
            digest: "sha256:ab".into(),
            references: vec!["r/a:v1@sha256:ab".into(), "r/a:latest@sha256:ab".into()],
            elapsed_seconds: 2.04,
            steps_total: 7,
            cache_hits: 3,
            bytes_uploaded: 2048,
            bytes_downloaded: 0,
            steps: Vec::new(),
        };
        assert_eq!(
            summary_lines(&s),
            [
                "digest: sha256:ab",
                "pushed: r/a:v1@sha256:ab",
                "pushed: r/a:latest@sha256:ab",
                "7 steps (3 cached), uploaded 2.00 KiB, downloaded 0 B, 2.0s",
            ]
        );
    }
}
