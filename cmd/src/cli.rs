//! Command-line syntax only (clap structs); [`crate::settings`] turns it into library options.

use crate::commands::inspect::InspectArgs;
use crate::commands::pull::PullArgs;
use crate::isolation_args::IsolationArgs;
use crate::registry_args::RegistryArgs;
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

/// rbuild: a rootless, daemonless container image builder.
#[derive(Debug, Parser)]
#[command(name = "rbuild", version, about, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// Log filter (`info`, `debug`, `rbuild_cache=trace`, ...); `RUST_LOG` works too.
    #[arg(long, global = true, env = "RBUILD_LOG", default_value = "warn")]
    pub log_level: String,
}

// Parsed once per process: the size difference between variants does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print the resolved build plan (stages, expanded instructions, dependencies) as JSON.
    Plan(PlanArgs),
    /// Download an image into an OCI layout directory.
    Pull(PullArgs),
    /// Print an image's manifest and config as JSON.
    Inspect(InspectArgs),
    /// Build an image from a Dockerfile and push it.
    Build(BuildArgs),
}

/// What selects and parameterises a Dockerfile; shared by `plan` and `build`.
#[derive(Debug, Args)]
pub struct DockerfileArgs {
    /// The build context directory.
    #[arg(value_name = "CONTEXT", default_value = ".")]
    pub context_pos: PathBuf,
    /// The build context directory (Kaniko's `--context`); overrides the positional CONTEXT.
    #[arg(short = 'c', long = "context")]
    pub context: Option<PathBuf>,
    /// Path to the Dockerfile (default: CONTEXT/Dockerfile); relative paths are taken from
    /// the current directory, or from the context if not found there (as Kaniko does).
    #[arg(short = 'f', long = "dockerfile", visible_alias = "file")]
    pub dockerfile: Option<PathBuf>,
    /// A build argument, `KEY=VALUE`, or `KEY` to take the value from the environment.
    #[arg(long = "build-arg", value_name = "KEY[=VALUE]")]
    pub build_args: Vec<String>,
    /// Build this stage and what it needs, not the last stage.
    #[arg(long)]
    pub target: Option<String>,
    /// Target platform, `os/arch[/variant]` (default: the host's).
    #[arg(long = "platform", env = "RBUILD_PLATFORM")]
    pub platform: Option<String>,
}

#[derive(Debug, Args)]
pub struct PlanArgs {
    #[command(flatten)]
    pub dockerfile: DockerfileArgs,
}

/// `rbuild build` (Kaniko-compatible flag names where Kaniko has one).
#[derive(Debug, Args)]
pub struct BuildArgs {
    #[command(flatten)]
    pub dockerfile: DockerfileArgs,
    #[command(flatten)]
    pub registry: RegistryArgs,
    #[command(flatten)]
    pub isolation: IsolationArgs,
    /// Push to `REPO:TAG`; repeatable (Kaniko's `--destination`).
    #[arg(short = 'd', long = "destination", value_name = "REPO:TAG")]
    pub destinations: Vec<String>,
    /// Pipeline form: the repository to push to (with `--tag`).
    #[arg(long, value_name = "REPO")]
    pub image: Option<String>,
    /// Pipeline form: the tag (suffixed with `-<short sha>` by `--commit-suffix`).
    #[arg(long, value_name = "TAG", requires = "image")]
    pub tag: Option<String>,
    /// `auto` (read the context's git metadata) or a commit SHA; appends `-<7 chars>` to `--tag`.
    #[arg(long, value_name = "auto|SHA", requires = "tag")]
    pub commit_suffix: Option<String>,
    /// Pipeline form: also push `latest`.
    #[arg(long, requires = "image")]
    pub latest: bool,
    /// Build only; push nothing.
    #[arg(long)]
    pub no_push: bool,
    /// Write the image digest to this file.
    #[arg(long, value_name = "FILE")]
    pub digest_file: Option<PathBuf>,
    /// Write `REPO@DIGEST` lines to this file.
    #[arg(long, value_name = "FILE")]
    pub image_name_with_digest_file: Option<PathBuf>,
    /// Write `REPO:TAG@DIGEST` lines to this file.
    #[arg(long, value_name = "FILE")]
    pub image_name_tag_with_digest_file: Option<PathBuf>,
    /// Also write the image as a docker-archive tarball.
    #[arg(long, value_name = "FILE")]
    pub tar_path: Option<PathBuf>,
    /// Also write the image as an OCI image layout directory.
    #[arg(long, value_name = "DIR")]
    pub oci_layout_path: Option<PathBuf>,
    /// Use OCI media types for the manifest and layers (default: Docker's).
    #[arg(long)]
    pub oci_mediatypes: bool,
    /// Reproducible output: timestamps clamped to `SOURCE_DATE_EPOCH` (0 when unset).
    #[arg(long)]
    pub reproducible: bool,
    /// Add a label to the image, `KEY=VALUE`; repeatable.
    #[arg(long = "label", value_name = "KEY=VALUE")]
    pub labels: Vec<String>,
    /// Local state: blob store and work directories (default: `$XDG_CACHE_HOME/rbuild`).
    #[arg(long, value_name = "DIR", env = "RBUILD_CACHE_DIR")]
    pub cache_dir: Option<PathBuf>,
}
