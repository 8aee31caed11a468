//! Command-line syntax only (clap structs); [`crate::settings`] turns it into library options.

use crate::commands::inspect::InspectArgs;
use crate::commands::pull::PullArgs;
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

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print the resolved build plan (stages, expanded instructions, dependencies) as JSON.
    Plan(PlanArgs),
    /// Download an image into an OCI layout directory.
    Pull(PullArgs),
    /// Print an image's manifest and config as JSON.
    Inspect(InspectArgs),
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
