//! Fixture tool for scripts and benchmarks (not part of rbuild itself):
//!
//!   rbuild-fixture base-images REGISTRY [--ca PEM]   push busybox:latest and multiarch:latest
//!   rbuild-fixture random-layout DIR SIZE_MB         write an OCI layout with one random layer
//!   rbuild-fixture push-layout DIR REFERENCE [--ca PEM]  push a layout's image with rbuild's client
//!
//! Without `--ca` the registry is reached over plain HTTP. Credentials come from
//! `$DOCKER_CONFIG` / `~/.docker/config.json`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use rbuild_cache::reference::Reference;
use rbuild_cache::registry::{AuthConfig, ImageToPush, ManifestKind, RawManifest, RegistryClient, RegistryConfig};
use rbuild_cache::store::BlobStore;
use rbuild_integration::images::{write_image, write_layer, Entry, Flavor};

type Error = Box<dyn std::error::Error + Send + Sync>;

fn client_for(registry: &str, ca: Option<PathBuf>) -> Result<RegistryClient, Error> {
    let mut config = RegistryConfig::default();
    match ca {
        Some(ca) => config.ca_certificates.push(ca),
        None => config.insecure_registries.push(registry.to_owned()),
    }
    config.auth = AuthConfig {
        docker_config_dir: AuthConfig::default_config_dir(
            std::env::var_os("DOCKER_CONFIG"),
            std::env::var_os("HOME").map(PathBuf::from),
        ),
        ..AuthConfig::default()
    };
    Ok(RegistryClient::new(config)?)
}

fn ca_flag(args: &[String]) -> Option<PathBuf> {
    args.iter().position(|a| a == "--ca").and_then(|i| args.get(i + 1)).map(PathBuf::from)
}

fn random_layout(dir: &Path, size_mb: u64) -> Result<(), Error> {
    let store = BlobStore::open(dir)?;
    let data = dir.join(".random");
    {
        let mut urandom = std::io::Read::take(std::fs::File::open("/dev/urandom")?, size_mb << 20);
        std::io::copy(&mut urandom, &mut std::fs::File::create(&data)?)?;
    }
    let layer = write_layer(&store, &[Entry::HostFile("random.bin", &data, 0o644)])?;
    std::fs::remove_file(&data)?;
    let manifest = write_image(&store, Flavor::Oci, "amd64", None, &[layer])?;
    std::fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#)?;
    let index = serde_json::json!({"schemaVersion": 2, "manifests": [{
        "mediaType": manifest.kind.media_type(), "digest": manifest.digest.to_string(),
        "size": manifest.bytes.len(), "annotations": {"org.opencontainers.image.ref.name": "latest"}}]});
    std::fs::write(dir.join("index.json"), serde_json::to_vec(&index)?)?;
    Ok(())
}

async fn push_layout(dir: &Path, target: &str, ca: Option<PathBuf>) -> Result<(), Error> {
    let target: Reference = target.parse()?;
    let index: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join("index.json"))?)?;
    let digest: rbuild_cache::oci::Digest =
        index["manifests"][0]["digest"].as_str().ok_or("index.json has no manifest")?.parse()?;
    let store = BlobStore::open(dir)?;
    let manifest = RawManifest::new(store.read_blob(&digest)?, ManifestKind::OciManifest);
    let image = ImageToPush::from_manifest(manifest, &target)?;
    let client = client_for(target.registry(), ca)?;
    let tags: Vec<String> = target.tag().map(str::to_owned).into_iter().collect();
    let report = client.push_image(&store, &target, &tags, &image, &[]).await?;
    println!("{}", report.digest);
    Ok(())
}

async fn run(args: &[String]) -> Result<(), Error> {
    match args {
        [cmd, registry, rest @ ..] if cmd == "base-images" => {
            let client = client_for(registry, ca_flag(rest))?;
            let dir = tempfile::tempdir()?;
            let store = BlobStore::open(dir.path())?;
            let base = rbuild_integration::push_base_images(&client, &store, registry).await?;
            println!("busybox:latest {}\nmultiarch:latest {}", base.busybox, base.multiarch);
            Ok(())
        }
        [cmd, dir, size] if cmd == "random-layout" => random_layout(Path::new(dir), size.parse()?),
        [cmd, dir, target, rest @ ..] if cmd == "push-layout" => {
            push_layout(Path::new(dir), target, ca_flag(rest)).await
        }
        _ => Err("usage: rbuild-fixture base-images REGISTRY [--ca PEM] | random-layout DIR SIZE_MB | push-layout DIR REFERENCE [--ca PEM]".into()),
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let mut msg = format!("rbuild-fixture: {e}");
            let mut source = e.source();
            while let Some(s) = source {
                msg.push_str(&format!(": {s}"));
                source = s.source();
            }
            eprintln!("{msg}");
            ExitCode::FAILURE
        }
    }
}
