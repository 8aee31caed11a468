//! Pushing an image: blobs concurrently (skipped when present, mounted when known in another
//! repository of the same registry, else streamed from the blob store), then the manifest once
//! per tag, every tag naming the same digest.

use std::collections::{BTreeMap, BTreeSet};

use futures_util::{StreamExt, TryStreamExt};

use crate::oci::Digest;
use crate::reference::Reference;
use crate::registry::error::RegistryError;
use crate::registry::manifest::{pull_scope, push_scope, put_manifest, Manifest, RawManifest};
use crate::registry::transport::Endpoint;
use crate::registry::upload::{blob_exists, place_remote_blob, push_blob, BlobPush, BlobUpload, UploadPlan};
use crate::registry::RegistryClient;
use crate::store::{BlobStore, StoreError};

/// Existence checks (`HEAD`) of one push in flight at once.
const CHECKS_IN_FLIGHT: usize = 32;

/// An image ready to push: its manifest bytes and the blobs it refers to.
#[derive(Debug, Clone)]
pub struct ImageToPush {
    /// The manifest, byte for byte as it will be stored (its media type picks OCI or Docker).
    pub manifest: RawManifest,
    /// Blobs to upload first (config and layers; for an index, nothing: push children first).
    pub blobs: Vec<(Digest, u64)>,
    /// Blob digest → a repository of the target's registry known to hold it (where the build
    /// got it from). Mounting tries it before the push's `mount_from` list, so a blob costs
    /// one mount instead of a failed mount (and its session) per wrong repository first.
    pub sources: BTreeMap<String, String>,
    /// Blobs taken to be in the target already (see [`ImageToPush::assume_present`]).
    pub assumed: BTreeSet<String>,
}

impl ImageToPush {
    /// Take the blob list from an image manifest (config + layers).
    pub fn from_manifest(manifest: RawManifest, reference: &Reference) -> Result<Self, RegistryError> {
        let blobs = match manifest.parse(reference)? {
            Manifest::Image(image) => {
                std::iter::once(image.config()).chain(image.layers()).map(|d| (d.digest().clone(), d.size())).collect()
            }
            Manifest::Index(_) => Vec::new(),
        };
        Ok(Self { manifest, blobs, sources: BTreeMap::new(), assumed: BTreeSet::new() })
    }

    /// Takes blob `digest` to be in the target already (this state pushed it there): it is
    /// not checked. Should the manifest `PUT` find it missing, the push checks and places
    /// those blobs after all and puts the manifest again.
    pub fn assume_present(&mut self, digest: &Digest) {
        self.assumed.insert(digest.to_string());
    }

    /// Records that `repository` (same registry as the target) holds blob `digest`.
    pub fn add_source(&mut self, digest: &Digest, repository: &str) {
        self.sources.insert(digest.to_string(), repository.to_owned());
    }
}

/// What a push did.
#[derive(Debug, Clone)]
pub struct PushReport {
    /// The manifest digest every tag now names.
    pub digest: Digest,
    /// How each blob got there.
    pub blobs: Vec<(Digest, BlobPush)>,
}

impl PushReport {
    /// Bytes actually uploaded.
    pub fn uploaded_bytes(&self) -> u64 {
        self.blobs
            .iter()
            .map(|(_, p)| match p {
                BlobPush::Uploaded(n) => *n,
                _ => 0,
            })
            .sum()
    }
}

