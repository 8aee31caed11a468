//! [`TestRegistry`]: a real `docker-registry` process on loopback, started through
//! `integration/scripts/registry.sh` (the one place that knows how) and stopped on drop.

use std::path::{Path, PathBuf};
use std::process::Command;

use rbuild_cache::reference::Reference;
use rbuild_cache::registry::{Credential, RegistryConfig, Secret};

/// User with pull and push rights in the `htpasswd` and `token` variants.
pub const USER: &str = "testuser";
/// Its password.
pub const PASSWORD: &str = "testpassword";
/// Refresh token the test token server accepts (for `identitytoken`).
pub const REFRESH_TOKEN: &str = "test-refresh-token";

/// Which registry setup to start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Variant {
    /// Plain HTTP, no auth.
    Http,
    /// TLS with a CA the script generates, no auth.
    Tls,
    /// htpasswd basic auth over TLS.
    Htpasswd,
    /// Bearer tokens from the test token server, registry over TLS.
    Token,
}

impl Variant {
    fn name(self) -> &'static str {
        match self {
            Variant::Http => "http",
            Variant::Tls => "tls",
            Variant::Htpasswd => "htpasswd",
            Variant::Token => "token",
        }
    }

    /// Whether the registry wants credentials.
    pub fn needs_auth(self) -> bool {
        matches!(self, Variant::Htpasswd | Variant::Token)
    }
}

/// A running registry; killed (only it, via its pid file) on drop.
#[derive(Debug)]
pub struct TestRegistry {
    dir: tempfile::TempDir,
    addr: String,
    variant: Variant,
}

/// The script directory of this crate.
pub fn scripts_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts")
}

/// Whether a missing registry must fail the tests rather than skip them.
pub fn registry_required() -> bool {
    let set = |k: &str| std::env::var_os(k).is_some_and(|v| !v.is_empty() && v != "0");
    set("RBUILD_REQUIRE_REGISTRY") || set("CI")
}

fn registry_installed() -> bool {
    Command::new("sh").args(["-c", "command -v docker-registry"]).output().is_ok_and(|o| o.status.success())
}

impl TestRegistry {
    /// Start a registry, or `None` (test skipped) when `docker-registry` is not installed and
    /// neither `RBUILD_REQUIRE_REGISTRY` nor `CI` is set.
    pub fn start(variant: Variant) -> Option<Self> {
        if !registry_installed() && !registry_required() {
            eprintln!("skipping: docker-registry is not installed (set RBUILD_REQUIRE_REGISTRY=1 to fail instead)");
            return None;
        }
        let dir = tempfile::tempdir().expect("tempdir for the registry");
        let out = Command::new(scripts_dir().join("registry.sh"))
            .arg("start")
            .arg(variant.name())
            .arg(dir.path())
            .output()
            .expect("run registry.sh");
        assert!(
            out.status.success(),
            "registry.sh start {} failed: {}",
            variant.name(),
            String::from_utf8_lossy(&out.stderr)
        );
        let addr = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        Some(Self { dir, addr, variant })
    }

    /// `127.0.0.1:PORT`.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// The variant.
    pub fn variant(&self) -> Variant {
        self.variant
    }

    /// The directory holding config, certificates, storage and logs.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The CA certificate (TLS variants).
    pub fn ca_cert(&self) -> Option<PathBuf> {
        (self.variant != Variant::Http).then(|| self.dir().join("ca.pem"))
    }

    /// The registry's log so far (includes its access log).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir().join("registry.log")).unwrap_or_default()
    }

    /// `ADDR/repo[:tag]` parsed.
    pub fn reference(&self, repo_and_tag: &str) -> Reference {
        format!("{}/{repo_and_tag}", self.addr).parse().expect("valid test reference")
    }

    /// A client config that reaches this registry (scheme, CA, credentials) with quick retries.
    pub fn client_config(&self) -> RegistryConfig {
        let mut config = RegistryConfig::default();
        config.retry.base_delay = std::time::Duration::from_millis(20);
        config.retry.max_delay = std::time::Duration::from_millis(200);
        match self.variant {
            Variant::Http => config.insecure_registries.push(self.addr.clone()),
            _ => config.ca_certificates.extend(self.ca_cert()),
        }
        if self.variant.needs_auth() {
            config.auth.explicit.insert(
                self.addr.clone(),
                Credential::Basic { username: USER.into(), password: Secret::new(PASSWORD) },
            );
        }
        config
    }

    /// skopeo flags to reach this registry; `prefix` is `src-`/`dest-` for `copy`, empty for
    /// `inspect`.
    pub fn skopeo_flags(&self, prefix: &str) -> Vec<String> {
        let mut flags = Vec::new();
        match self.variant {
            Variant::Http => flags.push(format!("--{prefix}tls-verify=false")),
            _ => {
                // skopeo wants a directory of `*.crt` CA files.
                let certs = self.dir().join("skopeo-certs");
                std::fs::create_dir_all(&certs).expect("cert dir");
                std::fs::copy(self.dir().join("ca.pem"), certs.join("ca.crt")).expect("copy ca");
                flags.push(format!("--{prefix}cert-dir={}", certs.display()));
            }
        }
        if self.variant.needs_auth() {
            flags.push(format!("--{prefix}creds={USER}:{PASSWORD}"));
        }
        flags
    }
}

impl Drop for TestRegistry {
    fn drop(&mut self) {
        let _ = Command::new(scripts_dir().join("registry.sh")).arg("stop").arg(self.dir.path()).status();
    }
}
