//! Manifests: the four kinds rbuild reads (OCI manifest and index, Docker schema2 manifest and
//! manifest list), fetched with their exact bytes and digest, and pushed once per tag.

use bytes::Bytes;
use reqwest::header::{ACCEPT, CONTENT_TYPE};
use reqwest::Method;

use crate::oci::{sha256_digest, Digest, ImageIndex, ImageManifest, DOCKER_MANIFEST, DOCKER_MANIFEST_LIST};
use crate::reference::Reference;
use crate::registry::error::{Operation, RegistryError};
use crate::registry::liveness::MAX_MANIFEST_SIZE;
use crate::registry::transport::{Call, CallBody, Endpoint, Transport};

/// OCI image manifest media type.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// OCI image index media type.
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";

/// Which of the four manifest kinds a document is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ManifestKind {
    /// `application/vnd.oci.image.manifest.v1+json`.
    OciManifest,
    /// `application/vnd.oci.image.index.v1+json`.
    OciIndex,
    /// Docker schema2 manifest.
    DockerManifest,
    /// Docker manifest list.
    DockerManifestList,
}

impl ManifestKind {
    /// Recognise a media type.
    pub fn from_media_type(media_type: &str) -> Option<Self> {
        match media_type.split(';').next().unwrap_or("").trim() {
            OCI_MANIFEST => Some(Self::OciManifest),
            OCI_INDEX => Some(Self::OciIndex),
            DOCKER_MANIFEST => Some(Self::DockerManifest),
            DOCKER_MANIFEST_LIST => Some(Self::DockerManifestList),
            _ => None,
        }
    }

    /// The media type string.
    pub fn media_type(self) -> &'static str {
        match self {
            Self::OciManifest => OCI_MANIFEST,
            Self::OciIndex => OCI_INDEX,
            Self::DockerManifest => DOCKER_MANIFEST,
            Self::DockerManifestList => DOCKER_MANIFEST_LIST,
        }
    }

    /// Whether this kind lists per-platform manifests.
    pub fn is_index(self) -> bool {
        matches!(self, Self::OciIndex | Self::DockerManifestList)
    }

    /// Guess from the document when the registry sent no useful `Content-Type`.
    fn sniff(bytes: &[u8]) -> Option<Self> {
        #[derive(serde::Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Probe {
            media_type: Option<String>,
            manifests: Option<serde_json::Value>,
        }
        let probe: Probe = serde_json::from_slice(bytes).ok()?;
        match probe.media_type.as_deref().and_then(Self::from_media_type) {
            Some(kind) => Some(kind),
            None if probe.manifests.is_some() => Some(Self::OciIndex),
            None => Some(Self::OciManifest),
        }
    }
}

/// A manifest exactly as the registry served it.
#[derive(Debug, Clone)]
pub struct RawManifest {
    /// The bytes (the digest is over these).
    pub bytes: Bytes,
    /// Their sha256 digest.
    pub digest: Digest,
    /// Its kind.
    pub kind: ManifestKind,
}

/// A parsed manifest: a single image, or an index of per-platform images.
#[derive(Debug, Clone)]
pub enum Manifest {
    /// An image manifest (OCI or Docker schema2; the shapes agree).
    Image(Box<ImageManifest>),
    /// An index (OCI index or Docker manifest list).
    Index(Box<ImageIndex>),
}

impl RawManifest {
    /// Wrap bytes of a known kind.
    pub fn new(bytes: impl Into<Bytes>, kind: ManifestKind) -> Self {
        let bytes = bytes.into();
        Self { digest: sha256_digest(&bytes), bytes, kind }
    }

    /// Parse the document according to its kind.
    pub fn parse(&self, reference: &Reference) -> Result<Manifest, RegistryError> {
        let err = |source| RegistryError::ManifestParse {
            reference: reference.to_string(),
            media_type: self.kind.media_type().to_owned(),
            source,
        };
        if self.kind.is_index() {
            serde_json::from_slice(&self.bytes).map(|i| Manifest::Index(Box::new(i))).map_err(err)
        } else {
            serde_json::from_slice(&self.bytes).map(|m| Manifest::Image(Box::new(m))).map_err(err)
        }
    }
}

/// `repository:<name>:pull`.
pub fn pull_scope(repository: &str) -> String {
    format!("repository:{repository}:pull")
}

/// `repository:<name>:pull,push`.
pub fn push_scope(repository: &str) -> String {
    format!("repository:{repository}:pull,push")
}

fn manifest_url(
    endpoint: &Endpoint,
    repository: &str,
    reference: &str,
    operation: Operation,
) -> Result<url::Url, RegistryError> {
    endpoint.repository_url(repository, &format!("manifests/{reference}"), operation)
}

