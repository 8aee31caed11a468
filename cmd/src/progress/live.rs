//! `--progress tty`: a live view on the terminal (indicatif). Each running step is a spinner
//! line showing its last output line; each blob transfer a byte bar; finished steps, phases
//! and the summary scroll above them as the plain lines would.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use rbuild_builder::executor::{Progress, StepEvent, StepReport};
use rbuild_cache::oci::Digest;
use rbuild_cache::registry::{Direction, TransferProgress};

use super::{step_outcome, step_prefix, summary_lines, BuildSummary, Display, Failure};

/// The live terminal view.
pub struct Live {
    multi: MultiProgress,
    /// Running steps by (stage, step).
    steps: Mutex<HashMap<(usize, usize), ProgressBar>>,
    /// Running transfers by digest.
    transfers: Mutex<HashMap<String, ProgressBar>>,
    step_style: ProgressStyle,
    transfer_style: ProgressStyle,
}

impl Live {
    /// A view drawing on stderr; `colour: false` draws without ANSI styles.
    pub fn new(colour: bool) -> Self {
        let style =
            |template: &str| ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_bar());
        Self {
            multi: MultiProgress::with_draw_target(ProgressDrawTarget::stderr()),
            steps: Mutex::new(HashMap::new()),
            transfers: Mutex::new(HashMap::new()),
            step_style: style(if colour {
                "{spinner} {prefix} {elapsed:>4} {wide_msg:.dim}"
            } else {
                "{spinner} {prefix} {elapsed:>4} {wide_msg}"
            }),
            transfer_style: style("  {prefix} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}").progress_chars("=> "),
        }
    }

    fn print(&self, line: &str) {
        // println fails only when the terminal is gone; nothing useful to do then.
        let _ = self.multi.println(line);
    }
}

fn short(digest: &Digest) -> String {
    digest.to_string().chars().take(19).collect()
}

impl Progress for Live {
    fn step_started(&self, e: &StepEvent<'_>) {
        let bar = self.multi.add(ProgressBar::new_spinner().with_style(self.step_style.clone()));
        bar.set_prefix(format!("{}: {}", step_prefix(e), e.text));
        bar.enable_steady_tick(Duration::from_millis(120));
        self.steps.lock().unwrap_or_else(PoisonError::into_inner).insert((e.stage, e.step), bar);
    }

    fn output(&self, e: &StepEvent<'_>, chunk: &[u8]) {
        let text = String::from_utf8_lossy(chunk);
        if let Some(last) = text.lines().rev().find(|l| !l.trim().is_empty()) {
            if let Some(bar) = self.steps.lock().unwrap_or_else(PoisonError::into_inner).get(&(e.stage, e.step)) {
                bar.set_message(last.to_string());
            }
        }
    }

    fn step_finished(&self, e: &StepEvent<'_>, r: &StepReport) {
        if let Some(bar) = self.steps.lock().unwrap_or_else(PoisonError::into_inner).remove(&(e.stage, e.step)) {
            bar.finish_and_clear();
            self.multi.remove(&bar);
        }
        self.print(&format!("{}: {} {}", step_prefix(e), e.text, step_outcome(r)));
    }
}

impl TransferProgress for Live {
    fn started(&self, d: Direction, digest: &Digest, size: u64) {
        let mut transfers = self.transfers.lock().unwrap_or_else(PoisonError::into_inner);
        let bar = transfers
            .entry(digest.to_string())
            .or_insert_with(|| self.multi.add(ProgressBar::new(size).with_style(self.transfer_style.clone())));
        let verb = match d {
            Direction::Download => "pull",
            Direction::Upload => "push",
        };
        bar.set_prefix(format!("{verb} {}", short(digest)));
        bar.set_length(size);
        bar.set_position(0);
    }

    fn advanced(&self, _: Direction, digest: &Digest, bytes: u64) {
        if let Some(bar) = self.transfers.lock().unwrap_or_else(PoisonError::into_inner).get(&digest.to_string()) {
            bar.inc(bytes);
        }
    }

    fn finished(&self, _: Direction, digest: &Digest) {
        if let Some(bar) = self.transfers.lock().unwrap_or_else(PoisonError::into_inner).remove(&digest.to_string()) {
            bar.finish_and_clear();
            self.multi.remove(&bar);
        }
    }
}

impl Display for Live {
    fn phase(&self, text: &str) {
        self.print(text);
    }

    fn warning(&self, text: &str) {
        self.print(&format!("warning: {text}"));
    }

    fn summary(&self, summary: &BuildSummary) {
        let _ = self.multi.clear();
        for line in summary_lines(summary) {
            eprintln!("{line}");
        }
        println!("{}", summary.digest);
    }

    fn failed(&self, failure: &Failure) {
        // Running spinners go first, so the box is the last thing above the error.
        for (_, bar) in self.steps.lock().unwrap_or_else(PoisonError::into_inner).drain() {
            bar.finish_and_clear();
        }
        let _ = self.multi.clear();
        for line in failure.lines() {
            eprintln!("{line}");
        }
    }
}
