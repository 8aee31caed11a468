//! Registry faults (issue 16): [`FaultProxy`] on 127.0.0.1 in front of the real registry
//! injects error statuses, 429 with `Retry-After`, answers and uploads cut mid-body, flipped
//! bytes and silence into chosen requests. Transient faults on any request (manifest, config
//! blob, layer, upload) are retried by the one policy and the result is verified; permanent
//! ones fail at once; corrupt bytes never reach the store.

use std::time::{Duration, Instant};

use rbuild_cache::oci::{Digest, ImageManifest};
use rbuild_cache::platform::TargetPlatform;
use rbuild_cache::registry::{ManifestKind, RawManifest, RegistryClient, RegistryError, Timeouts};
use rbuild_integration::fault_proxy::{Fault, FaultProxy, Rule};
use rbuild_integration::Variant;
use rstest::rstest;

use crate::support::{assert_blobs_verified, TestContext};

/// Which request of the busybox image a rule targets.
#[derive(Debug, Clone, Copy)]
enum Target {
    Manifest,
    Config,
    Layer,
}

fn busybox_manifest(ctx: &TestContext) -> ImageManifest {
    serde_json::from_slice(&ctx.store.read_blob(&ctx.base.busybox).unwrap()).unwrap()
}

fn path_of(ctx: &TestContext, target: Target) -> String {
    let manifest = busybox_manifest(ctx);
    match target {
        Target::Manifest => "/manifests/".to_owned(),
        Target::Config => format!("/blobs/{}", manifest.config().digest()),
        Target::Layer => format!("/blobs/{}", manifest.layers()[0].digest()),
    }
}

/// A client that reaches the registry through `proxy`, with quick retries and short
/// timeouts (so a stall costs a second, not twenty).
fn client_via(proxy: &FaultProxy, max_delay: Duration) -> RegistryClient {
    let mut config = rbuild_cache::registry::RegistryConfig::default();
    config.insecure_registries.push(proxy.addr().to_owned());
    config.retry.base_delay = Duration::from_millis(20);
    config.retry.max_delay = max_delay;
    config.timeouts = Timeouts {
        response: Duration::from_secs(1),
        commit: Duration::from_secs(5),
        idle: Duration::from_secs(1),
        ..Timeouts::default()
    };
    RegistryClient::new(config).unwrap()
}

/// Resolve, fetch the config into memory and pull the whole image through the proxy.
async fn pull_via(ctx: &TestContext, proxy: &FaultProxy, max_delay: Duration) -> Result<(), RegistryError> {
    let client = client_via(proxy, max_delay);
    let reference = format!("{}/busybox:latest", proxy.addr()).parse().unwrap();
    let resolved = client.resolve(&reference, &TargetPlatform::host()).await?;
    let config = client.fetch_config(&resolved).await?;
    assert_eq!(rbuild_cache::oci::sha256_digest(&config), *resolved.image.config().digest());
    let store = ctx.fresh_store(&format!("pull-{}", proxy.addr().replace([':', '.'], "_")));
    let pulled = client.pull(&reference, &TargetPlatform::host(), &store).await?;
    assert_blobs_verified(&store, &pulled);
    Ok(())
}

fn rule(method: &'static str, path: String, fault: Fault, times: usize) -> Rule {
    Rule { method, path, fault, times }
}

#[rstest]
#[case::manifest_503(Target::Manifest, Fault::Status(503), 1)]
#[case::manifest_cut(Target::Manifest, Fault::CutAnswer(10), 1)]
#[case::manifest_stall(Target::Manifest, Fault::Stall, 1)]
#[case::config_503(Target::Config, Fault::Status(503), 2)]
#[case::config_cut(Target::Config, Fault::CutAnswer(20), 1)]
#[case::config_stall(Target::Config, Fault::Stall, 1)]
#[case::layer_502(Target::Layer, Fault::Status(502), 2)]
#[case::layer_reset_mid_blob(Target::Layer, Fault::CutAnswer(100_000), 2)]
#[case::layer_stall(Target::Layer, Fault::Stall, 1)]
#[tokio::test]
async fn transient_download_faults_are_retried_and_the_result_verified(
    #[case] target: Target,
    #[case] fault: Fault,
    #[case] times: usize,
) {
    let Some(ctx) = TestContext::start(Variant::Http).await else {
        return;
    };
    let proxy = FaultProxy::start(ctx.registry.addr(), vec![rule("GET", path_of(&ctx, target), fault, times)]).unwrap();
    pull_via(&ctx, &proxy, Duration::from_millis(200)).await.unwrap_or_else(|e| panic!("{target:?} {fault:?}: {e}"));
    assert_eq!(proxy.applied(), times, "every injected fault was hit");
}

#[tokio::test]
async fn too_many_requests_waits_as_retry_after_says() {
    let Some(ctx) = TestContext::start(Variant::Http).await else {
        return;
    };
    let proxy = FaultProxy::start(
        ctx.registry.addr(),
        vec![rule("GET", path_of(&ctx, Target::Manifest), Fault::TooMany(1), 1)],
    )
    .unwrap();
    let started = Instant::now();
    pull_via(&ctx, &proxy, Duration::from_secs(5)).await.unwrap();
    assert_eq!(proxy.applied(), 1);
    assert!(started.elapsed() >= Duration::from_secs(1), "Retry-After: 1 was not honoured ({:?})", started.elapsed());
}

