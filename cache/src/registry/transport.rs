//! HTTP transport: authorisation (Basic or bearer challenge flow), requests sent under the
//! liveness limits of [`super::liveness`] and the one retry policy of [`super::retry`], and
//! request bodies that can be re-created for a retry (bytes, or a byte range of a file
//! streamed from disk). Every wait ends when the client is cancelled.

use std::collections::HashMap;
use std::io::SeekFrom;
use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use reqwest::header::{HeaderValue, AUTHORIZATION, CONTENT_LENGTH, RETRY_AFTER, WWW_AUTHENTICATE};
use reqwest::{Method, Response, StatusCode};
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio::sync::Mutex;
use url::Url;

use crate::registry::auth::{Challenge, Credential, CredentialStore, Secret};
use crate::registry::error::{Operation, RegistryError, RegistryMessage, Stall};
use crate::registry::liveness::{read_body, Activity, Timeouts};
pub use crate::registry::retry::RetryPolicy;
use crate::registry::retry::{retry, Attempt, Failure, Site};
use crate::registry::token_cache::{TokenCache, TokenKey};
use crate::registry::transfer::BlobProgress;
use tokio_util::sync::CancellationToken;

/// Size of reads when streaming a file body.
const STREAM_BUFFER: usize = 256 * 1024;
/// Error bodies larger than this are cut (they are only used for messages).
const MAX_ERROR_BODY: usize = 64 * 1024;
/// Token answers larger than this are refused.
const MAX_TOKEN_BODY: u64 = 1024 * 1024;
/// Longest wait for an error body (it only feeds a message).
const ERROR_BODY_WAIT: Duration = Duration::from_secs(5);

/// One registry as the client talks to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// Name used for credentials and messages (`docker.io`, `localhost:5000`).
    pub name: String,
    /// Host (and port) to connect to (`registry-1.docker.io`).
    pub host: String,
    /// `https`, or `http` for registries named insecure.
    pub scheme: &'static str,
}

impl Endpoint {
    /// `<scheme>://<host>/v2/<path>`.
    pub fn url(&self, path: &str) -> Result<Url, url::ParseError> {
        Url::parse(&format!("{}://{}/v2/{}", self.scheme, self.host, path))
    }

    /// `<scheme>://<host>/v2/<repository>/<path>`, with the error a caller reports.
    pub fn repository_url(&self, repository: &str, path: &str, operation: Operation) -> Result<Url, RegistryError> {
        self.url(&format!("{repository}/{path}")).map_err(|_| RegistryError::InvalidResponse {
            registry: self.name.clone(),
            repository: repository.to_owned(),
            operation,
            reason: "repository or reference does not form a valid url",
        })
    }
}

/// A request body that can be rebuilt for each attempt.
#[derive(Debug, Clone)]
pub enum CallBody {
    /// No body.
    Empty,
    /// Bytes in memory (manifests).
    Bytes(Bytes),
    /// `len` bytes of `path` from `offset`, streamed with bounded memory.
    File {
        /// File to read.
        path: PathBuf,
        /// Start offset.
        offset: u64,
        /// Number of bytes.
        len: u64,
        /// Reports the bytes as the body streams out.
        progress: Option<BlobProgress>,
    },
}

/// One registry request, with what the error message and the token scope need.
#[derive(Debug, Clone)]
pub struct Call {
    /// The registry.
    pub endpoint: Endpoint,
    /// Repository (for messages).
    pub repository: String,
    /// What is being done (for messages).
    pub operation: Operation,
    /// HTTP method.
    pub method: Method,
    /// Full URL.
    pub url: Url,
    /// Extra headers.
    pub headers: Vec<(&'static str, String)>,
    /// Body.
    pub body: CallBody,
    /// Token scopes the request needs (`repository:<name>:pull,push`).
    pub scopes: Vec<String>,
    /// Whether the transport may resend on connection errors, 429 and 5xx.
    pub retryable: bool,
}

impl Call {
    /// A retryable call without body or extra headers.
    pub fn new(
        endpoint: &Endpoint,
        repository: &str,
        operation: Operation,
        method: Method,
        url: Url,
        scopes: &[String],
    ) -> Self {
        Self {
            endpoint: endpoint.clone(),
            repository: repository.to_owned(),
            operation,
            method,
            url,
            headers: Vec::new(),
            body: CallBody::Empty,
            scopes: scopes.to_vec(),
            retryable: true,
        }
    }

