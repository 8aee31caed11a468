//! Image references, normalised as Docker does.
//!
//! `busybox` → `docker.io/library/busybox:latest`; `localhost:5000/app@sha256:…` keeps its
//! registry and port. Parsing is delegated to `oci-spec`'s distribution reference; this type
//! adds a typed digest and the Docker Hub API host.

use std::fmt;
use std::str::FromStr;

use crate::oci::Digest;

/// Docker Hub's canonical name.
pub const DOCKER_HUB: &str = "docker.io";
/// The host that actually serves Docker Hub's registry API.
pub const DOCKER_HUB_API: &str = "registry-1.docker.io";

/// Errors parsing a reference.
#[derive(Debug, thiserror::Error)]
pub enum ReferenceError {
    /// The string is not a valid reference.
    #[error("invalid image reference {input:?}")]
    Invalid {
        /// What was given.
        input: String,
        /// Cause.
        #[source]
        source: oci_spec::distribution::ParseError,
    },
    /// The digest part does not parse.
    #[error("invalid digest in image reference {input:?}")]
    Digest {
        /// What was given.
        input: String,
        /// Cause.
        #[source]
        source: oci_spec::OciSpecError,
    },
}

/// A normalised image reference: registry, repository, and a tag and/or digest.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Reference {
    registry: String,
    repository: String,
    tag: Option<String>,
    digest: Option<Digest>,
}

impl Reference {
    /// Build from parts (the tag, if any, is not validated here).
    pub fn new(
        registry: impl Into<String>,
        repository: impl Into<String>,
        tag: Option<String>,
        digest: Option<Digest>,
    ) -> Self {
        Self {
            registry: registry.into(),
            repository: repository.into(),
            tag,
            digest,
        }
    }

    /// Registry name as written (`docker.io`, `localhost:5000`).
    pub fn registry(&self) -> &str {
        &self.registry
    }

    /// The host to talk to for the registry API (`docker.io` → `registry-1.docker.io`).
    pub fn api_host(&self) -> &str {
        if self.registry == DOCKER_HUB {
            DOCKER_HUB_API
        } else {
            &self.registry
        }
    }

    /// Repository path (`library/busybox`).
    pub fn repository(&self) -> &str {
        &self.repository
    }

    /// Tag, if any.
    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    /// Digest, if any.
    pub fn digest(&self) -> Option<&Digest> {
        self.digest.as_ref()
    }

    /// What to put in `/v2/<repo>/manifests/<here>`: the digest if present, else the tag.
    pub fn manifest_ref(&self) -> String {
        match (&self.digest, &self.tag) {
            (Some(d), _) => d.to_string(),
            (None, Some(t)) => t.clone(),
            (None, None) => "latest".to_owned(),
        }
    }

    /// The same repository with another tag (and no digest).
    pub fn with_tag(&self, tag: impl Into<String>) -> Self {
        Self {
            tag: Some(tag.into()),
            digest: None,
            ..self.clone()
        }
    }

    /// The same repository pinned to `digest` (the tag is dropped).
    pub fn with_digest(&self, digest: Digest) -> Self {
        Self {
            tag: None,
            digest: Some(digest),
            ..self.clone()
        }
    }

    /// Another repository of the same registry.
    pub fn with_repository(&self, repository: impl Into<String>) -> Self {
        Self {
            repository: repository.into(),
            ..self.clone()
        }
    }
}

impl FromStr for Reference {
    type Err = ReferenceError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let parsed = oci_spec::distribution::Reference::from_str(input).map_err(|source| {
            ReferenceError::Invalid {
                input: input.to_owned(),
                source,
            }
        })?;
        let digest = parsed
            .digest()
            .map(Digest::from_str)
            .transpose()
            .map_err(|source| ReferenceError::Digest {
                input: input.to_owned(),
                source,
            })?;
        // oci-spec defaults a missing tag to `latest` only when there is no digest either.
        Ok(Self {
            registry: parsed.registry().to_owned(),
            repository: parsed.repository().to_owned(),
            tag: parsed.tag().map(str::to_owned),
            digest,
        })
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    const D: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";

    #[rstest]
    #[case("busybox", "docker.io", "library/busybox", Some("latest"), false)]
    #[case("busybox:1.36", "docker.io", "library/busybox", Some("1.36"), false)]
    #[case("user/app", "docker.io", "user/app", Some("latest"), false)]
    #[case(
        "docker.io/busybox",
        "docker.io",
        "library/busybox",
        Some("latest"),
        false
    )]
    #[case(
        "index.docker.io/library/busybox",
        "docker.io",
        "library/busybox",
        Some("latest"),
        false
    )]
    #[case("localhost/app", "localhost", "app", Some("latest"), false)]
    #[case("localhost:5000/app:v1", "localhost:5000", "app", Some("v1"), false)]
    #[case(
        "127.0.0.1:41234/a/b/c:t",
        "127.0.0.1:41234",
        "a/b/c",
        Some("t"),
        false
    )]
    #[case(
        "reg.example.com/team/app",
        "reg.example.com",
        "team/app",
        Some("latest"),
        false
    )]
    #[case(&format!("busybox@{D}"), "docker.io", "library/busybox", None, true)]
    #[case(&format!("r.io:443/x:v2@{D}"), "r.io:443", "x", Some("v2"), true)]
    fn normalises_like_docker(
        #[case] input: &str,
        #[case] registry: &str,
        #[case] repository: &str,
        #[case] tag: Option<&str>,
        #[case] has_digest: bool,
    ) {
        let r: Reference = input.parse().unwrap();
        assert_eq!(r.registry(), registry);
        assert_eq!(r.repository(), repository);
        assert_eq!(r.tag(), tag);
        assert_eq!(r.digest().is_some(), has_digest);
        // Display round-trips through the parser.
        let again: Reference = r.to_string().parse().unwrap();
        assert_eq!(again, r);
    }

    #[rstest]
    #[case("")]
    #[case("team/UPPER")]
    #[case("app@sha256:123")]
    #[case("app:bad tag")]
    #[case("app@md5:d41d8cd98f00b204e9800998ecf8427e")]
    fn rejects_invalid(#[case] input: &str) {
        assert!(input.parse::<Reference>().is_err(), "{input}");
    }

    #[test]
    fn docker_hub_uses_its_api_host() {
        let r: Reference = "busybox".parse().unwrap();
        assert_eq!(r.api_host(), "registry-1.docker.io");
        let r: Reference = "localhost:5000/busybox".parse().unwrap();
        assert_eq!(r.api_host(), "localhost:5000");
    }
}
