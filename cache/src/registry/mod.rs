//! The registry client (OCI distribution spec v1.1), split by concern: [`auth`] (credentials),
//! [`token_cache`], [`transport`] (HTTP, challenge flow), [`retry`] (the one retry policy),
//! [`liveness`] (timeouts, stall detection), [`manifest`], [`upload`], [`pull`] and [`push`].

pub mod access;
pub mod auth;
pub mod diagnosis;
pub mod error;
pub mod liveness;
pub mod manifest;
pub mod pull;
pub mod push;
pub mod retry;
pub mod tags;
pub mod token_cache;
pub mod transfer;
pub mod transport;
pub mod upload;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

pub use auth::{AuthConfig, Credential, CredentialSource, CredentialStore, Secret};
pub use diagnosis::TransportFailure;
pub use error::{Operation, RegistryError, RegistryMessage, Stall};
pub use liveness::{Timeouts, MAX_MANIFEST_SIZE};
pub use manifest::{Manifest, ManifestKind, RawManifest};
pub use pull::{PulledImage, ResolvedImage};
pub use push::{ImageToPush, PushReport};
pub use retry::{is_transient, RetryPolicy};
pub use transfer::{Direction, TransferProgress};
pub use transport::Endpoint;
pub use upload::BlobPush;

use crate::reference::{Reference, DOCKER_HUB};
use transfer::ProgressSink;
use transport::Transport;

/// Default PATCH chunk (and monolithic-upload threshold): large enough that chunking costs
/// little, small enough that a restarted session does not resend much.
pub const DEFAULT_CHUNK_SIZE: u64 = 64 * 1024 * 1024;

/// How the client reaches registries. Plain data; [`RegistryClient::new`] validates it.
#[derive(Debug, Clone)]
pub struct RegistryConfig {
    /// Use plain HTTP for every registry (`--insecure`).
    pub insecure_all: bool,
    /// Registries (`host[:port]`) reached over plain HTTP (`--insecure-registry`).
    pub insecure_registries: Vec<String>,
    /// Accept any TLS certificate (`--skip-tls-verify`).
    pub skip_tls_verify: bool,
    /// Accept any TLS certificate from these registries (`host[:port]`,
    /// `--skip-tls-verify-registry`).
    pub skip_tls_verify_registries: Vec<String>,
    /// Extra CA certificates (PEM files) to trust (`--registry-certificate`).
    pub ca_certificates: Vec<PathBuf>,
    /// Mirrors tried before Docker Hub for `docker.io` pulls (`--registry-mirror`).
    pub mirrors: Vec<String>,
    /// Retries on connection errors, 429 and 5xx (`--push-retry`), and their backoff.
    pub retry: RetryPolicy,
    /// PATCH chunk size; blobs up to this size are uploaded in a single PUT.
    pub chunk_size: u64,
    /// Blobs transferred at once.
    pub concurrency: usize,
    /// Where credentials come from.
    pub auth: AuthConfig,
    /// Connect timeout.
    pub connect_timeout: Duration,
    /// How long a request may go without progress.
    pub timeouts: Timeouts,
}

impl Default for RegistryConfig {
    fn default() -> Self {
        Self {
            insecure_all: false,
            insecure_registries: Vec::new(),
            skip_tls_verify: false,
            skip_tls_verify_registries: Vec::new(),
            ca_certificates: Vec::new(),
            mirrors: Vec::new(),
            retry: RetryPolicy {
                retries: 3,
                base_delay: Duration::from_millis(250),
                max_delay: Duration::from_secs(8),
            },
            chunk_size: DEFAULT_CHUNK_SIZE,
            concurrency: 4,
            auth: AuthConfig::default(),
            connect_timeout: Duration::from_secs(15),
            timeouts: Timeouts::default(),
        }
    }
}

/// The registry client: one per process, shared by reference (it is `Send + Sync`).
#[derive(Debug)]
pub struct RegistryClient {
    transport: Transport,
    config: RegistryConfig,
    progress: ProgressSink,
}

