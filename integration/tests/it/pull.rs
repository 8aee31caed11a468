use rbuild_cache::platform::TargetPlatform;
use rbuild_cache::reference::Reference;
use rbuild_cache::registry::RegistryError;
use rbuild_integration::Variant;
use rstest::rstest;

use crate::support::{assert_blobs_verified, TestContext};

#[rstest]
#[case::by_tag(false)]
#[case::by_digest(true)]
#[tokio::test]
async fn pull_by_tag_and_by_digest(#[case] by_digest: bool) {
    let Some(ctx) = TestContext::start(Variant::Http).await else { return };
    let mut reference = ctx.registry.reference("busybox:latest");
    if by_digest {
        reference = reference.with_digest(ctx.base.busybox.clone());
    }
    let store = ctx.fresh_store("pulled");
    let pulled = ctx.client.pull(&reference, &TargetPlatform::host(), &store).await.unwrap();
    assert_eq!(pulled.resolved.manifest.digest, ctx.base.busybox);
    assert!(pulled.resolved.index.is_none());
    assert_eq!(pulled.resolved.image.layers().len(), 1);
    assert_eq!(pulled.config.os().to_string(), "linux");
    assert_blobs_verified(&store, &pulled);
}

#[rstest]
#[case("linux/amd64", Some(0))]
#[case("linux/x86_64", Some(0))]
#[case("linux/arm64", Some(1))]
#[case("linux/arm64/v8", Some(1))]
#[case("linux/arm/v7", None)]
#[case("linux/s390x", None)]
#[tokio::test]
async fn platform_selection_from_an_index(#[case] platform: &str, #[case] child: Option<usize>) {
    let Some(ctx) = TestContext::start(Variant::Http).await else { return };
    let reference = ctx.registry.reference("multiarch:latest");
    let platform: TargetPlatform = platform.parse().unwrap();
    let store = ctx.fresh_store("pulled");
    let result = ctx.client.pull(&reference, &platform, &store).await;
    match child {
        Some(i) => {
            let pulled = result.unwrap();
            assert_eq!(pulled.resolved.manifest.digest, ctx.base.multiarch_children[i]);
            assert_eq!(pulled.resolved.index.as_ref().unwrap().digest, ctx.base.multiarch);
            assert_eq!(pulled.config.architecture().to_string(), platform.architecture);
            assert_blobs_verified(&store, &pulled);
        }
        None => {
            let err = result.unwrap_err();
            assert!(matches!(err, RegistryError::NoMatchingPlatform { .. }), "{err}");
            let msg = err.to_string();
            assert!(msg.contains("linux/amd64") && msg.contains("linux/arm64/v8"), "{msg}");
        }
    }
}

#[tokio::test]
async fn docker_hub_images_come_from_the_mirror() {
    let Some(ctx) = TestContext::start(Variant::Http).await else { return };
    let addr = ctx.registry.addr().to_owned();
    let client = ctx.client_with(|c| c.mirrors.push(addr.clone()));
    let reference: Reference = "busybox".parse().unwrap();
    let store = ctx.fresh_store("pulled");
    let pulled = client.pull(&reference, &TargetPlatform::host(), &store).await.unwrap();
    assert_eq!(pulled.resolved.endpoint.name, addr);
    assert_eq!(pulled.resolved.manifest.digest, ctx.base.busybox);
    assert_blobs_verified(&store, &pulled);
}
