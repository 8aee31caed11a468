//! Records what a build did while passing every event on to the display: the steps
//! ([`StepLog`], a [`Progress`]) and the bytes moved ([`TransferTally`], a
//! [`TransferProgress`]), for the summary and `--output-dir`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use rbuild_builder::executor::{Progress, StepEvent, StepReport};
use rbuild_cache::oci::Digest;
use rbuild_cache::registry::{Direction, TransferProgress};
use serde::Serialize;

use super::failure::{FailedStep, Tail};
use super::Display;

/// One finished step, as `--output-dir` reports it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StepRecord {
    /// 1-based position of the stage among those that ran.
    pub stage: usize,
    /// 1-based step in the stage (FROM is 1).
    pub step: usize,
    /// The instruction as written.
    pub instruction: String,
    /// Whether the result came from the cache.
    pub cached: bool,
    /// Wall time.
    pub duration_seconds: f64,
    /// The layer the step produced, if any.
    pub layer_digest: Option<String>,
    /// Its compressed size.
    pub layer_size: Option<u64>,
}

/// Forwards step events to a display and keeps a [`StepRecord`] of each finished step, the
/// last output lines of each running one and the first step that failed.
pub struct StepLog {
    display: Arc<dyn Display>,
    steps: Mutex<Vec<StepRecord>>,
    /// Output tails of running steps by (stage, step).
    tails: Mutex<HashMap<(usize, usize), Tail>>,
    failed: Mutex<Option<FailedStep>>,
}

impl StepLog {
    /// A log in front of `display`.
    pub fn new(display: Arc<dyn Display>) -> Self {
        Self { display, steps: Mutex::new(Vec::new()), tails: Mutex::new(HashMap::new()), failed: Mutex::new(None) }
    }

    /// The first step that failed, with the end of its output.
    pub fn failed_step(&self) -> Option<FailedStep> {
        self.failed.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// The steps recorded so far, in the order they finished.
    pub fn steps(&self) -> Vec<StepRecord> {
        self.steps.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }
}

impl Progress for StepLog {
    fn step_started(&self, event: &StepEvent<'_>) {
        self.display.step_started(event);
    }

    fn output(&self, event: &StepEvent<'_>, chunk: &[u8]) {
        self.tails
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry((event.stage, event.step))
            .or_default()
            .push(chunk);
        self.display.output(event, chunk);
    }

    fn step_failed(&self, event: &StepEvent<'_>, line: usize, error: &dyn std::error::Error) {
        let tail = self
            .tails
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&(event.stage, event.step))
            .unwrap_or_default();
        let mut why = error.to_string();
        let mut cause = error.source();
        while let Some(c) = cause {
            why.push_str(&format!(": {c}"));
            cause = c.source();
        }
        let step = FailedStep {
            stage: event.stage,
            stages: event.stages,
            step: event.step,
            steps: event.steps,
            instruction: event.text.to_string(),
            line,
            error: why,
            output: tail.lines(),
        };
        // Parallel stages: the first failure is the cause, later ones are its cancellations.
        self.failed.lock().unwrap_or_else(PoisonError::into_inner).get_or_insert(step);
        self.display.step_failed(event, line, error);
    }

    fn step_finished(&self, event: &StepEvent<'_>, report: &StepReport) {
        self.tails.lock().unwrap_or_else(PoisonError::into_inner).remove(&(event.stage, event.step));
        self.steps.lock().unwrap_or_else(PoisonError::into_inner).push(StepRecord {
            stage: event.stage,
            step: event.step,
            instruction: event.text.to_string(),
            cached: report.cached,
            duration_seconds: report.elapsed.as_secs_f64(),
            layer_digest: report.layer_digest.as_ref().map(ToString::to_string),
            layer_size: report.layer_size,
        });
        self.display.step_finished(event, report);
    }
}

/// Forwards transfer events to a display and counts the bytes each way.
pub struct TransferTally {
    display: Arc<dyn Display>,
    downloaded: AtomicU64,
    uploaded: AtomicU64,
}

impl TransferTally {
    /// A tally in front of `display`.
    pub fn new(display: Arc<dyn Display>) -> Self {
        Self { display, downloaded: AtomicU64::new(0), uploaded: AtomicU64::new(0) }
    }

    /// Bytes received so far.
    pub fn downloaded(&self) -> u64 {
        self.downloaded.load(Ordering::Relaxed)
    }

    /// Bytes sent so far.
    pub fn uploaded(&self) -> u64 {
        self.uploaded.load(Ordering::Relaxed)
    }
}

impl TransferProgress for TransferTally {
    fn started(&self, direction: Direction, digest: &Digest, size: u64) {
        self.display.started(direction, digest, size);
    }

    fn advanced(&self, direction: Direction, digest: &Digest, bytes: u64) {
        let counter = match direction {
            Direction::Download => &self.downloaded,
            Direction::Upload => &self.uploaded,
        };
        counter.fetch_add(bytes, Ordering::Relaxed);
        self.display.advanced(direction, digest, bytes);
    }

    fn finished(&self, direction: Direction, digest: &Digest) {
        self.display.finished(direction, digest);
    }
}
