//! Filesystem layers: safe unpack, change snapshots, deterministic tar writing.
//!
//! The module owns everything between "a layer blob" and "a root directory":
//! [`unpack`] applies layers into a root (hostile-input safe, via [`root_path`]),
//! [`snapshot`] turns what a step changed into a sorted list of [`LayerEntry`]s,
//! [`tar_writer`] + [`compress`] turn those into a blob in one pass that yields
//! both the compressed digest and the diff id. [`ownership`] holds the contract
//! for ids and device nodes that a rootless process cannot represent on disk.
//!
//! Flow for the executor:
//! 1. `unpack::unpack_layer` each base layer into the stage root (a [`root_path::RootDir`]);
//! 2. native snapshotter: `snapshot::native::write_index(root, index)` once (index outside
//!    the root); overlay: the sandbox mounts `userxattr,redirect_dir=off,metacopy=off`;
//! 3. after a step: `native::diff(root, index)` or `overlay::upper_changes(upper)` gives
//!    sorted [`LayerEntry`]s; [`write_layer`] streams them into the caller's sink
//!    (e.g. a temp file of the blob store) and returns a [`LayerDescriptor`];
//! 4. native only: `NativeDiff::commit()` once the blob is safely stored.

pub mod compress;
pub mod exclusions;
pub mod ownership;
mod parallel_gzip;
pub mod root_path;
pub mod snapshot;
pub mod sparse;
pub mod tar_writer;
pub mod unpack;
pub mod verify;
pub mod whiteout;

pub use compress::{write_layer, write_stream, LayerWriteError};
pub use parallel_gzip::{GzipOptions, BLOCK as GZIP_BLOCK};
pub use tar_writer::{sort_entries, LayerEntry, TarLayerWriter, TarWriteError};

use std::fmt;

use oci_spec::image::{Digest, MediaType, Sha256Digest};

/// Digest of the *uncompressed* layer tar (the `rootfs.diff_ids` entry of a config).
#[derive(Clone, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct DiffId(Digest);

/// Digest of the layer *blob* as stored and pushed (compressed bytes).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct LayerDigest(Digest);

macro_rules! digest_newtype {
    ($t:ident) => {
        impl $t {
            /// Wraps a digest; the caller asserts which of the two digests it is.
            pub fn new(digest: Digest) -> Self {
                Self(digest)
            }
            /// Builds the sha256 digest from a raw 32-byte hash.
            pub fn from_sha256(hash: &[u8]) -> Self {
                Self(sha256_digest(hash))
            }
            /// The OCI digest.
            pub fn digest(&self) -> &Digest {
                &self.0
            }
            /// The hex part of the digest (file name in `blobs/sha256/`).
            pub fn hex(&self) -> &str {
                self.0.digest()
            }
        }
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }
    };
}
digest_newtype!(DiffId);
digest_newtype!(LayerDigest);

/// Turns a raw sha256 hash into an OCI digest.
pub(crate) fn sha256_digest(hash: &[u8]) -> Digest {
    let hex = hex::encode(hash);
    // Invariant: hex::encode of any bytes is lowercase hex; a 32-byte sha256 gives 64 chars,
    // which is exactly what `Sha256Digest` accepts.
    let sha: Sha256Digest = hex.parse().expect("sha256 hex is a valid digest");
    sha.into()
}

/// How a layer blob is compressed (decided by the media type when reading).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Codec {
    /// Plain tar.
    None,
    /// gzip (RFC 1952).
    Gzip,
    /// zstd frames.
    Zstd,
}

/// Compression (with level) used when writing a layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    /// Plain tar.
    None,
    /// gzip at `level` (0–9; 6 is the `gzip` default).
    Gzip { level: u32 },
    /// zstd at `level` (1–22; 3 is the `zstd` default).
    Zstd { level: i32 },
}

impl Default for Compression {
    fn default() -> Self {
        Compression::Gzip { level: 6 }
    }
}

impl Compression {
    /// The codec without the level.
    pub fn codec(self) -> Codec {
        match self {
            Compression::None => Codec::None,
            Compression::Gzip { .. } => Codec::Gzip,
            Compression::Zstd { .. } => Codec::Zstd,
        }
    }
}

