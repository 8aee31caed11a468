//! Multi-platform image indexes: one entry per platform, sorted by platform so that the same
//! per-platform images always give the same index bytes (and digest), whoever assembles it:
//! `rbuild build --platform a,b` on one machine, or `rbuild index create|append` merging the
//! images that per-architecture pods pushed by digest.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::oci::{Digest, DOCKER_MANIFEST, DOCKER_MANIFEST_LIST};
use crate::platform::TargetPlatform;
use crate::reference::Reference;
use crate::registry::{Manifest, ManifestKind, RawManifest, RegistryClient, RegistryError};

/// OCI image manifest media type.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// OCI image index media type.
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";

/// Errors of index assembly.
#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    /// An image config without `os` or `architecture`.
    #[error("image config of {digest} has no usable platform (os and architecture are required)")]
    ConfigPlatform {
        /// The image's manifest digest.
        digest: String,
        /// Why.
        #[source]
        source: serde_json::Error,
    },
    /// An existing index that is not an index.
    #[error("the existing manifest is not a valid image index")]
    Parse(#[source] serde_json::Error),
    /// Two new images for the same platform.
    #[error("two images given for platform {platform}: {first} and {second}; give one per platform")]
    Duplicate {
        /// The platform.
        platform: String,
        /// First image digest.
        first: String,
        /// Second image digest.
        second: String,
    },
    /// Reading an image or index from the registry failed.
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// A required platform is not in the index.
    #[error("the index lacks platform(s) {}: it has {}; no tag was moved (build and push the missing platform(s) first)", .missing.join(", "), if .present.is_empty() { "none".to_owned() } else { .present.join(", ") })]
    Missing {
        /// Required platforms not present.
        missing: Vec<String>,
        /// Platforms present.
        present: Vec<String>,
    },
}

/// One platform's image, as an index entry needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlatformImage {
    /// The image manifest's digest.
    pub digest: Digest,
    /// The manifest's size in bytes.
    pub size: u64,
    /// The manifest's media type (Docker schema2 or OCI).
    pub media_type: String,
    /// The platform fields, from the image's config.
    pub platform: EntryPlatform,
}

/// The platform of an index entry (the OCI descriptor's `platform` object).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntryPlatform {
    /// CPU architecture (`amd64`, `arm64`).
    pub architecture: String,
    /// Operating system (`linux`).
    pub os: String,
    /// OS version (Windows images).
    #[serde(rename = "os.version", default, skip_serializing_if = "Option::is_none")]
    pub os_version: Option<String>,
    /// Variant (`v7`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

impl EntryPlatform {
    /// Read the platform from an image config (`architecture`, `os`, `os.version`, `variant`).
    pub fn from_config(config_json: &[u8], digest: &Digest) -> Result<Self, IndexError> {
        serde_json::from_slice(config_json)
            .map_err(|source| IndexError::ConfigPlatform { digest: digest.to_string(), source })
    }

    /// The normalised platform (`linux/arm64`), for comparisons and messages.
    pub fn target(&self) -> TargetPlatform {
        TargetPlatform::new(&self.os, &self.architecture, self.variant.as_deref())
    }
}

/// An index entry; fields other than these (annotations of entries another tool wrote) are
/// kept as they were.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Entry {
    #[serde(rename = "mediaType")]
    media_type: String,
    digest: String,
    size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    platform: Option<EntryPlatform>,
    #[serde(flatten)]
    other: BTreeMap<String, serde_json::Value>,
}

impl Entry {
    /// Sort key: platform (os, architecture, variant, os version); entries without one last.
    fn sort_key(&self) -> (bool, String, String, String, String) {
        match &self.platform {
            Some(p) => {
                let t = p.target();
                (false, t.os, t.architecture, t.variant.unwrap_or_default(), p.os_version.clone().unwrap_or_default())
            }
            None => (true, String::new(), String::new(), String::new(), self.digest.clone()),
        }
    }
}

#[derive(Serialize, Deserialize)]
struct Document {
    #[serde(rename = "schemaVersion")]
    schema_version: u32,
    #[serde(rename = "mediaType", default)]
    media_type: String,
    manifests: Vec<Entry>,
}

/// A multi-platform index being assembled.
#[derive(Debug, Clone, Default)]
pub struct IndexBuilder {
    entries: Vec<Entry>,
}

