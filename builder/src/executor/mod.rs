//! The executor: runs a [`Plan`]'s needed stages and returns the target stage's image
//! (config + layers in the blob store), ready to be assembled and pushed.
//!
//! Flow per stage ([`stage::run_stage`]): materialise the base (pulled image layers, an
//! earlier stage's layers, or scratch) into a fresh rootfs under the work dir, index it for
//! the native snapshotter, then for each step apply the instruction
//! ([`instructions`], one file per instruction family) and, when it changed the filesystem,
//! diff → [`crate::layer::write_layer`] into the blob store → a layer of the stage.
//!
//! Stages the target does not need are skipped; independent stages run concurrently, in
//! waves. Before any stage runs, every step's cache key is computed and looked up at once
//! ([`cache`]); hits are applied without running and the root is materialised lazily
//! ([`rootfs`]) when a step misses.

pub mod base;
pub mod cache;
pub mod cache_keys;
pub mod context;
pub mod identity;
pub mod instructions;
pub mod isolation;
pub mod progress;
pub mod remote;
pub mod rootfs;
pub mod secrets;
pub mod stage;

use std::path::PathBuf;

pub use base::{resolve_bases, BaseError, BaseImage, BaseSet};
pub use cache::StepCacheReport;
pub use context::{BuildContext, ContextError};
pub use identity::Identity;
pub use instructions::InstructionError;
pub use isolation::StageRoots;
pub use progress::{Progress, StepEvent, StepReport};
pub use remote::{CacheMode, CacheSettings, Remote, WriteReport};
pub use secrets::{SecretSpec, Secrets};
pub use stage::{StageOutput, StageSetup};

use crate::dockerfile::Location;
use crate::image::ImageConfig;
use crate::layer::LayerOptions;
use crate::plan::Plan;
use crate::sandbox::CancelToken;
pub use isolation::SandboxChoice;
use rbuild_cache::store::BlobStore;

/// Errors running a build.
#[derive(Debug, thiserror::Error)]
pub enum ExecuteError {
    /// A step failed; `line` is the Dockerfile line of the instruction.
    #[error("{instruction} (line {line}) failed")]
    Step {
        instruction: &'static str,
        line: usize,
        #[source]
        source: InstructionError,
    },
    /// The stage's base could not be materialised.
    #[error("cannot prepare the base of stage {stage}")]
    Base {
        stage: String,
        #[source]
        source: Box<BaseError>,
    },
    /// Creating or indexing a stage's work directory failed.
    #[error("cannot prepare the work directory {path}")]
    WorkDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A snapshot or layer write failed after a step.
    #[error("cannot snapshot the change of {instruction} (line {line})")]
    Snapshot {
        instruction: &'static str,
        line: usize,
        #[source]
        source: stage::SnapshotError,
    },
    /// The plan's target stage was not produced (a bug in plan or executor).
    #[error("target stage {index} was not built")]
    TargetMissing { index: usize },
    /// A stage thread panicked (a bug).
    #[error("a stage panicked")]
    Panicked,
    /// The build was cancelled.
    #[error("build cancelled")]
    Cancelled,
    /// Layers a missed step needs could not be fetched.
    #[error("cannot fetch the layers of stage {stage}")]
    Fetch {
        stage: String,
        #[source]
        source: Box<rbuild_cache::registry::RegistryError>,
    },
}

impl ExecuteError {
    /// Wraps an instruction error with the step it happened in.
    pub(crate) fn step(keyword: &'static str, location: Location, source: InstructionError) -> Self {
        Self::Step { instruction: keyword, line: location.start_line, source }
    }
}

