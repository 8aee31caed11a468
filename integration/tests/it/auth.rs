use rbuild_cache::platform::TargetPlatform;
use rbuild_cache::registry::{Credential, RegistryError, Secret};
use rbuild_integration::registry::{PASSWORD, REFRESH_TOKEN, USER};
use rbuild_integration::Variant;
use rstest::rstest;

use crate::support::{assert_blobs_verified, TestContext};

#[rstest]
#[case::http(Variant::Http)]
#[case::tls(Variant::Tls)]
#[case::htpasswd(Variant::Htpasswd)]
#[case::token(Variant::Token)]
#[tokio::test]
async fn every_variant_pushes_and_pulls(#[case] variant: Variant) {
    // `start` pushed the base images with this variant's auth; pull them back.
    let Some(ctx) = TestContext::start(variant).await else {
        return;
    };
    let store = ctx.fresh_store("pulled");
    let reference = ctx.registry.reference("busybox:latest");
    let pulled = ctx.client.pull(&reference, &TargetPlatform::host(), &store).await.unwrap();
    assert_eq!(pulled.resolved.manifest.digest, ctx.base.busybox);
    assert_blobs_verified(&store, &pulled);
}

#[rstest]
#[case::htpasswd(Variant::Htpasswd, "get manifest")]
#[case::token(Variant::Token, "fetch token")]
#[tokio::test]
async fn wrong_password_is_a_clear_error(#[case] variant: Variant, #[case] operation: &str) {
    let Some(ctx) = TestContext::start(variant).await else {
        return;
    };
    let client = ctx.client_as(Credential::Basic { username: USER.into(), password: Secret::new("not-the-password") });
    let err = client
        .pull(&ctx.registry.reference("busybox"), &TargetPlatform::host(), &ctx.fresh_store("p"))
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(401), "{err}");
    let msg = err.to_string();
    for part in [ctx.registry.addr(), "busybox", operation, "HTTP 401", "UNAUTHORIZED"] {
        assert!(msg.contains(part), "{part:?} missing from {msg:?}");
    }
    assert!(!msg.contains("not-the-password") && !format!("{err:?}").contains("not-the-password"));
    assert!(!msg.contains(PASSWORD));
}

#[tokio::test]
async fn anonymous_pull_is_refused_with_the_registry_message() {
    let Some(ctx) = TestContext::start(Variant::Htpasswd).await else {
        return;
    };
    let client = ctx.client_with(|c| c.auth.explicit.clear());
    let err = client.get_raw_manifest(&ctx.registry.reference("busybox")).await.unwrap_err();
    assert!(matches!(err, RegistryError::Status { status: 401, .. }), "{err}");
}

#[tokio::test]
async fn identity_token_is_exchanged_at_the_realm() {
    let Some(ctx) = TestContext::start(Variant::Token).await else {
        return;
    };
    let client = ctx.client_as(Credential::IdentityToken(Secret::new(REFRESH_TOKEN)));
    let raw = client.get_raw_manifest(&ctx.registry.reference("busybox")).await.unwrap();
    assert_eq!(raw.digest, ctx.base.busybox);
}

#[tokio::test]
async fn read_only_token_cannot_push() {
    let Some(ctx) = TestContext::start(Variant::Token).await else {
        return;
    };
    let client =
        ctx.client_as(Credential::Basic { username: "reader".into(), password: Secret::new("readerpassword") });
    let manifest = ctx.store.read_blob(&ctx.base.busybox).unwrap();
    let manifest =
        rbuild_cache::registry::RawManifest::new(manifest, rbuild_cache::registry::ManifestKind::OciManifest);
    let repo = format!("{}/readonly", ctx.registry.addr());
    let err = rbuild_integration::images::push(&client, &ctx.store, &repo, &["v1"], &manifest).await.unwrap_err();
    assert_eq!(err.status(), Some(401), "{err}");
    // Pulling works with the same token server and user.
    client.get_raw_manifest(&ctx.registry.reference("busybox")).await.unwrap();
}

/// Which registries skip certificate verification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SkipVerify {
    None,
    /// `--skip-tls-verify`
    All,
    /// `--skip-tls-verify-registry` naming the test registry
    ThisRegistry,
    /// `--skip-tls-verify-registry` naming another registry
    OtherRegistry,
}

#[rstest]
#[case::no_ca(false, SkipVerify::None)]
#[case::skip_verify(false, SkipVerify::All)]
#[case::skip_verify_this_registry(false, SkipVerify::ThisRegistry)]
#[case::skip_verify_other_registry(false, SkipVerify::OtherRegistry)]
#[case::with_ca(true, SkipVerify::None)]
#[tokio::test]
async fn tls_trust(#[case] with_ca: bool, #[case] skip: SkipVerify) {
    let Some(ctx) = TestContext::start(Variant::Tls).await else {
        return;
    };
    let addr = ctx.registry.addr().to_owned();
    let client = ctx.client_with(|c| {
        if !with_ca {
            c.ca_certificates.clear();
        }
        c.skip_tls_verify = skip == SkipVerify::All;
        match skip {
            SkipVerify::ThisRegistry => c.skip_tls_verify_registries.push(addr),
            SkipVerify::OtherRegistry => c.skip_tls_verify_registries.push("127.0.0.2:443".into()),
            SkipVerify::None | SkipVerify::All => {}
        }
        c.retry.retries = 0;
    });
    let result = client.get_raw_manifest(&ctx.registry.reference("busybox")).await;
    let trusted = with_ca || matches!(skip, SkipVerify::All | SkipVerify::ThisRegistry);
    match (trusted, result) {
        (true, Ok(raw)) => assert_eq!(raw.digest, ctx.base.busybox),
        (false, Err(RegistryError::Unreachable { .. })) => {}
        (expect_ok, other) => panic!("expected ok={expect_ok}, got {other:?}"),
    }
}

#[tokio::test]
async fn bearer_tokens_are_reused_per_scope() {
    let Some(ctx) = TestContext::start(Variant::Token).await else {
        return;
    };
    let token_requests = || {
        std::fs::read_to_string(ctx.registry.dir().join("token.log"))
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains("/token"))
            .count()
    };
    let client = ctx.client_with(|_| {});
    let before = token_requests();
    for _ in 0..2 {
        let store = ctx.fresh_store("pulled");
        client.pull(&ctx.registry.reference("busybox"), &TargetPlatform::host(), &store).await.unwrap();
    }
    // One token for `repository:busybox:pull`, reused for the manifest, the config, the layer
    // and the whole second pull.
    assert_eq!(token_requests() - before, 1);
}
