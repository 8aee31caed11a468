//! The build plan: stages with expanded instructions, their dependency edges, ARG scoping,
//! and `--target` pruning. This is what `rbuild plan` prints and what the executor runs.

mod graph;
mod onbuild;
mod scope;
mod stage;

/// Target and build platforms; one type for the whole of rbuild.
pub use rbuild_cache::platform::{PlatformError, TargetPlatform as Platform};
pub use stage::{Base, Stage, Step};

use crate::dockerfile::instruction::{InstructionErrorKind, Located};
use crate::dockerfile::{Dockerfile, Location, Warning};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};

/// What the plan depends on besides the Dockerfile.
#[derive(Debug, Clone)]
pub struct PlanRequest {
    /// `--build-arg K=V` values.
    pub build_args: BTreeMap<String, String>,
    /// `--target`: the stage to build (default: the last).
    pub target: Option<String>,
    /// The platform the image is built for (`TARGETPLATFORM`).
    pub platform: Platform,
    /// The platform the build runs on (`BUILDPLATFORM`).
    pub build_platform: Platform,
}

impl PlanRequest {
    /// A request for the host platform with no build args and no target.
    pub fn host() -> Self {
        Self { build_args: BTreeMap::new(), target: None, platform: Platform::host(), build_platform: Platform::host() }
    }
}

/// The environment a base image brings; the executor answers from the resolved image config,
/// `rbuild plan` (which resolves nothing) answers nothing.
pub trait BaseImages {
    /// ENV of `image` for `platform`, if known.
    fn env(&self, image: &str, platform: &Platform) -> Option<Vec<(String, String)>>;

    /// ONBUILD triggers of `image` for `platform` (the config's `OnBuild`), if known.
    fn onbuild(&self, _image: &str, _platform: &Platform) -> Option<Vec<String>> {
        None
    }
}

/// A [`BaseImages`] that knows no image.
pub struct UnresolvedBases;

impl BaseImages for UnresolvedBases {
    fn env(&self, _image: &str, _platform: &Platform) -> Option<Vec<(String, String)>> {
        None
    }
}

/// The resolved plan.
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    pub stages: Vec<Stage>,
    /// Index of the stage that becomes the image.
    pub target: usize,
    /// ARGs declared before the first FROM, with their values (plus the automatic ones).
    pub global_args: BTreeMap<String, String>,
    /// `--build-arg` proxy values, passed to RUN without a declaration and kept out of history.
    pub proxy_args: BTreeMap<String, String>,
    pub warnings: Vec<Warning>,
}

/// Why a Dockerfile cannot be planned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanErrorKind {
    #[error("{0}")]
    Instruction(#[from] InstructionErrorKind),
    #[error("no build stage in current context: {keyword} must come after FROM")]
    NoStage { keyword: &'static str },
    #[error("the Dockerfile has no FROM instruction")]
    NoFrom,
    #[error("duplicate stage name {name:?}")]
    DuplicateStage { name: String },
    #[error("target stage {name:?} could not be found")]
    UnknownTarget { name: String },
    #[error("invalid stage index {index}: the Dockerfile has {count} stages")]
    StageIndex { index: usize, count: usize },
    #[error("circular dependency detected on stage: {stages}")]
    Cycle { stages: String },
    #[error("{0}")]
    Platform(#[from] PlatformError),
    /// A base image's ONBUILD trigger cannot run.
    #[error("ONBUILD trigger {trigger:?} of the base image: {reason}")]
    Onbuild { trigger: String, reason: String },
}

/// A planning failure and the instruction it concerns (none for whole-file errors).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind}")]
pub struct PlanError {
    pub location: Option<Location>,
    pub kind: PlanErrorKind,
}

/// Build args that are passed to RUN without being declared (Docker's predefined ARGs).
pub const PROXY_ARGS: &[&str] = &[
    "HTTP_PROXY",
    "http_proxy",
    "HTTPS_PROXY",
    "https_proxy",
    "FTP_PROXY",
    "ftp_proxy",
    "NO_PROXY",
    "no_proxy",
    "ALL_PROXY",
    "all_proxy",
];

impl Plan {
    /// The stage a `--from` value names: its name (case-insensitive) or its index.
    pub fn stage_named(&self, from: &str) -> Option<&Stage> {
        self.stages
            .iter()
            .find(|s| s.name.as_deref().is_some_and(|n| n.eq_ignore_ascii_case(from)) || s.index.to_string() == from)
    }

    /// Types, expands and links the instructions of a parsed Dockerfile.
    pub fn resolve(df: &Dockerfile, request: &PlanRequest, bases: &dyn BaseImages) -> Result<Self, PlanError> {
        let located = type_instructions(df)?;
        let first_from = located
            .iter()
            .position(|l| l.instruction.keyword() == "FROM")
            .ok_or(PlanError { location: None, kind: PlanErrorKind::NoFrom })?;
        let (global, staged) = located.split_at(first_from);
        if let Some(bad) = global.iter().find(|l| l.instruction.keyword() != "ARG") {
            return Err(PlanError {
                location: Some(bad.location),
                kind: PlanErrorKind::NoStage { keyword: bad.instruction.keyword() },
            });
        }
        let mut planner = stage::Planner::new(df.escape, request, bases);
        planner.global_args(global)?;
        planner.stages(staged)?;
        let mut warnings = df.warnings.clone();
        if let Some(syntax) = &df.directives.syntax {
            warnings.push(Warning {
                line: 1,
                message: format!("syntax directive {syntax:?} ignored: rbuild uses its built-in Dockerfile frontend"),
            });
        }
        planner.finish(warnings)
    }
}

fn type_instructions(df: &Dockerfile) -> Result<Vec<Located>, PlanError> {
    df.instructions
        .iter()
        .map(|node| {
            crate::dockerfile::instruction::Instruction::from_node(node)
                .map(|instruction| Located { instruction, location: node.location, original: node.original.clone() })
                .map_err(|e| PlanError { location: Some(node.location), kind: e.into() })
        })
        .collect()
}

/// Names of build args nobody declared (proxy args excepted), for the "not consumed" warning.
fn unconsumed(request: &PlanRequest, consumed: &BTreeSet<String>) -> Vec<String> {
    request.build_args.keys().filter(|k| !consumed.contains(*k) && !PROXY_ARGS.contains(&k.as_str())).cloned().collect()
}
