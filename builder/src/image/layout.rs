//! OCI image layout directory output (`--oci-layout-path`).

use std::io::Write;
use std::path::{Path, PathBuf};

use oci_spec::image::Digest;
use rbuild_cache::index::{EntryPlatform, IndexBuilder, PlatformImage};
use serde::Serialize;

use super::manifest::AssembledImage;
use super::ImageError;
use crate::layer::verify::VerifyingReader;
use crate::layer::ManifestFormat;

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Index<'a> {
    schema_version: u32,
    media_type: &'a str,
    manifests: Vec<serde_json::Value>,
}

fn write_err(path: &Path) -> impl Fn(std::io::Error) -> ImageError + '_ {
    move |source| ImageError::Write { path: path.to_path_buf(), source }
}

fn blob_path(dir: &Path, digest: &Digest) -> PathBuf {
    dir.join("blobs").join(digest.algorithm().as_ref()).join(digest.digest())
}

/// Writes `bytes` to `path` through a temp file and a rename.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), ImageError> {
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp).map_err(write_err(&tmp))?;
    f.write_all(bytes).map_err(write_err(&tmp))?;
    std::fs::rename(&tmp, path).map_err(write_err(path))
}

/// Places a layer blob: a reflink where the file system has them, else a copy; either way
/// the store's bytes are checked against `digest` first (never a hard link: a later write to
/// the output must not reach the store, nor a damaged store blob the output).
fn place_blob(src: &Path, dst: &Path, digest: &Digest) -> Result<(), ImageError> {
    let berr = |source| ImageError::Blob { path: src.to_path_buf(), source };
    let tmp = dst.with_extension("tmp");
    let file = std::fs::File::open(src).map_err(berr)?;
    let mut out = std::fs::File::create(&tmp).map_err(write_err(&tmp))?;
    let mut reader =
        VerifyingReader::new(std::io::BufReader::new(&file), digest, format!("stored layer blob {digest}"));
    let placed = match rustix::fs::ioctl_ficlone(&out, &file) {
        Ok(()) => reader.finish(),
        Err(_) => std::io::copy(&mut reader, &mut out).map(|_| ()),
    };
    if let Err(source) = placed {
        let _ = std::fs::remove_file(&tmp);
        return Err(berr(source));
    }
    std::fs::rename(&tmp, dst).map_err(write_err(dst))
}

/// Writes `image` as an OCI image layout in `dir` (created if missing). `index.json`
/// lists this one manifest, annotated with `ref_name` (`org.opencontainers.image.ref.name`).
/// The layout always holds an OCI manifest (skopeo and umoci ignore Docker manifests
/// in a layout); blobs and config bytes are the same, only the manifest digest differs.
pub fn write_oci_layout(dir: &Path, image: &AssembledImage, ref_name: Option<&str>) -> Result<(), ImageError> {
    let image = &image.to_format(ManifestFormat::Oci);
    let blobs = dir.join("blobs").join("sha256");
    std::fs::create_dir_all(&blobs).map_err(write_err(&blobs))?;
    write_atomic(&dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#)?;
    for layer in &image.layers {
        let digest = layer.descriptor.digest.digest();
        place_blob(&layer.blob, &blob_path(dir, digest), digest)?;
    }
    write_atomic(&blob_path(dir, image.config.digest()), &image.config_json)?;
    write_atomic(&blob_path(dir, image.manifest.digest()), &image.manifest_json)?;
    let mut desc = serde_json::json!({
        "mediaType": image.manifest.media_type().to_string(),
        "digest": image.manifest.digest().to_string(),
        "size": image.manifest.size(),
    });
    if let Some(name) = ref_name {
        desc["annotations"] = serde_json::json!({ "org.opencontainers.image.ref.name": name });
    }
    let index =
        Index { schema_version: 2, media_type: "application/vnd.oci.image.index.v1+json", manifests: vec![desc] };
    let json = serde_json::to_vec(&index).map_err(|source| ImageError::Json { what: "index", source })?;
    write_atomic(&dir.join("index.json"), &json)
}

/// Writes a multi-platform image as an OCI layout: every image (as an OCI manifest, as in
/// [`write_oci_layout`]), an OCI index of them sorted by platform, and `index.json`
/// naming that index (annotated with `ref_name`).
pub fn write_oci_layout_index(
    dir: &Path,
    images: &[(&AssembledImage, EntryPlatform)],
    ref_name: Option<&str>,
) -> Result<(), ImageError> {
    let mut index = IndexBuilder::new();
    for (image, platform) in images {
        write_oci_layout(dir, image, None)?;
        let oci = image.to_format(ManifestFormat::Oci);
        index.upsert(&PlatformImage {
            digest: oci.manifest.digest().clone(),
            size: oci.manifest.size(),
            media_type: oci.manifest.media_type().to_string(),
            platform: platform.clone(),
        });
    }
    let raw = index.finish();
    write_atomic(&blob_path(dir, &raw.digest), &raw.bytes)?;
    let mut desc = serde_json::json!({ "mediaType": raw.kind.media_type(), "digest": raw.digest.to_string(), "size": raw.bytes.len() });
    if let Some(name) = ref_name {
        desc["annotations"] = serde_json::json!({ "org.opencontainers.image.ref.name": name });
    }
    let top = Index { schema_version: 2, media_type: "application/vnd.oci.image.index.v1+json", manifests: vec![desc] };
    let json = serde_json::to_vec(&top).map_err(|source| ImageError::Json { what: "index", source })?;
    write_atomic(&dir.join("index.json"), &json)
}
