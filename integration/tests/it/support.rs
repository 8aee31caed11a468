//! `TestContext`: one registry, a client for it, a blob store holding the base images.

use std::path::PathBuf;
use std::process::{Command, Output};

use rbuild_cache::oci::sha256_digest;
use rbuild_cache::registry::{Credential, PulledImage, RegistryClient, RegistryConfig};
use rbuild_cache::store::BlobStore;
use rbuild_integration::{push_base_images, BaseImages, TestRegistry, Variant};

pub struct TestContext {
    pub registry: TestRegistry,
    pub dir: tempfile::TempDir,
    pub store: BlobStore,
    pub client: RegistryClient,
    pub base: BaseImages,
}

impl TestContext {
    /// Start a registry of `variant` and push the base images; `None` when skipped.
    pub async fn start(variant: Variant) -> Option<Self> {
        let registry = TestRegistry::start(variant)?;
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path().join("store")).unwrap();
        let client = RegistryClient::new(registry.client_config()).unwrap();
        let base = push_base_images(&client, &store, registry.addr()).await.expect("push base images");
        Some(Self { registry, dir, store, client, base })
    }

    /// A client with a modified configuration.
    pub fn client_with(&self, edit: impl FnOnce(&mut RegistryConfig)) -> RegistryClient {
        let mut config = self.registry.client_config();
        edit(&mut config);
        RegistryClient::new(config).unwrap()
    }

    /// A client that presents `credential` to the test registry.
    pub fn client_as(&self, credential: Credential) -> RegistryClient {
        let addr = self.registry.addr().to_owned();
        self.client_with(|c| {
            c.auth.explicit.insert(addr, credential);
        })
    }

    /// A fresh, empty store.
    pub fn fresh_store(&self, name: &str) -> BlobStore {
        BlobStore::open(self.dir.path().join(name)).unwrap()
    }

    /// Run skopeo with `args`; panics with its stderr on failure.
    pub fn skopeo(&self, args: &[String]) -> Output {
        let out = Command::new("skopeo").args(args).output().expect("run skopeo");
        assert!(out.status.success(), "skopeo {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
        out
    }
}

/// Every blob of a pulled image is in `store` and hashes to its digest with its size.
pub fn assert_blobs_verified(store: &BlobStore, pulled: &PulledImage) {
    let image = &pulled.resolved.image;
    for d in std::iter::once(image.config()).chain(image.layers()) {
        let bytes = store.read_blob(d.digest()).unwrap();
        assert_eq!(sha256_digest(&bytes), *d.digest());
        assert_eq!(bytes.len() as u64, d.size());
    }
    let manifest = store.read_blob(&pulled.resolved.manifest.digest).unwrap();
    assert_eq!(sha256_digest(&manifest), pulled.resolved.manifest.digest);
}

/// The `rbuild` binary next to this test executable (`target/<profile>/rbuild`).
pub fn rbuild_bin() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().and_then(|deps| deps.parent()).expect("test binary lives in target/<profile>/deps");
    let bin = profile_dir.join("rbuild");
    assert!(bin.is_file(), "{} not found: run `cargo build -p rbuild` before the integration tests", bin.display());
    bin
}
