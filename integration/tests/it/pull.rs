use rbuild_cache::platform::TargetPlatform;
use rbuild_cache::reference::Reference;
use rbuild_cache::registry::RegistryError;
use rbuild_integration::Variant;
use rstest::rstest;

use crate::support::{assert_blobs_verified, TestContext};

/// An OCI manifest and a Docker schema2 manifest, each by tag and by digest.
#[rstest]
#[case::oci_by_tag("busybox", false)]
#[case::oci_by_digest("busybox", true)]
#[case::docker_schema2_by_tag("busybox-docker", false)]
#[case::docker_schema2_by_digest("busybox-docker", true)]
#[tokio::test]
async fn pull_by_tag_and_by_digest(#[case] repo: &str, #[case] by_digest: bool) {
    let Some(ctx) = TestContext::start(Variant::Http).await else {
        return;
    };
    let expected = if repo == "busybox" { &ctx.base.busybox } else { &ctx.base.busybox_docker };
    let mut reference = ctx.registry.reference(&format!("{repo}:latest"));
    if by_digest {
        reference = reference.with_digest(expected.clone());
    }
    let store = ctx.fresh_store("pulled");
    let pulled = ctx.client.pull(&reference, &TargetPlatform::host(), &store).await.unwrap();
    assert_eq!(pulled.resolved.manifest.digest, *expected);
    assert!(pulled.resolved.index.is_none());
    assert_eq!(pulled.resolved.image.layers().len(), 1);
    assert_eq!(pulled.config.os().to_string(), "linux");
    assert_blobs_verified(&store, &pulled);
}

/// `multiarch` is an OCI index of OCI manifests, `multiarch-docker` a Docker manifest list of
/// schema2 manifests.
#[rstest]
#[case("multiarch", "linux/amd64", Some(0))]
#[case("multiarch", "linux/x86_64", Some(0))]
#[case("multiarch", "linux/arm64", Some(1))]
#[case("multiarch", "linux/arm64/v8", Some(1))]
#[case("multiarch", "linux/arm/v7", None)]
#[case("multiarch", "linux/s390x", None)]
#[case("multiarch-docker", "linux/amd64", Some(0))]
#[case("multiarch-docker", "linux/arm64/v8", Some(1))]
#[case("multiarch-docker", "linux/s390x", None)]
#[tokio::test]
async fn platform_selection_from_an_index(#[case] repo: &str, #[case] platform: &str, #[case] child: Option<usize>) {
    let Some(ctx) = TestContext::start(Variant::Http).await else {
        return;
    };
    let (index, children) = match repo {
        "multiarch" => (&ctx.base.multiarch, &ctx.base.multiarch_children),
        _ => (&ctx.base.multiarch_docker, &ctx.base.multiarch_docker_children),
    };
    let reference = ctx.registry.reference(&format!("{repo}:latest"));
    let platform: TargetPlatform = platform.parse().unwrap();
    let store = ctx.fresh_store("pulled");
    let result = ctx.client.pull(&reference, &platform, &store).await;
    match child {
        Some(i) => {
            let pulled = result.unwrap();
            assert_eq!(pulled.resolved.manifest.digest, children[i]);
            assert_eq!(pulled.resolved.index.as_ref().unwrap().digest, *index);
            assert_eq!(pulled.config.architecture().to_string(), platform.architecture);
            assert_blobs_verified(&store, &pulled);
        }
        None => {
            let err = result.unwrap_err();
            assert!(matches!(err, RegistryError::NoMatchingPlatform { .. }), "{err}");
            let msg = err.to_string();
            assert!(msg.contains("linux/amd64") && msg.contains("linux/arm64"), "{msg}");
        }
    }
}

#[tokio::test]
async fn docker_hub_images_come_from_the_mirror() {
    let Some(ctx) = TestContext::start(Variant::Http).await else {
        return;
    };
    let addr = ctx.registry.addr().to_owned();
    let client = ctx.client_with(|c| c.mirrors.push(addr.clone()));
    let reference: Reference = "busybox".parse().unwrap();
    let store = ctx.fresh_store("pulled");
    let pulled = client.pull(&reference, &TargetPlatform::host(), &store).await.unwrap();
    assert_eq!(pulled.resolved.endpoint.name, addr);
    assert_eq!(pulled.resolved.manifest.digest, ctx.base.busybox);
    assert_blobs_verified(&store, &pulled);
}

#[tokio::test]
async fn busybox_fixture_has_a_usable_rootfs() {
    let Some(ctx) = TestContext::start(Variant::Http).await else {
        return;
    };
    let store = ctx.fresh_store("pulled");
    let pulled = ctx.client.pull(&ctx.registry.reference("busybox"), &TargetPlatform::host(), &store).await.unwrap();
    let layer = store.open_blob(pulled.resolved.image.layers()[0].digest()).unwrap();
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(layer));
    let mut seen = std::collections::BTreeMap::new();
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let path = entry.path().unwrap().display().to_string();
        let mode = entry.header().mode().unwrap();
        let link = entry.link_name().unwrap().map(|l| l.display().to_string());
        let mut text = String::new();
        if path.starts_with("etc/") {
            std::io::Read::read_to_string(&mut entry, &mut text).unwrap();
        }
        seen.insert(path, (mode, link, text));
    }
    for applet in rbuild_integration::images::APPLETS {
        assert_eq!(seen[&format!("bin/{applet}")].1.as_deref(), Some("busybox"), "{applet}");
    }
    assert_eq!(seen["bin/busybox"].0 & 0o111, 0o111);
    assert_eq!(seen["tmp"].0, 0o1777);
    let passwd = &seen["etc/passwd"].2;
    for user in ["root:x:0:0:", "nobody:x:65534:", "user:x:1000:1000:"] {
        assert!(passwd.contains(user), "{user} missing from {passwd}");
    }
    assert!(seen["etc/group"].2.contains("root:x:0:"));
}