    /// Where the call goes, for messages and cancellation.
    pub fn site(&self) -> Site<'_> {
        Site { registry: &self.endpoint.name, repository: &self.repository, operation: self.operation }
    }

    /// [`Call::status_error`] with the registry's `Retry-After`, for [`Transport::retry`].
    pub async fn status_failure(&self, response: Response) -> Failure {
        let retry_after = retry_after(&response);
        Failure { error: self.status_error(response).await, retry_after }
    }

    /// An error for a non-success response (reads the registry's error body).
    pub async fn status_error(&self, response: Response) -> RegistryError {
        let status = response.status().as_u16();
        let body = tokio::time::timeout(ERROR_BODY_WAIT, read_limited(response)).await.unwrap_or_default();
        RegistryError::Status {
            registry: self.endpoint.name.clone(),
            repository: self.repository.clone(),
            operation: self.operation,
            status,
            message: RegistryMessage::parse(&body),
        }
    }

    /// An error for a malformed answer.
    pub fn invalid(&self, reason: &'static str) -> RegistryError {
        RegistryError::InvalidResponse {
            registry: self.endpoint.name.clone(),
            repository: self.repository.clone(),
            operation: self.operation,
            reason,
        }
    }
}

async fn read_limited(response: Response) -> Vec<u8> {
    let mut body = Vec::new();
    let mut response = response;
    while let Ok(Some(chunk)) = response.chunk().await {
        body.extend_from_slice(&chunk);
        if body.len() > MAX_ERROR_BODY {
            break;
        }
    }
    body
}

/// The HTTP side of a [`RegistryClient`](crate::registry::RegistryClient).
#[derive(Debug)]
pub struct Transport {
    http: reqwest::Client,
    /// A client that accepts any certificate, and the registries it is for.
    unverified: Option<(reqwest::Client, Vec<String>)>,
    credentials: CredentialStore,
    tokens: TokenCache,
    challenges: Mutex<HashMap<String, Challenge>>,
    retry: RetryPolicy,
    timeouts: Timeouts,
    cancel: CancellationToken,
}

#[derive(serde::Deserialize)]
struct TokenAnswer {
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    access_token: Option<String>,
    #[serde(default)]
    expires_in: Option<u64>,
}

impl Transport {
    /// Wrap an HTTP client.
    pub fn new(http: reqwest::Client, credentials: CredentialStore, retry: RetryPolicy, timeouts: Timeouts) -> Self {
        Self {
            http,
            unverified: None,
            credentials,
            tokens: TokenCache::default(),
            challenges: Mutex::new(HashMap::new()),
            retry,
            timeouts,
            cancel: CancellationToken::new(),
        }
    }

    /// The liveness limits in use.
    pub fn timeouts(&self) -> Timeouts {
        self.timeouts
    }

    /// Fires when the client is cancelled.
    pub fn cancel_token(&self) -> &CancellationToken {
        &self.cancel
    }

