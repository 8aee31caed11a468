//! Target platforms (`linux/arm64/v8`) and choosing one from an image index.

use std::fmt;
use std::str::FromStr;

use crate::oci::{Descriptor, ImageIndex};

/// Errors about platforms.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlatformError {
    /// The string is not `os/arch[/variant]`.
    #[error("invalid platform {input:?}: expected os/arch[/variant]")]
    Invalid {
        /// What was given.
        input: String,
    },
}

/// An image platform: OS, architecture and optional variant, normalised as containerd does
/// (`aarch64` → `arm64`, `arm64/v8` → `arm64`, `arm` → `arm/v7`), so that `TARGETPLATFORM` reads
/// `linux/arm64` as in BuildKit.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize)]
pub struct TargetPlatform {
    /// Operating system (`linux`).
    pub os: String,
    /// Architecture, in OCI/Go naming (`amd64`, `arm64`).
    pub architecture: String,
    /// Variant (`v7`, `v6`); none for arm64 (`v8` is its only one) and amd64 `v1`.
    pub variant: Option<String>,
}

impl TargetPlatform {
    /// Build and normalise.
    pub fn new(os: &str, architecture: &str, variant: Option<&str>) -> Self {
        let architecture = architecture.to_ascii_lowercase();
        let variant = variant.filter(|v| !v.is_empty()).map(str::to_ascii_lowercase);
        let (architecture, variant) = match (architecture.as_str(), variant) {
            ("x86_64" | "x86-64" | "amd64", v) => ("amd64", v.filter(|v| v != "v1")),
            ("aarch64" | "arm64", Some(v)) if v == "8" || v == "v8" => ("arm64", None),
            ("aarch64" | "arm64", v) => ("arm64", v),
            ("armhf", _) => ("arm", Some("v7".to_owned())),
            ("armel", _) => ("arm", Some("v6".to_owned())),
            ("arm", None) => ("arm", Some("v7".to_owned())),
            ("i386" | "i686" | "x86", v) => ("386", v),
            (other, v) => (other, v),
        };
        Self { os: os.to_ascii_lowercase(), architecture: architecture.to_owned(), variant }
    }

    /// The automatic build args for this platform with `prefix` (`TARGET` or `BUILD`):
    /// `<prefix>PLATFORM`, `<prefix>OS`, `<prefix>ARCH`, `<prefix>VARIANT`.
    pub fn build_args(&self, prefix: &str) -> Vec<(String, String)> {
        vec![
            (format!("{prefix}PLATFORM"), self.to_string()),
            (format!("{prefix}OS"), self.os.clone()),
            (format!("{prefix}ARCH"), self.architecture.clone()),
            (format!("{prefix}VARIANT"), self.variant.clone().unwrap_or_default()),
        ]
    }

    /// The platform this binary runs on.
    pub fn host() -> Self {
        Self::new("linux", std::env::consts::ARCH, None)
    }

    /// Convert (and normalise) an OCI platform.
    pub fn from_oci(platform: &crate::oci::Platform) -> Self {
        Self::new(&platform.os().to_string(), &platform.architecture().to_string(), platform.variant().as_deref())
    }

    /// Whether an index entry's platform satisfies this one. Variants must agree when both
    /// are known.
    pub fn matches(&self, platform: &crate::oci::Platform) -> bool {
        let candidate = Self::from_oci(platform);
        candidate.os == self.os
            && candidate.architecture == self.architecture
            && match (&self.variant, &candidate.variant) {
                (Some(a), Some(b)) => a == b,
                _ => true,
            }
    }

    /// Pick the manifest for this platform from an index (the first match, in index order).
    pub fn select<'a>(&self, index: &'a ImageIndex) -> Option<&'a Descriptor> {
        index.manifests().iter().find(|m| m.platform().as_ref().is_some_and(|p| self.matches(p)))
    }
}

impl FromStr for TargetPlatform {
    type Err = PlatformError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let parts: Vec<&str> = input.split('/').collect();
        match parts.as_slice() {
            [os, arch] if !os.is_empty() && !arch.is_empty() => Ok(Self::new(os, arch, None)),
            [os, arch, variant] if !os.is_empty() && !arch.is_empty() => Ok(Self::new(os, arch, Some(variant))),
            _ => Err(PlatformError::Invalid { input: input.to_owned() }),
        }
    }
}

impl fmt::Display for TargetPlatform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    fn index() -> ImageIndex {
        serde_json::from_str(
            r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[
            {"mediaType":"application/vnd.oci.image.manifest.v1+json","size":1,
             "digest":"sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
             "platform":{"os":"linux","architecture":"amd64"}},
            {"mediaType":"application/vnd.oci.image.manifest.v1+json","size":1,
             "digest":"sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb",
             "platform":{"os":"linux","architecture":"arm","variant":"v6"}},
            {"mediaType":"application/vnd.oci.image.manifest.v1+json","size":1,
             "digest":"sha256:cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc",
             "platform":{"os":"linux","architecture":"arm64","variant":"v8"}}]}"#,
        )
        .unwrap()
    }

    #[rstest]
    #[case("linux/amd64", Some('a'))]
    #[case("linux/arm64", Some('c'))]
    #[case("linux/arm64/v8", Some('c'))]
    #[case("linux/aarch64", Some('c'))]
    #[case("linux/arm/v6", Some('b'))]
    #[case("linux/arm/v7", None)]
    #[case("linux/s390x", None)]
    #[case("windows/amd64", None)]
    fn selects_by_platform_and_variant(#[case] wanted: &str, #[case] first_hex: Option<char>) {
        let p: TargetPlatform = wanted.parse().unwrap();
        let index = index();
        let got = p.select(&index).map(|d| d.digest().digest().chars().next());
        assert_eq!(got.flatten(), first_hex);
    }

    #[rstest]
    #[case("linux")]
    #[case("linux/")]
    #[case("/amd64")]
    #[case("a/b/c/d")]
    fn rejects_invalid(#[case] input: &str) {
        assert!(input.parse::<TargetPlatform>().is_err());
    }

    #[rstest]
    #[case("linux/amd64", "linux/amd64")]
    #[case("linux/x86_64", "linux/amd64")]
    #[case("linux/amd64/v1", "linux/amd64")]
    #[case("linux/arm64/v8", "linux/arm64")]
    #[case("linux/aarch64", "linux/arm64")]
    #[case("linux/arm", "linux/arm/v7")]
    #[case("linux/arm/v6", "linux/arm/v6")]
    #[case("Linux/AMD64", "linux/amd64")]
    #[case("linux/i386", "linux/386")]
    fn normalises_like_containerd(#[case] input: &str, #[case] want: &str) {
        assert_eq!(input.parse::<TargetPlatform>().unwrap().to_string(), want);
    }

    #[test]
    fn build_args_for_a_prefix() {
        let p: TargetPlatform = "linux/arm/v7".parse().unwrap();
        let args = p.build_args("TARGET");
        assert_eq!(args[0], ("TARGETPLATFORM".to_owned(), "linux/arm/v7".to_owned()));
        assert_eq!(args[2], ("TARGETARCH".to_owned(), "arm".to_owned()));
        assert_eq!(args[3], ("TARGETVARIANT".to_owned(), "v7".to_owned()));
    }

    #[test]
    fn host_is_linux() {
        assert_eq!(TargetPlatform::host().os, "linux");
    }
}
