use rbuild_cache::platform::TargetPlatform;
use rbuild_cache::registry::{RegistryClient, RegistryError};
use rbuild_integration::Variant;
use rstest::rstest;

use crate::support::TestContext;

#[tokio::test]
async fn registry_down_gives_bounded_retries_then_a_clear_error() {
    // A port nobody listens on: bind, note it, close.
    let addr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().to_string()
    };
    let mut config = rbuild_cache::registry::RegistryConfig::default();
    config.insecure_registries.push(addr.clone());
    config.retry.retries = 2;
    config.retry.base_delay = std::time::Duration::from_millis(10);
    let client = RegistryClient::new(config).unwrap();
    let reference = format!("{addr}/app:v1").parse().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = rbuild_cache::store::BlobStore::open(dir.path()).unwrap();
    let err = client.pull(&reference, &TargetPlatform::host(), &store).await.unwrap_err();
    assert!(matches!(err, RegistryError::Unreachable { attempts: 3, .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains(&addr) && msg.contains("app") && msg.contains("cannot reach"), "{msg}");
}

#[rstest]
#[case::unknown_tag("busybox:nope", 404, "MANIFEST_UNKNOWN")]
// distribution 2.8 answers MANIFEST_UNKNOWN (not NAME_UNKNOWN) for a repository it never saw.
#[case::unknown_repo("nothing/here:latest", 404, "MANIFEST_UNKNOWN")]
#[tokio::test]
async fn registry_error_codes_are_reported(#[case] image: &str, #[case] status: u16, #[case] code: &str) {
    let Some(ctx) = TestContext::start(Variant::Http).await else {
        return;
    };
    let err = ctx.client.get_raw_manifest(&ctx.registry.reference(image)).await.unwrap_err();
    assert_eq!(err.status(), Some(status));
    match &err {
        RegistryError::Status { message, .. } => assert_eq!(message.code(), Some(code)),
        other => panic!("unexpected {other:?}"),
    }
    assert!(err.to_string().contains(code));
}
