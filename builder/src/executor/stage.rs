//! One stage: materialise its base into a fresh root, run its steps, snapshot each change.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use super::base::BaseSet;
use super::cache::{self, StageCache, StepAnswer};
use super::instructions::{self, StepContext, StepEffect};
use super::isolation::StageRoots;
use super::progress::{StepEvent, StepReport};
use super::rootfs::{self, LazyRoot};
use super::{ExecuteError, Executor};
use crate::image::{History, ImageConfig, ImageLayer};
use crate::layer::snapshot::native;
use crate::layer::{write_layer, LayerWriteError};
use crate::plan::{Base, Plan, Stage};
use rbuild_cache::store::StoreError;

/// Where a stage sits in the build (for progress) and what it is.
pub struct StageSetup<'a> {
    pub stage: &'a Stage,
    /// 1-based position among the stages that run.
    pub position: usize,
    pub count: usize,
    pub plan: &'a Plan,
    /// The stage's cache keys and answers.
    pub cache: Option<&'a StageCache>,
}

/// What a finished stage leaves behind: its root (for `COPY --from`; materialised on demand
/// through `root`), config and every layer from the bottom (base layers included, so a later
/// stage can start from it).
#[derive(Debug, Clone)]
pub struct StageOutput {
    pub rootfs: PathBuf,
    pub config: ImageConfig,
    pub layers: Vec<ImageLayer>,
    pub root: Arc<LazyRoot>,
}