impl RegistryClient {
    /// Put `blobs` into `target`'s repository (skipped when present, mounted from `sources`
    /// (digest → repository) or `mount_from` when possible, else uploaded from `store`): the
    /// blob half of [`RegistryClient::push_image`], also used to upload a build's layers while
    /// its later steps still run.
    pub async fn push_blobs(
        &self,
        store: &BlobStore,
        target: &Reference,
        blobs: &[(Digest, u64)],
        sources: &BTreeMap<String, String>,
        mount_from: &[String],
    ) -> Result<Vec<(Digest, BlobPush)>, RegistryError> {
        let endpoint = self.endpoint(target.registry());
        let repository = target.repository();
        let mut scopes = vec![push_scope(repository)];
        let mut pull_from: Vec<&String> = mount_from.iter().chain(sources.values()).collect();
        pull_from.sort();
        pull_from.dedup();
        scopes.extend(pull_from.into_iter().filter(|r| r.as_str() != repository).map(|r| pull_scope(r)));
        let plan = UploadPlan {
            endpoint: &endpoint,
            repository,
            mount_from,
            scopes: &scopes,
            chunk_size: self.config().chunk_size.max(1),
            retry: self.config().retry,
            progress: self.progress().clone(),
        };
        let mut paths = Vec::with_capacity(blobs.len());
        for (digest, size) in blobs {
            if !store.contains(digest) && mount_from.is_empty() && !sources.contains_key(&digest.to_string()) {
                return Err(StoreError::NotFound { digest: digest.clone() }.into());
            }
            paths.push((digest, *size, store.path(digest)));
        }
        let plan_ref = &plan;
        // Which blobs the target already has: every `HEAD` at once (they carry no bytes), so
        // a push of blobs that are all there is one round trip, not one per `concurrency`.
        let present: Vec<bool> = futures_util::stream::iter(paths.iter())
            .map(|(digest, _, _)| blob_exists(self.transport(), plan_ref, digest))
            .buffered(CHECKS_IN_FLIGHT)
            .try_collect()
            .await?;
        let (there, missing): (Vec<_>, Vec<_>) = paths.iter().zip(present).partition(|(_, p)| *p);
        let mut existed: Vec<(Digest, BlobPush)> =
            there.into_iter().map(|((digest, _, _), _)| ((*digest).clone(), BlobPush::Existed)).collect();
        tracing::debug!(present = existed.len(), missing = missing.len(), "blobs checked");
        let mut pushed = futures_util::stream::iter(missing.into_iter().map(|(p, _)| p))
            .map(|(digest, size, path)| async move {
                let preferred = sources.get(&digest.to_string()).map(String::as_str);
                if !store.contains(digest) {
                    return match place_remote_blob(self.transport(), plan_ref, digest, preferred).await? {
                        Some(outcome) => Ok(((*digest).clone(), outcome)),
                        None => Err(StoreError::NotFound { digest: (*digest).clone() }.into()),
                    };
                }
                let blob = BlobUpload { digest, size: *size, path };
                push_blob(self.transport(), plan_ref, blob, preferred).await.map(|outcome| ((*digest).clone(), outcome))
            })
            .buffer_unordered(self.config().concurrency.max(1))
            .try_collect::<Vec<_>>()
            .await?;
        pushed.append(&mut existed);
        Ok(pushed)
    }

    /// Push `image` to `target`'s repository under every tag in `tags` (by digest when empty).
    /// `mount_from` lists repositories of the same registry that may already hold the blobs;
    /// a blob missing from `store` must already be in the target or mountable from them (a
    /// fully cached build pushes without downloading its layers).
    pub async fn push_image(
        &self,
        store: &BlobStore,
        target: &Reference,
        tags: &[String],
        image: &ImageToPush,
        mount_from: &[String],
    ) -> Result<PushReport, RegistryError> {
        let (assumed, checked): (Vec<_>, Vec<_>) =
            image.blobs.iter().cloned().partition(|(d, _)| image.assumed.contains(&d.to_string()));
        let mut blobs = self.push_blobs(store, target, &checked, &image.sources, mount_from).await?;
        let endpoint = self.endpoint(target.registry());
        let repository = target.repository();
        let refs: Vec<String> = if tags.is_empty() { vec![image.manifest.digest.to_string()] } else { tags.to_vec() };
        match self.put_tags(&endpoint, repository, &refs, &image.manifest, assumed.is_empty()).await {
            Err(e) if is_blob_unknown(&e) && !assumed.is_empty() => {
                tracing::info!(
                    assumed = assumed.len(),
                    "the registry lacks a blob this state pushed before; checking them all"
                );
                blobs.extend(self.push_blobs(store, target, &assumed, &image.sources, mount_from).await?);
                self.put_tags(&endpoint, repository, &refs, &image.manifest, true).await?;
            }
            other => {
                other?;
                blobs.extend(assumed.into_iter().map(|(d, _)| (d, BlobPush::Existed)));
            }
        }
        Ok(PushReport { digest: image.manifest.digest.clone(), blobs })
    }

