//! Target and build platforms (`linux/arm64/v8`) and the automatic platform ARGs.

use serde::Serialize;
use std::fmt;

/// An OS/architecture/variant triple.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct Platform {
    pub os: String,
    pub architecture: String,
    pub variant: Option<String>,
}

/// A platform string that is not `os/arch[/variant]`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid platform {0:?}: expected os/arch[/variant]")]
pub struct PlatformError(pub String);

impl Platform {
    /// Parses `os/arch[/variant]`, normalising architecture aliases the way containerd does.
    pub fn parse(s: &str) -> Result<Self, PlatformError> {
        let parts: Vec<&str> = s.split('/').collect();
        let (os, arch, variant) = match parts.as_slice() {
            [os, arch] => (*os, *arch, None),
            [os, arch, variant] => (*os, *arch, Some(*variant)),
            _ => return Err(PlatformError(s.to_string())),
        };
        if os.is_empty() || arch.is_empty() || variant.is_some_and(str::is_empty) {
            return Err(PlatformError(s.to_string()));
        }
        let (architecture, variant) = normalise(&arch.to_ascii_lowercase(), variant.map(str::to_ascii_lowercase));
        Ok(Self { os: os.to_ascii_lowercase(), architecture, variant })
    }

    /// The platform rbuild itself runs on.
    pub fn host() -> Self {
        let (architecture, variant) = normalise(std::env::consts::ARCH, None);
        Self { os: std::env::consts::OS.to_string(), architecture, variant }
    }

    /// The automatic ARGs for this platform with the given prefix (`TARGET` or `BUILD`).
    pub fn args(&self, prefix: &str) -> Vec<(String, String)> {
        vec![
            (format!("{prefix}PLATFORM"), self.to_string()),
            (format!("{prefix}OS"), self.os.clone()),
            (format!("{prefix}ARCH"), self.architecture.clone()),
            (format!("{prefix}VARIANT"), self.variant.clone().unwrap_or_default()),
        ]
    }
}

fn normalise(arch: &str, variant: Option<String>) -> (String, Option<String>) {
    match (arch, variant.as_deref()) {
        ("x86_64" | "x86-64" | "amd64", _) => ("amd64".into(), variant.filter(|v| v != "v1")),
        ("aarch64" | "arm64", Some("8") | Some("v8") | None) => ("arm64".into(), None),
        ("aarch64", _) => ("arm64".into(), variant),
        ("armhf", _) => ("arm".into(), Some("v7".into())),
        ("armel", _) => ("arm".into(), Some("v6".into())),
        ("arm", None) => ("arm".into(), Some("v7".into())),
        ("i386" | "i686" | "x86", _) => ("386".into(), variant),
        (other, _) => (other.to_string(), variant),
    }
}

impl fmt::Display for Platform {
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
    use super::Platform;

    #[test]
    fn parse_normalises() {
        for (input, want) in [
            ("linux/amd64", Some("linux/amd64")),
            ("linux/x86_64", Some("linux/amd64")),
            ("linux/arm64/v8", Some("linux/arm64")),
            ("linux/aarch64", Some("linux/arm64")),
            ("linux/arm", Some("linux/arm/v7")),
            ("linux/arm/v6", Some("linux/arm/v6")),
            ("Linux/AMD64", Some("linux/amd64")),
            ("linux", None),
            ("linux/", None),
            ("a/b/c/d", None),
        ] {
            assert_eq!(Platform::parse(input).ok().map(|p| p.to_string()).as_deref(), want, "{input}");
        }
    }
}
