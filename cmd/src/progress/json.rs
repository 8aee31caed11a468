//! `--progress json`: one JSON object per event and line on stdout (stderr keeps logs and
//! errors for people), ending with a `summary` event that carries the digest. Every object
//! has a `type`: `phase`, `warning`, `step_started`, `output`, `step_finished`,
//! `transfer_started`, `transfer_finished`, `summary`; a failed build ends with `error`
//! instead of `summary` (`message`: the error chain; `file`; `step`: the failed step with its
//! `line`, `error` and last `output` lines, or null).

use std::io::Write as _;

use rbuild_builder::executor::{Progress, StepEvent, StepReport};
use rbuild_cache::oci::Digest;
use rbuild_cache::registry::{Direction, TransferProgress};
use serde_json::{json, Value};

use super::{BuildSummary, Display, Failure};

/// JSON lines on stdout, for machines.
#[derive(Debug, Clone, Copy, Default)]
pub struct Json;

/// Writes one event; a closed stdout (reader gone) is not the build's failure.
fn emit(event: &Value) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{event}");
    let _ = out.flush();
}

fn step(kind: &str, e: &StepEvent<'_>) -> Value {
    json!({"type": kind, "stage": e.stage, "stages": e.stages, "step": e.step, "steps": e.steps, "instruction": e.text})
}

fn direction(d: Direction) -> &'static str {
    match d {
        Direction::Download => "download",
        Direction::Upload => "upload",
    }
}

impl Progress for Json {
    fn step_started(&self, e: &StepEvent<'_>) {
        emit(&step("step_started", e));
    }

    fn output(&self, e: &StepEvent<'_>, chunk: &[u8]) {
        emit(&json!({"type": "output", "stage": e.stage, "step": e.step, "text": String::from_utf8_lossy(chunk)}));
    }

    fn step_finished(&self, e: &StepEvent<'_>, r: &StepReport) {
        let mut event = step("step_finished", e);
        event["cached"] = json!(r.cached);
        event["duration_seconds"] = json!(r.elapsed.as_secs_f64());
        event["layer_digest"] = json!(r.layer_digest.as_ref().map(ToString::to_string));
        event["layer_size"] = json!(r.layer_size);
        emit(&event);
    }
}

impl TransferProgress for Json {
    fn started(&self, d: Direction, digest: &Digest, size: u64) {
        emit(
            &json!({"type": "transfer_started", "direction": direction(d), "digest": digest.to_string(), "size": size}),
        );
    }

    /// Per-chunk events would flood the stream; start and end are enough for a machine.
    fn advanced(&self, _: Direction, _: &Digest, _: u64) {}

    fn finished(&self, d: Direction, digest: &Digest) {
        emit(&json!({"type": "transfer_finished", "direction": direction(d), "digest": digest.to_string()}));
    }
}

impl Display for Json {
    fn phase(&self, text: &str) {
        emit(&json!({"type": "phase", "message": text}));
    }

    fn warning(&self, text: &str) {
        emit(&json!({"type": "warning", "message": text}));
    }

    fn summary(&self, summary: &BuildSummary) {
        let mut event = json!(summary);
        event["type"] = json!("summary");
        emit(&event);
    }

    fn failed(&self, failure: &Failure) {
        let mut event = json!(failure);
        event["type"] = json!("error");
        emit(&event);
    }
}
