//! The registry-backed layer cache: one manifest per cache key in the cache repository,
//! tagged `sha256-<hex>` by the key.
//!
//! An entry is an OCI image manifest whose config blob ([`ENTRY_CONFIG_MEDIA_TYPE`]) is an
//! [`EntryMeta`] (what the step did to the image config, its history time, the layer's diff
//! id, the key components) and whose `layers` hold the step's layer, or nothing for a
//! metadata-only step. Writes only ever put new blobs and (re)point the entry's own tags, so
//! any number of workers can share a repository: two workers writing one key write equivalent
//! entries and the last `PUT` wins. Every entry is also tagged with a *position tag* (the step's
//! place in its Dockerfile, see [`position_tag`]) that always names the latest entry written
//! for that step; `--explain-cache` compares a miss with it. That tag is overwritten, never
//! read-modified-written, and nothing but explanations reads it.
//!
//! The config descriptor also carries the config blob itself (base64, OCI 1.1's descriptor
//! `data`), so a lookup is one manifest `GET` and a layer `HEAD`; entries without it (older
//! writers) have their config blob fetched.
//!
//! Anything unexpected (bad JSON, a missing or mismatching blob, embedded data that does not
//! match its digest, a key that does not match its tag) makes the entry [`Lookup::Corrupt`]:
//! ignored, rebuilt and overwritten.
//!
//! With a [`LocalEntries`] index (`<cache-dir>/entries/<registry>/<repository>`: it records
//! which cache repository holds each entry), entries read or written are also kept on disk and a later lookup answers from there when the entry's layer is in the local
//! blob store or was pushed by this state to every destination: a warm rebuild asks the
//! cache repository nothing.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::key::{CacheKey, KeyComponents, CACHE_FORMAT_VERSION};
use crate::oci::{sha256_digest, Descriptor, Digest, ImageManifest};
use crate::reference::Reference;
use crate::registry::manifest::{Manifest, ManifestKind, RawManifest, OCI_MANIFEST};
use crate::registry::pull::ResolvedImage;
use crate::registry::{ImageToPush, PushReport, RegistryClient, RegistryError};
use crate::store::BlobStore;

/// Media type of an entry's config blob.
pub const ENTRY_CONFIG_MEDIA_TYPE: &str = "application/vnd.rbuild.cache.entry.v1+json";
/// Annotation on the entry manifest carrying its key.
pub const KEY_ANNOTATION: &str = "dev.rbuild.cache.key";
/// Lookups (and prune reads) in flight at once: a lookup is two short requests, and a
/// fully cached build waits for all of them before it starts.
const CONCURRENT_LOOKUPS: usize = 32;

/// What an entry records besides its layer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EntryMeta {
    /// [`CACHE_FORMAT_VERSION`].
    pub format: u32,
    /// The key the entry is stored under.
    pub key: CacheKey,
    /// When the entry was written (seconds since the epoch): what `--cache-ttl` measures.
    pub written: i64,
    /// Unique per write (nanosecond time and process id). A corrupt blob stays in the registry
    /// under its digest, so a rebuilt entry byte-identical to the corrupt one would point at it
    /// again; this makes every rewrite a new config blob.
    #[serde(default)]
    pub write_id: String,
    /// The step's history `created` time, reused by cached rebuilds so the image digest stays.
    pub history_created: Option<String>,
    /// The image config after the step (rootfs and history left out).
    pub image_config: serde_json::Value,
    /// Diff id of the step's layer; `None` for a step without a layer.
    pub diff_id: Option<String>,
    /// Uncompressed size of the layer.
    #[serde(default)]
    pub uncompressed_size: u64,
    /// What the key was made of (for `--explain-cache`).
    pub components: KeyComponents,
}

