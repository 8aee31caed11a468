//! Registry errors: each names the registry, repository, operation and what the registry said.

use std::fmt;
use std::path::PathBuf;

use crate::oci::Digest;
use crate::registry::auth::{AuthError, CredentialSource};
use crate::registry::diagnosis::TransportFailure;
use crate::store::StoreError;

/// What the client was doing when something failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    /// `GET /v2/`.
    Ping,
    /// Fetching a bearer token from the realm.
    Token,
    /// `GET /v2/<repo>/manifests/<ref>`.
    GetManifest,
    /// `PUT /v2/<repo>/manifests/<ref>`.
    PutManifest,
    /// `HEAD /v2/<repo>/blobs/<digest>`.
    CheckBlob,
    /// `GET /v2/<repo>/blobs/<digest>`.
    GetBlob,
    /// `POST /v2/<repo>/blobs/uploads/?mount=…&from=…`.
    MountBlob,
    /// `POST /v2/<repo>/blobs/uploads/`.
    StartUpload,
    /// `PATCH` of an upload chunk.
    UploadChunk,
    /// The final `PUT …?digest=`.
    FinishUpload,
    /// `GET /v2/<repo>/tags/list`.
    ListTags,
    /// `DELETE /v2/<repo>/manifests/<digest>`.
    DeleteManifest,
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Operation::Ping => "ping",
            Operation::Token => "fetch token",
            Operation::GetManifest => "get manifest",
            Operation::PutManifest => "put manifest",
            Operation::CheckBlob => "check blob",
            Operation::GetBlob => "get blob",
            Operation::MountBlob => "mount blob",
            Operation::StartUpload => "start upload",
            Operation::UploadChunk => "upload chunk",
            Operation::FinishUpload => "finish upload",
            Operation::ListTags => "list tags",
            Operation::DeleteManifest => "delete manifest",
        })
    }
}

/// The registry's own error body (`{"errors":[{"code":…,"message":…}]}`), if it sent one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RegistryMessage {
    /// Error codes and messages, in order (`DENIED`, `MANIFEST_UNKNOWN`, …).
    pub errors: Vec<(String, String)>,
}

impl RegistryMessage {
    /// Parse an error body; anything unparseable yields an empty message.
    pub fn parse(body: &[u8]) -> Self {
        #[derive(serde::Deserialize)]
        struct Body {
            #[serde(default)]
            errors: Vec<Entry>,
        }
        #[derive(serde::Deserialize)]
        struct Entry {
            #[serde(default)]
            code: String,
            #[serde(default)]
            message: String,
        }
        let errors = serde_json::from_slice::<Body>(body)
            .map(|b| b.errors.into_iter().map(|e| (e.code, e.message)).collect())
            .unwrap_or_default();
        Self { errors }
    }

    /// The first error code, if any.
    pub fn code(&self) -> Option<&str> {
        self.errors.first().map(|(c, _)| c.as_str())
    }
}

impl fmt::Display for RegistryMessage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (code, message)) in self.errors.iter().enumerate() {
            let sep = if i == 0 { ": " } else { "; " };
            write!(f, "{sep}{code}: {message}")?;
        }
        Ok(())
    }
}