    /// One `PUT` per tag, all at once (a build usually pushes two tags): every `PUT` names
    /// the same bytes, so their order does not matter.
    async fn put_tags(
        &self,
        endpoint: &Endpoint,
        repository: &str,
        tags: &[String],
        manifest: &RawManifest,
        retry_unknown: bool,
    ) -> Result<(), RegistryError> {
        let results = futures_util::future::join_all(
            tags.iter().map(|tag| self.put_tag(endpoint, repository, tag, manifest, retry_unknown)),
        )
        .await;
        let written: Vec<&str> =
            tags.iter().zip(&results).filter(|(_, r)| r.is_ok()).map(|(t, _)| t.as_str()).collect();
        let Some((tag, error)) = tags.iter().zip(results).find_map(|(t, r)| r.err().map(|e| (t, e))) else {
            return Ok(());
        };
        let failed: Vec<&str> = tags.iter().map(String::as_str).filter(|t| !written.contains(t)).collect();
        let state = if written.is_empty() {
            format!("every blob is in the registry; no tag was written: {}", failed.join(", "))
        } else {
            format!(
                "every blob and the manifest {} are in the registry; written: {}; not written: {}",
                manifest.digest,
                written.join(", "),
                failed.join(", ")
            )
        };
        Err(RegistryError::Tag {
            registry: endpoint.name.clone(),
            repository: repository.to_owned(),
            tag: tag.clone(),
            state,
            source: Box::new(error),
        })
    }

    /// `PUT` the manifest under one tag, retrying a `MANIFEST_BLOB_UNKNOWN` answer when every
    /// blob was just confirmed present (`retry_unknown`).
    async fn put_tag(
        &self,
        endpoint: &Endpoint,
        repository: &str,
        tag: &str,
        manifest: &RawManifest,
        retry_unknown: bool,
    ) -> Result<(), RegistryError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            match put_manifest(self.transport(), endpoint, repository, tag, manifest).await {
                // Every blob was just confirmed present: a registry whose storage writes
                // blob links in place (distribution's filesystem driver) can report one as
                // unknown while another client re-links it. Such answers are retried.
                Err(e) if retry_unknown && is_blob_unknown(&e) && attempt <= self.config().retry.retries => {
                    tracing::warn!(%tag, attempt, error = %e, "manifest refers to a blob the registry just reported; retrying");
                    tokio::time::sleep(self.config().retry.delay(attempt)).await;
                }
                other => return other.map(|_| ()),
            }
        }
    }

    /// Fetch the raw manifest `reference` names (tag or digest), without platform selection.
    pub async fn get_raw_manifest(&self, reference: &Reference) -> Result<RawManifest, RegistryError> {
        let endpoint = self.endpoint(reference.registry());
        crate::registry::manifest::get_manifest(self.transport(), &endpoint, reference).await
    }

    /// Check that `reference`'s repository holds blob `digest`.
    pub async fn blob_exists(&self, reference: &Reference, digest: &Digest) -> Result<bool, RegistryError> {
        let endpoint = self.endpoint(reference.registry());
        let scopes = [pull_scope(reference.repository())];
        let plan = UploadPlan {
            endpoint: &endpoint,
            repository: reference.repository(),
            mount_from: &[],
            scopes: &scopes,
            chunk_size: self.config().chunk_size,
            retry: self.config().retry,
            progress: self.progress().clone(),
        };
        crate::registry::upload::blob_exists(self.transport(), &plan, digest).await
    }
}

/// A `MANIFEST_BLOB_UNKNOWN` answer to a manifest `PUT`.
fn is_blob_unknown(e: &RegistryError) -> bool {
    match e {
        RegistryError::Tag { source, .. } => is_blob_unknown(source),
        RegistryError::Status { status: 400, message, .. } => {
            message.errors.iter().any(|(code, _)| code == "MANIFEST_BLOB_UNKNOWN")
        }
        _ => false,
    }
}