/// A usable entry.
#[derive(Clone, Debug)]
pub struct CacheEntry {
    pub meta: EntryMeta,
    /// Digest of the entry manifest.
    pub manifest: Digest,
    /// The layer (in the cache repository), if the step produced one.
    pub layer: Option<Descriptor>,
    /// Whether this lookup saw the layer (in the local store or the cache repository), or
    /// there is none; `false` for a local entry trusted because its layer was pushed before,
    /// which the registry may since have lost (retention and garbage collection).
    pub layer_seen: bool,
}

/// The answer for one key.
#[derive(Clone, Debug)]
pub enum Lookup {
    Hit(Box<CacheEntry>),
    Miss,
    /// Present but older than the TTL.
    Expired {
        written: i64,
    },
    /// Present but unusable (and so rebuilt and overwritten).
    Corrupt {
        reason: String,
    },
}

/// What `prune` did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PruneReport {
    /// Entry manifests deleted.
    pub deleted: usize,
    /// Entries young enough to keep.
    pub kept: usize,
    /// Tags that are no (readable) rbuild cache entry; left alone.
    pub skipped: usize,
}

/// The cache repository and its TTL.
#[derive(Debug, Clone)]
pub struct RemoteCache {
    client: Arc<RegistryClient>,
    repository: Reference,
    ttl: Duration,
    local: Option<LocalEntries>,
}

/// Local copies of entry manifests, one file per key and cache repository
/// (`<dir>/<registry>/<repository>/<key hex>`, the manifest bytes; its digest is theirs), answering lookups of a warm rebuild without the registry. An entry
/// read from there is checked like one from the registry, and counts only when its layer
/// is in `store` or in `pushed` (blobs this state pushed to every destination of the build):
/// then the image push needs nothing of the cache repository (see docs/decisions.md).
#[derive(Debug, Clone)]
pub struct LocalEntries {
    dir: PathBuf,
    store: BlobStore,
    pushed: Arc<BTreeSet<String>>,
}

/// The position tag of a step: `pos-` + 40 hex of sha256(scope, stage, step, platform).
/// `scope` tells Dockerfiles sharing a repository apart (rbuild uses the Dockerfile path).
pub fn position_tag(scope: &str, stage: &str, step: usize, platform: &str) -> String {
    let digest = Sha256::digest(format!("{scope}\n{stage}\n{step}\n{platform}").as_bytes());
    format!("pos-{}", hex::encode(digest).get(..40).unwrap_or_default())
}

/// The parent tag of an entry whose previous key is `parent`: `parent-<hex>`.
pub fn parent_tag(parent: &CacheKey) -> String {
    format!("parent-{}", parent.as_str().trim_start_matches("sha256:"))
}

impl RemoteCache {
    /// A cache in `repository` (its tag or digest, if any, is ignored).
    pub fn new(client: Arc<RegistryClient>, repository: Reference, ttl: Duration) -> Self {
        Self { client, repository, ttl, local: None }
    }

    /// Also keep entries in (and answer lookups from) `dir`, for layers in `store` or among
    /// `pushed` (digests already in every repository the image goes to).
    pub fn with_local_entries(mut self, dir: PathBuf, store: BlobStore, pushed: BTreeSet<String>) -> Self {
        // One index per cache repository: an entry known here says nothing of another
        // repository, which a write (or `--cache-only`) must still fill.
        let dir = dir.join(self.repository.registry()).join(self.repository.repository());
        self.local = Some(LocalEntries { dir, store, pushed: Arc::new(pushed) });
        self
    }

    /// The cache repository.
    pub fn repository(&self) -> &Reference {
        &self.repository
    }

    /// The registry client.
    pub fn client(&self) -> &Arc<RegistryClient> {
        &self.client
    }

    /// Looks up every key at once (at most [`CONCURRENT_LOOKUPS`] in flight); the answers are
    /// in the order of `keys`. A registry error for one key is that key's `Err`.
    pub async fn lookup_all(&self, keys: &[CacheKey], now: i64) -> Vec<Result<Lookup, RegistryError>> {
        futures_util::stream::iter(keys).map(|k| self.lookup(k, now)).buffered(CONCURRENT_LOOKUPS).collect().await
    }

