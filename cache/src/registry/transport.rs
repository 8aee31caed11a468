//! HTTP transport: authorisation (Basic or bearer challenge flow), retries with backoff and
//! jitter on connection errors, 429 and 5xx (never on other 4xx), and request bodies that can
//! be re-created for a retry (bytes, or a byte range of a file streamed from disk).

use std::collections::HashMap;
use std::io::SeekFrom;
use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use reqwest::header::{HeaderValue, AUTHORIZATION, CONTENT_LENGTH, RETRY_AFTER, WWW_AUTHENTICATE};
use reqwest::{Method, Response, StatusCode};
use futures_util::StreamExt;
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio::sync::Mutex;
use url::Url;

use crate::registry::auth::{Challenge, Credential, CredentialStore, Secret};
use crate::registry::diagnosis::TransportFailure;
use crate::registry::error::{Operation, RegistryError, RegistryMessage};
use crate::registry::token_cache::{TokenCache, TokenKey};
use crate::registry::transfer::BlobProgress;

/// Size of reads when streaming a file body.
const STREAM_BUFFER: usize = 256 * 1024;
/// Error bodies larger than this are cut (they are only used for messages).
const MAX_ERROR_BODY: usize = 64 * 1024;

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

/// Retry policy: `retries` extra attempts, exponential backoff from `base_delay` with ±50 %
/// jitter, capped at `max_delay`.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Extra attempts after the first.
    pub retries: u32,
    /// First backoff delay.
    pub base_delay: Duration,
    /// Longest backoff delay.
    pub max_delay: Duration,
}

