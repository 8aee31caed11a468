//! One stage: materialise its base into a fresh root, run its steps, snapshot each change.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::Instant;

use super::base::{BaseError, BaseSet};
use super::isolation::StageRoots;
use super::instructions::{self, StepContext, StepEffect};
use super::progress::{StepEvent, StepReport};
use super::{ExecuteError, Executor};
use crate::image::{History, ImageConfig, ImageLayer};
use crate::layer::root_path::RootDir;
use crate::layer::snapshot::native;
use crate::layer::unpack::{unpack_layer_excluding, UnpackOptions};
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
}

/// What a finished stage leaves behind: its root (for `COPY --from`), config and every
/// layer from the bottom (base layers included, so a later stage can start from it).
#[derive(Debug, Clone)]
pub struct StageOutput {
    pub rootfs: PathBuf,
    pub config: ImageConfig,
    pub layers: Vec<ImageLayer>,
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

/// Runs one stage to completion.
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
    let dir = exec.work_dir.join(format!("stage-{}", stage.index));
    let (rootfs, index) = (exec.roots.stage_root(&dir.join("rootfs")), dir.join("index"));
    let (mut config, mut layers) = base_state(stage, bases, earlier)?;
    materialise(exec, &exec.roots, stage, &layers, &rootfs, &index)?;
    exec.progress.step_finished(&event(setup, steps, 1, &from_text), &StepReport { elapsed: started.elapsed(), ..StepReport::default() });
    config.created = Some(exec.created.clone());
    for (i, step) in stage.steps.iter().enumerate() {
        if exec.cancel.is_cancelled() {
            return Err(ExecuteError::Cancelled);
        }
        let ev = event(setup, steps, i + 2, step.original.trim());
        let started = Instant::now();
        exec.progress.step_started(&ev);
        let previous = stage.steps.get(..i).unwrap_or_default();
        let ctx = StepContext { exec, rootfs: &rootfs, plan: setup.plan, earlier, event: ev, previous };
        let keyword = step.instruction.keyword();
        let effect = instructions::apply(step, &mut config, &ctx)
            .map_err(|e| ExecuteError::step(keyword, step.location, e))?;
        let layer = match effect {
            StepEffect::ConfigOnly => None,
            StepEffect::Filesystem => snapshot(exec, &rootfs, &index)
                .map_err(|source| ExecuteError::Snapshot { instruction: keyword, line: step.location.start_line, source })?,
        };
        config.history.push(History {
            created: Some(exec.created.clone()),
            created_by: Some(format!("{} # rbuild", step.original.trim())),
            empty_layer: layer.is_none(),
            ..History::default()
        });
        let size = layer.as_ref().map(|l| l.descriptor.size);
        layers.extend(layer);
        exec.progress.step_finished(&ev, &StepReport { elapsed: started.elapsed(), layer_size: size, cached: false });
    }
    let rootfs = keep_for_later_stages(exec, setup, &layers, rootfs, &dir)?;
    Ok(StageOutput { rootfs, config, layers })
}

/// A stage built in place leaves the shared root to the next stage; when a later stage
/// depends on it (`COPY --from`), its layers are unpacked again into a directory of its own.
fn keep_for_later_stages(
    exec: &Executor<'_>,
    setup: &StageSetup<'_>,
    layers: &[ImageLayer],
    rootfs: PathBuf,
    dir: &Path,
) -> Result<PathBuf, ExecuteError> {
    let index = setup.stage.index;
    if !exec.roots.in_place() || !setup.plan.stages.iter().any(|s| s.needed && s.depends_on.contains(&index)) {
        return Ok(rootfs);
    }
    let copy = dir.join("rootfs");
    materialise(exec, &StageRoots::Fresh, setup.stage, layers, &copy, &dir.join("index-copy"))?;
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

/// The config and layers a stage starts from.
fn base_state(
    stage: &Stage,
    bases: &BaseSet,
    earlier: &[Option<StageOutput>],
) -> Result<(ImageConfig, Vec<ImageLayer>), ExecuteError> {
    let base_err = |source| ExecuteError::Base { stage: stage.display_name(), source: Box::new(source) };
    let (config, layers) = match &stage.base {
        Base::Scratch => (ImageConfig::default(), Vec::new()),
        Base::Image { reference } => {
            let base = bases.get(reference, &stage.platform).map_err(base_err)?;
            if !base.config.config.on_build.is_empty() {
                return Err(base_err(BaseError::Onbuild {
                    instruction: "FROM",
                    reference: reference.clone(),
                    triggers: base.config.config.on_build.clone(),
                }));
            }
            (base.config.clone(), base.layers.clone())
        }
        Base::Stage { index } => {
            let out = earlier.get(*index).and_then(Option::as_ref).ok_or(ExecuteError::TargetMissing { index: *index })?;
            (out.config.clone(), out.layers.clone())
        }
    };
    let mut config = config;
    config.architecture = stage.platform.architecture.clone();
    config.os = stage.platform.os.clone();
    config.variant = stage.platform.variant.clone();
    Ok((config, layers))
}

/// Empties `rootfs` the way `roots` says, unpacks `layers` into it and writes the snapshot index.
fn materialise(
    exec: &Executor<'_>,
    roots: &StageRoots,
    stage: &Stage,
    layers: &[ImageLayer],
    rootfs: &Path,
    index: &Path,
) -> Result<(), ExecuteError> {
    let work_err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| ExecuteError::WorkDir { path, source }
    };
    if let Some(parent) = index.parent() {
        std::fs::create_dir_all(parent).map_err(work_err(parent))?;
    }
    roots.prepare(rootfs).map_err(work_err(rootfs))?;
    let excluded = roots.exclusions();
    let root = RootDir::open(rootfs)
        .map_err(|e| ExecuteError::WorkDir { path: rootfs.to_path_buf(), source: std::io::Error::other(e) })?;
    let opts = UnpackOptions { ownership: exec.identity.unpack_ownership() };
    let reference = base_name(stage);
    for layer in layers {
        let blob = File::open(&layer.blob).map_err(|source| ExecuteError::Base {
            stage: stage.display_name(),
            source: Box::new(BaseError::Store { reference: reference.clone(), source: StoreError::Io { path: layer.blob.clone(), source } }),
        })?;
        unpack_layer_excluding(&root, layer.descriptor.codec, std::io::BufReader::new(blob), &opts, &excluded).map_err(|source| {
            ExecuteError::Base { stage: stage.display_name(), source: Box::new(BaseError::Unpack { reference: reference.clone(), source }) }
        })?;
    }
    native::write_index_excluding(rootfs, index, &excluded)
        .map_err(|e| ExecuteError::WorkDir { path: index.to_path_buf(), source: std::io::Error::other(e) })?;
    Ok(())
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
