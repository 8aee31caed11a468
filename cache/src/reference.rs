//! Image references, normalised as Docker does.
//!
//! `busybox` → `docker.io/library/busybox:latest`; `localhost:5000/app@sha256:…` keeps its
//! registry and port. The grammar is Docker's distribution reference grammar, parsed by hand:
//! `oci-spec`'s parser compiles a Unicode regex on first use, ~85 ms of CPU in every rbuild
//! process (measured, docs/benchmarks.md) — more than a whole cached build should take.

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
    #[error("invalid image reference {input:?}: {reason}")]
    Invalid {
        /// What was given.
        input: String,
        /// What is wrong with it.
        reason: &'static str,
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
        Self { registry: registry.into(), repository: repository.into(), tag, digest }
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
        Self { tag: Some(tag.into()), digest: None, ..self.clone() }
    }

    /// The same repository pinned to `digest` (the tag is dropped).
    pub fn with_digest(&self, digest: Digest) -> Self {
        Self { tag: None, digest: Some(digest), ..self.clone() }
    }

    /// Another repository of the same registry.
    pub fn with_repository(&self, repository: impl Into<String>) -> Self {
        Self { repository: repository.into(), ..self.clone() }
    }
}

impl FromStr for Reference {
    type Err = ReferenceError;

    /// `[domain[:port]/]path[:tag][@digest]`, normalised like Docker (`docker.io`,
    /// `library/`, `latest` when neither tag nor digest is given).
    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let invalid = |reason| ReferenceError::Invalid { input: input.to_owned(), reason };
        let (name_tag, digest) = match input.split_once('@') {
            Some((n, d)) => {
                let digest =
                    Digest::from_str(d).map_err(|source| ReferenceError::Digest { input: input.to_owned(), source })?;
                // Registries serve the SHA-2 family only; oci-spec also accepts other names.
                if !matches!(
                    digest.algorithm(),
                    crate::oci::DigestAlgorithm::Sha256
                        | crate::oci::DigestAlgorithm::Sha384
                        | crate::oci::DigestAlgorithm::Sha512
                ) {
                    return Err(invalid("the digest algorithm is not sha256, sha384 or sha512"));
                }
                (n, Some(digest))
            }
            None => (input, None),
        };
        // A tag is after the last ':' that follows the last '/' (a port's ':' comes before it).
        let last_slash = name_tag.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match name_tag[last_slash..].rfind(':') {
            Some(i) => (&name_tag[..last_slash + i], Some(&name_tag[last_slash + i + 1..])),
            None => (name_tag, None),
        };
        if let Some(tag) = tag {
            if !valid_tag(tag) {
                return Err(invalid("a tag is [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}"));
            }
        }
        let (domain, path) = match name.split_once('/') {
            Some((first, rest)) if first.contains(['.', ':']) || first == "localhost" => (first, rest),
            _ => (DOCKER_HUB, name),
        };
        if !valid_domain(domain) {
            return Err(invalid("invalid registry host"));
        }
        if path.is_empty() || !path.split('/').all(valid_path_component) {
            return Err(invalid(
                "repository path components are lowercase [a-z0-9] separated by '.', '_', '__' or '-'",
            ));
        }
        if name.len() > 255 {
            return Err(invalid("the name is longer than 255 characters"));
        }
        let registry = if domain == "index.docker.io" { DOCKER_HUB } else { domain };
        let repository =
            if registry == DOCKER_HUB && !path.contains('/') { format!("library/{path}") } else { path.to_owned() };
        let tag = match (tag, &digest) {
            (Some(t), _) => Some(t.to_owned()),
            (None, None) => Some("latest".to_owned()),
            (None, Some(_)) => None,
        };
        Ok(Self { registry: registry.to_owned(), repository, tag, digest })
    }
}

/// `[\w][\w.-]{0,127}` in ASCII.
fn valid_tag(tag: &str) -> bool {
    let word = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
    let bytes = tag.as_bytes();
    matches!(bytes.first(), Some(&c) if word(c))
        && bytes.len() <= 128
        && bytes.iter().all(|&c| word(c) || c == b'.' || c == b'-')
}

/// `host[:port]`: DNS labels of `[A-Za-z0-9-]` separated by dots (or an IPv4 address), and an
/// optional decimal port.
fn valid_domain(domain: &str) -> bool {
    let (host, port) = match domain.rsplit_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (domain, None),
    };
    let label_ok = |l: &str| {
        !l.is_empty()
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-')
    };
    !host.is_empty()
        && host.split('.').all(label_ok)
        && port.is_none_or(|p| !p.is_empty() && p.len() <= 5 && p.bytes().all(|c| c.is_ascii_digit()))
}

/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`
fn valid_path_component(component: &str) -> bool {
    let bytes = component.as_bytes();
    let alnum = |c: u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    if !bytes.first().is_some_and(|&c| alnum(c)) || !bytes.last().is_some_and(|&c| alnum(c)) {
        return false;
    }
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        if alnum(c) {
            i += 1;
            continue;
        }
        // A separator run: '.', '_', '__', or one or more '-'.
        let start = i;
        while i < bytes.len() && !alnum(bytes[i]) {
            i += 1;
        }
        let sep = &component[start..i];
        if !(sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|c| c == b'-')) {
            return false;
        }
    }
    true
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
    #[case("docker.io/busybox", "docker.io", "library/busybox", Some("latest"), false)]
    #[case("index.docker.io/library/busybox", "docker.io", "library/busybox", Some("latest"), false)]
    #[case("localhost/app", "localhost", "app", Some("latest"), false)]
    #[case("localhost:5000/app:v1", "localhost:5000", "app", Some("v1"), false)]
    #[case("127.0.0.1:41234/a/b/c:t", "127.0.0.1:41234", "a/b/c", Some("t"), false)]
    #[case("reg.example.com/team/app", "reg.example.com", "team/app", Some("latest"), false)]
    #[case(&format!("busybox@{D}"), "docker.io", "library/busybox", None, true)]
    #[case(&format!("r.io:443/x:v2@{D}"), "r.io:443", "x", Some("v2"), true)]
    #[case("ghcr.io/org/my-app__x.y:1.0-rc_1", "ghcr.io", "org/my-app__x.y", Some("1.0-rc_1"), false)]
    #[case("team/a--b", "docker.io", "team/a--b", Some("latest"), false)]
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
    #[case("team/app_")]
    #[case("team/a___b")]
    #[case("reg.example.com:port/app")]
    #[case("-bad.example.com/app")]
    #[case("app:")]
    #[case("app:.hidden")]
    #[case("/app")]
    #[case("team//app")]
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
