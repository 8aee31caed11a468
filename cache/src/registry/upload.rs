//! Blob uploads: `HEAD` first (the caller checks all blobs at once), then a cross-repository
//! mount attempt, then a monolithic `PUT` (small blobs) or `PATCH` chunks (large ones)
//! streamed from a file, and the final `PUT ?digest=`. A failed session is restarted from
//! scratch (a half-written chunk cannot be resent safely) under the one retry policy
//! ([`super::retry`]); the requests inside a session are sent once each.

use std::path::Path;

use reqwest::header::{CONTENT_TYPE, LOCATION};
use reqwest::{Method, Response, StatusCode};
use url::Url;

use crate::oci::Digest;
use crate::registry::error::{Operation, RegistryError};
use crate::registry::retry::{RetryPolicy, Site};
use crate::registry::transfer::{BlobProgress, Direction, ProgressSink};
use crate::registry::transport::{Call, CallBody, Endpoint, Transport};

/// What pushing one blob took.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlobPush {
    /// The registry already had it in the target repository.
    Existed,
    /// Mounted from another repository of the same registry: no bytes sent.
    Mounted,
    /// Uploaded this many bytes.
    Uploaded(u64),
}

/// One blob to push.
#[derive(Debug, Clone, Copy)]
pub struct BlobUpload<'a> {
    /// Its digest.
    pub digest: &'a Digest,
    /// Its size.
    pub size: u64,
    /// The file holding it.
    pub path: &'a Path,
}

/// Per-push settings.
#[derive(Debug, Clone)]
pub struct UploadPlan<'a> {
    /// The registry.
    pub endpoint: &'a Endpoint,
    /// Target repository.
    pub repository: &'a str,
    /// Repositories of the same registry to try mounting from.
    pub mount_from: &'a [String],
    /// Token scopes covering the target (push) and mount sources (pull).
    pub scopes: &'a [String],
    /// Blobs up to this size go in one `PUT`; larger ones in `PATCH` chunks of this size.
    pub chunk_size: u64,
    /// Session-level retries.
    pub retry: RetryPolicy,
    /// Where upload byte progress goes.
    pub progress: ProgressSink,
}

impl UploadPlan<'_> {
    fn call(&self, operation: Operation, method: Method, url: Url) -> Call {
        Call::new(self.endpoint, self.repository, operation, method, url, self.scopes)
    }

    /// A request sent once: the session it belongs to is retried as a whole.
    fn once(&self, operation: Operation, method: Method, url: Url) -> Call {
        let mut call = self.call(operation, method, url);
        call.retryable = false;
        call
    }

    fn site(&self, operation: Operation) -> Site<'_> {
        Site { registry: &self.endpoint.name, repository: self.repository, operation }
    }

    fn url(&self, path: &str, operation: Operation) -> Result<Url, RegistryError> {
        self.endpoint.repository_url(self.repository, path, operation)
    }

    fn blob_progress(&self, digest: &Digest) -> BlobProgress {
        BlobProgress { sink: self.progress.clone(), direction: Direction::Upload, digest: digest.clone() }
    }
}

/// Push one blob the target does not have ([`blob_exists`] said so): mounted from
/// `preferred` or `plan.mount_from` if one has it, else uploaded.
pub async fn push_blob(
    transport: &Transport,
    plan: &UploadPlan<'_>,
    blob: BlobUpload<'_>,
    preferred: Option<&str>,
) -> Result<BlobPush, RegistryError> {
    let progress = &plan.progress.0;
    let result = transport
        .retry(plan.site(Operation::StartUpload), |_| async {
            progress.started(Direction::Upload, blob.digest, blob.size);
            Ok(upload_session(transport, plan, blob, preferred).await?)
        })
        .await;
    progress.finished(Direction::Upload, blob.digest);
    result
}

/// Make a blob that is neither in the target ([`blob_exists`] said so) nor available locally
/// present there: mounted from `preferred` or one of `plan.mount_from`; `Ok(None)` when no
/// mount worked.
pub async fn place_remote_blob(
    transport: &Transport,
    plan: &UploadPlan<'_>,
    digest: &Digest,
    preferred: Option<&str>,
) -> Result<Option<BlobPush>, RegistryError> {
    transport
        .retry(plan.site(Operation::MountBlob), |_| async {
            for source in mount_sources(plan, preferred) {
                match try_mount(transport, plan, digest, source).await? {
                    MountAnswer::Mounted => {
                        tracing::info!(%digest, from = %source, "blob mounted");
                        return Ok(Some(BlobPush::Mounted));
                    }
                    MountAnswer::Session(url) => cancel_session(transport, plan, url).await,
                }
            }
            Ok(None)
        })
        .await
}

/// `HEAD /v2/<repo>/blobs/<digest>`: 200 means present, 404 absent.
pub async fn blob_exists(transport: &Transport, plan: &UploadPlan<'_>, digest: &Digest) -> Result<bool, RegistryError> {
    let url = plan.url(&format!("blobs/{digest}"), Operation::CheckBlob)?;
    let call = plan.call(Operation::CheckBlob, Method::HEAD, url);
    let response = transport.send(&call).await?;
    match response.status() {
        s if s.is_success() => Ok(true),
        StatusCode::NOT_FOUND => Ok(false),
        _ => Err(call.status_error(response).await),
    }
}

/// The repositories to try mounting from, in order: `preferred` (the blob's known origin),
/// then `plan.mount_from`; each once, never the target itself.
fn mount_sources<'a>(plan: &'a UploadPlan<'_>, preferred: Option<&'a str>) -> Vec<&'a str> {
    let mut out: Vec<&str> = Vec::with_capacity(plan.mount_from.len() + 1);
    for source in preferred.into_iter().chain(plan.mount_from.iter().map(String::as_str)) {
        if source != plan.repository && !out.contains(&source) {
            out.push(source);
        }
    }
    out
}

