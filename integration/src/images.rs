//! Base images made offline: `busybox:latest` from Debian's `busybox-static`, a two-platform
//! index, and random-content images for benchmarks. Layers are real gzip tars written straight
//! into a [`BlobStore`], hashed (compressed and uncompressed) on the way.

use std::io::{self, Write};
use std::path::Path;

use flate2::write::GzEncoder;
use rbuild_cache::oci::{Digest, DOCKER_CONFIG, DOCKER_LAYER_GZIP};
use rbuild_cache::reference::Reference;
use rbuild_cache::registry::{ImageToPush, ManifestKind, RawManifest, RegistryClient, RegistryError};
use rbuild_cache::store::{BlobStore, BlobWriter, StoredBlob};
use serde_json::json;
use sha2::{Digest as _, Sha256};

/// Busybox applets linked into `/bin`.
pub const APPLETS: &[&str] = &[
    "sh", "ls", "cat", "echo", "id", "ps", "true", "false", "mkdir", "rm", "touch", "chown", "sleep", "env", "wc",
    "grep", "sed", "cp", "mv", "ln", "chmod", "head", "tail", "test",
];
const MTIME: u64 = 1_700_000_000;
/// The arm64 busybox (extracted from Debian's `busybox-static:arm64` by
/// `integration/scripts/foreign-busybox.sh`), the arm64 half of `busybox-multi:latest`.
pub const ARM64_BUSYBOX: &str = "/usr/local/lib/rbuild-test/arm64/bin/busybox";
const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";

/// OCI or Docker schema2 media types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    /// OCI manifest, config and layer types.
    Oci,
    /// Docker schema2 types.
    Docker,
}

/// A layer in the store: compressed blob and uncompressed diff id.
#[derive(Debug, Clone)]
pub struct Layer {
    /// The gzip blob.
    pub blob: StoredBlob,
    /// sha256 of the uncompressed tar.
    pub diff_id: Digest,
}

/// Hashes what passes through (for the diff id) before handing it to gzip.
struct DiffIdWriter<W: Write> {
    inner: W,
    hasher: Sha256,
}

impl<W: Write> Write for DiffIdWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// One entry of a layer.
pub enum Entry<'a> {
    /// A directory with mode.
    Dir(&'a str, u32),
    /// A file with content and mode.
    File(&'a str, &'a [u8], u32),
    /// A file copied from the host.
    HostFile(&'a str, &'a Path, u32),
    /// A symlink.
    Symlink(&'a str, &'a str),
}

/// Write a gzip tar layer of `entries` into `store`.
pub fn write_layer(store: &BlobStore, entries: &[Entry<'_>]) -> io::Result<Layer> {
    let blob_writer: BlobWriter = store.writer().map_err(io::Error::other)?;
    let gz = GzEncoder::new(blob_writer, flate2::Compression::fast());
    let counting = DiffIdWriter { inner: gz, hasher: Sha256::new() };
    let mut tar = tar::Builder::new(counting);
    for entry in entries {
        let mut header = tar::Header::new_gnu();
        header.set_mtime(MTIME);
        header.set_uid(0);
        header.set_gid(0);
        match entry {
            Entry::Dir(path, mode) => {
                header.set_entry_type(tar::EntryType::Directory);
                header.set_mode(*mode);
                header.set_size(0);
                tar.append_data(&mut header, path, io::empty())?;
            }
            Entry::File(path, data, mode) => {
                header.set_entry_type(tar::EntryType::Regular);
                header.set_mode(*mode);
                header.set_size(data.len() as u64);
                tar.append_data(&mut header, path, *data)?;
            }
            Entry::HostFile(path, host, mode) => {
                let file = std::fs::File::open(host)?;
                header.set_entry_type(tar::EntryType::Regular);
                header.set_mode(*mode);
                header.set_size(file.metadata()?.len());
                tar.append_data(&mut header, path, file)?;
            }
            Entry::Symlink(path, target) => {
                header.set_entry_type(tar::EntryType::Symlink);
                header.set_mode(0o777);
                header.set_size(0);
                tar.append_link(&mut header, path, target)?;
            }
        }
    }
    let counting = tar.into_inner()?;
    let diff_id: Digest =
        format!("sha256:{}", hex::encode(counting.hasher.finalize())).parse().map_err(io::Error::other)?;
    let blob_writer = counting.inner.finish()?;
    let blob = blob_writer.commit(None, None).map_err(io::Error::other)?;
    Ok(Layer { blob, diff_id })
}

/// Write config and manifest for `layers`; returns the manifest (also stored).
pub fn write_image(
    store: &BlobStore,
    flavor: Flavor,
    architecture: &str,
    variant: Option<&str>,
    layers: &[Layer],
) -> io::Result<RawManifest> {
    let (config_type, layer_type, kind) = match flavor {
        Flavor::Oci => (OCI_CONFIG, OCI_LAYER_GZIP, ManifestKind::OciManifest),
        Flavor::Docker => (DOCKER_CONFIG, DOCKER_LAYER_GZIP, ManifestKind::DockerManifest),
    };
    let diff_ids: Vec<String> = layers.iter().map(|l| l.diff_id.to_string()).collect();
    let mut config = json!({
        "created": "2023-11-14T22:13:20Z",
        "architecture": architecture,
        "os": "linux",
        "config": {
            "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
            "Cmd": ["sh"]
        },
        "rootfs": { "type": "layers", "diff_ids": diff_ids },
        "history": layers.iter().map(|_| json!({"created": "2023-11-14T22:13:20Z", "created_by": "rbuild test fixture"})).collect::<Vec<_>>()
    });
    if let Some(v) = variant {
        config["variant"] = json!(v);
    }
    let config_bytes = serde_json::to_vec(&config)?;
    let config_blob = store.put_bytes(&config_bytes).map_err(io::Error::other)?;
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": kind.media_type(),
        "config": { "mediaType": config_type, "digest": config_blob.digest.to_string(), "size": config_blob.size },
        "layers": layers.iter().map(|l| json!({
            "mediaType": layer_type, "digest": l.blob.digest.to_string(), "size": l.blob.size
        })).collect::<Vec<_>>()
    });
    let bytes = serde_json::to_vec(&manifest)?;
    store.put_bytes(&bytes).map_err(io::Error::other)?;
    Ok(RawManifest::new(bytes, kind))
}

