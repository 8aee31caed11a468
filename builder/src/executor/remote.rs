//! The executor's view of the registry: where layers not yet in the blob store come from
//! (base image repositories, the cache repository), fetched only when a step needs the
//! filesystem, and the cache entries pushed in the background while the build goes on.
//!
//! A new layer's bytes cross the wire once per registry: it is uploaded to the first push
//! target, then mounted into the other targets and, by its cache entry, into the cache
//! repository once that upload completed (see [`Placements`]).
//!
//! The executor is synchronous (RUN blocks in the sandbox); it reaches the async registry
//! client through a runtime [`Handle`] from its stage threads, which are not runtime threads.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};

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
    uploads: Mutex<Vec<std::thread::JoinHandle<Vec<String>>>>,
    /// Where each layer given to [`Remote::spawn_layer_upload`] is (being) placed.
    placements: Arc<Placements>,
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
            placements: Arc::default(),
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

    /// Starts placing a new layer of the image into every push target (see
    /// [`Remote::with_push_targets`]), in order: the first target of each registry gets the
    /// upload, the others a mount from it once it completed. A cache entry written for the
    /// layer afterwards ([`Remote::spawn_write`]) waits for this and mounts it too, so call
    /// this first. [`Remote::wait_for_uploads`] collects them.
    pub fn spawn_layer_upload(&self, store: &BlobStore, layer: &ImageLayer) {
        if self.targets.is_empty() {
            return;
        }
        let digest = layer.descriptor.digest.digest().clone();
        self.placements.start(&digest);
        let (client, store, targets, runtime) =
            (self.client.clone(), store.clone(), self.targets.clone(), self.runtime.clone());
        let blob = [(digest, layer.descriptor.size)];
        let placements = self.placements.clone();
        // Same thread-per-push as `spawn_write`; the guard wakes waiting cache writes
        // whatever happens.
        let handle = std::thread::spawn(move || {
            let [(digest, _)] = &blob;
            let _finished = Finished(&placements, digest);
            let (mut failures, mut holders) = (Vec::new(), Vec::<&Reference>::new());
            for target in &targets {
                let holder = holders.iter().find(|h| h.registry() == target.registry());
                let sources: BTreeMap<String, String> =
                    holder.map(|h| (digest.to_string(), h.repository().to_string())).into_iter().collect();
                match runtime.block_on(client.push_blobs(&store, target, &blob, &sources, &[])) {
                    Ok(_) => {
                        placements.add_holder(digest, target);
                        holders.push(target);
                    }
                    Err(e) => failures.push(super::error_chain(&e)),
                }
            }
            failures
        });
        self.lock_uploads().push(handle);
    }

    fn lock_uploads(&self) -> MutexGuard<'_, Vec<std::thread::JoinHandle<Vec<String>>>> {
        self.uploads.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether a layer upload put blob `digest` into `target`'s repository.
    pub fn uploaded(&self, target: &Reference, digest: &Digest) -> bool {
        self.placements.holds(digest, target)
    }

    /// Waits for the layer uploads (blocking; call it outside the runtime) and returns why
    /// any failed. Not fatal: the final push uploads whatever is still missing.
    pub fn wait_for_uploads(&self) -> Vec<String> {
        let handles: Vec<_> = std::mem::take(&mut *self.lock_uploads());
        handles.into_iter().flat_map(|h| h.join().unwrap_or_else(|_| vec!["a layer upload panicked".into()])).collect()
    }

    /// Records that blob `digest` can be fetched from `repository` (a reference in it).
    pub fn add_origin(&self, digest: &Digest, repository: &Reference) {
        self.origins
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(digest.to_string(), repository.clone());
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
    pub fn fetch(
        &self,
        store: &BlobStore,
        layers: &[ImageLayer],
        skip: impl Fn(&Reference) -> bool,
    ) -> Result<(), RegistryError> {
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
        let placements = self.placements.clone();
        // A thread per entry driving the push on the shared runtime: the push future is not
        // provably `Send` (a higher-ranked lifetime in its blob stream), so it cannot be
        // `spawn`ed; `block_on` from a plain thread needs no `Send`.
        // A layer being placed into the push targets is mounted from one of them once there.
        let handle = std::thread::spawn(move || {
            let source = layer.as_ref().and_then(|l| placements.holder(l.digest(), cache.repository().registry()));
            runtime.block_on(cache.put_mounting(&store, &meta, layer.as_ref(), &extra_tags, source.as_deref()))
        });
        self.writes.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(handle);
    }

    /// Waits for every background cache write (blocking; call it outside the runtime).
    /// Failures are reported, not fatal: the image is correct without them.
    pub fn wait_for_writes(&self) -> WriteReport {
        let handles: Vec<_> =
            std::mem::take(&mut *self.writes.lock().unwrap_or_else(std::sync::PoisonError::into_inner));
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

/// Which repositories hold each layer given to [`Remote::spawn_layer_upload`], and whether
/// its placement is still in flight: a cache write of the layer waits for it and mounts from
/// a holder instead of uploading the bytes a second time.
#[derive(Default)]
struct Placements {
    state: Mutex<BTreeMap<String, Placement>>,
    changed: Condvar,
}

#[derive(Default)]
struct Placement {
    /// Placements of it not finished yet.
    in_flight: usize,
    /// `registry/repository` of each repository holding it.
    holders: Vec<(String, String)>,
}

impl Placements {
    fn lock(&self) -> MutexGuard<'_, BTreeMap<String, Placement>> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn start(&self, digest: &Digest) {
        self.lock().entry(digest.to_string()).or_default().in_flight += 1;
    }

    fn add_holder(&self, digest: &Digest, repository: &Reference) {
        let holder = (repository.registry().to_string(), repository.repository().to_string());
        self.lock().entry(digest.to_string()).or_default().holders.push(holder);
    }

    fn finish(&self, digest: &Digest) {
        if let Some(p) = self.lock().get_mut(&digest.to_string()) {
            p.in_flight = p.in_flight.saturating_sub(1);
        }
        self.changed.notify_all();
    }

    fn holds(&self, digest: &Digest, repository: &Reference) -> bool {
        let key = repository_key(repository);
        self.lock()
            .get(&digest.to_string())
            .is_some_and(|p| p.holders.iter().any(|(r, repo)| format!("{r}/{repo}") == key))
    }

    /// A repository of `registry` holding `digest`, once no placement of it is in flight
    /// (blocking; called from plain threads, never the runtime's). `None` for a blob never
    /// placed, or placed in no repository of `registry`.
    fn holder(&self, digest: &Digest, registry: &str) -> Option<String> {
        let key = digest.to_string();
        let state = self.lock();
        let state = self
            .changed
            .wait_while(state, |s| s.get(&key).is_some_and(|p| p.in_flight > 0))
            .unwrap_or_else(PoisonError::into_inner);
        state.get(&key)?.holders.iter().find(|(r, _)| r == registry).map(|(_, repo)| repo.clone())
    }
}

/// Ends a placement when dropped (a panicking upload included), waking the waiting writes.
struct Finished<'a>(&'a Placements, &'a Digest);

impl Drop for Finished<'_> {
    fn drop(&mut self) {
        self.0.finish(self.1);
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    use rbuild_cache::oci::sha256_digest;

    fn reference(s: &str) -> Reference {
        s.parse().unwrap()
    }

    #[test]
    fn a_holder_is_given_once_the_placement_finished_and_only_in_its_registry() {
        let placements = Arc::new(Placements::default());
        let (layer, other) = (sha256_digest(b"layer"), sha256_digest(b"other"));
        placements.start(&layer);
        let waiting = {
            let (placements, layer) = (placements.clone(), layer.clone());
            std::thread::spawn(move || placements.holder(&layer, "127.0.0.1:5000"))
        };
        placements.add_holder(&layer, &reference("127.0.0.1:6000/elsewhere/app"));
        placements.add_holder(&layer, &reference("127.0.0.1:5000/team/app:v1"));
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert!(!waiting.is_finished(), "a holder must not be given while the placement is in flight");
        drop(Finished(&placements, &layer));
        assert_eq!(waiting.join().unwrap().as_deref(), Some("team/app"));
        assert!(placements.holds(&layer, &reference("127.0.0.1:5000/team/app:other-tag")));
        assert!(!placements.holds(&layer, &reference("127.0.0.1:5000/team/cache")));
        assert_eq!(placements.holder(&layer, "127.0.0.1:7000"), None, "no holder in that registry");
        assert_eq!(placements.holder(&other, "127.0.0.1:5000"), None, "never placed: no wait, no holder");
    }
}