    /// Looks up one key: hit, miss, expired or corrupt. A usable local copy answers first.
    pub async fn lookup(&self, key: &CacheKey, now: i64) -> Result<Lookup, RegistryError> {
        if let Some(entry) = self.local.as_ref().and_then(|l| l.lookup(&self.repository, key, now, self.ttl)) {
            return Ok(Lookup::Hit(Box::new(entry)));
        }
        let Some((raw, entry)) = self.read_entry(&key.tag()).await? else { return Ok(Lookup::Miss) };
        let entry = match usable(entry, key, now, self.ttl) {
            Ok(e) => e,
            Err(answer) => return Ok(answer),
        };
        if let Some(layer) = &entry.layer {
            let blob_ref = self.repository.with_digest(entry.manifest.clone());
            if !self.client.blob_exists(&blob_ref, layer.digest()).await? {
                return Ok(Lookup::Corrupt { reason: format!("layer blob {} is missing", layer.digest()) });
            }
        }
        if let Some(local) = &self.local {
            local.save(key, &raw.bytes);
        }
        Ok(Lookup::Hit(Box::new(CacheEntry { layer_seen: true, ..entry })))
    }

    /// The entry the first readable tag of `tags` names (position or parent tags).
    pub async fn latest_at(&self, tags: &[String]) -> Option<EntryMeta> {
        for tag in tags {
            if let Ok(Some((_, Ok(entry)))) = self.read_entry(tag).await {
                return Some(entry.meta);
            }
        }
        None
    }

    /// Reads the entry a tag names: `None` when there is no such tag, `Some((manifest,
    /// Err(reason)))` when it is not a well-formed entry.
    async fn read_entry(&self, tag: &str) -> Result<Option<(RawManifest, Result<CacheEntry, String>)>, RegistryError> {
        let reference = self.repository.with_tag(tag);
        let raw = match self.client.get_raw_manifest(&reference).await {
            Ok(raw) => raw,
            Err(RegistryError::Status { status: 404, .. }) => return Ok(None),
            Err(e) => return Err(e),
        };
        let image = match entry_image(&raw, &reference) {
            Ok(image) => image,
            Err(reason) => return Ok(Some((raw, Err(reason)))),
        };
        let bytes = match embedded_config(image.config()) {
            Some(Ok(bytes)) => bytes,
            Some(Err(reason)) => return Ok(Some((raw, Err(reason)))),
            None => {
                let resolved = ResolvedImage {
                    reference: reference.clone(),
                    endpoint: self.client.endpoint(reference.registry()),
                    index: None,
                    manifest: raw.clone(),
                    image: image.clone(),
                };
                match self.client.fetch_config(&resolved).await {
                    Ok(b) => b,
                    Err(
                        e @ (RegistryError::Status { status: 404, .. }
                        | RegistryError::DigestMismatch { .. }
                        | RegistryError::InvalidResponse { .. }),
                    ) => {
                        return Ok(Some((raw, Err(format!("entry config: {e}")))));
                    }
                    Err(e) => return Err(e),
                }
            }
        };
        let entry = entry_from(&raw, &image, &bytes);
        Ok(Some((raw, entry)))
    }

    /// Writes an entry: the layer blob (already in `store`), the meta blob, then the manifest
    /// under the key's tag and the `extra_tags` (position and parent tags). Never reads what
    /// is there.
    pub async fn put(
        &self,
        store: &BlobStore,
        meta: &EntryMeta,
        layer: Option<&Descriptor>,
        extra_tags: &[String],
    ) -> Result<PushReport, RegistryError> {
        self.put_mounting(store, meta, layer, extra_tags, None).await
    }

