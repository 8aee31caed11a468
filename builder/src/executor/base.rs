//! Base images: pulled into the blob store before the build, then answered from memory
//! (their ENV for planning, their config and layers for materialising a stage).

use std::collections::BTreeMap;

use crate::image::{ImageConfig, ImageLayer};
use crate::layer::{Codec, DiffId, LayerDescriptor, LayerDigest, ManifestFormat};
use crate::plan::{Base, BaseImages, Plan, Platform};
use rbuild_cache::oci::{sha256_digest, Digest};
use rbuild_cache::platform::TargetPlatform;
use rbuild_cache::reference::{Reference, ReferenceError};
use rbuild_cache::registry::{RegistryClient, RegistryError};
use rbuild_cache::store::{BlobStore, StoreError};

/// Errors getting a base image.
#[derive(Debug, thiserror::Error)]
pub enum BaseError {
    #[error("invalid base image reference {reference:?}")]
    Reference {
        reference: String,
        #[source]
        source: ReferenceError,
    },
    #[error("cannot pull base image {reference}")]
    Pull {
        reference: String,
        #[source]
        source: Box<RegistryError>,
    },
    #[error("base image {reference} has a config rbuild cannot read")]
    Config {
        reference: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("base image {reference} has {layers} layers but {diff_ids} diff ids")]
    DiffIds { reference: String, layers: usize, diff_ids: usize },
    #[error("base image {reference} has layer {digest} of unsupported media type {media_type}")]
    MediaType { reference: String, digest: String, media_type: String },
    #[error("base image {reference} was not pulled")]
    NotPulled { reference: String },
    #[error("cannot read a layer of base image {reference}")]
    Store {
        reference: String,
        #[source]
        source: StoreError,
    },
    #[error("cannot unpack a layer of base image {reference}")]
    Unpack {
        reference: String,
        #[source]
        source: crate::layer::unpack::UnpackError,
    },
}

/// A base image: its config and its layers (in the blob store, or fetched from `source`
/// when a step first needs the filesystem).
#[derive(Debug, Clone)]
pub struct BaseImage {
    pub reference: String,
    pub config: ImageConfig,
    pub layers: Vec<ImageLayer>,
    /// The resolved manifest digest: key(0) of the cache keys of stages built from it.
    pub digest: Option<Digest>,
    /// The repository the layers come from (`None` when they were pulled already).
    pub source: Option<Reference>,
}

/// The base images of a build, keyed by (reference as written in FROM, platform).
#[derive(Debug, Clone, Default)]
pub struct BaseSet {
    images: BTreeMap<(String, String), BaseImage>,
}

impl BaseSet {
    /// The base image `reference` for `platform`.
    pub fn get(&self, reference: &str, platform: &Platform) -> Result<&BaseImage, BaseError> {
        self.images
            .get(&(reference.to_string(), platform.to_string()))
            .ok_or_else(|| BaseError::NotPulled { reference: reference.to_string() })
    }
}

impl BaseSet {
    /// Every base image.
    pub fn images(&self) -> impl Iterator<Item = &BaseImage> {
        self.images.values()
    }

    /// An image pulled for `COPY --from=<image>` (the first platform pulled for it).
    pub fn image(&self, reference: &str) -> Option<&BaseImage> {
        self.images.iter().find(|((r, _), _)| r == reference).map(|(_, image)| image)
    }

    /// `(registry, repository)` of every base image, for cross-repository blob mounts.
    pub fn repositories(&self) -> Vec<(String, String)> {
        let mut repos: Vec<(String, String)> = self
            .images
            .values()
            .filter_map(|b| b.reference.parse::<Reference>().ok())
            .map(|r| (r.registry().to_string(), r.repository().to_string()))
            .collect();
        repos.sort();
        repos.dedup();
        repos
    }
}

impl BaseImages for BaseSet {
    fn onbuild(&self, image: &str, platform: &Platform) -> Option<Vec<String>> {
        Some(self.get(image, platform).ok()?.config.config.on_build.clone())
    }

    fn env(&self, image: &str, platform: &Platform) -> Option<Vec<(String, String)>> {
        let base = self.get(image, platform).ok()?;
        Some(
            base.config
                .config
                .env
                .iter()
                .map(|kv| kv.split_once('=').map_or((kv.clone(), String::new()), |(k, v)| (k.into(), v.into())))
                .collect(),
        )
    }
}