/// The busybox rootfs layer: `/bin/busybox` from the host's `busybox-static`, applet links,
/// `/etc/passwd` (root, nobody, user 1000), `/etc/group`, `/tmp` 1777.
pub fn busybox_layer(store: &BlobStore, busybox: &Path) -> io::Result<Layer> {
    let passwd = b"root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000:user:/home/user:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n";
    let group = b"root:x:0:\nuser:x:1000:\nnogroup:x:65534:\n";
    let links: Vec<String> = APPLETS.iter().map(|a| format!("bin/{a}")).collect();
    let mut entries = vec![
        Entry::Dir("bin", 0o755),
        Entry::HostFile("bin/busybox", busybox, 0o755),
        Entry::Dir("etc", 0o755),
        Entry::File("etc/passwd", passwd, 0o644),
        Entry::File("etc/group", group, 0o644),
        Entry::Dir("home", 0o755),
        Entry::Dir("home/user", 0o755),
        Entry::Dir("root", 0o700),
        Entry::Dir("tmp", 0o1777),
        Entry::Dir("usr", 0o755),
        Entry::Dir("usr/bin", 0o755),
        Entry::Dir("var", 0o755),
    ];
    entries.extend(links.iter().map(|l| Entry::Symlink(l, "busybox")));
    write_layer(store, &entries)
}

/// What [`push_base_images`] pushed.
#[derive(Debug, Clone)]
pub struct BaseImages {
    /// `busybox:latest` (OCI) manifest digest.
    pub busybox: Digest,
    /// `busybox-docker:latest`: the same rootfs under Docker schema2 media types.
    pub busybox_docker: Digest,
    /// `multiarch:latest` OCI index digest (linux/amd64 and linux/arm64/v8).
    pub multiarch: Digest,
    /// Per-platform manifest digests of the index, amd64 first.
    pub multiarch_children: [Digest; 2],
    /// `multiarch-docker:latest`: the same as a Docker manifest list of schema2 manifests.
    pub multiarch_docker: Digest,
    /// Per-platform manifest digests of the list, amd64 first.
    pub multiarch_docker_children: [Digest; 2],
    /// `busybox-multi:latest`: an OCI index of a runnable busybox for linux/amd64 and
    /// linux/arm64 (`None` on a non-amd64 host or without [`ARM64_BUSYBOX`]).
    pub busybox_multi: Option<Digest>,
}

/// Build the base images into `store` and push them to `registry` (a registry name):
/// `busybox:latest`, `library/busybox:latest` (for Docker Hub mirror tests), `busybox-docker:latest`,
/// `multiarch:latest` (OCI index) and `multiarch-docker:latest` (Docker manifest list).
pub async fn push_base_images(
    client: &RegistryClient,
    store: &BlobStore,
    registry: &str,
) -> Result<BaseImages, Box<dyn std::error::Error + Send + Sync>> {
    let host_arch = rbuild_cache::platform::TargetPlatform::host().architecture;
    let layer = busybox_layer(store, Path::new("/bin/busybox"))?;
    let busybox = write_image(store, Flavor::Oci, &host_arch, None, &[layer])?;
    for repo in ["busybox", "library/busybox"] {
        push(client, store, &format!("{registry}/{repo}"), &["latest"], &busybox).await?;
    }
    let docker_busybox =
        write_image(store, Flavor::Docker, &host_arch, None, &[busybox_layer(store, Path::new("/bin/busybox"))?])?;
    push(client, store, &format!("{registry}/busybox-docker"), &["latest"], &docker_busybox).await?;
    let (multiarch, multiarch_children) =
        push_multiarch(client, store, &format!("{registry}/multiarch"), Flavor::Oci).await?;
    let (multiarch_docker, multiarch_docker_children) =
        push_multiarch(client, store, &format!("{registry}/multiarch-docker"), Flavor::Docker).await?;
    let busybox_multi = if host_arch == "amd64" && Path::new(ARM64_BUSYBOX).is_file() {
        Some(push_busybox_multi(client, store, &format!("{registry}/busybox-multi")).await?)
    } else {
        None
    };
    Ok(BaseImages {
        busybox_multi,
        busybox: busybox.digest,
        busybox_docker: docker_busybox.digest,
        multiarch,
        multiarch_children,
        multiarch_docker,
        multiarch_docker_children,
    })
}

