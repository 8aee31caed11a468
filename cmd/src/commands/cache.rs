//! `rbuild cache prune --cache-repo REPO --older-than DURATION`: deletes cache entries
//! written longer ago than DURATION (where the registry allows deletes).

use anyhow::Context as _;
use std::sync::Arc;

use rbuild_cache::reference::Reference;
use rbuild_cache::registry::RegistryClient;
use rbuild_cache::remote_cache::RemoteCache;

use crate::registry_args::RegistryArgs;

/// `rbuild cache …`.
#[derive(Debug, clap::Subcommand)]
pub enum CacheCommand {
    /// Delete cache entries older than `--older-than`.
    Prune(PruneArgs),
}

/// Arguments of `rbuild cache prune`.
#[derive(Debug, clap::Args)]
pub struct PruneArgs {
    /// The cache repository.
    #[arg(long, value_name = "REPO")]
    pub cache_repo: String,
    /// Delete entries written longer ago than this (Go duration: `336h`, `7d`, `90s`).
    #[arg(long, value_name = "DURATION", value_parser = crate::duration::parse_duration)]
    pub older_than: std::time::Duration,
    #[command(flatten)]
    pub registry: RegistryArgs,
}

/// Run `rbuild cache …`.
pub fn run(command: &CacheCommand) -> anyhow::Result<()> {
    let CacheCommand::Prune(args) = command;
    let repository: Reference = args.cache_repo.parse().with_context(|| format!("invalid --cache-repo {:?}", args.cache_repo))?;
    let client = Arc::new(RegistryClient::new(args.registry.to_config())?);
    let cache = RemoteCache::new(client, repository, args.older_than);
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    let report = runtime.block_on(cache.prune(args.older_than, crate::settings::now_secs()))?;
    eprintln!("prune: {} entries deleted, {} kept, {} other tags left alone", report.deleted, report.kept, report.skipped);
    Ok(())
}