/// Fetch a manifest by tag or digest; verify the digest when the reference pins one.
pub async fn get_manifest(
    transport: &Transport,
    endpoint: &Endpoint,
    reference: &Reference,
) -> Result<RawManifest, RegistryError> {
    let repo = reference.repository();
    let url = manifest_url(endpoint, repo, &reference.manifest_ref(), Operation::GetManifest)?;
    let mut call = Call::new(endpoint, repo, Operation::GetManifest, Method::GET, url, &[pull_scope(repo)]);
    let accept = [OCI_INDEX, OCI_MANIFEST, DOCKER_MANIFEST_LIST, DOCKER_MANIFEST].join(", ");
    call.headers.push((ACCEPT.as_str(), accept));
    call.retryable = false;
    let (content_type, bytes) = transport
        .retry(call.site(), |_| async {
            let response = transport.send_once(&call).await?;
            if !response.status().is_success() {
                return Err(call.status_failure(response).await);
            }
            let content_type = response.headers().get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).map(str::to_owned);
            let bytes = transport.read_body(&call, response, MAX_MANIFEST_SIZE, "manifests").await?;
            Ok((content_type, bytes))
        })
        .await?;
    let kind = content_type
        .as_deref()
        .and_then(ManifestKind::from_media_type)
        .or_else(|| ManifestKind::sniff(&bytes))
        .ok_or_else(|| RegistryError::UnsupportedMediaType {
            reference: reference.to_string(),
            media_type: content_type.unwrap_or_default(),
        })?;
    let raw = RawManifest::new(bytes, kind);
    if let Some(expected) = reference.digest() {
        if *expected != raw.digest {
            return Err(RegistryError::DigestMismatch {
                what: "manifest",
                reference: reference.to_string(),
                expected: Box::new(expected.clone()),
                actual: Box::new(raw.digest),
            });
        }
    }
    tracing::debug!(%reference, digest = %raw.digest, kind = ?raw.kind, "manifest fetched");
    Ok(raw)
}

/// Upload a manifest under `tag_or_digest`; returns the digest the registry confirmed.
pub async fn put_manifest(
    transport: &Transport,
    endpoint: &Endpoint,
    repository: &str,
    tag_or_digest: &str,
    manifest: &RawManifest,
) -> Result<Digest, RegistryError> {
    let url = manifest_url(endpoint, repository, tag_or_digest, Operation::PutManifest)?;
    let mut call = Call::new(endpoint, repository, Operation::PutManifest, Method::PUT, url, &[push_scope(repository)]);
    call.headers.push((CONTENT_TYPE.as_str(), manifest.kind.media_type().to_owned()));
    call.body = CallBody::Bytes(manifest.bytes.clone());
    let response = transport.send(&call).await?;
    if response.status().as_u16() != 201 && !response.status().is_success() {
        return Err(call.status_error(response).await);
    }
    let confirmed = response
        .headers()
        .get("docker-content-digest")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<Digest>().ok());
    if let Some(confirmed) = confirmed.filter(|d| *d != manifest.digest) {
        return Err(RegistryError::DigestMismatch {
            what: "pushed manifest",
            reference: format!("{}/{repository}:{tag_or_digest}", endpoint.name),
            expected: Box::new(manifest.digest.clone()),
            actual: Box::new(confirmed),
        });
    }
    tracing::info!(registry = %endpoint.name, repository, tag = tag_or_digest, digest = %manifest.digest, "manifest pushed");
    Ok(manifest.digest.clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[rstest]
    #[case(OCI_MANIFEST, Some(ManifestKind::OciManifest))]
    #[case("application/vnd.oci.image.index.v1+json; charset=utf-8", Some(ManifestKind::OciIndex))]
    #[case(DOCKER_MANIFEST, Some(ManifestKind::DockerManifest))]
    #[case(DOCKER_MANIFEST_LIST, Some(ManifestKind::DockerManifestList))]
    #[case("application/json", None)]
    fn media_types(#[case] media_type: &str, #[case] kind: Option<ManifestKind>) {
        assert_eq!(ManifestKind::from_media_type(media_type), kind);
    }

    #[rstest]
    #[case(
        r#"{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json"}"#,
        ManifestKind::DockerManifest
    )]
    #[case(r#"{"schemaVersion":2,"manifests":[]}"#, ManifestKind::OciIndex)]
    #[case(r#"{"schemaVersion":2,"layers":[]}"#, ManifestKind::OciManifest)]
    fn sniffs_documents(#[case] doc: &str, #[case] kind: ManifestKind) {
        assert_eq!(ManifestKind::sniff(doc.as_bytes()), Some(kind));
    }

    /// Arbitrary-input run of manifest and config parsing (issue 16; the stable stand-in for a
    /// fuzz target): thousands of seeded mutations of a real manifest never panic.
    #[test]
    fn mutated_manifests_and_configs_never_panic() {
        let doc = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",
          "config":{"mediaType":"application/vnd.oci.image.config.v1+json","size":2,
            "digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"},
          "layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","size":3,
            "digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a",
            "platform":{"os":"linux","architecture":"amd64"}}],"manifests":[]}"#;
        let r: Reference = "r.io/a:b".parse().unwrap();
        let mut rng = fastrand::Rng::with_seed(16);
        for _ in 0..4000 {
            let mut bytes = doc.to_vec();
            for _ in 0..rng.usize(1..8) {
                let i = rng.usize(..bytes.len());
                bytes[i] = rng.u8(..);
            }
            bytes.truncate(rng.usize(bytes.len() / 2..=bytes.len()));
            for kind in [
                ManifestKind::OciManifest,
                ManifestKind::OciIndex,
                ManifestKind::DockerManifest,
                ManifestKind::DockerManifestList,
            ] {
                let _ = RawManifest::new(bytes.clone(), kind).parse(&r);
            }
            let _ = ManifestKind::sniff(&bytes);
            let _ = serde_json::from_slice::<crate::oci::ImageConfiguration>(&bytes);
        }
    }

    #[test]
    fn docker_schema2_parses_as_an_image_manifest() {
        let doc = r#"{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json",
          "config":{"mediaType":"application/vnd.docker.container.image.v1+json","size":2,
            "digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"},
          "layers":[{"mediaType":"application/vnd.docker.image.rootfs.diff.tar.gzip","size":3,
            "digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"}]}"#;
        let raw = RawManifest::new(doc.as_bytes().to_vec(), ManifestKind::DockerManifest);
        let r: Reference = "r.io/a:b".parse().unwrap();
        assert!(matches!(raw.parse(&r).unwrap(), Manifest::Image(m) if m.layers().len() == 1));
    }
}