/// Push a two-platform image (linux/amd64, linux/arm64/v8; a marker file each) to `repo`:
/// an OCI index of OCI manifests, or a Docker manifest list of schema2 manifests.
/// Returns the index digest and the child digests, amd64 first.
async fn push_multiarch(
    client: &RegistryClient,
    store: &BlobStore,
    repo: &str,
    flavor: Flavor,
) -> Result<(Digest, [Digest; 2]), Box<dyn std::error::Error + Send + Sync>> {
    let (index_kind, child_kind) = match flavor {
        Flavor::Oci => (ManifestKind::OciIndex, ManifestKind::OciManifest),
        Flavor::Docker => (ManifestKind::DockerManifestList, ManifestKind::DockerManifest),
    };
    let mut children = Vec::new();
    let mut entries = Vec::new();
    for (arch, variant) in [("amd64", None), ("arm64", Some("v8"))] {
        let marker = format!("linux/{arch}{}\n", variant.map(|v| format!("/{v}")).unwrap_or_default());
        let layer = write_layer(store, &[Entry::File("platform", marker.as_bytes(), 0o644)])?;
        let manifest = write_image(store, flavor, arch, variant, &[layer])?;
        push(client, store, repo, &[], &manifest).await?;
        let mut platform = json!({"os": "linux", "architecture": arch});
        if let Some(v) = variant {
            platform["variant"] = json!(v);
        }
        entries.push(json!({"mediaType": child_kind.media_type(), "digest": manifest.digest.to_string(),
            "size": manifest.bytes.len(), "platform": platform}));
        children.push(manifest.digest.clone());
    }
    let index =
        serde_json::to_vec(&json!({"schemaVersion": 2, "mediaType": index_kind.media_type(), "manifests": entries}))?;
    store.put_bytes(&index)?;
    let index = RawManifest::new(index, index_kind);
    push(client, store, repo, &["latest"], &index).await?;
    let children: [Digest; 2] = children.try_into().map_err(|_| "two platform manifests expected")?;
    Ok((index.digest, children))
}

/// Push `busybox-multi:latest`: the busybox rootfs for linux/amd64 (the host's binary) and
/// linux/arm64 ([`ARM64_BUSYBOX`]) under one OCI index; returns the index digest.
async fn push_busybox_multi(
    client: &RegistryClient,
    store: &BlobStore,
    repo: &str,
) -> Result<Digest, Box<dyn std::error::Error + Send + Sync>> {
    let mut entries = Vec::new();
    for (arch, binary) in [("amd64", "/bin/busybox"), ("arm64", ARM64_BUSYBOX)] {
        let manifest = write_image(store, Flavor::Oci, arch, None, &[busybox_layer(store, Path::new(binary))?])?;
        push(client, store, repo, &[], &manifest).await?;
        entries
            .push(json!({"mediaType": ManifestKind::OciManifest.media_type(), "digest": manifest.digest.to_string(),
            "size": manifest.bytes.len(), "platform": {"os": "linux", "architecture": arch}}));
    }
    let index = serde_json::to_vec(
        &json!({"schemaVersion": 2, "mediaType": ManifestKind::OciIndex.media_type(), "manifests": entries}),
    )?;
    store.put_bytes(&index)?;
    let index = RawManifest::new(index, ManifestKind::OciIndex);
    push(client, store, repo, &["latest"], &index).await?;
    Ok(index.digest)
}

/// Push `manifest` (and its blobs from `store`) to `repo` under `tags` (by digest if none).
pub async fn push(
    client: &RegistryClient,
    store: &BlobStore,
    repo: &str,
    tags: &[&str],
    manifest: &RawManifest,
) -> Result<rbuild_cache::registry::PushReport, RegistryError> {
    let target: Reference = repo.parse().map_err(|_| RegistryError::InvalidResponse {
        registry: repo.to_owned(),
        repository: repo.to_owned(),
        operation: rbuild_cache::registry::Operation::PutManifest,
        reason: "test repository name does not parse",
    })?;
    let image = ImageToPush::from_manifest(manifest.clone(), &target)?;
    let tags: Vec<String> = tags.iter().map(|t| (*t).to_owned()).collect();
    client.push_image(store, &target, &tags, &image, &[]).await
}
