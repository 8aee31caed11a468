use rbuild_cache::platform::TargetPlatform;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use rbuild_cache::oci::Digest;
use rbuild_cache::registry::{BlobPush, Direction, ImageToPush, ManifestKind, TransferProgress, DEFAULT_CHUNK_SIZE};
use rbuild_integration::images::{busybox_layer, push, write_image, Flavor};
use rbuild_integration::Variant;
use rstest::rstest;

use crate::support::{assert_blobs_verified, TestContext};

const SRC: &str = "src-";

/// Lines of the registry's log about requests of `method` to `path_part`.
fn requests(log: &str, method: &str, path_part: &str) -> usize {
    log.lines()
        .filter(|l| l.contains(&format!("http.request.method={method} ")) && l.contains(path_part))
        .filter(|l| l.contains("response completed"))
        .count()
}

/// What the progress callbacks said about one blob in one direction.
#[derive(Debug, Default, PartialEq, Eq)]
struct Transfer {
    size: u64,
    bytes: u64,
    starts: u32,
    ends: u32,
}

/// Per (is upload, blob).
#[derive(Default)]
struct RecordedTransfers(Mutex<BTreeMap<(bool, String), Transfer>>);

impl RecordedTransfers {
    fn with(&self, d: Direction, digest: &Digest, f: impl FnOnce(&mut Transfer)) {
        let key = (d == Direction::Upload, digest.to_string());
        f(self.0.lock().unwrap().entry(key).or_default());
    }

    /// Every blob of `direction` went over completely, started and finished once.
    fn assert_complete(&self, direction: Direction, blobs: &[(Digest, u64)]) {
        let map = self.0.lock().unwrap();
        for (digest, size) in blobs {
            let key = (direction == Direction::Upload, digest.to_string());
            let expected = Transfer { size: *size, bytes: *size, starts: 1, ends: 1 };
            assert_eq!(map.get(&key), Some(&expected), "{direction:?} {digest}");
        }
    }
}

impl TransferProgress for RecordedTransfers {
    fn started(&self, d: Direction, digest: &Digest, size: u64) {
        self.with(d, digest, |e| {
            e.size = size;
            e.bytes = 0;
            e.starts += 1;
        });
    }
    fn advanced(&self, d: Direction, digest: &Digest, bytes: u64) {
        self.with(d, digest, |e| e.bytes += bytes);
    }
    fn finished(&self, d: Direction, digest: &Digest) {
        self.with(d, digest, |e| e.ends += 1);
    }
}

#[rstest]
#[case::monolithic(DEFAULT_CHUNK_SIZE, false)]
#[case::chunked(100_000, true)]
#[tokio::test]
async fn push_then_pull_round_trip_checked_by_skopeo(#[case] chunk_size: u64, #[case] chunked: bool) {
    let Some(ctx) = TestContext::start(Variant::Http).await else {
        return;
    };
    let mut client = ctx.client_with(|c| c.chunk_size = chunk_size);
    let transfers = Arc::new(RecordedTransfers::default());
    client.set_progress(transfers.clone());
    let manifest = ctx.store.read_blob(&ctx.base.busybox).unwrap();
    let manifest = rbuild_cache::registry::RawManifest::new(manifest, ManifestKind::OciManifest);
    let target = ctx.registry.reference("roundtrip/app");
    let image = ImageToPush::from_manifest(manifest.clone(), &target).unwrap();
    let tags = vec!["v1".to_owned(), "latest".to_owned()];
    let report = client.push_image(&ctx.store, &target, &tags, &image, &[]).await.unwrap();
    assert_eq!(report.digest, ctx.base.busybox);
    assert!(report.blobs.iter().all(|(_, p)| matches!(p, BlobPush::Uploaded(_))));
    let patches = requests(&ctx.registry.log(), "PATCH", "/v2/roundtrip/app/blobs/uploads/");
    assert_eq!(patches > 1, chunked, "PATCH requests: {patches}");
    // Byte progress adds up to each blob, however it was sent.
    transfers.assert_complete(Direction::Upload, &image.blobs);

    // Every tag names the same digest; every blob pulls back verified.
    for tag in &tags {
        let store = ctx.fresh_store(&format!("pull-{tag}"));
        let pulled = client.pull(&target.with_tag(tag), &TargetPlatform::host(), &store).await.unwrap();
        assert_eq!(pulled.resolved.manifest.digest, report.digest);
        assert_eq!(pulled.resolved.manifest.bytes, manifest.bytes);
        assert_blobs_verified(&store, &pulled);
    }
    // Two pulls into fresh stores: each blob downloaded twice, completely each time.
    let map = transfers.0.lock().unwrap();
    for (digest, size) in &image.blobs {
        let expected = Transfer { size: *size, bytes: *size, starts: 2, ends: 2 };
        assert_eq!(map.get(&(false, digest.to_string())), Some(&expected), "{digest}");
    }
    drop(map);

    // An independent client reads it back identically.
    let src = format!("docker://{}/roundtrip/app:v1", ctx.registry.addr());
    let mut args = vec!["inspect".to_owned(), "--raw".to_owned()];
    args.extend(ctx.registry.skopeo_flags(""));
    args.push(src.clone());
    assert_eq!(ctx.skopeo(&args).stdout, manifest.bytes.to_vec());
    let layout = ctx.dir.path().join("skopeo-oci");
    let mut args = vec!["copy".to_owned()];
    args.extend(ctx.registry.skopeo_flags(SRC));
    args.extend([src, format!("oci:{}:v1", layout.display())]);
    ctx.skopeo(&args);
    let index: serde_json::Value = serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    assert_eq!(index["manifests"][0]["digest"], report.digest.to_string());
    for (digest, _) in &image.blobs {
        let theirs = std::fs::read(layout.join("blobs/sha256").join(digest.digest())).unwrap();
        assert_eq!(theirs, ctx.store.read_blob(digest).unwrap(), "blob {digest}");
    }
}

