//! Base images: pulled into the blob store before the build, then answered from memory
//! (their ENV for planning, their config and layers for materialising a stage).

use std::collections::BTreeMap;

use crate::image::{ImageConfig, ImageLayer};
use crate::layer::{Codec, DiffId, LayerDescriptor, LayerDigest, ManifestFormat};
use crate::plan::{Base, BaseImages, Plan, Platform};
use rbuild_cache::platform::TargetPlatform;
use rbuild_cache::reference::{Reference, ReferenceError};
use rbuild_cache::registry::{RegistryClient, RegistryError};
use rbuild_cache::store::{BlobStore, StoreError};

/// Errors getting a base image.
#[derive(Debug, thiserror::Error)]
pub enum BaseError {
    #[error("invalid base image reference {reference:?}")]
    Reference { reference: String, #[source] source: ReferenceError },
    #[error("cannot pull base image {reference}")]
    Pull { reference: String, #[source] source: Box<RegistryError> },
    #[error("base image {reference} has a config rbuild cannot read")]
    Config { reference: String, #[source] source: serde_json::Error },
    #[error("base image {reference} has {layers} layers but {diff_ids} diff ids")]
    DiffIds { reference: String, layers: usize, diff_ids: usize },
    #[error("base image {reference} has layer {digest} of unsupported media type {media_type}")]
    MediaType { reference: String, digest: String, media_type: String },
    #[error("base image {reference} was not pulled")]
    NotPulled { reference: String },
    #[error("cannot read a layer of base image {reference}")]
    Store { reference: String, #[source] source: StoreError },
    #[error("cannot unpack a layer of base image {reference}")]
    Unpack { reference: String, #[source] source: crate::layer::unpack::UnpackError },
}

/// A pulled base image: its config and its layers in the blob store.
#[derive(Debug, Clone)]
pub struct BaseImage {
    pub reference: String,
    pub config: ImageConfig,
    pub layers: Vec<ImageLayer>,
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

/// Pulls every base image the needed stages start from, and every image their
/// `COPY --from` reads, into `store`.
pub async fn pull_bases(client: &RegistryClient, store: &BlobStore, plan: &Plan) -> Result<BaseSet, BaseError> {
    let mut set = BaseSet::default();
    for stage in plan.stages.iter().filter(|s| s.needed) {
        let base = match &stage.base {
            Base::Image { reference } => Some(reference),
            _ => None,
        };
        // The base, then the images `COPY --from=<image>` reads.
        for reference in base.into_iter().chain(&stage.images) {
            let key = (reference.clone(), stage.platform.to_string());
            if set.images.contains_key(&key) {
                continue;
            }
            let image = pull_one(client, store, reference, &stage.platform).await?;
            set.images.insert(key, image);
        }
    }
    Ok(set)
}

async fn pull_one(
    client: &RegistryClient,
    store: &BlobStore,
    reference: &str,
    platform: &Platform,
) -> Result<BaseImage, BaseError> {
    let parsed: Reference =
        reference.parse().map_err(|source| BaseError::Reference { reference: reference.to_string(), source })?;
    let target = TargetPlatform::new(&platform.os, &platform.architecture, platform.variant.as_deref());
    let pulled = client
        .pull(&parsed, &target, store)
        .await
        .map_err(|source| BaseError::Pull { reference: reference.to_string(), source: Box::new(source) })?;
    let config: ImageConfig = serde_json::from_slice(&pulled.config_bytes)
        .map_err(|source| BaseError::Config { reference: reference.to_string(), source })?;
    let descriptors = pulled.resolved.image.layers();
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
    Ok(BaseImage { reference: reference.to_string(), config, layers })
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