    /// Run `op` under the retry policy (see [`retry`]); `op`'s requests must not retry
    /// themselves (send them with [`Transport::send_once`]).
    pub async fn retry<T, F, Fut>(&self, site: Site<'_>, op: F) -> Result<T, RegistryError>
    where
        F: FnMut(Attempt) -> Fut,
        Fut: std::future::Future<Output = Result<T, Failure>>,
    {
        retry(&self.retry, &self.cancel, site, op).await
    }

    /// Read a whole small body (manifest, config, token), at most `limit` bytes.
    pub async fn read_body(
        &self,
        call: &Call,
        response: Response,
        limit: u64,
        what: &'static str,
    ) -> Result<Bytes, RegistryError> {
        read_body(response, call.site(), self.timeouts, &self.cancel, limit, what).await
    }

    /// Use `http` (which skips certificate checks) for `registries` (`host[:port]`).
    pub fn with_unverified(mut self, http: reqwest::Client, registries: Vec<String>) -> Self {
        self.unverified = Some((http, registries));
        self
    }

    /// The HTTP client for a registry: the unverified one if the registry is listed.
    fn http_for(&self, registry: &str) -> &reqwest::Client {
        match &self.unverified {
            Some((http, registries)) if registries.iter().any(|r| r == registry) => http,
            _ => &self.http,
        }
    }

    /// Send `call`, authorising and (when `call.retryable`) retrying connection errors,
    /// timeouts, 429 and 5xx. Returns the final response whatever its status (callers decide
    /// which statuses are errors); fails only when the registry cannot be reached in time.
    pub async fn send(&self, call: &Call) -> Result<Response, RegistryError> {
        if !call.retryable {
            return self.send_once(call).await;
        }
        self.retry(call.site(), |attempt| async move {
            let response = self.send_once(call).await?;
            let status = response.status();
            let busy = status == StatusCode::TOO_MANY_REQUESTS
                || status == StatusCode::REQUEST_TIMEOUT
                || status.is_server_error();
            if busy && !attempt.last {
                return Err(call.status_failure(response).await);
            }
            Ok(response)
        })
        .await
    }

    /// Send `call` once (a 401 with a challenge is answered and resent once), waiting for
    /// the response no longer than the liveness limits allow.
    pub async fn send_once(&self, call: &Call) -> Result<Response, RegistryError> {
        let mut reauthorised = false;
        loop {
            let authorization = self.authorization(call).await?;
            let activity = Activity::new();
            let request = self.build(call, authorization, &activity).await?;
            let sent = self.http_for(&call.endpoint.name).execute(request);
            let response = self.await_response(call, sent, &activity).await?;
            if response.status() == StatusCode::UNAUTHORIZED && !reauthorised {
                reauthorised = true;
                if self.learn_challenge(call, &response).await {
                    continue;
                }
            }
            tracing::debug!(registry = %call.endpoint.name, repository = %call.repository, operation = %call.operation, status = response.status().as_u16(), "registry call");
            return Ok(response);
        }
    }

    /// Wait for `sent` while its body moves (`activity`) and the response comes within the
    /// operation's limit after the last sign of life; ends on cancellation.
    async fn await_response(
        &self,
        call: &Call,
        sent: impl std::future::Future<Output = reqwest::Result<Response>>,
        activity: &Activity,
    ) -> Result<Response, RegistryError> {
        let limit = self.timeouts.response_for(call.operation);
        let mut sent = std::pin::pin!(sent);
        loop {
            let idle = activity.idle();
            if idle >= limit {
                return Err(RegistryError::TimedOut {
                    registry: call.endpoint.name.clone(),
                    repository: call.repository.clone(),
                    operation: call.operation,
                    stall: Stall::NoResponse(limit),
                });
            }
            tokio::select! {
                result = &mut sent => {
                    return result.map_err(|source| RegistryError::Unreachable {
                        registry: call.endpoint.name.clone(),
                        repository: call.repository.clone(),
                        operation: call.operation,
                        attempts: 1,
                        source,
                    });
                }
                () = tokio::time::sleep(limit - idle) => {}
                () = self.cancel.cancelled() => return Err(call.site().cancelled()),
            }
        }
    }

    /// Record the registry's challenge after a 401 and drop the rejected token. Returns whether
    /// there was a challenge to answer (then the call is resent once).
    async fn learn_challenge(&self, call: &Call, response: &Response) -> bool {
        let Some(challenge) =
            response.headers().get(WWW_AUTHENTICATE).and_then(|v| v.to_str().ok()).and_then(Challenge::parse)
        else {
            return false;
        };
        self.tokens.invalidate(&TokenKey::new(&call.endpoint.host, &call.scopes)).await;
        self.challenges.lock().await.insert(call.endpoint.host.clone(), challenge);
        true
    }

    async fn authorization(&self, call: &Call) -> Result<Option<String>, RegistryError> {
        let challenge = self.challenges.lock().await.get(&call.endpoint.host).cloned();
        match challenge {
            None => Ok(None),
            Some(Challenge::Basic) => {
                Ok(self.credentials.lookup(&call.endpoint.name).await?.and_then(|c| c.basic_header()))
            }
            Some(Challenge::Bearer { realm, service, scope }) => {
                let mut scopes = call.scopes.clone();
                if scopes.is_empty() {
                    scopes.extend(scope);
                }
                let key = TokenKey::new(&call.endpoint.host, &scopes);
                if let Some(token) = self.tokens.get(&key).await {
                    return Ok(Some(format!("Bearer {}", token.expose())));
                }
                let (token, expires_in) = self.fetch_token(call, &realm, service.as_deref(), &scopes).await?;
                let header = format!("Bearer {}", token.expose());
                self.tokens.insert(key, token, expires_in).await;
                Ok(Some(header))
            }
        }
    }

    async fn fetch_token(
        &self,
        call: &Call,
        realm: &str,
        service: Option<&str>,
        scopes: &[String],
    ) -> Result<(Secret, Option<u64>), RegistryError> {
        let token_call = Call { operation: Operation::Token, ..call.clone() };
        let mut url = Url::parse(realm).map_err(|_| token_call.invalid("token realm is not a url"))?;
        let credential = self.credentials.lookup(&call.endpoint.name).await?;
        let request = match &credential {
            Some(Credential::IdentityToken(refresh)) => {
                let mut form = vec![
                    ("grant_type", "refresh_token".to_owned()),
                    ("client_id", "rbuild".to_owned()),
                    ("refresh_token", refresh.expose().to_owned()),
                    ("scope", scopes.join(" ")),
                ];
                form.extend(service.map(|s| ("service", s.to_owned())));
                let body = url::form_urlencoded::Serializer::new(String::new()).extend_pairs(form).finish();
                self.http_for(&call.endpoint.name)
                    .post(url)
                    .header("content-type", "application/x-www-form-urlencoded")
                    .body(body)
            }
            other => {
                {
                    let mut query = url.query_pairs_mut();
                    if let Some(service) = service {
                        query.append_pair("service", service);
                    }
                    for scope in scopes {
                        query.append_pair("scope", scope);
                    }
                }
                let request = self.http_for(&call.endpoint.name).get(url);
                match other.as_ref().and_then(Credential::basic_header) {
                    Some(basic) => request.header(AUTHORIZATION, basic),
                    None => request,
                }
            }
        };
        let request = request.build().map_err(RegistryError::Client)?;
        let sent = self.http_for(&call.endpoint.name).execute(request);
        let response = self.await_response(&token_call, sent, &Activity::new()).await?;
        if !response.status().is_success() {
            return Err(token_call.status_error(response).await);
        }
        let body = self.read_body(&token_call, response, MAX_TOKEN_BODY, "token answers").await?;
        let answer: TokenAnswer =
            serde_json::from_slice(&body).map_err(|_| token_call.invalid("token answer is not json"))?;
        let token =
            answer.token.or(answer.access_token).ok_or_else(|| token_call.invalid("token answer has no token"))?;
        tracing::debug!(registry = %call.endpoint.name, ?scopes, "bearer token obtained");
        Ok((Secret::new(token), answer.expires_in))
    }

    async fn build(
        &self,
        call: &Call,
        authorization: Option<String>,
        activity: &Activity,
    ) -> Result<reqwest::Request, RegistryError> {
        let mut builder = self.http_for(&call.endpoint.name).request(call.method.clone(), call.url.clone());
        if let Some(auth) = authorization {
            let mut value =
                HeaderValue::from_str(&auth).map_err(|_| call.invalid("credentials are not a valid header"))?;
            value.set_sensitive(true);
            builder = builder.header(AUTHORIZATION, value);
        }
        for (name, value) in &call.headers {
            builder = builder.header(*name, value);
        }
        builder = match &call.body {
            CallBody::Empty => builder,
            CallBody::Bytes(bytes) => builder.body(bytes.clone()),
            CallBody::File { path, offset, len, progress } => {
                let io_err = |source| RegistryError::Io { path: path.clone(), source };
                let mut file = tokio::fs::File::open(path).await.map_err(io_err)?;
                file.seek(SeekFrom::Start(*offset)).await.map_err(io_err)?;
                let progress = progress.clone();
                let activity = activity.clone();
                let stream =
                    tokio_util::io::ReaderStream::with_capacity(file.take(*len), STREAM_BUFFER).inspect(move |chunk| {
                        activity.bump();
                        if let (Some(p), Ok(bytes)) = (&progress, chunk) {
                            p.advanced(bytes.len() as u64);
                        }
                    });
                builder.header(CONTENT_LENGTH, *len).body(reqwest::Body::wrap_stream(stream))
            }
        };
        builder.build().map_err(RegistryError::Client)
    }
}

/// `Retry-After` in seconds, if the registry sent one.
fn retry_after(response: &Response) -> Option<Duration> {
    let secs: u64 = response.headers().get(RETRY_AFTER)?.to_str().ok()?.trim().parse().ok()?;
    Some(Duration::from_secs(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_urls() {
        let e = Endpoint { name: "docker.io".into(), host: "registry-1.docker.io".into(), scheme: "https" };
        assert_eq!(
            e.url("library/busybox/manifests/latest").unwrap().as_str(),
            "https://registry-1.docker.io/v2/library/busybox/manifests/latest"
        );
    }
}
