//! Registry flags shared by every command that talks to a registry (`pull`, `inspect`,
//! `build` flattens them too), and their resolution into the cache crate's `RegistryConfig`.

use std::path::PathBuf;

use rbuild_cache::platform::TargetPlatform;
use rbuild_cache::reference::Reference;
use rbuild_cache::registry::{AuthConfig, RegistryConfig};

/// The image and platform a registry command reads (`--platform` defaults to the host's).
pub fn image_and_platform(image: &str, platform: Option<&str>) -> anyhow::Result<(Reference, TargetPlatform)> {
    let reference: Reference = image.parse()?;
    let platform = match platform {
        Some(p) => p.parse()?,
        None => TargetPlatform::host(),
    };
    Ok((reference, platform))
}

/// Registry connection flags (Kaniko-compatible names).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct RegistryArgs {
    /// Use plain HTTP for every registry.
    #[arg(long)]
    pub insecure: bool,
    /// Use plain HTTP for this registry (`host[:port]`); repeatable.
    #[arg(long = "insecure-registry", value_name = "HOST")]
    pub insecure_registry: Vec<String>,
    /// Do not verify registries' TLS certificates.
    #[arg(long)]
    pub skip_tls_verify: bool,
    /// Do not verify this registry's TLS certificate (`host[:port]`); repeatable.
    #[arg(long = "skip-tls-verify-registry", value_name = "HOST")]
    pub skip_tls_verify_registry: Vec<String>,
    /// Mirror to try before Docker Hub for docker.io images (`host[:port]`); repeatable.
    #[arg(long = "registry-mirror", value_name = "HOST")]
    pub registry_mirror: Vec<String>,
    /// Retries on connection errors, 429 and 5xx responses.
    #[arg(long = "push-retry", value_name = "N", default_value_t = 3)]
    pub push_retry: u32,
    /// Extra CA certificate (PEM) to trust, as `PATH` or Kaniko's `HOST=PATH`; repeatable.
    #[arg(long = "registry-certificate", value_name = "[HOST=]PATH")]
    pub registry_certificate: Vec<String>,
}

impl RegistryArgs {
    /// Resolve into the client configuration; credentials come from `$DOCKER_CONFIG` or
    /// `~/.docker/config.json`.
    pub fn to_config(&self) -> RegistryConfig {
        let mut config = RegistryConfig {
            insecure_all: self.insecure,
            insecure_registries: self.insecure_registry.clone(),
            skip_tls_verify: self.skip_tls_verify,
            skip_tls_verify_registries: self.skip_tls_verify_registry.clone(),
            ca_certificates: self
                .registry_certificate
                .iter()
                .map(|c| PathBuf::from(c.split_once('=').map_or(c.as_str(), |(_, p)| p)))
                .collect(),
            mirrors: self.registry_mirror.clone(),
            auth: AuthConfig {
                docker_config_dir: AuthConfig::default_config_dir(
                    std::env::var_os("DOCKER_CONFIG"),
                    std::env::var_os("HOME").map(PathBuf::from),
                ),
                ..AuthConfig::default()
            },
            ..RegistryConfig::default()
        };
        config.retry.retries = self.push_retry;
        config
    }
}
