//! `rbuild cache prune`: `--cache-repo REPO --older-than DURATION` deletes registry cache
//! entries written longer ago than DURATION (where the registry allows deletes);
//! `--local [--max-size SIZE] [--older-than DURATION]` cleans `--cache-dir`.

use anyhow::Context as _;
use indicatif::HumanBytes;
use std::path::PathBuf;
use std::sync::Arc;

use rbuild_cache::cache_dir::PrunePolicy;
use rbuild_cache::reference::Reference;
use rbuild_cache::registry::RegistryClient;
use rbuild_cache::remote_cache::RemoteCache;

use crate::exit;
use crate::registry_args::RegistryArgs;

/// `rbuild cache …`.
#[derive(Debug, clap::Subcommand)]
pub enum CacheCommand {
    /// Delete registry cache entries older than `--older-than` (`--cache-repo`), or clean
    /// the local state of `--cache-dir` (`--local`).
    Prune(PruneArgs),
}

/// Arguments of `rbuild cache prune`.
#[derive(Debug, clap::Args)]
pub struct PruneArgs {
    /// The cache repository.
    #[arg(long, value_name = "REPO", required_unless_present = "local", conflicts_with = "local")]
    pub cache_repo: Option<String>,
    /// Delete entries written (`--local`: files last used) longer ago than this (Go
    /// duration: `336h`, `7d`, `90s`).
    #[arg(long, value_name = "DURATION", value_parser = crate::duration::parse_duration, required_unless_present_any = ["local"])]
    pub older_than: Option<std::time::Duration>,
    /// Clean the local state (`--cache-dir`) instead: blobs, local cache entries, push
    /// records and `RUN --mount=type=cache` directories; work directories are left alone.
    #[arg(long)]
    pub local: bool,
    /// With `--local`: then remove the least recently used until at most SIZE remains
    /// (`10GiB`, `500MB`, `2G`).
    #[arg(long, value_name = "SIZE", value_parser = crate::size::parse_size, requires = "local")]
    pub max_size: Option<u64>,
    /// With `--local`: the directory (default: `$XDG_CACHE_HOME/rbuild`, as `rbuild build`).
    #[arg(long, value_name = "DIR", env = "RBUILD_CACHE_DIR", requires = "local")]
    pub cache_dir: Option<PathBuf>,
    #[command(flatten)]
    pub registry: RegistryArgs,
}

/// Run `rbuild cache …`.
pub fn run(command: &CacheCommand) -> anyhow::Result<()> {
    let CacheCommand::Prune(args) = command;
    match (&args.cache_repo, args.older_than) {
        (Some(repo), Some(older_than)) => prune_registry(args, repo, older_than),
        _ => prune_local(args),
    }
}

fn prune_registry(args: &PruneArgs, repo: &str, older_than: std::time::Duration) -> anyhow::Result<()> {
    let repository: Reference =
        repo.parse().with_context(|| format!("invalid --cache-repo {repo:?}")).map_err(exit::usage)?;
    let client = Arc::new(RegistryClient::new(args.registry.to_config())?);
    let cache = RemoteCache::new(client, repository, older_than);
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    let report = runtime.block_on(cache.prune(older_than, crate::settings::now_secs()))?;
    eprintln!(
        "prune: {} entries deleted, {} kept, {} other tags left alone",
        report.deleted, report.kept, report.skipped
    );
    Ok(())
}

fn prune_local(args: &PruneArgs) -> anyhow::Result<()> {
    if args.older_than.is_none() && args.max_size.is_none() {
        return Err(exit::usage(anyhow::anyhow!(
            "cache prune --local needs --older-than DURATION, --max-size SIZE or both"
        )));
    }
    let dir = match &args.cache_dir {
        Some(d) => d.clone(),
        None => crate::settings::default_cache_dir()?,
    };
    // What killed builds left (work directories, half-written store files) goes first, whatever
    // the policy: no process owns it any more. Running builds' files stay.
    let swept = rbuild_cache::state::sweep_dead(&dir, &dir.join("store"));
    if swept.build_dirs + swept.temp_files > 0 {
        eprintln!(
            "prune {}: {} work directories and {} partial downloads of killed builds removed",
            dir.display(),
            swept.build_dirs,
            swept.temp_files
        );
    }
    let policy = PrunePolicy { older_than: args.older_than, max_size: args.max_size };
    let report = rbuild_cache::cache_dir::prune(&dir, policy, std::time::SystemTime::now())?;
    eprintln!(
        "prune {}: {} items removed ({}), {} kept ({})",
        dir.display(),
        report.removed,
        HumanBytes(report.removed_bytes),
        report.kept,
        HumanBytes(report.kept_bytes)
    );
    Ok(())
}
