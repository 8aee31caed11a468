//! Pulling: resolve a reference (through mirrors, then the platform's entry of an index) and
//! download config and layers concurrently into the blob store, each verified by digest and
//! size while it streams to a temporary file.

use std::io::Write;

use futures_util::{StreamExt, TryStreamExt};
use reqwest::Method;

use crate::oci::{Descriptor, Digest, ImageConfiguration, ImageManifest};
use crate::platform::TargetPlatform;
use crate::reference::Reference;
use crate::registry::error::{Operation, RegistryError};
use crate::registry::liveness::{next_chunk, BodyWatch, MAX_MANIFEST_SIZE};
use crate::registry::manifest::{get_manifest, pull_scope, Manifest, RawManifest};
use crate::registry::transfer::Direction;
use crate::registry::transport::{Call, Endpoint};
use crate::registry::RegistryClient;
use crate::store::{BlobStore, StoreError, StoredBlob};

/// A reference resolved to one image manifest.
#[derive(Debug, Clone)]
pub struct ResolvedImage {
    /// What was asked for.
    pub reference: Reference,
    /// Where it was found (a mirror or the registry itself).
    pub endpoint: Endpoint,
    /// The index the manifest was chosen from, if the reference named one.
    pub index: Option<RawManifest>,
    /// The image manifest as served.
    pub manifest: RawManifest,
    /// The image manifest, parsed.
    pub image: ImageManifest,
}

/// An image whose manifest, config and layers are all in the blob store.
#[derive(Debug, Clone)]
pub struct PulledImage {
    /// The resolution.
    pub resolved: ResolvedImage,
    /// The config as stored.
    pub config_bytes: Vec<u8>,
    /// The config, parsed.
    pub config: ImageConfiguration,
}

impl RegistryClient {
    /// Resolve `reference` to the manifest for `platform` (no blob is downloaded).
    pub async fn resolve(
        &self,
        reference: &Reference,
        platform: &TargetPlatform,
    ) -> Result<ResolvedImage, RegistryError> {
        let (endpoint, first) = self.first_manifest(reference).await?;
        let Manifest::Index(index) = first.parse(reference)? else {
            let image = image_of(&first, reference)?;
            return Ok(ResolvedImage { reference: reference.clone(), endpoint, index: None, manifest: first, image });
        };
        let chosen = platform.select(&index).ok_or_else(|| {
            let available: Vec<String> = index
                .manifests()
                .iter()
                .filter_map(|m| m.platform().as_ref())
                .map(|p| TargetPlatform::from_oci(p).to_string())
                .collect();
            RegistryError::NoMatchingPlatform {
                reference: reference.to_string(),
                platform: platform.to_string(),
                available: available.join(", "),
            }
        })?;
        let child_ref = reference.with_digest(chosen.digest().clone());
        let manifest = get_manifest(self.transport(), &endpoint, &child_ref).await?;
        let image = image_of(&manifest, &child_ref)?;
        tracing::debug!(%reference, %platform, digest = %manifest.digest, "platform selected");
        Ok(ResolvedImage { reference: reference.clone(), endpoint, index: Some(first), manifest, image })
    }

    /// The first manifest, from the first endpoint (mirror or registry) that serves it.
    async fn first_manifest(&self, reference: &Reference) -> Result<(Endpoint, RawManifest), RegistryError> {
        let endpoints = self.read_endpoints(reference);
        let last = endpoints.len().saturating_sub(1);
        for (i, endpoint) in endpoints.into_iter().enumerate() {
            match get_manifest(self.transport(), &endpoint, reference).await {
                Ok(raw) => return Ok((endpoint, raw)),
                Err(e) if i < last => {
                    tracing::warn!(mirror = %endpoint.name, error = %e, "mirror failed, trying next");
                }
                Err(e) => return Err(e),
            }
        }
        // Unreachable in practice: `read_endpoints` always yields the registry itself.
        Err(RegistryError::InvalidResponse {
            registry: reference.registry().to_owned(),
            repository: reference.repository().to_owned(),
            operation: Operation::GetManifest,
            reason: "no endpoint to read from",
        })
    }

    /// Resolve and download an image (manifest, index, config and layers) into `store`.
    pub async fn pull(
        &self,
        reference: &Reference,
        platform: &TargetPlatform,
        store: &BlobStore,
    ) -> Result<PulledImage, RegistryError> {
        let resolved = self.resolve(reference, platform).await?;
        for raw in resolved.index.iter().chain([&resolved.manifest]) {
            store.put_bytes(&raw.bytes)?;
        }
        let descriptors: Vec<&Descriptor> =
            std::iter::once(resolved.image.config()).chain(resolved.image.layers()).collect();
        futures_util::stream::iter(descriptors)
            .map(|d| self.fetch_blob(&resolved.endpoint, reference.repository(), d, store))
            .buffer_unordered(self.config().concurrency.max(1))
            .try_collect::<Vec<_>>()
            .await?;
        let config_bytes = store.read_blob(resolved.image.config().digest())?;
        let config = serde_json::from_slice(&config_bytes).map_err(|source| RegistryError::ManifestParse {
            reference: reference.to_string(),
            media_type: resolved.image.config().media_type().to_string(),
            source,
        })?;
        tracing::info!(%reference, digest = %resolved.manifest.digest, layers = resolved.image.layers().len(), "image pulled");
        Ok(PulledImage { resolved, config_bytes, config })
    }