/// Errors of the registry client.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The registry answered with an error status.
    #[error("{operation} {registry}/{repository} failed: HTTP {status}{message}")]
    Status {
        /// Registry host.
        registry: String,
        /// Repository.
        repository: String,
        /// What was being done.
        operation: Operation,
        /// HTTP status code.
        status: u16,
        /// The registry's error codes and messages.
        message: RegistryMessage,
    },
    /// The push access check was refused (401 or 403): names where the credentials came
    /// from and what to do.
    #[error(
        "push access to {registry}/{repository} denied: HTTP {status}{message}; credentials: {credentials}; {}",
        denied_hint(.registry, .repository, *.status, .credentials)
    )]
    AccessDenied {
        /// Registry host.
        registry: String,
        /// Repository.
        repository: String,
        /// 401 or 403.
        status: u16,
        /// The registry's error codes and messages.
        message: RegistryMessage,
        /// Where the credentials presented came from.
        credentials: CredentialSource,
    },
    /// The registry could not be reached (after all retries, or at once when retrying cannot
    /// help); the message names the kind of failure and the flag that fixes it.
    #[error("{operation} {registry}/{repository} failed after {attempts} attempt(s): cannot reach registry: {}: {}", TransportFailure::of(.source), TransportFailure::of(.source).explain(.registry))]
    Unreachable {
        /// Registry host.
        registry: String,
        /// Repository.
        repository: String,
        /// What was being done.
        operation: Operation,
        /// How many attempts were made.
        attempts: u32,
        /// The last transport error.
        #[source]
        source: reqwest::Error,
    },
    /// The registry's answer was malformed.
    #[error("{operation} {registry}/{repository}: invalid response: {reason}")]
    InvalidResponse {
        /// Registry host.
        registry: String,
        /// Repository.
        repository: String,
        /// What was being done.
        operation: Operation,
        /// What was wrong.
        reason: &'static str,
    },
    /// A manifest could not be parsed.
    #[error("manifest of {reference} (media type {media_type}) does not parse")]
    ManifestParse {
        /// The reference fetched.
        reference: String,
        /// Its media type.
        media_type: String,
        /// Cause.
        #[source]
        source: serde_json::Error,
    },
    /// A manifest media type rbuild does not handle.
    #[error("manifest of {reference} has unsupported media type {media_type:?}")]
    UnsupportedMediaType {
        /// The reference fetched.
        reference: String,
        /// Its media type.
        media_type: String,
    },
    /// Content did not match its digest.
    #[error("{what} from {reference}: expected digest {expected}, got {actual}")]
    DigestMismatch {
        /// Manifest or blob.
        what: &'static str,
        /// Where it came from.
        reference: String,
        /// Expected.
        expected: Box<Digest>,
        /// Actual.
        actual: Box<Digest>,
    },
    /// No manifest in the index matches the wanted platform.
    #[error("{reference} has no image for platform {platform} (available: {available})")]
    NoMatchingPlatform {
        /// The index reference.
        reference: String,
        /// The wanted platform.
        platform: String,
        /// Platforms the index offers.
        available: String,
    },
    /// Streaming a download failed mid-way.
    #[error("downloading {digest} from {registry}/{repository}")]
    Download {
        /// Registry host.
        registry: String,
        /// Repository.
        repository: String,
        /// Blob.
        digest: Digest,
        /// Cause.
        #[source]
        source: reqwest::Error,
    },
    /// A blob grew beyond its declared size while downloading.
    #[error("blob {digest} from {registry}/{repository} exceeds its declared size {size}")]
    Oversized {
        /// Registry host.
        registry: String,
        /// Repository.
        repository: String,
        /// Blob.
        digest: Digest,
        /// Declared size.
        size: u64,
    },
    /// Credentials could not be resolved.
    #[error(transparent)]
    Auth(#[from] AuthError),
    /// The local blob store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Reading a file to upload or a certificate failed.
    #[error("reading {path}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// A CA certificate does not parse.
    #[error("invalid CA certificate {path}")]
    Certificate {
        /// The file.
        path: PathBuf,
        /// Cause.
        #[source]
        source: reqwest::Error,
    },
    /// The HTTP client could not be built.
    #[error("cannot build the HTTP client")]
    Client(#[source] reqwest::Error),
    /// A URL could not be formed from the registry's `Location` header.
    #[error("{operation} {registry}/{repository}: invalid location {location:?}")]
    Location {
        /// Registry host.
        registry: String,
        /// Repository.
        repository: String,
        /// What was being done.
        operation: Operation,
        /// The header value.
        location: String,
    },
}

/// What to do about a refused push.
fn denied_hint(registry: &str, repository: &str, status: u16, credentials: &CredentialSource) -> String {
    match (credentials.found(), status) {
        (false, _) => format!("log in with `docker login {registry}` (rbuild reads $DOCKER_CONFIG/config.json, else ~/.docker/config.json)"),
        (true, 401) => format!("the registry rejected them: check the user name and password (`docker login {registry}` writes new ones)"),
        (true, _) => format!("they are valid but may not push to {repository}: ask for push rights, or push to a repository they may write"),
    }
}

impl RegistryError {
    /// The HTTP status, if the registry answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            RegistryError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// Whether retrying the whole operation may help (connection problems, 429, 5xx).
    pub fn is_retryable(&self) -> bool {
        match self {
            RegistryError::Status { status, .. } => *status == 429 || *status >= 500,
            RegistryError::Unreachable { source, .. } => {
                TransportFailure::of(source).is_transient()
            }
            RegistryError::Download { .. } => true,
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_names_registry_repo_operation_status_and_code() {
        let e = RegistryError::Status {
            registry: "127.0.0.1:5000".into(),
            repository: "team/app".into(),
            operation: Operation::GetManifest,
            status: 404,
            message: RegistryMessage::parse(
                br#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}"#,
            ),
        };
        assert_eq!(
            e.to_string(),
            "get manifest 127.0.0.1:5000/team/app failed: HTTP 404: MANIFEST_UNKNOWN: manifest unknown"
        );
        assert!(!e.is_retryable());
    }

    #[test]
    fn garbage_bodies_give_an_empty_message() {
        assert_eq!(RegistryMessage::parse(b"<html>").to_string(), "");
    }
}
