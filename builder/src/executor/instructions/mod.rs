//! One file per instruction family; [`apply`] dispatches a step and says whether it may have
//! changed the filesystem (then the stage snapshots it).

pub mod add;
mod copy;
pub mod copy_source;
mod metadata;
mod run;
mod run_heredoc;
mod run_mount;
mod workdir;

use std::path::{Path, PathBuf};

use super::base::BaseSet;
use super::context::ContextError;
use super::progress::StepEvent;
use super::stage::StageOutput;
use super::Executor;
use crate::dockerfile::instruction::Instruction;
use crate::image::ImageConfig;
use crate::layer::root_path::RootPathError;
use crate::plan::{Plan, Step};
use crate::sandbox::{SandboxError, UserError};

/// What a step did, as far as snapshotting is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepEffect {
    /// Only the image config changed: an `empty_layer` history entry.
    ConfigOnly,
    /// The root may have changed: diff it.
    Filesystem,
}

/// Read-only inputs of one step.
pub struct StepContext<'a> {
    pub exec: &'a Executor<'a>,
    /// The stage root on the host.
    pub rootfs: &'a Path,
    pub plan: &'a Plan,
    /// Outputs of the stages finished so far (for `COPY --from`).
    pub earlier: &'a [Option<StageOutput>],
    /// Pulled images (for `COPY --from=<image>`).
    pub bases: &'a BaseSet,
    pub event: StepEvent<'a>,
    /// The steps of this stage before this one (ENTRYPOINT keeps a CMD set among them).
    pub previous: &'a [Step],
    /// The stage's platform (a foreign one runs RUN under emulation).
    pub platform: &'a crate::plan::Platform,
}

/// Why a step failed.
#[derive(Debug, thiserror::Error)]
pub enum InstructionError {
    /// A feature the executor does not implement yet; never ignored silently.
    #[error("{feature} is not supported yet")]
    Unsupported { feature: String },
    /// The RUN's command exited non-zero (or was killed).
    #[error("process {command:?} did not complete successfully: exit code {code}{}", hint.map(|h| format!(" (hint: {h})")).unwrap_or_default())]
    RunFailed { command: String, code: i32, hint: Option<&'static str> },
    /// A RUN for a foreign platform that cannot be emulated here.
    #[error(transparent)]
    Emulation(#[from] crate::sandbox::emulation::EmulationError),
    /// No RUN isolation works here (the probe's verdict, reported by the first RUN).
    #[error("{reason}")]
    NoIsolation { reason: String },
    /// The sandbox could not run the command.
    #[error("cannot run {command:?}")]
    Sandbox {
        command: String,
        #[source]
        source: SandboxError,
    },
    /// USER or `--chown` names an unknown user or group.
    #[error("cannot resolve the user")]
    User(#[from] UserError),
    /// A destination path cannot be resolved inside the stage root.
    #[error("cannot resolve {path} in the stage root")]
    Resolve {
        path: String,
        #[source]
        source: RootPathError,
    },
    /// Reading the build context failed.
    #[error(transparent)]
    Context(#[from] ContextError),
    /// A COPY source matched nothing.
    #[error("{source_path:?} not found in {place}")]
    SourceMissing { source_path: String, place: String },
    /// `COPY --from` names no earlier stage.
    #[error("COPY --from={name}: no such stage before this one")]
    UnknownStage { name: String },
    /// `--chmod` is not an octal mode.
    #[error("invalid --chmod value {value:?}: expected an octal mode")]
    Chmod { value: String },
    /// An `--exclude` pattern does not compile.
    #[error("invalid --exclude pattern in {patterns:?}")]
    Exclude {
        patterns: Vec<String>,
        #[source]
        source: Box<crate::dockerignore::DockerIgnoreError>,
    },
    /// The image of a `COPY --from=<image>` was not pulled before the build (only an ONBUILD
    /// trigger, which the first planning pass cannot see, can name such an image).
    #[error("--from={image}: the image was not pulled before the build (is it named only by an ONBUILD trigger?)")]
    ImageNotPulled { image: String },
    /// The layers of a `COPY --from=<image>` image could not be fetched.
    #[error("cannot fetch the layers of {image} for COPY --from")]
    FromImageFetch {
        image: String,
        #[source]
        source: Box<rbuild_cache::registry::RegistryError>,
    },
    /// The image of a `COPY --from=<image>` cannot be unpacked.
    #[error("cannot unpack image {image} for --from")]
    FromImage {
        image: String,
        #[source]
        source: Box<crate::layer::unpack::UnpackError>,
    },
    /// ADD of an archive or URL failed.
    #[error(transparent)]
    Add(#[from] Box<add::AddError>),
    /// A `RUN --mount` cannot be set up as written.
    #[error("RUN --mount: {detail}")]
    Mount { detail: String },
    /// A file operation failed.
    #[error("cannot {op} {path}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl From<add::AddError> for InstructionError {
    fn from(e: add::AddError) -> Self {
        Self::Add(Box::new(e))
    }
}

impl InstructionError {
    pub(crate) fn unsupported(feature: impl Into<String>) -> Self {
        Self::Unsupported { feature: feature.into() }
    }

    pub(crate) fn io(op: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.to_path_buf();
        move |source| Self::Io { op, path, source }
    }
}

/// Applies one step to the stage root and config.
pub fn apply(step: &Step, config: &mut ImageConfig, ctx: &StepContext<'_>) -> Result<StepEffect, InstructionError> {
    match &step.instruction {
        Instruction::Run(run) => run::run(run, step, config, ctx),
        Instruction::Copy(copy) | Instruction::Add(copy) => copy::copy(copy, step.instruction.keyword(), config, ctx),
        Instruction::Workdir { path } => workdir::workdir(path, config, ctx),
        Instruction::From(_) => Err(InstructionError::unsupported("FROM inside a stage")),
        other => metadata::apply(other, config, ctx.previous).map(|()| StepEffect::ConfigOnly),
    }
}

/// The shell of shell-form commands: SHELL, or `/bin/sh -c`.
pub(crate) fn shell(config: &ImageConfig) -> Vec<String> {
    config.config.shell.clone().unwrap_or_else(|| vec!["/bin/sh".into(), "-c".into()])
}

/// A container path made absolute against the working directory (`/` when unset).
pub(crate) fn absolute(path: &str, config: &ImageConfig) -> String {
    if path.starts_with('/') {
        return path.to_string();
    }
    let cwd = config.config.working_dir.as_deref().unwrap_or("/");
    format!("{}/{}", cwd.trim_end_matches('/'), path)
}