    /// [`RemoteCache::put`] for a layer already uploaded to `layer_source` (a repository of
    /// the cache's registry): the layer is mounted from there, not uploaded again (it is
    /// uploaded only if the mount is refused).
    pub async fn put_mounting(
        &self,
        store: &BlobStore,
        meta: &EntryMeta,
        layer: Option<&Descriptor>,
        extra_tags: &[String],
        layer_source: Option<&str>,
    ) -> Result<PushReport, RegistryError> {
        // Invariant: EntryMeta holds only strings, integers and JSON values.
        let meta_bytes = serde_json::to_vec(meta).expect("entry meta serialises");
        let stored = store.put_bytes(&meta_bytes)?;
        let manifest = entry_manifest(&meta_bytes, &stored.digest, layer, &meta.key);
        let raw = RawManifest::new(manifest, ManifestKind::OciManifest);
        let mut image = ImageToPush::from_manifest(raw.clone(), &self.repository)?;
        if let (Some(layer), Some(source)) = (layer, layer_source) {
            image.add_source(layer.digest(), source);
        }
        let mut tags = vec![meta.key.tag()];
        tags.extend(extra_tags.iter().cloned());
        let report = self.client.push_image(store, &self.repository, &tags, &image, &[]).await?;
        if let Some(local) = &self.local {
            local.save(&meta.key, &raw.bytes);
        }
        Ok(report)
    }

    /// Deletes entries written more than `older_than` before `now`. Tags that are no rbuild
    /// entry, or unreadable ones, are left alone; position tags go with their entry.
    pub async fn prune(&self, older_than: Duration, now: i64) -> Result<PruneReport, RegistryError> {
        let tags = self.client.list_tags(&self.repository).await?;
        let reads: Vec<_> = futures_util::stream::iter(tags.iter().filter(|t| t.starts_with("sha256-")))
            .map(|tag| self.read_entry(tag))
            .buffered(CONCURRENT_LOOKUPS)
            .collect()
            .await;
        let mut report = PruneReport::default();
        let mut stale: Vec<Digest> = Vec::new();
        for read in reads {
            match read?.map(|(_, entry)| entry) {
                Some(Ok(entry))
                    if u64::try_from(now.saturating_sub(entry.meta.written))
                        .is_ok_and(|a| a > older_than.as_secs()) =>
                {
                    if !stale.contains(&entry.manifest) {
                        stale.push(entry.manifest);
                    }
                }
                Some(Ok(_)) => report.kept += 1,
                _ => report.skipped += 1,
            }
        }
        for digest in stale {
            self.client.delete_manifest(&self.repository, &digest).await?;
            report.deleted += 1;
        }
        Ok(report)
    }
}

/// The entry manifest JSON; the config descriptor embeds `config` (whose digest it is).
fn entry_manifest(config: &[u8], config_digest: &Digest, layer: Option<&Descriptor>, key: &CacheKey) -> Vec<u8> {
    let layers: Vec<&Descriptor> = layer.into_iter().collect();
    let doc = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {
            "mediaType": ENTRY_CONFIG_MEDIA_TYPE,
            "digest": config_digest.to_string(),
            "size": config.len(),
            "data": base64::engine::general_purpose::STANDARD.encode(config),
        },
        "layers": layers,
        "annotations": { KEY_ANNOTATION: key.as_str() },
    });
    // Invariant: built from strings, integers and descriptors.
    serde_json::to_vec(&doc).expect("entry manifest serialises")
}

/// The image manifest of an entry, if the manifest has an entry's shape.
fn entry_image(raw: &RawManifest, reference: &Reference) -> Result<ImageManifest, String> {
    let image = match raw.parse(reference) {
        Ok(Manifest::Image(image)) => *image,
        Ok(Manifest::Index(_)) => return Err("an index, not an entry manifest".into()),
        Err(e) => return Err(format!("unreadable manifest: {e}")),
    };
    if image.config().media_type().to_string() != ENTRY_CONFIG_MEDIA_TYPE {
        return Err(format!("config media type {} is not an rbuild cache entry", image.config().media_type()));
    }
    if image.layers().len() > 1 {
        return Err(format!("{} layers (an entry has at most one)", image.layers().len()));
    }
    Ok(image)
}

