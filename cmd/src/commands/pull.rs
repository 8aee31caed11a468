//! `rbuild pull IMAGE --oci-layout DIR [--platform P]`: download an image into an OCI layout.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use rbuild_cache::reference::Reference;
use rbuild_cache::registry::{PulledImage, RegistryClient};
use rbuild_cache::store::BlobStore;
use serde_json::json;

use crate::registry_args::{image_and_platform, RegistryArgs};

/// Arguments of `rbuild pull`.
#[derive(Debug, Clone, clap::Args)]
pub struct PullArgs {
    /// Image reference (`busybox`, `reg.io/team/app:v1`, `app@sha256:…`).
    pub image: String,
    /// Directory of the OCI image layout to write (created if missing; blobs are shared).
    #[arg(long, value_name = "DIR")]
    pub oci_layout: PathBuf,
    /// Platform to pick from a multi-platform image (`os/arch[/variant]`; default: host).
    #[arg(long)]
    pub platform: Option<String>,
    #[command(flatten)]
    pub registry: RegistryArgs,
}

/// Run `rbuild pull`.
pub fn run(args: &PullArgs) -> anyhow::Result<()> {
    let (reference, platform) = image_and_platform(&args.image, args.platform.as_deref())?;
    let client = RegistryClient::new(args.registry.to_config())?;
    let store = BlobStore::open(&args.oci_layout)?;
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    let pulled = runtime.block_on(client.pull(&reference, &platform, &store))?;
    write_layout_index(&args.oci_layout, &reference, &pulled)?;
    println!("{}", pulled.resolved.manifest.digest);
    Ok(())
}

/// Write `oci-layout` and add (or replace) the image's entry in `index.json`.
fn write_layout_index(dir: &Path, reference: &Reference, pulled: &PulledImage) -> anyhow::Result<()> {
    std::fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#)
        .with_context(|| format!("writing {}/oci-layout", dir.display()))?;
    let name = reference.tag().map(str::to_owned).unwrap_or_else(|| pulled.resolved.manifest.digest.to_string());
    let index_path = dir.join("index.json");
    let mut manifests: Vec<serde_json::Value> = match std::fs::read(&index_path) {
        Ok(bytes) => {
            let index: serde_json::Value = serde_json::from_slice(&bytes)
                .with_context(|| format!("{} is not valid json", index_path.display()))?;
            index["manifests"].as_array().cloned().unwrap_or_default()
        }
        Err(_) => Vec::new(),
    };
    manifests.retain(|m| m["annotations"]["org.opencontainers.image.ref.name"] != json!(name));
    let manifest = &pulled.resolved.manifest;
    manifests.push(json!({
        "mediaType": manifest.kind.media_type(),
        "digest": manifest.digest.to_string(),
        "size": manifest.bytes.len(),
        "annotations": { "org.opencontainers.image.ref.name": name },
    }));
    let index = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": manifests,
    });
    let tmp = dir.join(".index.json.tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(&index)?).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, &index_path).with_context(|| format!("writing {}", index_path.display()))?;
    Ok(())
}