/// Resolves every base image the needed stages start from (tags are always re-resolved) and
/// fetches its config, but no layer: layers are fetched from [`BaseImage::source`] only when
/// a step misses the cache and needs the filesystem.
pub async fn resolve_bases(client: &RegistryClient, store: &BlobStore, plan: &Plan) -> Result<BaseSet, BaseError> {
    let mut wanted: Vec<(String, Platform)> = Vec::new();
    for stage in plan.stages.iter().filter(|s| s.needed) {
        let base = match &stage.base {
            Base::Image { reference } => Some(reference),
            _ => None,
        };
        // The base, then the images `COPY --from=<image>` reads.
        for reference in base.into_iter().chain(&stage.images) {
            if !wanted.iter().any(|(r, p)| r == reference && *p == stage.platform) {
                wanted.push((reference.clone(), stage.platform.clone()));
            }
        }
    }
    let resolved = futures_util::future::join_all(wanted.iter().map(|(r, p)| resolve_one(client, store, r, p))).await;
    let mut set = BaseSet::default();
    for ((reference, platform), image) in wanted.into_iter().zip(resolved) {
        set.images.insert((reference, platform.to_string()), image?);
    }
    Ok(set)
}

async fn resolve_one(
    client: &RegistryClient,
    store: &BlobStore,
    reference: &str,
    platform: &Platform,
) -> Result<BaseImage, BaseError> {
    let parsed: Reference =
        reference.parse().map_err(|source| BaseError::Reference { reference: reference.to_string(), source })?;
    let target = TargetPlatform::new(&platform.os, &platform.architecture, platform.variant.as_deref());
    let pull_err = |source| BaseError::Pull { reference: reference.to_string(), source: Box::new(source) };
    let resolved = client.resolve(&parsed, &target).await.map_err(pull_err)?;
    // The config is content-addressed: one already in the store (an earlier build with this
    // --cache-dir) is not fetched again.
    let config_digest = resolved.image.config().digest();
    let config_bytes = match store.read_blob(config_digest).ok().filter(|b| sha256_digest(b) == *config_digest) {
        Some(bytes) => bytes,
        None => {
            let bytes = client.fetch_config(&resolved).await.map_err(pull_err)?;
            store.put_bytes(&bytes).map_err(|source| BaseError::Store { reference: reference.to_string(), source })?;
            bytes
        }
    };
    let mut image = base_image(store, reference, &resolved.image, &config_bytes)?;
    image.digest = Some(resolved.manifest.digest.clone());
    image.source = Some(parsed.with_digest(resolved.manifest.digest.clone()));
    Ok(image)
}

/// Config and layers of a resolved image (its blobs may not be in `store` yet).
fn base_image(
    store: &BlobStore,
    reference: &str,
    manifest: &oci_spec::image::ImageManifest,
    config_bytes: &[u8],
) -> Result<BaseImage, BaseError> {
    let config: ImageConfig = serde_json::from_slice(config_bytes)
        .map_err(|source| BaseError::Config { reference: reference.to_string(), source })?;
    let descriptors = manifest.layers();
    if descriptors.len() != config.rootfs.diff_ids.len() {
        return Err(BaseError::DiffIds {
            reference: reference.to_string(),
            layers: descriptors.len(),
            diff_ids: config.rootfs.diff_ids.len(),
        });
    }
    let layers = descriptors
        .iter()
        .zip(&config.rootfs.diff_ids)
        .map(|(d, diff_id)| base_layer(store, reference, d, diff_id))
        .collect::<Result<_, _>>()?;
    Ok(BaseImage { reference: reference.to_string(), config, layers, digest: None, source: None })
}

fn base_layer(
    store: &BlobStore,
    reference: &str,
    d: &oci_spec::image::Descriptor,
    diff_id: &DiffId,
) -> Result<ImageLayer, BaseError> {
    let codec = Codec::from_media_type(d.media_type()).ok_or_else(|| BaseError::MediaType {
        reference: reference.to_string(),
        digest: d.digest().to_string(),
        media_type: d.media_type().to_string(),
    })?;
    let descriptor = LayerDescriptor {
        digest: LayerDigest::new(d.digest().clone()),
        diff_id: diff_id.clone(),
        size: d.size(),
        uncompressed_size: 0,
        codec,
        media_type: codec.media_type(ManifestFormat::Docker),
    };
    Ok(ImageLayer { descriptor, blob: store.path(d.digest()) })
}