/// An HTTP client for `config`'s timeouts and CAs; `accept_invalid` skips certificate checks.
fn http_client(config: &RegistryConfig, accept_invalid: bool) -> Result<reqwest::Client, RegistryError> {
    let mut builder = reqwest::Client::builder()
        .user_agent(concat!("rbuild/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(config.connect_timeout)
        .pool_max_idle_per_host(config.concurrency.max(1) * 2)
        .danger_accept_invalid_certs(accept_invalid);
    for path in &config.ca_certificates {
        let pem = std::fs::read(path).map_err(|source| RegistryError::Io { path: path.clone(), source })?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem)
            .map_err(|source| RegistryError::Certificate { path: path.clone(), source })?;
        for cert in certs {
            builder = builder.add_root_certificate(cert);
        }
    }
    builder.build().map_err(RegistryError::Client)
}

impl RegistryClient {
    /// Build the HTTP client (rustls; extra CAs; optional no-verify) and load credentials.
    pub fn new(config: RegistryConfig) -> Result<Self, RegistryError> {
        let http = http_client(&config, config.skip_tls_verify)?;
        let credentials = CredentialStore::load(config.auth.clone())?;
        let mut transport = Transport::new(http, credentials, config.retry, config.timeouts);
        if !config.skip_tls_verify && !config.skip_tls_verify_registries.is_empty() {
            let unverified = http_client(&config, true)?;
            transport = transport.with_unverified(unverified, config.skip_tls_verify_registries.clone());
        }
        Ok(Self { transport, config, progress: ProgressSink::default() })
    }

    /// Report the byte progress of blob downloads and uploads to `progress`.
    pub fn set_progress(&mut self, progress: Arc<dyn TransferProgress>) -> &mut Self {
        self.progress = ProgressSink(progress);
        self
    }

    pub(crate) fn progress(&self) -> &ProgressSink {
        &self.progress
    }

    /// Stop every request in flight and every later one ([`RegistryError::Cancelled`]):
    /// a cancelled build ends at once instead of waiting on the network.
    pub fn cancel(&self) {
        self.transport.cancel_token().cancel();
    }

    /// The configuration in use.
    pub fn config(&self) -> &RegistryConfig {
        &self.config
    }

    pub(crate) fn transport(&self) -> &Transport {
        &self.transport
    }

    /// The endpoint for a registry name (`docker.io` → `https://registry-1.docker.io`).
    pub fn endpoint(&self, registry: &str) -> Endpoint {
        let host = if registry == DOCKER_HUB { crate::reference::DOCKER_HUB_API } else { registry };
        Endpoint { name: registry.to_owned(), host: host.to_owned(), scheme: self.scheme(registry) }
    }

    fn scheme(&self, registry: &str) -> &'static str {
        let insecure = self.config.insecure_all || self.config.insecure_registries.iter().any(|r| r == registry);
        if insecure {
            "http"
        } else {
            "https"
        }
    }

    /// Endpoints to read `reference` from: mirrors first for Docker Hub, then the registry.
    pub fn read_endpoints(&self, reference: &Reference) -> Vec<Endpoint> {
        let mut endpoints = Vec::new();
        if reference.registry() == DOCKER_HUB {
            endpoints.extend(self.config.mirrors.iter().map(|m| self.endpoint(m)));
        }
        endpoints.push(self.endpoint(reference.registry()));
        endpoints
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schemes_and_mirrors() {
        let client = RegistryClient::new(RegistryConfig {
            insecure_registries: vec!["127.0.0.1:5000".into()],
            mirrors: vec!["mirror.local:5000".into()],
            ..RegistryConfig::default()
        })
        .unwrap();
        assert_eq!(client.endpoint("127.0.0.1:5000").scheme, "http");
        assert_eq!(client.endpoint("reg.io").scheme, "https");
        let hub: Reference = "busybox".parse().unwrap();
        let hosts: Vec<String> = client.read_endpoints(&hub).into_iter().map(|e| e.host).collect();
        assert_eq!(hosts, ["mirror.local:5000", "registry-1.docker.io"]);
        let other: Reference = "reg.io/a".parse().unwrap();
        assert_eq!(client.read_endpoints(&other).len(), 1);
        // `--insecure`: plain HTTP for every registry.
        let all = RegistryClient::new(RegistryConfig { insecure_all: true, ..RegistryConfig::default() }).unwrap();
        assert_eq!(all.endpoint("reg.io").scheme, "http");
    }
}