impl IndexBuilder {
    /// An empty index.
    pub fn new() -> Self {
        Self::default()
    }

    /// Start from an existing index (for `append`): its entries are kept unless replaced.
    pub fn from_existing(bytes: &[u8]) -> Result<Self, IndexError> {
        let doc: Document = serde_json::from_slice(bytes).map_err(IndexError::Parse)?;
        Ok(Self { entries: doc.manifests })
    }

    /// Add the images, each replacing the entry of its platform; two new images of one
    /// platform are an error (which one was meant is unknowable).
    pub fn upsert_all(&mut self, images: &[PlatformImage]) -> Result<(), IndexError> {
        let mut seen: BTreeMap<String, &PlatformImage> = BTreeMap::new();
        for image in images {
            let platform = image.platform.target().to_string();
            if let Some(first) = seen.get(&platform).filter(|f| f.digest != image.digest) {
                return Err(IndexError::Duplicate {
                    platform,
                    first: first.digest.to_string(),
                    second: image.digest.to_string(),
                });
            }
            seen.insert(platform, image);
            self.upsert(image);
        }
        Ok(())
    }

    /// Add one image, replacing an entry of the same platform.
    pub fn upsert(&mut self, image: &PlatformImage) {
        let wanted = image.platform.target();
        self.entries.retain(|e| {
            e.platform.as_ref().is_none_or(|p| p.target() != wanted || p.os_version != image.platform.os_version)
        });
        self.entries.push(Entry {
            media_type: image.media_type.clone(),
            digest: image.digest.to_string(),
            size: image.size,
            platform: Some(image.platform.clone()),
            other: BTreeMap::new(),
        });
    }

    /// The platforms present, normalised and sorted.
    pub fn platforms(&self) -> Vec<String> {
        let mut out: Vec<String> =
            self.entries.iter().filter_map(|e| e.platform.as_ref()).map(|p| p.target().to_string()).collect();
        out.sort();
        out.dedup();
        out
    }

    /// Fail unless every platform of `required` has an entry.
    pub fn require(&self, required: &[TargetPlatform]) -> Result<(), IndexError> {
        let present = self.platforms();
        let missing: Vec<String> = required.iter().map(ToString::to_string).filter(|p| !present.contains(p)).collect();
        if missing.is_empty() {
            Ok(())
        } else {
            Err(IndexError::Missing { missing, present })
        }
    }

    /// The index document: entries sorted by platform; a Docker manifest list when every
    /// entry is a Docker manifest (as BuildKit does without `oci-mediatypes`), else an OCI index.
    pub fn finish(&self) -> RawManifest {
        let mut entries = self.entries.clone();
        entries.sort_by_key(Entry::sort_key);
        let docker = !entries.is_empty() && entries.iter().all(|e| e.media_type == DOCKER_MANIFEST);
        let (media_type, kind) = if docker {
            (DOCKER_MANIFEST_LIST, ManifestKind::DockerManifestList)
        } else {
            (OCI_INDEX, ManifestKind::OciIndex)
        };
        let doc = Document { schema_version: 2, media_type: media_type.to_owned(), manifests: entries };
        // Invariant: the document holds only strings, numbers and maps, which always serialise.
        let bytes = serde_json::to_vec(&doc).unwrap_or_default();
        RawManifest::new(bytes, kind)
    }
}