/// Permanent answers are not retried; persistent faults give up after the budget; a flipped
/// byte is caught by the digest check and nothing of the blob is stored.
#[rstest]
#[case::config_not_found(Target::Config, Fault::Status(404), 1, "HTTP 404")]
#[case::config_denied(Target::Config, Fault::Status(403), 1, "HTTP 403")]
#[case::layer_always_503(Target::Layer, Fault::Status(503), 4, "HTTP 503")]
#[case::config_always_stalls(Target::Config, Fault::Stall, 2, "timed out")]
#[case::config_flipped(Target::Config, Fault::Flip(3), 1, "digest")]
#[case::layer_flipped(Target::Layer, Fault::Flip(5000), 1, "digest")]
#[tokio::test]
async fn permanent_faults_fail_with_a_clear_error(
    #[case] target: Target,
    #[case] fault: Fault,
    #[case] attempts: usize,
    #[case] message: &str,
) {
    let Some(ctx) = TestContext::start(Variant::Http).await else {
        return;
    };
    let path = path_of(&ctx, target);
    let proxy = FaultProxy::start(ctx.registry.addr(), vec![rule("GET", path.clone(), fault, 100)]).unwrap();
    let err = pull_via(&ctx, &proxy, Duration::from_millis(50)).await.unwrap_err();
    let msg = format!("{err}: {:?}", std::error::Error::source(&err).map(ToString::to_string));
    assert!(msg.contains(message) && (msg.contains(proxy.addr()) || msg.contains("busybox")), "{msg}");
    let hits = proxy.seen().iter().filter(|l| l.starts_with("GET ") && l.contains(&path)).count();
    assert_eq!(hits, attempts, "requests for {path}: {:?}", proxy.seen());
    if matches!(fault, Fault::Flip(_)) {
        let digest: Digest = path.trim_start_matches("/blobs/").parse().unwrap();
        let store = ctx.fresh_store(&format!("pull-{}", proxy.addr().replace([':', '.'], "_")));
        assert_eq!(store.size(&digest), None, "a corrupt blob reached the store");
    }
}

/// Upload faults: a session cut mid-body (monolithic `PUT` or a `PATCH` chunk), a 500 on the
/// manifest `PUT`, a 503 on the existence check. The push restarts what failed and the
/// image reads back verified directly from the registry.
#[rstest]
#[case::put_cut("PUT", "/blobs/uploads/", Fault::CutRequest(50_000), u64::MAX)]
#[case::patch_cut("PATCH", "/blobs/uploads/", Fault::CutRequest(50_000), 200_000)]
#[case::start_503("POST", "/blobs/uploads/", Fault::Status(503), u64::MAX)]
#[case::head_503("HEAD", "/blobs/", Fault::Status(503), u64::MAX)]
#[case::manifest_500("PUT", "/manifests/", Fault::Status(500), u64::MAX)]
#[tokio::test]
async fn upload_faults_are_retried_and_the_image_is_whole(
    #[case] method: &'static str,
    #[case] path: &str,
    #[case] fault: Fault,
    #[case] chunk: u64,
) {
    let Some(ctx) = TestContext::start(Variant::Http).await else {
        return;
    };
    let proxy = FaultProxy::start(ctx.registry.addr(), vec![rule(method, path.to_owned(), fault, 1)]).unwrap();
    let mut client = client_via(&proxy, Duration::from_millis(200));
    if chunk != u64::MAX {
        client = {
            let mut config = client.config().clone();
            config.chunk_size = chunk;
            RegistryClient::new(config).unwrap()
        };
    }
    let manifest = RawManifest::new(ctx.store.read_blob(&ctx.base.busybox).unwrap(), ManifestKind::OciManifest);
    let repo = format!("faults/{}-{}", method.to_lowercase(), proxy.addr().rsplit(':').next().unwrap());
    let target = format!("{}/{repo}", proxy.addr()).parse().unwrap();
    let image = rbuild_cache::registry::ImageToPush::from_manifest(manifest, &target).unwrap();
    client.push_image(&ctx.store, &target, &["v1".to_owned()], &image, &[]).await.unwrap();
    assert_eq!(proxy.applied(), 1, "the fault was injected: {:?}", proxy.seen());
    // Read back straight from the registry, verified blob by blob.
    let store = ctx.fresh_store(&format!("readback-{repo}").replace('/', "_"));
    let pulled =
        ctx.client.pull(&ctx.registry.reference(&format!("{repo}:v1")), &TargetPlatform::host(), &store).await.unwrap();
    assert_eq!(pulled.resolved.manifest.digest, ctx.base.busybox);
    assert_blobs_verified(&store, &pulled);
}

/// One tag's `PUT` refused: the error names that tag and says what the registry holds (every
/// blob, the manifest, the tags that were written); the other tag is in place.
#[tokio::test]
async fn a_failed_tag_is_named_with_the_partial_state() {
    let Some(ctx) = TestContext::start(Variant::Http).await else {
        return;
    };
    let proxy = FaultProxy::start(
        ctx.registry.addr(),
        vec![rule("PUT", "/manifests/refused".to_owned(), Fault::Status(403), 100)],
    )
    .unwrap();
    let client = client_via(&proxy, Duration::from_millis(50));
    let manifest = RawManifest::new(ctx.store.read_blob(&ctx.base.busybox).unwrap(), ManifestKind::OciManifest);
    let target = format!("{}/faults/tags", proxy.addr()).parse().unwrap();
    let image = rbuild_cache::registry::ImageToPush::from_manifest(manifest, &target).unwrap();
    let tags = vec!["accepted".to_owned(), "refused".to_owned()];
    let err = client.push_image(&ctx.store, &target, &tags, &image, &[]).await.unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("tag refused was not written")
            && msg.contains("written: accepted")
            && msg.contains(&ctx.base.busybox.to_string()),
        "{msg}"
    );
    assert_eq!(err.status(), Some(403));
    let accepted = ctx.client.get_raw_manifest(&ctx.registry.reference("faults/tags:accepted")).await.unwrap();
    assert_eq!(accepted.digest, ctx.base.busybox);
}