/// The config blob embedded in its descriptor (`data`): `None` when there is none, an
/// error when it is not base64 or not the blob the descriptor's digest names.
fn embedded_config(config: &Descriptor) -> Option<Result<Vec<u8>, String>> {
    let data = config.data().as_ref()?;
    Some(match base64::engine::general_purpose::STANDARD.decode(data) {
        Err(e) => Err(format!("entry config data is not base64: {e}")),
        Ok(bytes) if sha256_digest(&bytes) != *config.digest() => {
            Err(format!("entry config data does not match its digest {}", config.digest()))
        }
        Ok(bytes) => Ok(bytes),
    })
}

/// The entry an entry manifest and its config blob make.
fn entry_from(raw: &RawManifest, image: &ImageManifest, config: &[u8]) -> Result<CacheEntry, String> {
    let meta: EntryMeta = serde_json::from_slice(config).map_err(|e| format!("entry config is not valid: {e}"))?;
    let layer = image.layers().first().cloned();
    if meta.diff_id.is_some() != layer.is_some() {
        return Err("layer and diff id do not match".into());
    }
    let layer_seen = layer.is_none();
    Ok(CacheEntry { meta, manifest: raw.digest.clone(), layer, layer_seen })
}

/// Whether a well-formed entry answers `key` at `now`: the entry, or the answer instead.
fn usable(entry: Result<CacheEntry, String>, key: &CacheKey, now: i64, ttl: Duration) -> Result<CacheEntry, Lookup> {
    let entry = entry.map_err(|reason| Lookup::Corrupt { reason })?;
    if entry.meta.key != *key {
        return Err(Lookup::Corrupt { reason: format!("entry records key {}", entry.meta.key) });
    }
    if entry.meta.format != CACHE_FORMAT_VERSION {
        return Err(Lookup::Corrupt { reason: format!("cache format {}", entry.meta.format) });
    }
    let age = now.saturating_sub(entry.meta.written);
    if u64::try_from(age).is_ok_and(|a| a > ttl.as_secs()) {
        return Err(Lookup::Expired { written: entry.meta.written });
    }
    Ok(entry)
}

impl LocalEntries {
    fn path(&self, key: &CacheKey) -> PathBuf {
        self.dir.join(key.as_str().trim_start_matches("sha256:"))
    }

    /// The local copy of `key`'s entry, if it is usable and its layer is here or pushed. A
    /// corrupt copy is deleted; an expired one, or one whose layer is not here, is left for
    /// the registry to answer (and to replace).
    fn lookup(&self, repository: &Reference, key: &CacheKey, now: i64, ttl: Duration) -> Option<CacheEntry> {
        let path = self.path(key);
        let bytes = std::fs::read(&path).ok()?;
        let raw = RawManifest::new(bytes, ManifestKind::OciManifest);
        let entry = entry_image(&raw, repository).and_then(|image| {
            let config = embedded_config(image.config()).unwrap_or_else(|| Err("no embedded entry config".into()))?;
            entry_from(&raw, &image, &config)
        });
        match usable(entry, key, now, ttl) {
            Ok(entry) if entry.layer.as_ref().is_none_or(|l| self.store.contains(l.digest())) => {
                Some(CacheEntry { layer_seen: true, ..entry })
            }
            Ok(entry) if entry.layer.as_ref().is_some_and(|l| self.pushed.contains(&l.digest().to_string())) => {
                Some(entry)
            }
            Ok(_) | Err(Lookup::Expired { .. }) => None,
            Err(answer) => {
                tracing::warn!(path = %path.display(), ?answer, "deleting a corrupt local cache entry");
                if let Err(e) = std::fs::remove_file(&path) {
                    tracing::debug!(error = %e, "cannot delete a corrupt local cache entry");
                }
                None
            }
        }
    }

