//! The executor's view of the registry: where layers not yet in the blob store come from
//! (base image repositories, the cache repository), fetched only when a step needs the
//! filesystem, and the cache entries pushed in the background while the build goes on.
//!
//! The executor is synchronous (RUN blocks in the sandbox); it reaches the async registry
//! client through a runtime [`Handle`] from its stage threads, which are not runtime threads.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use futures_util::StreamExt;
use tokio::runtime::Handle;

use crate::image::ImageLayer;
use rbuild_cache::oci::{Descriptor, Digest};
use rbuild_cache::reference::Reference;
use rbuild_cache::registry::{PushReport, RegistryClient, RegistryError};
use rbuild_cache::remote_cache::{EntryMeta, RemoteCache};
use rbuild_cache::store::BlobStore;

/// Which stages' steps are written to the cache (`--cache-mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CacheMode {
    /// Only the stages whose layers end up in the image (the target and the stages it is
    /// built `FROM`).
    Min,
    /// Every stage that runs (Kaniko's behaviour).
    #[default]
    Max,
}

/// The cache settings of a build.
#[derive(Debug, Clone)]
pub struct CacheSettings {
    pub cache: RemoteCache,
    pub mode: CacheMode,
    /// Look up the latest entry of each missed step to say what changed (`--explain-cache`).
    pub explain: bool,
    /// Tells Dockerfiles sharing a cache repository apart in position tags.
    pub scope: String,
    /// Read the cache but write nothing.
    pub read_only: bool,
    /// Seconds since the epoch, for TTLs and the entries' write time.
    pub now: i64,
}

/// Blob origins, background cache writes and byte counters of one build.
pub struct Remote {
    pub runtime: Handle,
    pub client: Arc<RegistryClient>,
    pub cache: Option<CacheSettings>,
    origins: Mutex<BTreeMap<String, Reference>>,
    writes: Mutex<Vec<std::thread::JoinHandle<Result<PushReport, RegistryError>>>>,
    targets: Vec<Reference>,
    uploads: Mutex<Vec<std::thread::JoinHandle<Result<(), RegistryError>>>>,
    /// (target repository, digest) of every finished layer upload.
    uploaded: Arc<Mutex<BTreeSet<(String, String)>>>,
    downloaded: AtomicU64,
}

/// What the background cache writes did.
#[derive(Debug, Clone, Default)]
pub struct WriteReport {
    pub entries: usize,
    pub uploaded_bytes: u64,
    pub failures: Vec<String>,
}

impl Remote {
    /// A remote for one build.
    pub fn new(runtime: Handle, client: Arc<RegistryClient>, cache: Option<CacheSettings>) -> Self {
        Self {
            runtime,
            client,
            cache,
            origins: Mutex::default(),
            writes: Mutex::default(),
            targets: Vec::new(),
            uploads: Mutex::default(),
            uploaded: Arc::default(),
            downloaded: AtomicU64::new(0),
        }
    }

    /// The repositories the finished image goes to: each new layer of the image is uploaded
    /// to them as soon as its step ends, while later steps run, so the final push is left
    /// with the config and the manifest. A build that fails after that leaves untagged blobs,
    /// never a tag (registries collect such blobs).
    pub fn with_push_targets(mut self, targets: Vec<Reference>) -> Self {
        self.targets = targets;
        self
    }

    /// Starts uploading a new layer of the image to every push target (see
    /// [`Remote::with_push_targets`]); [`Remote::wait_for_uploads`] collects them.
    pub fn spawn_layer_upload(&self, store: &BlobStore, layer: &ImageLayer) {
        for target in &self.targets {
            let blob = [(layer.descriptor.digest.digest().clone(), layer.descriptor.size)];
            let (client, store, target, runtime) = (self.client.clone(), store.clone(), target.clone(), self.runtime.clone());
            let uploaded = self.uploaded.clone();
            // A new layer is nowhere else yet (the target's copy, if any, is found by the
            // existence check), so no mount is tried. Same thread-per-push as `spawn_write`.
            let handle = std::thread::spawn(move || {
                runtime.block_on(client.push_blobs(&store, &target, &blob, &BTreeMap::new(), &[]))?;
                let [(digest, _)] = blob;
                uploaded.lock().unwrap_or_else(std::sync::PoisonError::into_inner).insert((repository_key(&target), digest.to_string()));
                Ok(())
            });
            self.uploads.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(handle);
        }
    }

    /// Whether a layer upload put blob `digest` into `target`'s repository.
    pub fn uploaded(&self, target: &Reference, digest: &Digest) -> bool {
        self.uploaded.lock().unwrap_or_else(std::sync::PoisonError::into_inner).contains(&(repository_key(target), digest.to_string()))
    }

