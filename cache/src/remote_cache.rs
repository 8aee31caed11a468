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
//! Anything unexpected (bad JSON, a missing or mismatching blob, a key that does not match
//! its tag) makes the entry [`Lookup::Corrupt`]: ignored, rebuilt and overwritten.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::key::{CacheKey, KeyComponents, CACHE_FORMAT_VERSION};
use crate::oci::{Descriptor, Digest, ImageManifest};
use crate::reference::Reference;
use crate::registry::manifest::{Manifest, ManifestKind, RawManifest, OCI_MANIFEST};
use crate::registry::pull::ResolvedImage;
use crate::registry::{ImageToPush, PushReport, RegistryClient, RegistryError};
use crate::store::BlobStore;

/// Media type of an entry's config blob.
pub const ENTRY_CONFIG_MEDIA_TYPE: &str = "application/vnd.rbuild.cache.entry.v1+json";
/// Annotation on the entry manifest carrying its key.
pub const KEY_ANNOTATION: &str = "dev.rbuild.cache.key";
/// Lookups (and prune reads) in flight at once.
const CONCURRENT_LOOKUPS: usize = 16;

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
}

/// The answer for one key.
#[derive(Clone, Debug)]
pub enum Lookup {
    Hit(Box<CacheEntry>),
    Miss,
    /// Present but older than the TTL.
    Expired { written: i64 },
    /// Present but unusable (and so rebuilt and overwritten).
    Corrupt { reason: String },
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
        Self { client, repository, ttl }
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
        futures_util::stream::iter(keys)
            .map(|k| self.lookup(k, now))
            .buffered(CONCURRENT_LOOKUPS)
            .collect()
            .await
    }

    /// Looks up one key: hit, miss, expired or corrupt.
    pub async fn lookup(&self, key: &CacheKey, now: i64) -> Result<Lookup, RegistryError> {
        let Some(entry) = self.read_entry(&key.tag()).await? else { return Ok(Lookup::Miss) };
        let entry = match entry {
            Ok(e) => e,
            Err(reason) => return Ok(Lookup::Corrupt { reason }),
        };
        if entry.meta.key != *key {
            return Ok(Lookup::Corrupt { reason: format!("entry records key {}", entry.meta.key) });
        }
        if entry.meta.format != CACHE_FORMAT_VERSION {
            return Ok(Lookup::Corrupt { reason: format!("cache format {}", entry.meta.format) });
        }
        let age = now.saturating_sub(entry.meta.written);
        if u64::try_from(age).is_ok_and(|a| a > self.ttl.as_secs()) {
            return Ok(Lookup::Expired { written: entry.meta.written });
        }
        if let Some(layer) = &entry.layer {
            let blob_ref = self.repository.with_digest(entry.manifest.clone());
            if !self.client.blob_exists(&blob_ref, layer.digest()).await? {
                return Ok(Lookup::Corrupt { reason: format!("layer blob {} is missing", layer.digest()) });
            }
        }
        Ok(Lookup::Hit(Box::new(entry)))
    }

    /// The entry the first readable tag of `tags` names (position or parent tags).
    pub async fn latest_at(&self, tags: &[String]) -> Option<EntryMeta> {
        for tag in tags {
            if let Ok(Some(Ok(entry))) = self.read_entry(tag).await {
                return Some(entry.meta);
            }
        }
        None
    }

    /// Reads the entry a tag names: `None` when there is no such tag, `Some(Err(reason))`
    /// when it is not a well-formed entry.
    async fn read_entry(&self, tag: &str) -> Result<Option<Result<CacheEntry, String>>, RegistryError> {
        let reference = self.repository.with_tag(tag);
        let raw = match self.client.get_raw_manifest(&reference).await {
            Ok(raw) => raw,
            Err(RegistryError::Status { status: 404, .. }) => return Ok(None),
            Err(e) => return Err(e),
        };
        let image = match raw.parse(&reference) {
            Ok(Manifest::Image(image)) => *image,
            Ok(Manifest::Index(_)) => return Ok(Some(Err("an index, not an entry manifest".into()))),
            Err(e) => return Ok(Some(Err(format!("unreadable manifest: {e}")))),
        };
        if image.config().media_type().to_string() != ENTRY_CONFIG_MEDIA_TYPE {
            return Ok(Some(Err(format!("config media type {} is not an rbuild cache entry", image.config().media_type()))));
        }
        if image.layers().len() > 1 {
            return Ok(Some(Err(format!("{} layers (an entry has at most one)", image.layers().len()))));
        }
        let layer = image.layers().first().cloned();
        let resolved = ResolvedImage {
            reference: reference.clone(),
            endpoint: self.client.endpoint(reference.registry()),
            index: None,
            manifest: raw.clone(),
            image: image.clone(),
        };
        let bytes = match self.client.fetch_config(&resolved).await {
            Ok(b) => b,
            Err(e @ (RegistryError::Status { status: 404, .. } | RegistryError::DigestMismatch { .. } | RegistryError::InvalidResponse { .. })) => {
                return Ok(Some(Err(format!("entry config: {e}"))));
            }
            Err(e) => return Err(e),
        };
        let meta: EntryMeta = match serde_json::from_slice(&bytes) {
            Ok(m) => m,
            Err(e) => return Ok(Some(Err(format!("entry config is not valid: {e}")))),
        };
        if meta.diff_id.is_some() != layer.is_some() {
            return Ok(Some(Err("layer and diff id do not match".into())));
        }
        Ok(Some(Ok(CacheEntry { meta, manifest: raw.digest, layer })))
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
        // Invariant: EntryMeta holds only strings, integers and JSON values.
        let meta_bytes = serde_json::to_vec(meta).expect("entry meta serialises");
        let stored = store.put_bytes(&meta_bytes)?;
        let manifest = entry_manifest(&stored.digest, stored.size, layer, &meta.key);
        let raw = RawManifest::new(manifest, ManifestKind::OciManifest);
        let image = ImageToPush::from_manifest(raw, &self.repository)?;
        let mut tags = vec![meta.key.tag()];
        tags.extend(extra_tags.iter().cloned());
        self.client.push_image(store, &self.repository, &tags, &image, &[]).await
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
            match read? {
                Some(Ok(entry)) if u64::try_from(now.saturating_sub(entry.meta.written)).is_ok_and(|a| a > older_than.as_secs()) => {
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

/// The entry manifest JSON.
fn entry_manifest(config: &Digest, config_size: u64, layer: Option<&Descriptor>, key: &CacheKey) -> Vec<u8> {
    let layers: Vec<&Descriptor> = layer.into_iter().collect();
    let doc = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": { "mediaType": ENTRY_CONFIG_MEDIA_TYPE, "digest": config.to_string(), "size": config_size },
        "layers": layers,
        "annotations": { KEY_ANNOTATION: key.as_str() },
    });
    // Invariant: built from strings, integers and descriptors.
    serde_json::to_vec(&doc).expect("entry manifest serialises")
}

/// Parses an entry manifest (for tests and tools).
pub fn parse_entry_manifest(bytes: &[u8]) -> Result<ImageManifest, serde_json::Error> {
    serde_json::from_slice(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_manifest_is_an_oci_manifest_with_at_most_one_layer() {
        let config: Digest = "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a".parse().unwrap();
        let key = CacheKey::scratch();
        let without = parse_entry_manifest(&entry_manifest(&config, 2, None, &key)).unwrap();
        assert!(without.layers().is_empty());
        assert_eq!(without.config().media_type().to_string(), ENTRY_CONFIG_MEDIA_TYPE);
        let layer = Descriptor::new(crate::oci::MediaType::ImageLayerGzip, 3, config.clone());
        let with = parse_entry_manifest(&entry_manifest(&config, 2, Some(&layer), &key)).unwrap();
        assert_eq!(with.layers().len(), 1);
        assert_eq!(with.annotations().as_ref().unwrap().get(KEY_ANNOTATION).unwrap(), key.as_str());
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
