//! Manifest assembly: config + layers → canonical config and manifest JSON.

use std::collections::BTreeMap;
use std::path::PathBuf;

use oci_spec::image::{Descriptor, Digest, MediaType};
use serde::Serialize;
use sha2::{Digest as _, Sha256};

use super::config::ImageConfig;
use super::ImageError;
use crate::layer::{sha256_digest, Codec, LayerDescriptor, ManifestFormat};

const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

/// A layer of the image and where its blob is.
#[derive(Clone, Debug)]
pub struct ImageLayer {
    /// What the layer writer (or the registry) said about it.
    pub descriptor: LayerDescriptor,
    /// The blob file (e.g. in the local blob store).
    pub blob: PathBuf,
}

/// An image ready to be written or pushed.
#[derive(Clone, Debug)]
pub struct AssembledImage {
    /// Media type family actually used (zstd layers force OCI).
    pub format: ManifestFormat,
    /// Canonical config JSON.
    pub config_json: Vec<u8>,
    /// Its descriptor.
    pub config: Descriptor,
    /// Canonical manifest JSON.
    pub manifest_json: Vec<u8>,
    /// Its descriptor (the image digest).
    pub manifest: Descriptor,
    /// The layers, bottom first.
    pub layers: Vec<ImageLayer>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Manifest<'a> {
    schema_version: u32,
    media_type: &'a str,
    config: &'a Descriptor,
    layers: Vec<Descriptor>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    annotations: BTreeMap<String, String>,
}

/// Hashes bytes into a descriptor.
pub(crate) fn descriptor_of(media_type: MediaType, bytes: &[u8]) -> Descriptor {
    Descriptor::new(media_type, bytes.len() as u64, digest_of(bytes))
}

/// sha256 digest of bytes.
pub(crate) fn digest_of(bytes: &[u8]) -> Digest {
    sha256_digest(&Sha256::digest(bytes))
}

/// The manifest media type of a format.
pub fn manifest_media_type(format: ManifestFormat) -> MediaType {
    match format {
        ManifestFormat::Docker => MediaType::Other(DOCKER_MANIFEST.into()),
        ManifestFormat::Oci => MediaType::ImageManifest,
    }
}

impl AssembledImage {
    /// The same image (same config bytes and layer blobs) with manifest and
    /// descriptors in `format`'s media types; the manifest digest changes.
    pub fn to_format(&self, format: ManifestFormat) -> AssembledImage {
        if format == self.format {
            return self.clone();
        }
        let config = Descriptor::new(config_media_type(format), self.config.size(), self.config.digest().clone());
        let (manifest_json, manifest) = manifest_for(format, &config, &self.layers);
        AssembledImage {
            format,
            config_json: self.config_json.clone(),
            config,
            manifest_json,
            manifest,
            layers: self.layers.clone(),
        }
    }
}

fn config_media_type(format: ManifestFormat) -> MediaType {
    match format {
        ManifestFormat::Docker => MediaType::Other(DOCKER_CONFIG.into()),
        ManifestFormat::Oci => MediaType::ImageConfig,
    }
}

fn manifest_for(format: ManifestFormat, config: &Descriptor, layers: &[ImageLayer]) -> (Vec<u8>, Descriptor) {
    let media_type = match format {
        ManifestFormat::Docker => DOCKER_MANIFEST,
        ManifestFormat::Oci => OCI_MANIFEST,
    };
    let manifest = Manifest {
        schema_version: 2,
        media_type,
        config,
        layers: layers.iter().map(|l| l.descriptor.descriptor(format)).collect(),
        annotations: BTreeMap::new(),
    };
    // Invariant: the manifest holds only strings, integers and oci-spec descriptors,
    // which always serialise.
    let json = serde_json::to_vec(&manifest).expect("manifest serialises");
    let desc = descriptor_of(manifest_media_type(format), &json);
    (json, desc)
}

/// Builds config and manifest. `config.rootfs.diff_ids` is replaced by the layers'
/// diff ids; the history's non-empty entries must match the layer count when given.
pub fn assemble(
    config: &ImageConfig,
    layers: Vec<ImageLayer>,
    format: ManifestFormat,
) -> Result<AssembledImage, ImageError> {
    let non_empty = config.history.iter().filter(|h| !h.empty_layer).count();
    if !config.history.is_empty() && non_empty != layers.len() {
        return Err(ImageError::HistoryMismatch { history: non_empty, layers: layers.len() });
    }
    let format = if format == ManifestFormat::Docker && layers.iter().any(|l| l.descriptor.codec == Codec::Zstd) {
        tracing::warn!("zstd layers have no Docker media type; writing an OCI manifest");
        ManifestFormat::Oci
    } else {
        format
    };
    let mut config = config.clone();
    config.rootfs.kind = "layers".into();
    config.rootfs.diff_ids = layers.iter().map(|l| l.descriptor.diff_id.clone()).collect();
    let config_json =
        serde_json::to_vec(&config).map_err(|source| ImageError::Json { what: "image config", source })?;
    let config_desc = descriptor_of(config_media_type(format), &config_json);
    let (manifest_json, manifest_desc) = manifest_for(format, &config_desc, &layers);
    Ok(AssembledImage { format, config_json, config: config_desc, manifest_json, manifest: manifest_desc, layers })
}