    /// Waits for the layer uploads (blocking; call it outside the runtime) and returns why
    /// any failed. Not fatal: the final push uploads whatever is still missing.
    pub fn wait_for_uploads(&self) -> Vec<String> {
        let handles: Vec<_> = std::mem::take(&mut *self.uploads.lock().unwrap_or_else(std::sync::PoisonError::into_inner));
        handles
            .into_iter()
            .filter_map(|h| match h.join() {
                Ok(Ok(())) => None,
                Ok(Err(e)) => Some(super::error_chain(&e)),
                Err(_) => Some("a layer upload panicked".into()),
            })
            .collect()
    }

    /// Records that blob `digest` can be fetched from `repository` (a reference in it).
    pub fn add_origin(&self, digest: &Digest, repository: &Reference) {
        self.origins.lock().unwrap_or_else(std::sync::PoisonError::into_inner).insert(digest.to_string(), repository.clone());
    }

    /// Where `digest` comes from, if known.
    pub fn origin(&self, digest: &Digest) -> Option<Reference> {
        self.origins.lock().unwrap_or_else(std::sync::PoisonError::into_inner).get(&digest.to_string()).cloned()
    }

    /// Layer bytes downloaded so far.
    pub fn downloaded_bytes(&self) -> u64 {
        self.downloaded.load(Ordering::Relaxed)
    }

    /// Downloads the layers not in `store` (concurrently) from their origins, skipping those
    /// `skip` says can stay remote.
    pub fn fetch(&self, store: &BlobStore, layers: &[ImageLayer], skip: impl Fn(&Reference) -> bool) -> Result<(), RegistryError> {
        let missing: Vec<(Descriptor, Reference)> = layers
            .iter()
            .filter(|l| !store.contains(l.descriptor.digest.digest()))
            .filter_map(|l| {
                let digest = l.descriptor.digest.digest();
                let origin = self.origin(digest)?;
                let d = Descriptor::new(l.descriptor.media_type.clone(), l.descriptor.size, digest.clone());
                Some((d, origin))
            })
            .filter(|(_, origin)| !skip(origin))
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        let concurrency = self.client.config().concurrency.max(1);
        let fetched: Vec<Result<u64, RegistryError>> = self.runtime.block_on(
            futures_util::stream::iter(missing.iter())
                .map(|(d, origin)| async move {
                    let endpoint = self.client.endpoint(origin.registry());
                    self.client.fetch_blob(&endpoint, origin.repository(), d, store).await.map(|b| b.size)
                })
                .buffer_unordered(concurrency)
                .collect(),
        );
        for result in fetched {
            self.downloaded.fetch_add(result?, Ordering::Relaxed);
        }
        Ok(())
    }

    /// Pushes a cache entry in the background; [`Remote::wait_for_writes`] collects it.
    pub fn spawn_write(&self, store: &BlobStore, meta: EntryMeta, layer: Option<Descriptor>, extra_tags: Vec<String>) {
        let Some(settings) = &self.cache else { return };
        if settings.read_only {
            return;
        }
        let cache = settings.cache.clone();
        let store = store.clone();
        let runtime = self.runtime.clone();
        // A thread per entry driving the push on the shared runtime: the push future is not
        // provably `Send` (a higher-ranked lifetime in its blob stream), so it cannot be
        // `spawn`ed; `block_on` from a plain thread needs no `Send`.
        let handle = std::thread::spawn(move || runtime.block_on(cache.put(&store, &meta, layer.as_ref(), &extra_tags)));
        self.writes.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(handle);
    }

    /// Waits for every background cache write (blocking; call it outside the runtime).
    /// Failures are reported, not fatal: the image is correct without them.
    pub fn wait_for_writes(&self) -> WriteReport {
        let handles: Vec<_> = std::mem::take(&mut *self.writes.lock().unwrap_or_else(std::sync::PoisonError::into_inner));
        let mut report = WriteReport::default();
        for handle in handles {
            match handle.join() {
                Ok(Ok(push)) => {
                    report.entries += 1;
                    report.uploaded_bytes += push.uploaded_bytes();
                }
                Ok(Err(e)) => report.failures.push(super::error_chain(&e)),
                Err(_) => report.failures.push("a cache write panicked".into()),
            }
        }
        report
    }
}

/// `registry/repository` of a reference.
fn repository_key(reference: &Reference) -> String {
    format!("{}/{}", reference.registry(), reference.repository())
}

impl Drop for Remote {
    /// Uploads and writes still in flight (an error ended the build early) finish before the runtime
    /// they run on goes away.
    fn drop(&mut self) {
        self.wait_for_uploads();
        let report = self.wait_for_writes();
        if !report.failures.is_empty() {
            tracing::warn!(failures = report.failures.len(), "cache entries not written");
        }
    }
}