/// Which family of media types manifests and layers use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ManifestFormat {
    /// Docker image manifest v2 schema 2 (widest compatibility; the default).
    #[default]
    Docker,
    /// OCI image manifest (`--oci-mediatypes`).
    Oci,
}

const DOCKER_LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar";
const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
const DOCKER_LAYER_ZSTD: &str = "application/vnd.docker.image.rootfs.diff.tar.zstd";
const DOCKER_FOREIGN_GZIP: &str = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip";

impl Codec {
    /// The layer media type for this codec in the given manifest format.
    pub fn media_type(self, format: ManifestFormat) -> MediaType {
        match (format, self) {
            (ManifestFormat::Oci, Codec::None) => MediaType::ImageLayer,
            (ManifestFormat::Oci, Codec::Gzip) => MediaType::ImageLayerGzip,
            (ManifestFormat::Oci, Codec::Zstd) => MediaType::ImageLayerZstd,
            (ManifestFormat::Docker, Codec::None) => MediaType::Other(DOCKER_LAYER.into()),
            (ManifestFormat::Docker, Codec::Gzip) => MediaType::Other(DOCKER_LAYER_GZIP.into()),
            (ManifestFormat::Docker, Codec::Zstd) => MediaType::Other(DOCKER_LAYER_ZSTD.into()),
        }
    }

    /// The codec a layer media type implies, or `None` if it is not a layer type.
    pub fn from_media_type(media_type: &MediaType) -> Option<Codec> {
        match media_type {
            MediaType::ImageLayer | MediaType::ImageLayerNonDistributable => Some(Codec::None),
            MediaType::ImageLayerGzip | MediaType::ImageLayerNonDistributableGzip => Some(Codec::Gzip),
            MediaType::ImageLayerZstd | MediaType::ImageLayerNonDistributableZstd => Some(Codec::Zstd),
            MediaType::Other(s) => match s.as_str() {
                DOCKER_LAYER => Some(Codec::None),
                DOCKER_LAYER_GZIP | DOCKER_FOREIGN_GZIP => Some(Codec::Gzip),
                DOCKER_LAYER_ZSTD => Some(Codec::Zstd),
                _ => None,
            },
            _ => None,
        }
    }
}

/// How tar entry mtimes are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum MtimePolicy {
    /// Keep each file's mtime (whole seconds).
    #[default]
    Keep,
    /// Clamp mtimes to at most this epoch (`SOURCE_DATE_EPOCH`; `--reproducible` uses 0).
    Clamp(i64),
}

/// Options for writing one layer; the CLI maps `--compression`, levels,
/// `--reproducible`/`SOURCE_DATE_EPOCH` and `--oci-mediatypes` onto it.
#[derive(Clone, Debug, Default)]
pub struct LayerOptions {
    /// Compression and level.
    pub compression: Compression,
    /// Mtime handling.
    pub mtime: MtimePolicy,
    /// Media type family of the returned descriptor.
    pub format: ManifestFormat,
    /// How on-disk owners map back to the ids written into the layer.
    pub ids: ownership::IdMaps,
    /// zstd worker threads: 0 (default) compresses on the pipeline's compressor thread;
    /// n ≥ 1 uses zstd's multithreading. Output depends only on 0 vs ≥ 1, never on the
    /// core count, so digests stay reproducible across machines.
    pub zstd_workers: u32,
    /// Parallel gzip threads and stored-block detection (gzip only).
    pub gzip: GzipOptions,
}

/// What writing a layer produced, computed in the single pass that wrote it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LayerDescriptor {
    /// Digest of the compressed blob.
    pub digest: LayerDigest,
    /// Digest of the uncompressed tar.
    pub diff_id: DiffId,
    /// Size of the compressed blob in bytes.
    pub size: u64,
    /// Size of the uncompressed tar in bytes.
    pub uncompressed_size: u64,
    /// Codec of the blob.
    pub codec: Codec,
    /// Media type in the requested manifest format.
    pub media_type: MediaType,
}

impl LayerDescriptor {
    /// The OCI descriptor for a manifest's `layers` list, in `format`'s media types.
    pub fn descriptor(&self, format: ManifestFormat) -> oci_spec::image::Descriptor {
        oci_spec::image::Descriptor::new(self.codec.media_type(format), self.size, self.digest.digest().clone())
    }
}
