//! A stage's root directory, materialised lazily: only when a step misses the cache and needs
//! the filesystem (or a later stage's `COPY --from` needs it) are the layers so far fetched
//! (if not in the blob store) and unpacked; cached steps before it cost nothing.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use super::base::BaseError;
use super::isolation::StageRoots;
use super::stage::StageOutput;
use super::{ExecuteError, Executor};
use crate::dockerfile::instruction::Instruction;
use crate::image::ImageLayer;
use crate::layer::root_path::RootDir;
use crate::layer::snapshot::native;
use crate::layer::unpack::UnpackOptions;
use crate::layer::verify::unpack_verified;
use crate::plan::{Plan, Step};

/// A stage root and how many of the stage's layers are unpacked into it.
#[derive(Debug)]
pub struct LazyRoot {
    /// The root on the host.
    pub rootfs: PathBuf,
    /// The native snapshotter's index of it.
    pub index: PathBuf,
    /// The stage's name (for errors).
    stage: String,
    /// Where the root lives (a fresh directory, or in place under container isolation).
    roots: StageRoots,
    /// `None` until first materialised; then the number of layers unpacked.
    applied: Mutex<Option<usize>>,
}

impl LazyRoot {
    /// A root for the stage whose work directory is `dir`; nothing is created yet. Under
    /// [`StageRoots::InPlace`] the root is the shared one, wiped when first materialised.
    pub fn new(dir: &Path, stage: String, roots: &StageRoots) -> Self {
        let rootfs = roots.stage_root(&dir.join("rootfs"));
        Self { rootfs, index: dir.join("index"), stage, roots: roots.clone(), applied: Mutex::new(None) }
    }

    /// Makes the root hold exactly `layers` (a prefix of them may already be unpacked):
    /// fetches the missing blobs, unpacks the rest on top and re-indexes it.
    pub fn ensure(&self, exec: &Executor<'_>, layers: &[ImageLayer]) -> Result<(), ExecuteError> {
        let mut applied = self.applied.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let start = match *applied {
            Some(n) if n == layers.len() => return Ok(()),
            Some(n) if n < layers.len() => n,
            _ => {
                self.fresh_dir()?;
                0
            }
        };
        let todo = layers.get(start..).unwrap_or_default();
        if let Some(remote) = exec.remote {
            remote
                .fetch(exec.store, todo, |_| false)
                .map_err(|source| ExecuteError::Fetch { stage: self.stage.clone(), source: Box::new(source) })?;
        }
        self.unpack(exec, todo)?;
        native::write_index_excluding(&self.rootfs, &self.index, &self.roots.exclusions())
            .map_err(|e| ExecuteError::WorkDir { path: self.index.clone(), source: std::io::Error::other(e) })?;
        *applied = Some(layers.len());
        Ok(())
    }

    /// Records that the root now holds `count` layers (after a step's snapshot).
    pub fn committed(&self, count: usize) {
        *self.applied.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(count);
    }

    fn fresh_dir(&self) -> Result<(), ExecuteError> {
        if let Some(parent) = self.index.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|source| ExecuteError::WorkDir { path: parent.to_path_buf(), source })?;
        }
        self.roots.prepare(&self.rootfs).map_err(|source| ExecuteError::WorkDir { path: self.rootfs.clone(), source })
    }

    fn unpack(&self, exec: &Executor<'_>, layers: &[ImageLayer]) -> Result<(), ExecuteError> {
        let root = RootDir::open(&self.rootfs)
            .map_err(|e| ExecuteError::WorkDir { path: self.rootfs.clone(), source: std::io::Error::other(e) })?;
        let opts = UnpackOptions { ownership: exec.identity.unpack_ownership() };
        let reference = format!("layers of stage {}", self.stage);
        let excluded = self.roots.exclusions();
        for layer in layers {
            let d = &layer.descriptor;
            unpack_verified(&root, &layer.blob, (d.codec, d.digest.digest(), d.diff_id.digest()), &opts, &excluded)
                .map_err(|source| ExecuteError::Base {
                    stage: self.stage.clone(),
                    source: Box::new(BaseError::Unpack { reference: reference.clone(), source }),
                })?;
        }
        Ok(())
    }
}

/// Materialises the roots of the earlier stages a step reads (`COPY --from`,
/// `RUN --mount=from=`), which may have been fully cached and never unpacked.
pub fn ensure_referenced(
    exec: &Executor<'_>,
    plan: &Plan,
    step: &Step,
    earlier: &[Option<StageOutput>],
) -> Result<(), ExecuteError> {
    let froms: Vec<&String> = match &step.instruction {
        Instruction::Copy(c) | Instruction::Add(c) => c.from.iter().collect(),
        Instruction::Run(r) => r.mounts.iter().filter_map(|m| m.from.as_ref()).collect(),
        _ => Vec::new(),
    };
    for from in froms {
        if let Some(output) = plan.stage_named(from).and_then(|s| earlier.get(s.index)).and_then(Option::as_ref) {
            output.root.ensure(exec, &output.layers)?;
        }
    }
    Ok(())
}