async fn upload_session(
    transport: &Transport,
    plan: &UploadPlan<'_>,
    blob: BlobUpload<'_>,
    preferred: Option<&str>,
) -> Result<BlobPush, RegistryError> {
    let sources = mount_sources(plan, preferred);
    let mut location = None;
    for (i, source) in sources.iter().enumerate() {
        match try_mount(transport, plan, blob.digest, source).await? {
            MountAnswer::Mounted => {
                tracing::info!(digest = %blob.digest, from = %source, "blob mounted");
                return Ok(BlobPush::Mounted);
            }
            // Not in that repository: the registry opened an ordinary session instead. Use it
            // if this was the last candidate, else cancel it and try the next one.
            MountAnswer::Session(url) if i + 1 == sources.len() => location = Some(url),
            MountAnswer::Session(url) => cancel_session(transport, plan, url).await,
        }
    }
    let location = match location {
        Some(l) => l,
        None => start_upload(transport, plan).await?,
    };
    let finish_url =
        if blob.size <= plan.chunk_size { location } else { patch_chunks(transport, plan, blob, location).await? };
    finish(transport, plan, blob, finish_url).await?;
    tracing::info!(digest = %blob.digest, size = blob.size, "blob uploaded");
    Ok(BlobPush::Uploaded(blob.size))
}

enum MountAnswer {
    Mounted,
    /// The registry started an ordinary upload session instead.
    Session(Url),
}

async fn try_mount(
    transport: &Transport,
    plan: &UploadPlan<'_>,
    digest: &Digest,
    source: &str,
) -> Result<MountAnswer, RegistryError> {
    let mut url = plan.url("blobs/uploads/", Operation::MountBlob)?;
    url.query_pairs_mut().append_pair("mount", digest.as_ref()).append_pair("from", source);
    let call = plan.once(Operation::MountBlob, Method::POST, url);
    let response = transport.send(&call).await?;
    match response.status() {
        StatusCode::CREATED => Ok(MountAnswer::Mounted),
        StatusCode::ACCEPTED => Ok(MountAnswer::Session(location(&call, &response)?)),
        _ => Err(call.status_error(response).await),
    }
}

/// Best-effort `DELETE` of an unused upload session (the registry expires it anyway).
async fn cancel_session(transport: &Transport, plan: &UploadPlan<'_>, url: Url) {
    let call = plan.once(Operation::StartUpload, Method::DELETE, url);
    if let Err(e) = transport.send(&call).await {
        tracing::debug!(error = %e, "cancelling an unused upload session failed");
    }
}

async fn start_upload(transport: &Transport, plan: &UploadPlan<'_>) -> Result<Url, RegistryError> {
    let url = plan.url("blobs/uploads/", Operation::StartUpload)?;
    let call = plan.once(Operation::StartUpload, Method::POST, url);
    let response = transport.send(&call).await?;
    if response.status() != StatusCode::ACCEPTED {
        return Err(call.status_error(response).await);
    }
    location(&call, &response)
}

/// Send the blob in `PATCH` chunks; returns the location for the final `PUT`.
async fn patch_chunks(
    transport: &Transport,
    plan: &UploadPlan<'_>,
    blob: BlobUpload<'_>,
    mut location: Url,
) -> Result<Url, RegistryError> {
    let mut offset = 0;
    while offset < blob.size {
        let len = plan.chunk_size.min(blob.size - offset);
        let mut call = plan.once(Operation::UploadChunk, Method::PATCH, location.clone());
        call.headers.push((CONTENT_TYPE.as_str(), "application/octet-stream".to_owned()));
        call.headers.push(("content-range", format!("{}-{}", offset, offset + len - 1)));
        call.body =
            CallBody::File { path: blob.path.to_owned(), offset, len, progress: Some(plan.blob_progress(blob.digest)) };
        let response = transport.send(&call).await?;
        if response.status() != StatusCode::ACCEPTED {
            return Err(call.status_error(response).await);
        }
        location = location_or(&call, &response, location)?;
        offset += len;
    }
    Ok(location)
}

/// The closing `PUT ?digest=`, carrying the whole blob when no chunk was sent.
async fn finish(
    transport: &Transport,
    plan: &UploadPlan<'_>,
    blob: BlobUpload<'_>,
    mut url: Url,
) -> Result<(), RegistryError> {
    url.query_pairs_mut().append_pair("digest", blob.digest.as_ref());
    let mut call = plan.once(Operation::FinishUpload, Method::PUT, url);
    if blob.size <= plan.chunk_size {
        call.headers.push((CONTENT_TYPE.as_str(), "application/octet-stream".to_owned()));
        call.body = CallBody::File {
            path: blob.path.to_owned(),
            offset: 0,
            len: blob.size,
            progress: Some(plan.blob_progress(blob.digest)),
        };
    }
    let response = transport.send(&call).await?;
    if response.status() != StatusCode::CREATED {
        return Err(call.status_error(response).await);
    }
    Ok(())
}

fn location(call: &Call, response: &Response) -> Result<Url, RegistryError> {
    let raw = response
        .headers()
        .get(LOCATION)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| call.invalid("upload answer has no location"))?;
    call.url.join(raw).map_err(|_| RegistryError::Location {
        registry: call.endpoint.name.clone(),
        repository: call.repository.clone(),
        operation: call.operation,
        location: raw.to_owned(),
    })
}

fn location_or(call: &Call, response: &Response, previous: Url) -> Result<Url, RegistryError> {
    if response.headers().contains_key(LOCATION) {
        location(call, response)
    } else {
        Ok(previous)
    }
}