    /// Download the config of a resolved image into memory, verified by digest and size;
    /// retried like layers. Configs beyond [`MAX_MANIFEST_SIZE`] are refused.
    pub async fn fetch_config(&self, resolved: &ResolvedImage) -> Result<Vec<u8>, RegistryError> {
        let descriptor = resolved.image.config();
        let repository = resolved.reference.repository();
        let call = self.blob_call(&resolved.endpoint, repository, descriptor.digest())?;
        let limit = descriptor.size().min(MAX_MANIFEST_SIZE);
        if descriptor.size() > MAX_MANIFEST_SIZE {
            return Err(RegistryError::TooLarge {
                registry: call.endpoint.name.clone(),
                repository: repository.to_owned(),
                operation: Operation::GetBlob,
                what: "image configs",
                limit: MAX_MANIFEST_SIZE,
            });
        }
        let transport = self.transport();
        let bytes = transport
            .retry(call.site(), |_| async {
                let response = transport.send_once(&call).await?;
                if !response.status().is_success() {
                    return Err(call.status_failure(response).await);
                }
                Ok(transport.read_body(&call, response, limit, "this config's declared size").await?)
            })
            .await?;
        let actual = crate::oci::sha256_digest(&bytes);
        if actual != *descriptor.digest() || bytes.len() as u64 != descriptor.size() {
            return Err(RegistryError::DigestMismatch {
                what: "config",
                reference: resolved.reference.to_string(),
                expected: Box::new(descriptor.digest().clone()),
                actual: Box::new(actual),
            });
        }
        Ok(bytes.to_vec())
    }

    /// Download one blob into `store` unless it is already there; retried on failures.
    pub async fn fetch_blob(
        &self,
        endpoint: &Endpoint,
        repository: &str,
        descriptor: &Descriptor,
        store: &BlobStore,
    ) -> Result<StoredBlob, RegistryError> {
        let digest = descriptor.digest();
        let size = descriptor.size();
        if store.size(digest) == Some(size) {
            return Ok(StoredBlob { digest: digest.clone(), size });
        }
        let progress = &self.progress().0;
        let call = self.blob_call(endpoint, repository, digest)?;
        let result = self
            .transport()
            .retry(call.site(), |_| async {
                progress.started(Direction::Download, digest, size);
                Ok(self.download(&call, digest, size, store).await?)
            })
            .await;
        progress.finished(Direction::Download, digest);
        result
    }

    /// The `GET` of a blob, sent once per attempt (the caller retries the whole download).
    fn blob_call(&self, endpoint: &Endpoint, repository: &str, digest: &Digest) -> Result<Call, RegistryError> {
        let url = endpoint.repository_url(repository, &format!("blobs/{digest}"), Operation::GetBlob)?;
        let scopes = [pull_scope(repository)];
        let mut call = Call::new(endpoint, repository, Operation::GetBlob, Method::GET, url, &scopes);
        call.retryable = false;
        Ok(call)
    }

    async fn download(
        &self,
        call: &Call,
        digest: &Digest,
        size: u64,
        store: &BlobStore,
    ) -> Result<StoredBlob, RegistryError> {
        let response = self.transport().send_once(call).await?;
        if !response.status().is_success() {
            return Err(call.status_error(response).await);
        }
        let oversized = || RegistryError::Oversized {
            registry: call.endpoint.name.clone(),
            repository: call.repository.clone(),
            digest: digest.clone(),
            size,
        };
        if response.content_length().is_some_and(|len| len > size) {
            return Err(oversized());
        }
        let mut writer = store.writer()?;
        let mut body = response.bytes_stream();
        let mut watch = BodyWatch::new(self.transport().timeouts());
        let cancel = self.transport().cancel_token();
        while let Some(chunk) = next_chunk(&mut body, &mut watch, call.site(), cancel).await? {
            if writer.written() + chunk.len() as u64 > size {
                return Err(oversized());
            }
            self.progress().0.advanced(Direction::Download, digest, chunk.len() as u64);
            // A page-cache write of one network chunk; short enough not to stall the runtime.
            writer
                .write_all(&chunk)
                .map_err(|source| RegistryError::Store(StoreError::Io { path: store.path(digest), source }))?;
        }
        writer.commit(Some(digest), Some(size)).map_err(|e| match e {
            StoreError::DigestMismatch { expected, actual } => RegistryError::DigestMismatch {
                what: "blob",
                reference: format!("{}/{}@{expected}", call.endpoint.name, call.repository),
                expected: Box::new(expected),
                actual: Box::new(actual),
            },
            other => RegistryError::Store(other),
        })
    }
}

fn image_of(raw: &RawManifest, reference: &Reference) -> Result<ImageManifest, RegistryError> {
    match raw.parse(reference)? {
        Manifest::Image(image) => Ok(*image),
        Manifest::Index(_) => Err(RegistryError::UnsupportedMediaType {
            reference: reference.to_string(),
            media_type: format!("{} (nested index)", raw.kind.media_type()),
        }),
    }
}