    /// Keeps a copy of `key`'s entry manifest (atomically replaced; best effort: a failure
    /// only costs a registry lookup later).
    fn save(&self, key: &CacheKey, manifest: &[u8]) {
        let write = || -> std::io::Result<()> {
            std::fs::create_dir_all(&self.dir)?;
            let mut file = tempfile::NamedTempFile::new_in(&self.dir)?;
            std::io::Write::write_all(&mut file, manifest)?;
            file.persist(self.path(key)).map_err(|e| e.error)?;
            Ok(())
        };
        if let Err(e) = write() {
            tracing::debug!(error = %e, dir = %self.dir.display(), "cannot keep a local copy of a cache entry");
        }
    }
}

/// Parses an entry manifest (for tests and tools).
pub fn parse_entry_manifest(bytes: &[u8]) -> Result<ImageManifest, serde_json::Error> {
    serde_json::from_slice(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    use rstest::rstest;

    const META: &[u8] = br#"{"meta":1}"#;

    #[test]
    fn entry_manifest_is_an_oci_manifest_with_at_most_one_layer_and_embeds_its_config() {
        let config = sha256_digest(META);
        let key = CacheKey::scratch();
        let without = parse_entry_manifest(&entry_manifest(META, &config, None, &key)).unwrap();
        assert!(without.layers().is_empty());
        assert_eq!(without.config().media_type().to_string(), ENTRY_CONFIG_MEDIA_TYPE);
        assert_eq!(without.config().size(), META.len() as u64);
        assert_eq!(embedded_config(without.config()).unwrap().unwrap(), META);
        let layer = Descriptor::new(crate::oci::MediaType::ImageLayerGzip, 3, config.clone());
        let with = parse_entry_manifest(&entry_manifest(META, &config, Some(&layer), &key)).unwrap();
        assert_eq!(with.layers().len(), 1);
        assert_eq!(with.annotations().as_ref().unwrap().get(KEY_ANNOTATION).unwrap(), key.as_str());
    }

    /// `data` of a config descriptor whose digest is that of [`META`].
    #[rstest]
    #[case::absent(None, None)]
    #[case::matching(Some("eyJtZXRhIjoxfQ=="), Some(Ok(META.to_vec())))]
    #[case::other_bytes(Some("eyJtZXRhIjoyfQ=="), Some(Err("does not match its digest")))]
    #[case::not_base64(Some("{not base64"), Some(Err("not base64")))]
    fn embedded_config_must_be_the_blob_its_digest_names(
        #[case] data: Option<&str>,
        #[case] want: Option<Result<Vec<u8>, &str>>,
    ) {
        let mut d = Descriptor::new(
            crate::oci::MediaType::Other(ENTRY_CONFIG_MEDIA_TYPE.into()),
            META.len() as u64,
            sha256_digest(META),
        );
        d.set_data(data.map(str::to_owned));
        match (embedded_config(&d), want) {
            (None, None) => {}
            (Some(Ok(got)), Some(Ok(want))) => assert_eq!(got, want),
            (Some(Err(got)), Some(Err(want))) => assert!(got.contains(want), "{got}"),
            (got, want) => panic!("got {got:?}, want {want:?}"),
        }
    }

    /// How a local entry file is made for [`local_entries_count_only_when_usable_and_their_layer_is_here`].
    #[derive(Debug, Clone, Copy)]
    enum Local {
        /// A good entry whose layer is in the store.
        Good,
        /// A good entry without a layer (a metadata-only step).
        NoLayer,
        /// A good entry whose layer is not in the store.
        LayerMissing,
        /// A good entry whose layer is not in the store but in every push destination.
        LayerPushed,
        /// Written longer ago than the TTL.
        Expired,
        /// Recording another key.
        OtherKey,
        /// Not JSON.
        Garbage,
        /// Embedded config that is not the blob its digest names.
        BadData,
    }

    #[rstest]
    #[case::good(Local::Good, true, true)]
    #[case::no_layer(Local::NoLayer, true, true)]
    #[case::layer_missing(Local::LayerMissing, false, true)]
    #[case::layer_pushed(Local::LayerPushed, true, true)]
    #[case::expired(Local::Expired, false, true)]
    #[case::other_key(Local::OtherKey, false, false)]
    #[case::garbage(Local::Garbage, false, false)]
    #[case::bad_data(Local::BadData, false, false)]
    fn local_entries_count_only_when_usable_and_their_layer_is_here_or_pushed(
        #[case] how: Local,
        #[case] hit: bool,
        #[case] kept: bool,
    ) {
        let tmp = tempfile::tempdir().unwrap();
        let store = BlobStore::open(tmp.path().join("store")).unwrap();
        let pushed = BTreeSet::from([sha256_digest(b"pushed").to_string()]);
        let local = LocalEntries { dir: tmp.path().join("entries"), store: store.clone(), pushed: Arc::new(pushed) };
        let key = CacheKey::from("sha256:1111111111111111111111111111111111111111111111111111111111111111");
        let now = 1_000_000;
        let ttl = Duration::from_secs(100);
        let layer_blob = store.put_bytes(b"layer").unwrap();
        let layer = match how {
            Local::NoLayer => None,
            Local::LayerMissing => {
                Some(Descriptor::new(crate::oci::MediaType::ImageLayerGzip, 3, sha256_digest(b"elsewhere")))
            }
            Local::LayerPushed => {
                Some(Descriptor::new(crate::oci::MediaType::ImageLayerGzip, 3, sha256_digest(b"pushed")))
            }
            _ => {
                Some(Descriptor::new(crate::oci::MediaType::ImageLayerGzip, layer_blob.size, layer_blob.digest.clone()))
            }
        };
        let meta = EntryMeta {
            format: CACHE_FORMAT_VERSION,
            key: if matches!(how, Local::OtherKey) { CacheKey::scratch() } else { key.clone() },
            written: if matches!(how, Local::Expired) { now - 101 } else { now - 99 },
            write_id: "1-1".into(),
            history_created: None,
            image_config: serde_json::json!({}),
            diff_id: layer
                .as_ref()
                .map(|_| "sha256:2222222222222222222222222222222222222222222222222222222222222222".into()),
            uncompressed_size: 0,
            components: KeyComponents::default(),
        };
        let meta_bytes = serde_json::to_vec(&meta).unwrap();
        let bytes = match how {
            Local::Garbage => b"{not json".to_vec(),
            Local::BadData => entry_manifest(&meta_bytes, &sha256_digest(b"other"), layer.as_ref(), &key),
            _ => entry_manifest(&meta_bytes, &sha256_digest(&meta_bytes), layer.as_ref(), &key),
        };
        local.save(&key, &bytes);
        let repository: Reference = "127.0.0.1:5000/cache".parse().unwrap();
        let found = local.lookup(&repository, &key, now, ttl);
        assert_eq!(found.is_some(), hit, "{how:?}: {found:?}");
        if let Some(entry) = found {
            assert_eq!(entry.meta, meta);
            assert_eq!(entry.manifest, sha256_digest(&bytes));
            assert_eq!(entry.layer_seen, !matches!(how, Local::LayerPushed), "{how:?}: only a pushed layer is unseen");
        }
        assert_eq!(local.path(&key).is_file(), kept, "{how:?}");
    }

    #[test]
    fn position_tags_are_valid_and_distinct() {
        let a = position_tag("Dockerfile", "0", 1, "linux/amd64");
        assert_eq!(a.len(), 44);
        assert_ne!(a, position_tag("Dockerfile", "0", 2, "linux/amd64"));
        assert_ne!(a, position_tag("other/Dockerfile", "0", 1, "linux/amd64"));
        let parent = parent_tag(&CacheKey::scratch());
        assert_eq!(parent.len(), "parent-".len() + 64);
    }
}
