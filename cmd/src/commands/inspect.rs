//! `rbuild inspect IMAGE [--raw]`: print an image's manifest and config as JSON, to check
//! credentials and a registry without building anything.

use std::io::Write as _;

use anyhow::Context as _;
use rbuild_cache::registry::RegistryClient;
use serde_json::json;

use crate::registry_args::{image_and_platform, RegistryArgs};

/// Arguments of `rbuild inspect`.
#[derive(Debug, Clone, clap::Args)]
pub struct InspectArgs {
    /// Image reference.
    pub image: String,
    /// Print the top-level manifest exactly as the registry serves it (no platform selection).
    #[arg(long)]
    pub raw: bool,
    /// Platform to pick from a multi-platform image (`os/arch[/variant]`; default: host).
    #[arg(long)]
    pub platform: Option<String>,
    #[command(flatten)]
    pub registry: RegistryArgs,
}

/// Run `rbuild inspect`.
pub fn run(args: &InspectArgs) -> anyhow::Result<()> {
    let (reference, platform) = image_and_platform(&args.image, args.platform.as_deref())?;
    let client = RegistryClient::new(args.registry.to_config())?;
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    let mut stdout = std::io::stdout().lock();
    if args.raw {
        let raw = runtime.block_on(client.get_raw_manifest(&reference))?;
        stdout.write_all(&raw.bytes)?;
        return Ok(());
    }
    let resolved = runtime.block_on(client.resolve(&reference, &platform))?;
    let config = runtime.block_on(client.fetch_config(&resolved))?;
    let manifest: serde_json::Value = serde_json::from_slice(&resolved.manifest.bytes)?;
    let config: serde_json::Value = serde_json::from_slice(&config)?;
    let out = json!({
        "reference": reference.to_string(),
        "digest": resolved.manifest.digest.to_string(),
        "mediaType": resolved.manifest.kind.media_type(),
        "indexDigest": resolved.index.as_ref().map(|i| i.digest.to_string()),
        "manifest": manifest,
        "config": config,
    });
    serde_json::to_writer_pretty(&mut stdout, &out)?;
    writeln!(stdout)?;
    Ok(())
}
