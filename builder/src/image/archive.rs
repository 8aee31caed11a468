//! `docker load`-able archive output (`--tar-path`): `manifest.json` with
//! `Config`/`RepoTags`/`Layers`, the config and the layer blobs under `blobs/sha256/`
//! (the layout `docker save` uses since Docker 25; layers stay compressed, which
//! `docker load` and containers/image both accept).

use std::io::Write;
use std::path::Path;

use serde::Serialize;

use super::manifest::AssembledImage;
use super::ImageError;
use crate::layer::verify::VerifyingReader;

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct ArchiveManifest<'a> {
    config: String,
    repo_tags: &'a [String],
    layers: Vec<String>,
}

fn header(path: &str, size: u64) -> tar::Header {
    let mut h = tar::Header::new_ustar();
    // Paths are `blobs/sha256/<64 hex>` or `manifest.json`: always fit ustar.
    let _ = h.set_path(path);
    h.set_size(size);
    h.set_mode(0o644);
    h.set_mtime(0);
    h.set_entry_type(tar::EntryType::Regular);
    h.set_cksum();
    h
}

/// Writes `image` into `out` as a docker-archive tar tagged with `repo_tags`
/// (`registry/repo:tag`). Entries are in a fixed order, so the archive is deterministic.
pub fn write_docker_archive<W: Write>(out: W, image: &AssembledImage, repo_tags: &[String]) -> Result<W, ImageError> {
    let werr = |source| ImageError::Write { path: "docker archive".into(), source };
    let mut tar = tar::Builder::new(out);
    let mut dirs = tar::Header::new_ustar();
    for d in ["blobs/", "blobs/sha256/"] {
        let _ = dirs.set_path(d);
        dirs.set_entry_type(tar::EntryType::Directory);
        dirs.set_mode(0o755);
        dirs.set_size(0);
        dirs.set_cksum();
        tar.append(&dirs, std::io::empty()).map_err(werr)?;
    }
    let config = format!("blobs/sha256/{}", image.config.digest().digest());
    tar.append(&header(&config, image.config_json.len() as u64), image.config_json.as_slice()).map_err(werr)?;
    let mut layers = Vec::new();
    for layer in &image.layers {
        let name = format!("blobs/sha256/{}", layer.descriptor.digest.hex());
        if !layers.contains(&name) {
            let berr = |source| ImageError::Blob { path: layer.blob.clone(), source };
            let f = std::fs::File::open(&layer.blob).map_err(berr)?;
            let size = f.metadata().map_err(berr)?.len();
            // The store's bytes are checked against the digest as they stream out.
            let digest = layer.descriptor.digest.digest();
            let f = VerifyingReader::new(std::io::BufReader::new(f), digest, format!("stored layer blob {digest}"));
            tar.append(&header(&name, size), f).map_err(berr)?;
        }
        layers.push(name);
    }
    let manifest = [ArchiveManifest { config, repo_tags, layers }];
    let json = serde_json::to_vec(&manifest).map_err(|source| ImageError::Json { what: "archive manifest", source })?;
    tar.append(&header("manifest.json", json.len() as u64), json.as_slice()).map_err(werr)?;
    tar.into_inner().map_err(werr)
}

/// Convenience: writes the archive to `path` (temp file + rename).
pub fn write_docker_archive_file(path: &Path, image: &AssembledImage, repo_tags: &[String]) -> Result<(), ImageError> {
    let tmp = path.with_extension("tmp");
    let werr = |p: &Path| {
        let p = p.to_path_buf();
        move |source| ImageError::Write { path: p, source }
    };
    let f = std::fs::File::create(&tmp).map_err(werr(&tmp))?;
    let f = write_docker_archive(std::io::BufWriter::new(f), image, repo_tags).inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })?;
    f.into_inner().map_err(|e| werr(&tmp)(e.into_error()))?.sync_all().map_err(werr(&tmp))?;
    std::fs::rename(&tmp, path).map_err(werr(path))
}
