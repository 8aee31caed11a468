//! Command-line syntax only (clap structs); [`crate::settings`] turns it into library options.

use crate::commands::inspect::InspectArgs;
use crate::commands::pull::PullArgs;
use crate::isolation_args::IsolationArgs;
use crate::progress::ProgressMode;
use crate::registry_args::RegistryArgs;
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

/// `-V`: the version and the commit the binary was built from (see `cmd/build.rs`).
const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), " (", env!("RBUILD_COMMIT_SHORT"), ")");
/// `--version`: also the full commit, profile, target and cargo features.
const LONG_VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    "\ncommit: ",
    env!("RBUILD_COMMIT"),
    "\nprofile: ",
    env!("RBUILD_PROFILE"),
    ", target: ",
    env!("RBUILD_TARGET"),
    "\nfeatures: ",
    env!("RBUILD_FEATURES")
);

/// rbuild: a rootless, daemonless container image builder.
#[derive(Debug, Parser)]
#[command(name = "rbuild", version = VERSION, long_version = LONG_VERSION, about, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// Log filter (`info`, `debug`, `rbuild_cache=trace`, ...); `RUST_LOG` works too.
    #[arg(long, visible_alias = "verbosity", global = true, env = "RBUILD_LOG", default_value = "warn")]
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
    /// Prefetch base images into a local directory (Kaniko's warmer); to fill the registry
    /// cache without pushing an image, use `rbuild build --cache-only`.
    Warm(crate::commands::warm::WarmArgs),
    /// Manage the registry layer cache.
    #[command(subcommand)]
    Cache(crate::commands::cache::CacheCommand),
    /// Assemble a multi-platform image index from images pushed by digest.
    #[command(subcommand)]
    Index(crate::commands::index::IndexCommand),
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
    /// Target platform(s), `os/arch[/variant]`, comma-separated for a multi-platform image
    /// index (default: the host's); Kaniko's `--custom-platform`.
    #[arg(long = "platform", visible_alias = "custom-platform", env = "RBUILD_PLATFORM")]
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
    /// With `--commit-suffix auto`: build a context with uncommitted changes anyway, tagged
    /// `<tag>-<sha>-dirty` (without it such a build is refused).
    #[arg(long, requires = "commit_suffix")]
    pub allow_dirty: bool,
    /// Pipeline form: also push `latest`.
    #[arg(long, requires = "image")]
    pub latest: bool,
    /// Build only; push nothing.
    #[arg(long)]
    pub no_push: bool,
    /// Push the image (or the multi-platform index) by digest only, moving no tag; the
    /// per-architecture half of a fan-out that `rbuild index append` merges.
    #[arg(long)]
    pub push_by_digest: bool,
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
    /// Progress display: `auto` (live view when stderr is a terminal, else plain), `plain`,
    /// `tty`, `json` (one JSON event per line on stdout).
    #[arg(long, value_enum, value_name = "MODE", default_value_t = ProgressMode::Auto, env = "RBUILD_PROGRESS")]
    pub progress: ProgressMode,
    /// Write `build.json` (digest, pushed references, per-step cache and timing stats) and
    /// `digest` into this directory, for a workflow to pick up.
    #[arg(long, value_name = "DIR")]
    pub output_dir: Option<PathBuf>,
    #[command(flatten)]
    pub kaniko: KanikoNoOps,
    /// Use OCI media types for the manifest and layers (default: Docker's).
    #[arg(long)]
    pub oci_mediatypes: bool,
    /// Reproducible output: timestamps clamped to `SOURCE_DATE_EPOCH` (0 when unset).
    #[arg(long)]
    pub reproducible: bool,
    /// Add a label to the image, `KEY=VALUE`; repeatable.
    #[arg(long = "label", value_name = "KEY=VALUE")]
    pub labels: Vec<String>,
    /// A secret for `RUN --mount=type=secret` (BuildKit's syntax): `id=ID,src=PATH` or
    /// `id=ID,env=VAR`; repeatable. Never stored in the image, its history or the logs.
    #[arg(long = "secret", value_name = "id=ID,src=PATH|env=VAR")]
    pub secrets: Vec<String>,
    /// Local state: blob store, `RUN --mount=type=cache` directories and work directories
    /// (default: `$XDG_CACHE_HOME/rbuild`).
    #[arg(long, value_name = "DIR", env = "RBUILD_CACHE_DIR")]
    pub cache_dir: Option<PathBuf>,
    #[command(flatten)]
    pub cache: CacheFlags,
}

/// The registry layer cache (Kaniko's names where Kaniko has them).
#[derive(Debug, Args)]
pub struct CacheFlags {
    /// Use the registry layer cache (Kaniko's `--cache=true`); without `--cache-repo` the
    /// cache repository is `<first destination repository>/cache`.
    #[arg(long, num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    pub cache: Option<bool>,
    /// Repository holding the cache entries (one manifest per step key); implies `--cache`.
    #[arg(long, value_name = "REPO")]
    pub cache_repo: Option<String>,
    /// Entries older than this miss (Go duration: `336h`, `1h30m`, `90s`).
    #[arg(long, value_name = "DURATION", default_value = "336h", value_parser = crate::duration::parse_duration)]
    pub cache_ttl: std::time::Duration,
    /// `max` caches every stage that runs; `min` only the stages whose layers are in the image.
    #[arg(long, value_enum, default_value = "max")]
    pub cache_mode: CacheModeArg,
    /// Print, for each step, cache hit or miss and on a miss which part of its key changed.
    #[arg(long)]
    pub explain_cache: bool,
    /// Build and fill the cache, but push no image (the nightly warm).
    #[arg(long)]
    pub cache_only: bool,
}

/// `--cache-mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum CacheModeArg {
    Min,
    Max,
}

/// Kaniko flags for behaviour rbuild always has, accepted so that Kaniko templates run
/// unchanged. Their values are not used.
#[derive(Debug, Args)]
pub struct KanikoNoOps {
    /// Accepted for Kaniko compatibility: rbuild always skips stages the target does not need.
    #[arg(long, num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    pub skip_unused_stages: Option<bool>,
    /// Accepted for Kaniko compatibility: rbuild always removes its work directory and never
    /// writes outside it.
    #[arg(long, num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    pub cleanup: Option<bool>,
    /// Accepted for Kaniko compatibility: rbuild's snapshots never hash the base filesystem.
    #[arg(long, value_name = "full|redo|time")]
    pub snapshot_mode: Option<String>,
    /// Accepted for Kaniko compatibility: rbuild's RUN snapshot is always the new one.
    #[arg(long, num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    pub use_new_run: Option<bool>,
    /// Accepted for Kaniko compatibility: rbuild streams layers, never holding one in memory.
    #[arg(long, num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    pub compressed_caching: Option<bool>,
}