/// Everything a build shares across stages; immutable while stages run.
pub struct Executor<'a> {
    /// The build context (directory + `.dockerignore`).
    pub context: &'a BuildContext,
    /// Where layers are written and base layers are read.
    pub store: &'a BlobStore,
    /// Per-build scratch directory (stage roots and snapshot indexes); removed by the caller.
    pub work_dir: PathBuf,
    /// How layers are written (compression, mtime policy, media types, id maps).
    pub layer: LayerOptions,
    /// The RUN sandbox (chosen up front, or still being probed).
    pub sandbox: SandboxChoice,
    /// Who owns the files of the stage roots on the host.
    pub identity: Identity,
    /// RFC 3339 time stamped on the config and history entries.
    pub created: String,
    /// Where progress goes.
    pub progress: &'a dyn Progress,
    /// Cancels RUNs and the step loop.
    pub cancel: CancelToken,
    /// The registry side: lazy layer fetches and the layer cache (`None`: every layer is in
    /// the store already and nothing is cached).
    pub remote: Option<&'a Remote>,
    /// Where `RUN --mount=type=cache` directories persist (under the local state dir).
    pub cache_mounts: PathBuf,
    /// `--secret` values for `RUN --mount=type=secret`.
    pub secrets: Secrets,
    /// Where stage roots live: fresh directories, or in place in the container's own root.
    pub roots: StageRoots,
}

/// The target image: config and layers, ready for [`crate::image::assemble`].
#[derive(Debug, Clone)]
pub struct BuiltImage {
    pub config: ImageConfig,
    pub layers: Vec<crate::image::ImageLayer>,
    /// Hit or miss of every step that ran, with the reason of each miss.
    pub cache: Vec<StepCacheReport>,
}

impl Executor<'_> {
    /// Runs the needed stages of `plan` in waves: every stage whose dependencies are done
    /// runs concurrently with the others of its wave (one thread each); returns the target's image.
    pub fn execute(&self, plan: &Plan, bases: &BaseSet) -> Result<BuiltImage, ExecuteError> {
        let needed: Vec<usize> = plan.stages.iter().filter(|s| s.needed).map(|s| s.index).collect();
        if let Some(remote) = self.remote {
            for base in bases.images() {
                let Some(source) = &base.source else { continue };
                for layer in &base.layers {
                    remote.add_origin(layer.descriptor.digest.digest(), source);
                }
            }
        }
        let caches = cache::prepare(self, plan, bases)?;
        let mut outputs: Vec<Option<StageOutput>> = vec![None; plan.stages.len()];
        let mut pending = needed.clone();
        while !pending.is_empty() {
            let (mut ready, mut waiting): (Vec<usize>, Vec<usize>) = pending.iter().partition(|&&i| {
                plan.stages
                    .get(i)
                    .is_some_and(|s| s.depends_on.iter().all(|d| outputs.get(*d).is_some_and(Option::is_some)))
            });
            if self.roots.in_place() && ready.len() > 1 {
                // One shared root: one stage at a time.
                waiting.extend(ready.drain(1..));
            }
            if ready.is_empty() {
                // The plan rejects cycles, so this means a dependency was not marked needed.
                return Err(ExecuteError::TargetMissing { index: waiting.first().copied().unwrap_or(plan.target) });
            }
            let done = self.run_wave(plan, bases, &needed, &ready, &outputs, &caches)?;
            for (index, output) in done {
                if let Some(slot) = outputs.get_mut(index) {
                    *slot = Some(output);
                }
            }
            pending = waiting;
        }
        let target = outputs
            .get_mut(plan.target)
            .and_then(Option::take)
            .ok_or(ExecuteError::TargetMissing { index: plan.target })?;
        Ok(BuiltImage { config: target.config, layers: target.layers, cache: cache::report(plan, &caches) })
    }

    /// Runs the stages `ready` concurrently; the first error (in stage order) wins.
    fn run_wave(
        &self,
        plan: &Plan,
        bases: &BaseSet,
        needed: &[usize],
        ready: &[usize],
        outputs: &[Option<StageOutput>],
        caches: &[Option<cache::StageCache>],
    ) -> Result<Vec<(usize, StageOutput)>, ExecuteError> {
        std::thread::scope(|scope| {
            let handles: Vec<_> = ready
                .iter()
                .filter_map(|&index| plan.stages.get(index))
                .map(|stage| {
                    let position = needed.iter().position(|&i| i == stage.index).map_or(0, |p| p + 1);
                    let cache = caches.get(stage.index).and_then(Option::as_ref);
                    let setup = StageSetup { stage, position, count: needed.len(), plan, cache };
                    scope.spawn(move || stage::run_stage(self, &setup, bases, outputs).map(|o| (stage.index, o)))
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap_or(Err(ExecuteError::Panicked))).collect()
        })
    }
}

/// An error and its sources on one line (`outer: cause: root cause`), for reports that
/// outlive the error value (failed cache writes, test messages).
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}