/// Errors turning a step's change into a layer.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("cannot diff the stage root")]
    Diff(#[from] crate::layer::snapshot::SnapshotError),
    #[error("cannot write the layer")]
    Write(#[from] LayerWriteError),
    #[error("cannot store the layer")]
    Store(#[from] StoreError),
}

/// Runs one stage to completion. Cache hits are applied without running anything; the root
/// is materialised only when a step misses (see [`LazyRoot`]).
pub fn run_stage(
    exec: &Executor<'_>,
    setup: &StageSetup<'_>,
    bases: &BaseSet,
    earlier: &[Option<StageOutput>],
) -> Result<StageOutput, ExecuteError> {
    let stage = setup.stage;
    let steps = stage.steps.len() + 1;
    let from_text = format!("FROM {}", base_name(stage));
    let started = Instant::now();
    exec.progress.step_started(&event(setup, steps, 1, &from_text));
    let root = Arc::new(LazyRoot::new(
        &exec.work_dir.join(format!("stage-{}", stage.index)),
        stage.display_name(),
        &exec.roots,
    ));
    let (mut config, mut layers) = base_state(stage, bases, earlier)?;
    exec.progress.step_finished(
        &event(setup, steps, 1, &from_text),
        &StepReport { elapsed: started.elapsed(), ..StepReport::default() },
    );
    config.created = Some(exec.created.clone());
    let uploads_layers = exec.remote.filter(|_| cache::stages_in_image(setup.plan).contains(&stage.index));
    for (i, step) in stage.steps.iter().enumerate() {
        if exec.cancel.is_cancelled() {
            return Err(ExecuteError::Cancelled);
        }
        let ev = event(setup, steps, i + 2, step.original.trim());
        let started = Instant::now();
        exec.progress.step_started(&ev);
        if let Some(StepAnswer::Hit { entry, config: cached, layer }) = setup.cache.and_then(|c| c.answers.get(i)) {
            let size = cache::apply_hit(step, entry, cached, layer.as_ref(), &mut config, &mut layers);
            let layer_digest = layer.as_ref().map(|l| l.descriptor.digest.digest().clone());
            exec.progress.step_finished(
                &ev,
                &StepReport { elapsed: started.elapsed(), layer_size: size, layer_digest, cached: true },
            );
            continue;
        }
        root.ensure(exec, &layers)?;
        rootfs::ensure_referenced(exec, setup.plan, step, earlier)?;
        let previous = stage.steps.get(..i).unwrap_or_default();
        let ctx = StepContext {
            exec,
            rootfs: &root.rootfs,
            plan: setup.plan,
            earlier,
            bases,
            event: ev,
            previous,
            platform: &stage.platform,
        };
        let keyword = step.instruction.keyword();
        let effect = instructions::apply(step, &mut config, &ctx).map_err(|e| {
            exec.progress.step_failed(&ev, step.location.start_line, &e);
            ExecuteError::step(keyword, step.location, e)
        })?;
        let layer = match effect {
            StepEffect::ConfigOnly => None,
            StepEffect::Filesystem => snapshot(exec, &root.rootfs, &root.index).map_err(|source| {
                ExecuteError::Snapshot { instruction: keyword, line: step.location.start_line, source }
            })?,
        };
        config.history.push(History {
            created: Some(exec.created.clone()),
            created_by: Some(format!("{} # rbuild", step.original.trim())),
            empty_layer: layer.is_none(),
            ..History::default()
        });
        let size = layer.as_ref().map(|l| l.descriptor.size);
        // The upload first: the cache entry's write mounts the layer from where it went.
        if let (Some(remote), Some(layer)) = (uploads_layers, &layer) {
            remote.spawn_layer_upload(exec.store, layer);
        }
        if let Some(c) = setup.cache {
            cache::record_miss(exec, c, i, &config, layer.as_ref());
        }
        let layer_digest = layer.as_ref().map(|l| l.descriptor.digest.digest().clone());
        layers.extend(layer);
        root.committed(layers.len());
        exec.progress.step_finished(
            &ev,
            &StepReport { elapsed: started.elapsed(), layer_size: size, layer_digest, cached: false },
        );
    }
    if !stage.steps.is_empty() {
        // BuildKit-like: the image's time is its newest step's, so a fully cached rebuild
        // (history times from the entries) reproduces the config byte for byte.
        config.created = config.history.last().and_then(|h| h.created.clone());
    }
    let root = keep_for_later_stages(exec, setup, &layers, root)?;
    Ok(StageOutput { rootfs: root.rootfs.clone(), config, layers, root })
}

/// A stage built in place leaves the shared root to the next stage; when a later stage
/// depends on it (`COPY --from`), its layers are unpacked again into a directory of its own.
fn keep_for_later_stages(
    exec: &Executor<'_>,
    setup: &StageSetup<'_>,
    layers: &[ImageLayer],
    root: Arc<LazyRoot>,
) -> Result<Arc<LazyRoot>, ExecuteError> {
    let index = setup.stage.index;
    if !exec.roots.in_place() || !setup.plan.stages.iter().any(|s| s.needed && s.depends_on.contains(&index)) {
        return Ok(root);
    }
    let dir = exec.work_dir.join(format!("stage-{index}-kept"));
    let copy = Arc::new(LazyRoot::new(&dir, setup.stage.display_name(), &StageRoots::Fresh));
    copy.ensure(exec, layers)?;
    Ok(copy)
}

fn event<'t>(setup: &StageSetup<'_>, steps: usize, step: usize, text: &'t str) -> StepEvent<'t> {
    StepEvent { stage: setup.position, stages: setup.count, step, steps, text }
}

fn base_name(stage: &Stage) -> String {
    let base = match &stage.base {
        Base::Scratch => "scratch".to_string(),
        Base::Image { reference } => reference.clone(),
        Base::Stage { index } => format!("stage {index}"),
    };
    match &stage.name {
        Some(name) => format!("{base} AS {name}"),
        None => base,
    }
}

/// The config of `FROM scratch`: BuildKit's empty image (dockerfile2llb `emptyImage`) has
/// `WorkingDir` `/` and the default `PATH` (Linux only), not an empty config.
fn scratch_config(os: &str) -> ImageConfig {
    let mut config = ImageConfig::default();
    config.config.working_dir = Some("/".into());
    if os == "linux" {
        config.config.env = vec![format!("PATH={}", crate::sandbox::DEFAULT_PATH)];
    }
    config
}

/// The config and layers a stage starts from.
fn base_state(
    stage: &Stage,
    bases: &BaseSet,
    earlier: &[Option<StageOutput>],
) -> Result<(ImageConfig, Vec<ImageLayer>), ExecuteError> {
    let base_err = |source| ExecuteError::Base { stage: stage.display_name(), source: Box::new(source) };
    let (config, layers) = match &stage.base {
        Base::Scratch => (scratch_config(&stage.platform.os), Vec::new()),
        Base::Image { reference } => {
            let base = bases.get(reference, &stage.platform).map_err(base_err)?;
            (base.config.clone(), base.layers.clone())
        }
        Base::Stage { index } => {
            let out =
                earlier.get(*index).and_then(Option::as_ref).ok_or(ExecuteError::TargetMissing { index: *index })?;
            (out.config.clone(), out.layers.clone())
        }
    };
    let mut config = config;
    // The base's ONBUILD triggers run as steps of this stage (the plan inserted them); the
    // new image carries only the ONBUILD instructions of its own Dockerfile.
    config.config.on_build.clear();
    // Docker writes `"WorkingDir": ""` for "not set"; a relative or empty cwd would be refused.
    if config.config.working_dir.as_deref() == Some("") {
        config.config.working_dir = None;
    }
    config.architecture = stage.platform.architecture.clone();
    config.os = stage.platform.os.clone();
    config.variant = stage.platform.variant.clone();
    Ok((config, layers))
}

/// Diffs the root against its index; a non-empty change becomes a layer in the blob store.
fn snapshot(exec: &Executor<'_>, rootfs: &Path, index: &Path) -> Result<Option<ImageLayer>, SnapshotError> {
    let diff = native::diff_excluding(rootfs, index, &exec.roots.exclusions())?;
    if diff.entries.is_empty() {
        diff.commit()?;
        return Ok(None);
    }
    let writer = exec.store.writer()?;
    let (descriptor, writer) = write_layer(writer, rootfs, &diff.entries, &exec.layer)?;
    let stored = writer.commit(Some(descriptor.digest.digest()), Some(descriptor.size))?;
    diff.commit()?;
    Ok(Some(ImageLayer { descriptor, blob: exec.store.path(&stored.digest) }))
}