#[tokio::test]
async fn docker_media_types_are_kept_and_present_blobs_skipped() {
    let Some(ctx) = TestContext::start(Variant::Http).await else {
        return;
    };
    let layer = busybox_layer(&ctx.store, std::path::Path::new("/bin/busybox")).unwrap();
    let arch = TargetPlatform::host().architecture;
    let manifest = write_image(&ctx.store, Flavor::Docker, &arch, None, &[layer]).unwrap();
    let repo = format!("{}/dockertypes", ctx.registry.addr());
    let first = push(&ctx.client, &ctx.store, &repo, &["v1"], &manifest).await.unwrap();
    assert!(first.uploaded_bytes() > 0);
    let again = push(&ctx.client, &ctx.store, &repo, &["v2"], &manifest).await.unwrap();
    assert!(again.blobs.iter().all(|(_, p)| *p == BlobPush::Existed), "{:?}", again.blobs);
    let raw = ctx.client.get_raw_manifest(&ctx.registry.reference("dockertypes:v2")).await.unwrap();
    assert_eq!(raw.kind, ManifestKind::DockerManifest);
    assert_eq!(raw.digest, manifest.digest);
    let mut args = vec!["inspect".to_owned()];
    args.extend(ctx.registry.skopeo_flags(""));
    args.push(format!("docker://{repo}:v1"));
    let out: serde_json::Value = serde_json::from_slice(&ctx.skopeo(&args).stdout).unwrap();
    assert_eq!(out["Digest"], manifest.digest.to_string());
}

/// `preferred`: every blob's known source is given (and `mount_from` lists a repository
/// without them first, which must then not be tried).
#[rstest]
#[case::http(Variant::Http, false)]
#[case::token(Variant::Token, false)]
#[case::http_known_source(Variant::Http, true)]
#[case::token_known_source(Variant::Token, true)]
#[tokio::test]
async fn cross_repo_mount_uploads_no_layer_bytes(#[case] variant: Variant, #[case] preferred: bool) {
    let Some(ctx) = TestContext::start(variant).await else {
        return;
    };
    let manifest = ctx.store.read_blob(&ctx.base.busybox).unwrap();
    let manifest = rbuild_cache::registry::RawManifest::new(manifest, ManifestKind::OciManifest);
    let target = ctx.registry.reference("mounted/app");
    let mut image = ImageToPush::from_manifest(manifest, &target).unwrap();
    let mut mount_from = vec!["busybox".to_owned()];
    if preferred {
        mount_from.insert(0, "mounted/empty".to_owned());
        for (digest, _) in image.blobs.clone() {
            image.add_source(&digest, "busybox");
        }
    }
    let before = ctx.registry.log().len();
    let report = ctx.client.push_image(&ctx.store, &target, &["v1".to_owned()], &image, &mount_from).await.unwrap();
    assert!(report.blobs.iter().all(|(_, p)| *p == BlobPush::Mounted), "{:?}", report.blobs);
    assert_eq!(report.uploaded_bytes(), 0);
    // The registry's own access log: mounts, and no byte-carrying upload request.
    let log = ctx.registry.log();
    let log = &log[before..];
    assert_eq!(requests(log, "POST", "mount=sha256"), image.blobs.len(), "{log}");
    assert_eq!(requests(log, "DELETE", "/v2/mounted/app/blobs/uploads/"), 0, "no mount was tried in vain: {log}");
    assert_eq!(requests(log, "PATCH", "/v2/mounted/app/blobs/uploads/"), 0);
    assert_eq!(requests(log, "PUT", "/v2/mounted/app/blobs/uploads/"), 0);
    let pulled =
        ctx.client.pull(&target.with_tag("v1"), &TargetPlatform::host(), &ctx.fresh_store("pulled")).await.unwrap();
    assert_eq!(pulled.resolved.manifest.digest, ctx.base.busybox);
}
