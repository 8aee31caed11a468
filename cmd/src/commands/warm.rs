//! `rbuild warm --image IMG… [--cache-dir DIR]`: prefetch base images into the local blob
//! store (Kaniko's warmer), so builds of pods that mount DIR as `--cache-dir` find their
//! base layers locally. Filling the registry cache is `rbuild build --cache-only`.

use std::path::PathBuf;

use anyhow::Context as _;
use rbuild_cache::registry::RegistryClient;
use rbuild_cache::store::BlobStore;

use crate::registry_args::{image_and_platform, RegistryArgs};

/// Arguments of `rbuild warm`.
#[derive(Debug, clap::Args)]
pub struct WarmArgs {
    /// Image to prefetch; repeatable (Kaniko warmer's `--image`).
    #[arg(short = 'i', long = "image", value_name = "IMAGE", required = true)]
    pub images: Vec<String>,
    /// The local state directory builds use as `--cache-dir` (default: `$XDG_CACHE_HOME/rbuild`).
    #[arg(long, value_name = "DIR", env = "RBUILD_CACHE_DIR")]
    pub cache_dir: Option<PathBuf>,
    /// Platform to pick from multi-platform images (`os/arch[/variant]`; default: host).
    #[arg(long)]
    pub platform: Option<String>,
    #[command(flatten)]
    pub registry: RegistryArgs,
}

/// Run `rbuild warm`.
pub fn run(args: &WarmArgs) -> anyhow::Result<()> {
    let dir = match &args.cache_dir {
        Some(d) => d.clone(),
        None => crate::settings::default_cache_dir()?,
    };
    let store = BlobStore::open(dir.join("store"))?;
    let client = RegistryClient::new(args.registry.to_config())?;
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    let (mut present, mut fetched, mut bytes) = (0usize, 0usize, 0u64);
    for image in &args.images {
        let (reference, platform) = image_and_platform(image, args.platform.as_deref())?;
        let resolved = runtime.block_on(client.resolve(&reference, &platform))?;
        for layer in resolved.image.layers() {
            if store.size(layer.digest()) == Some(layer.size()) {
                present += 1;
            } else {
                fetched += 1;
                bytes += layer.size();
            }
        }
        let pulled = runtime
            .block_on(client.pull(&reference, &platform, &store))
            .with_context(|| format!("prefetching {image}"))?;
        eprintln!("warmed {image}@{}", pulled.resolved.manifest.digest);
    }
    eprintln!("warm: {present} layer(s) already present, {fetched} fetched ({bytes} bytes) into {}", dir.display());
    Ok(())
}
