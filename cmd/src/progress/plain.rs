//! `--progress plain`: one line per step start and end on stderr, each output line of a step
//! prefixed with its step, phases and the summary as lines; the digest alone on stdout.

use std::io::Write as _;

use rbuild_builder::executor::{Progress, StepEvent, StepReport};
use rbuild_cache::oci::Digest;
use rbuild_cache::registry::{Direction, TransferProgress};

use super::{step_outcome, step_prefix, summary_lines, BuildSummary, Display, Failure};

/// Plain lines, for logs and pipelines (stderr is not a terminal).
#[derive(Debug, Clone, Copy, Default)]
pub struct Plain;

impl Progress for Plain {
    fn step_started(&self, e: &StepEvent<'_>) {
        eprintln!("{}: {}", step_prefix(e), e.text);
    }

    fn output(&self, e: &StepEvent<'_>, chunk: &[u8]) {
        let prefix = format!("[stage {}/{}] STEP {}", e.stage, e.stages, e.step);
        let mut err = std::io::stderr().lock();
        for line in String::from_utf8_lossy(chunk).lines() {
            let _ = writeln!(err, "{prefix}: {line}");
        }
    }

    fn step_finished(&self, e: &StepEvent<'_>, r: &StepReport) {
        eprintln!("{}: {}", step_prefix(e), step_outcome(r));
    }
}

/// Byte counts go to the summary; per-blob lines would only add noise to a log.
impl TransferProgress for Plain {
    fn started(&self, _: Direction, _: &Digest, _: u64) {}
    fn advanced(&self, _: Direction, _: &Digest, _: u64) {}
    fn finished(&self, _: Direction, _: &Digest) {}
}

impl Display for Plain {
    fn phase(&self, text: &str) {
        eprintln!("{text}");
    }

    fn warning(&self, text: &str) {
        eprintln!("warning: {text}");
    }

    fn summary(&self, summary: &BuildSummary) {
        for line in summary_lines(summary) {
            eprintln!("{line}");
        }
        println!("{}", summary.digest);
    }

    /// The output was shown as it came; the box repeats its end next to the error.
    fn failed(&self, failure: &Failure) {
        for line in failure.lines() {
            eprintln!("{line}");
        }
    }
}
