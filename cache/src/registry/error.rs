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

/// What a registry failed to do in time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stall {
    /// No response (status line and headers) this long after the request went out.
    NoResponse(std::time::Duration),
    /// No byte of the body for this long.
    NoData(std::time::Duration),
    /// A body trickling in: fewer than `bytes` bytes in `window`.
    TooSlow {
        /// Bytes the window must at least bring.
        bytes: u64,
        /// The window.
        window: std::time::Duration,
    },
}

impl fmt::Display for Stall {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Stall::NoResponse(d) => write!(f, "no response within {}s", d.as_secs_f32()),
            Stall::NoData(d) => write!(f, "no data for {}s", d.as_secs_f32()),
            Stall::TooSlow { bytes, window } => {
                write!(f, "fewer than {bytes} bytes in {}s", window.as_secs_f32())
            }
        }
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
    /// The registry stopped answering (after the retries a stall gets).
    #[error("{operation} {registry}/{repository} timed out: {stall} (the registry is reachable but not answering: check its health and load)")]
    TimedOut {
        /// Registry host.
        registry: String,
        /// Repository.
        repository: String,
        /// What was being done.
        operation: Operation,
        /// What did not come in time.
        stall: Stall,
    },
    /// The build was cancelled (SIGINT/SIGTERM) while the request was in flight.
    #[error("{operation} {registry}/{repository}: cancelled")]
    Cancelled {
        /// Registry host.
        registry: String,
        /// Repository.
        repository: String,
        /// What was being done.
        operation: Operation,
    },
    /// Reading an answer's body failed mid-way (connection reset, body cut short).
    #[error("{operation} {registry}/{repository}: the answer was cut short")]
    Body {
        /// Registry host.
        registry: String,
        /// Repository.
        repository: String,
        /// What was being done.
        operation: Operation,
        /// Cause.
        #[source]
        source: reqwest::Error,
    },
    /// A manifest, config or token answer beyond the size rbuild reads into memory.
    #[error("{operation} {registry}/{repository}: the answer is larger than the {limit}-byte limit for {what}")]
    TooLarge {
        /// Registry host.
        registry: String,
        /// Repository.
        repository: String,
        /// What was being done.
        operation: Operation,
        /// Manifest, config, ….
        what: &'static str,
        /// The limit in bytes.
        limit: u64,
    },
    /// A tag of a push could not be written; `state` says what is in the registry.
    #[error("push to {registry}/{repository}: tag {tag} was not written ({state})")]
    Tag {
        /// Registry host.
        registry: String,
        /// Repository.
        repository: String,
        /// The first tag that failed.
        tag: String,
        /// What the registry holds now (blobs, manifest, which tags were written).
        state: String,
        /// Why the tag failed.
        #[source]
        source: Box<RegistryError>,
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
            RegistryError::Tag { source, .. } => source.status(),
            _ => None,
        }
    }

    /// Whether retrying the whole operation may help: [`crate::registry::retry::is_transient`].
    pub fn is_retryable(&self) -> bool {
        crate::registry::retry::is_transient(self)
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