/// The platform images `reference` names: the entries of an index (those with a platform),
/// or one image with the platform of its config.
pub async fn images_of(client: &RegistryClient, reference: &Reference) -> Result<Vec<PlatformImage>, IndexError> {
    let raw = client.get_raw_manifest(reference).await?;
    match raw.parse(reference)? {
        Manifest::Index(_) => {
            let doc: Document = serde_json::from_slice(&raw.bytes).map_err(IndexError::Parse)?;
            Ok(doc
                .manifests
                .into_iter()
                .filter_map(|e| {
                    let digest = e.digest.parse().ok()?;
                    Some(PlatformImage { digest, size: e.size, media_type: e.media_type, platform: e.platform? })
                })
                .collect())
        }
        Manifest::Image(_) => {
            let by_digest = reference.with_digest(raw.digest.clone());
            let resolved = client.resolve(&by_digest, &TargetPlatform::host()).await?;
            let config = client.fetch_config(&resolved).await?;
            let platform = EntryPlatform::from_config(&config, &raw.digest)?;
            Ok(vec![PlatformImage {
                digest: raw.digest.clone(),
                size: raw.bytes.len() as u64,
                media_type: raw.kind.media_type().to_owned(),
                platform,
            }])
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(hex: char, arch: &str, variant: Option<&str>) -> PlatformImage {
        let digest: Digest = format!("sha256:{}", hex.to_string().repeat(64)).parse().unwrap();
        PlatformImage {
            digest,
            size: 100,
            media_type: DOCKER_MANIFEST.to_owned(),
            platform: EntryPlatform {
                architecture: arch.into(),
                os: "linux".into(),
                os_version: None,
                variant: variant.map(Into::into),
            },
        }
    }

    fn digests(raw: &RawManifest) -> Vec<char> {
        let doc: Document = serde_json::from_slice(&raw.bytes).unwrap();
        doc.manifests.iter().map(|e| e.digest.chars().nth(7).unwrap()).collect()
    }

    /// Whatever order the images come in, the index bytes are the same.
    #[rstest::rstest]
    #[case(&['a', 'b', 'c'])]
    #[case(&['c', 'a', 'b'])]
    #[case(&['b', 'c', 'a'])]
    fn sorted_by_platform_whatever_the_order(#[case] order: &[char]) {
        let all = [image('a', "amd64", None), image('b', "arm64", None), image('c', "arm", Some("v7"))];
        let images: Vec<PlatformImage> =
            order.iter().map(|h| all.iter().find(|i| i.digest.digest().starts_with(*h)).unwrap().clone()).collect();
        let mut builder = IndexBuilder::new();
        builder.upsert_all(&images).unwrap();
        let raw = builder.finish();
        assert_eq!(digests(&raw), vec!['a', 'c', 'b']);
        assert_eq!(raw.kind, ManifestKind::DockerManifestList);
    }

    #[test]
    fn append_replaces_same_platform_and_keeps_others() {
        let mut first = IndexBuilder::new();
        first.upsert_all(&[image('a', "amd64", None), image('b', "arm64", None)]).unwrap();
        let existing = first.finish();
        let mut next = IndexBuilder::from_existing(&existing.bytes).unwrap();
        next.upsert_all(&[image('d', "arm64", Some("v8"))]).unwrap();
        assert_eq!(digests(&next.finish()), vec!['a', 'd']);
    }

    #[test]
    fn two_images_of_one_platform_are_an_error() {
        let err =
            IndexBuilder::new().upsert_all(&[image('a', "arm64", None), image('b', "aarch64", None)]).unwrap_err();
        assert!(err.to_string().contains("linux/arm64"), "{err}");
    }

    #[test]
    fn require_names_the_missing_platforms() {
        let mut b = IndexBuilder::new();
        b.upsert(&image('a', "amd64", None));
        let required: Vec<TargetPlatform> = ["linux/amd64", "linux/arm64"].iter().map(|p| p.parse().unwrap()).collect();
        let err = b.require(&required).unwrap_err().to_string();
        assert!(err.contains("lacks platform(s) linux/arm64: it has linux/amd64"), "{err}");
        b.upsert(&image('b', "arm64", None));
        b.require(&required).unwrap();
    }

    #[test]
    fn oci_children_make_an_oci_index_and_foreign_fields_survive() {
        let existing = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[
            {"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:eeee","size":5,
             "platform":{"architecture":"s390x","os":"linux"},"annotations":{"k":"v"}}]}"#;
        let mut b = IndexBuilder::from_existing(existing).unwrap();
        b.upsert(&image('a', "amd64", None));
        let raw = b.finish();
        assert_eq!(raw.kind, ManifestKind::OciIndex);
        let text = String::from_utf8(raw.bytes.to_vec()).unwrap();
        assert!(text.contains(r#""annotations":{"k":"v"}"#), "{text}");
        assert_eq!(b.platforms(), vec!["linux/amd64", "linux/s390x"]);
    }

    #[test]
    fn platform_from_config() {
        let d: Digest = format!("sha256:{}", "a".repeat(64)).parse().unwrap();
        let p = EntryPlatform::from_config(br#"{"architecture":"arm","os":"linux","variant":"v7","config":{}}"#, &d)
            .unwrap();
        assert_eq!(p.target().to_string(), "linux/arm/v7");
        assert!(EntryPlatform::from_config(br#"{"os":"linux"}"#, &d).is_err());
    }
}
