//! Progress events of the step loop; the binary decides how to show them.

use std::time::Duration;

use rbuild_cache::oci::Digest;

/// Which step an event is about (1-based counters; FROM is step 1 of its stage).
#[derive(Debug, Clone, Copy)]
pub struct StepEvent<'a> {
    pub stage: usize,
    pub stages: usize,
    pub step: usize,
    pub steps: usize,
    /// The instruction as written.
    pub text: &'a str,
}

/// Receives progress; implementations must not block for long.
pub trait Progress: Sync {
    /// A step starts.
    fn step_started(&self, event: &StepEvent<'_>);
    /// A chunk of a RUN's output (stdout and stderr, as they come).
    fn output(&self, event: &StepEvent<'_>, chunk: &[u8]);
    /// A step ended.
    fn step_finished(&self, event: &StepEvent<'_>, report: &StepReport);
    /// A step failed (no `step_finished` follows): its Dockerfile `line` and why, so a
    /// display can show the step with the end of its output.
    fn step_failed(&self, _event: &StepEvent<'_>, _line: usize, _error: &dyn std::error::Error) {}
}

/// How a step ended.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StepReport {
    /// Wall time of the step.
    pub elapsed: Duration,
    /// Compressed size of the layer the step produced, if any.
    pub layer_size: Option<u64>,
    /// Digest of that layer (compressed blob), if any.
    pub layer_digest: Option<Digest>,
    /// The step's result came from the cache instead of running.
    pub cached: bool,
}

/// Discards progress.
#[derive(Debug, Clone, Copy, Default)]
pub struct Silent;

impl Progress for Silent {
    fn step_started(&self, _event: &StepEvent<'_>) {}
    fn output(&self, _event: &StepEvent<'_>, _chunk: &[u8]) {}
    fn step_finished(&self, _event: &StepEvent<'_>, _report: &StepReport) {}
}