impl RetryPolicy {
    /// Delay before attempt `attempt + 1` (attempt counts from 1).
    pub fn delay(&self, attempt: u32) -> Duration {
        let exp = self
            .base_delay
            .saturating_mul(2u32.saturating_pow(attempt.saturating_sub(1)));
        let capped = exp.min(self.max_delay);
        capped.mul_f64(0.5 + fastrand::f64())
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

    /// An error for a non-success response (reads the registry's error body).
    pub async fn status_error(&self, response: Response) -> RegistryError {
        let status = response.status().as_u16();
        let body = read_limited(response).await;
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
    pub fn new(http: reqwest::Client, credentials: CredentialStore, retry: RetryPolicy) -> Self {
        Self {
            http,
            unverified: None,
            credentials,
            tokens: TokenCache::default(),
            challenges: Mutex::new(HashMap::new()),
            retry,
        }
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

    /// Send `call`, authorising and retrying as needed. Returns the final response whatever
    /// its status (callers decide which statuses are errors); fails only when the registry
    /// cannot be reached.
    pub async fn send(&self, call: &Call) -> Result<Response, RegistryError> {
        let mut attempt = 0;
        let mut reauthorised = false;
        loop {
            attempt += 1;
            let authorization = self.authorization(call).await?;
            let request = self.build(call, authorization).await?;
            let may_retry = call.retryable && attempt <= self.retry.retries;
            match self.http_for(&call.endpoint.name).execute(request).await {
                Err(source) => {
                    if may_retry && !source.is_builder() && TransportFailure::of(&source).is_transient() {
                        let delay = self.retry.delay(attempt);
                        tracing::warn!(registry = %call.endpoint.name, operation = %call.operation, attempt, ?delay, error = %source, "registry unreachable, retrying");
                        tokio::time::sleep(delay).await;
                        continue;
                    }
                    return Err(RegistryError::Unreachable {
                        registry: call.endpoint.name.clone(),
                        repository: call.repository.clone(),
                        operation: call.operation,
                        attempts: attempt,
                        source,
                    });
                }
                Ok(response) => {
                    let status = response.status();
                    if status == StatusCode::UNAUTHORIZED && !reauthorised {
                        reauthorised = true;
                        if self.learn_challenge(call, &response).await {
                            attempt -= 1;
                            continue;
                        }
                    }
                    if may_retry
                        && (status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error())
                    {
                        let delay =
                            retry_after(&response).unwrap_or_else(|| self.retry.delay(attempt));
                        tracing::warn!(registry = %call.endpoint.name, operation = %call.operation, status = status.as_u16(), attempt, ?delay, "registry busy, retrying");
                        tokio::time::sleep(delay.min(self.retry.max_delay)).await;
                        continue;
                    }
                    tracing::debug!(registry = %call.endpoint.name, repository = %call.repository, operation = %call.operation, status = status.as_u16(), "registry call");
                    return Ok(response);
                }
            }
        }
    }

    /// Record the registry's challenge after a 401 and drop the rejected token. Returns whether
    /// there was a challenge to answer (then the call is resent once).
    async fn learn_challenge(&self, call: &Call, response: &Response) -> bool {
        let Some(challenge) = response
            .headers()
            .get(WWW_AUTHENTICATE)
            .and_then(|v| v.to_str().ok())
            .and_then(Challenge::parse)
        else {
            return false;
        };
        self.tokens
            .invalidate(&TokenKey::new(&call.endpoint.host, &call.scopes))
            .await;
        self.challenges
            .lock()
            .await
            .insert(call.endpoint.host.clone(), challenge);
        true
    }

    async fn authorization(&self, call: &Call) -> Result<Option<String>, RegistryError> {
        let challenge = self
            .challenges
            .lock()
            .await
            .get(&call.endpoint.host)
            .cloned();
        match challenge {
            None => Ok(None),
            Some(Challenge::Basic) => Ok(self
                .credentials
                .lookup(&call.endpoint.name)
                .await?
                .and_then(|c| c.basic_header())),
            Some(Challenge::Bearer {
                realm,
                service,
                scope,
            }) => {
                let mut scopes = call.scopes.clone();
                if scopes.is_empty() {
                    scopes.extend(scope);
                }
                let key = TokenKey::new(&call.endpoint.host, &scopes);
                if let Some(token) = self.tokens.get(&key).await {
                    return Ok(Some(format!("Bearer {}", token.expose())));
                }
                let (token, expires_in) = self
                    .fetch_token(call, &realm, service.as_deref(), &scopes)
                    .await?;
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
        let token_call = Call {
            operation: Operation::Token,
            ..call.clone()
        };
        let mut url =
            Url::parse(realm).map_err(|_| token_call.invalid("token realm is not a url"))?;
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
                let body = url::form_urlencoded::Serializer::new(String::new())
                    .extend_pairs(form)
                    .finish();
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
        let response = request
            .send()
            .await
            .map_err(|source| RegistryError::Unreachable {
                registry: call.endpoint.name.clone(),
                repository: call.repository.clone(),
                operation: Operation::Token,
                attempts: 1,
                source,
            })?;
        if !response.status().is_success() {
            return Err(token_call.status_error(response).await);
        }
        let answer: TokenAnswer = response
            .json()
            .await
            .map_err(|_| token_call.invalid("token answer is not json"))?;
        let token = answer
            .token
            .or(answer.access_token)
            .ok_or_else(|| token_call.invalid("token answer has no token"))?;
        tracing::debug!(registry = %call.endpoint.name, ?scopes, "bearer token obtained");
        Ok((Secret::new(token), answer.expires_in))
    }

    async fn build(
        &self,
        call: &Call,
        authorization: Option<String>,
    ) -> Result<reqwest::Request, RegistryError> {
        let mut builder = self.http_for(&call.endpoint.name).request(call.method.clone(), call.url.clone());
        if let Some(auth) = authorization {
            let mut value = HeaderValue::from_str(&auth)
                .map_err(|_| call.invalid("credentials are not a valid header"))?;
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
                let io_err = |source| RegistryError::Io {
                    path: path.clone(),
                    source,
                };
                let mut file = tokio::fs::File::open(path).await.map_err(io_err)?;
                file.seek(SeekFrom::Start(*offset)).await.map_err(io_err)?;
                let progress = progress.clone();
                let stream =
                    tokio_util::io::ReaderStream::with_capacity(file.take(*len), STREAM_BUFFER)
                        .inspect(move |chunk| {
                            if let (Some(p), Ok(bytes)) = (&progress, chunk) {
                                p.advanced(bytes.len() as u64);
                            }
                        });
                builder
                    .header(CONTENT_LENGTH, *len)
                    .body(reqwest::Body::wrap_stream(stream))
            }
        };
        builder.build().map_err(RegistryError::Client)
    }
}

/// `Retry-After` in seconds, if the registry sent one.
fn retry_after(response: &Response) -> Option<Duration> {
    let secs: u64 = response
        .headers()
        .get(RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    Some(Duration::from_secs(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_is_capped_and_jittered() {
        let p = RetryPolicy {
            retries: 5,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(1000),
        };
        for attempt in 1..=8u32 {
            let nominal = (100u64 << (attempt - 1).min(20)).min(1000) as f64;
            let d = p.delay(attempt).as_millis() as f64;
            assert!(
                d >= nominal * 0.5 - 1.0 && d <= nominal * 1.5 + 1.0,
                "{attempt}: {d}"
            );
        }
    }

    #[test]
    fn endpoint_urls() {
        let e = Endpoint {
            name: "docker.io".into(),
            host: "registry-1.docker.io".into(),
            scheme: "https",
        };
        assert_eq!(
            e.url("library/busybox/manifests/latest").unwrap().as_str(),
            "https://registry-1.docker.io/v2/library/busybox/manifests/latest"
        );
    }
}
