//! The OCI types the workspace shares, re-exported from `oci-spec` in one place.

pub use oci_spec::image::{
    Arch, Descriptor, DescriptorBuilder, Digest, DigestAlgorithm, ImageConfiguration, ImageIndex, ImageIndexBuilder,
    ImageManifest, ImageManifestBuilder, MediaType, Os, Platform, PlatformBuilder, Sha256Digest,
};

/// Docker schema2 manifest media type (`application/vnd.docker.distribution.manifest.v2+json`).
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Docker manifest list media type.
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// Docker image config media type.
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
/// Docker gzip layer media type.
pub const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";

/// The sha256 digest of `bytes`.
pub fn sha256_digest(bytes: &[u8]) -> Digest {
    use sha2::Digest as _;
    digest_from_hash(&sha2::Sha256::digest(bytes))
}

/// Turn a finished sha256 hash into a `Digest`.
pub(crate) fn digest_from_hash(hash: &[u8]) -> Digest {
    use std::str::FromStr;
    match Sha256Digest::from_str(&hex::encode(hash)) {
        Ok(d) => d.into(),
        // Invariant: the lowercase hex of a 32-byte hash always parses as a sha256 digest.
        Err(_) => unreachable!("hex of a sha256 hash is a valid digest"),
    }
}
