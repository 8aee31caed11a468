//! The one retry policy of the registry client. Every request (manifests, tags, config blobs,
//! layer downloads, upload sessions, tokens) that may be sent again goes through [`retry`],
//! and whether a failure is worth another attempt is decided in one place: [`is_transient`].
//! A stalled registry gets fewer attempts ([`STALL_RETRIES`]) than a busy one, so one that
//! accepts connections and never answers fails the build in well under a minute.

use std::future::Future;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::registry::diagnosis::TransportFailure;
use crate::registry::error::{Operation, RegistryError};

/// Extra attempts after a timeout: a registry that ignored two requests in a row is down, and
/// waiting out more timeouts only delays the error.
pub const STALL_RETRIES: u32 = 1;

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
        let exp = self.base_delay.saturating_mul(2u32.saturating_pow(attempt.saturating_sub(1)));
        let capped = exp.min(self.max_delay);
        capped.mul_f64(0.5 + fastrand::f64())
    }
}

/// Whether another attempt may succeed: connection problems, timeouts, bodies cut short,
/// 408, 429 and 5xx. Never other 4xx, digest mismatches or malformed answers (the registry
/// would send the same again). The one place this is decided.
pub fn is_transient(error: &RegistryError) -> bool {
    match error {
        RegistryError::Status { status, .. } => matches!(*status, 408 | 429) || *status >= 500,
        // A TLS/HTTP mismatch, an unknown CA or a name that does not resolve will not heal by
        // waiting: fail at once with the hint (crate::registry::diagnosis).
        RegistryError::Unreachable { source, .. } => TransportFailure::of(source).is_transient(),
        RegistryError::Download { .. } | RegistryError::Body { .. } | RegistryError::TimedOut { .. } => true,
        _ => false,
    }
}

/// A registry that did not answer in time (connect timeouts included).
fn is_stall(error: &RegistryError) -> bool {
    match error {
        RegistryError::TimedOut { .. } => true,
        RegistryError::Unreachable { source, .. } => source.is_timeout(),
        _ => false,
    }
}

/// A failed attempt, with the wait the registry asked for (`Retry-After`), if any.
#[derive(Debug)]
pub struct Failure {
    /// What went wrong.
    pub error: RegistryError,
    /// The registry's `Retry-After`.
    pub retry_after: Option<Duration>,
}

impl From<RegistryError> for Failure {
    fn from(error: RegistryError) -> Self {
        Self { error, retry_after: None }
    }
}

/// One attempt of an operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attempt {
    /// Counts from 1.
    pub number: u32,
    /// No attempt follows this one whatever happens (callers may then accept an error status).
    pub last: bool,
}

/// Where an operation goes, for messages and the cancellation error.
#[derive(Debug, Clone, Copy)]
pub struct Site<'a> {
    /// Registry name.
    pub registry: &'a str,
    /// Repository.
    pub repository: &'a str,
    /// What is being done.
    pub operation: Operation,
}

impl Site<'_> {
    /// The error of an operation stopped by cancellation.
    pub fn cancelled(&self) -> RegistryError {
        RegistryError::Cancelled {
            registry: self.registry.to_owned(),
            repository: self.repository.to_owned(),
            operation: self.operation,
        }
    }
}

/// Run `op` until it succeeds, fails for good ([`is_transient`] says no), runs out of
/// attempts, or `cancel` fires (then the error is [`RegistryError::Cancelled`]).
pub async fn retry<T, F, Fut>(
    policy: &RetryPolicy,
    cancel: &CancellationToken,
    site: Site<'_>,
    mut op: F,
) -> Result<T, RegistryError>
where
    F: FnMut(Attempt) -> Fut,
    Fut: Future<Output = Result<T, Failure>>,
{
    let mut number = 0;
    let mut stalls = 0;
    loop {
        number += 1;
        if cancel.is_cancelled() {
            return Err(site.cancelled());
        }
        let attempt = Attempt { number, last: number > policy.retries };
        let failure = match op(attempt).await {
            Ok(value) => return Ok(value),
            Err(failure) => failure,
        };
        if is_stall(&failure.error) {
            stalls += 1;
        }
        let give_up = attempt.last || stalls > STALL_RETRIES || !is_transient(&failure.error);
        if give_up || cancel.is_cancelled() {
            let mut error = failure.error;
            if let RegistryError::Unreachable { attempts, .. } = &mut error {
                *attempts = number;
            }
            return Err(error);
        }
        let delay = failure.retry_after.unwrap_or_else(|| policy.delay(number)).min(policy.max_delay);
        tracing::warn!(registry = site.registry, repository = site.repository, operation = %site.operation, attempt = number, ?delay, error = %failure.error, "registry request failed, retrying");
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = cancel.cancelled() => return Err(site.cancelled()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    fn policy(retries: u32) -> RetryPolicy {
        RetryPolicy { retries, base_delay: Duration::from_millis(1), max_delay: Duration::from_millis(5) }
    }

    const SITE: Site<'static> = Site { registry: "r.test", repository: "app", operation: Operation::GetBlob };

    fn status(code: u16) -> RegistryError {
        RegistryError::Status {
            registry: "r.test".into(),
            repository: "app".into(),
            operation: Operation::GetBlob,
            status: code,
            message: Default::default(),
        }
    }

    fn timed_out() -> RegistryError {
        RegistryError::TimedOut {
            registry: "r.test".into(),
            repository: "app".into(),
            operation: Operation::GetBlob,
            stall: crate::registry::error::Stall::NoResponse(Duration::from_secs(1)),
        }
    }

    /// How many attempts `retry` makes when every attempt fails with `make()`.
    async fn attempts(retries: u32, make: fn() -> RegistryError) -> u32 {
        let count = AtomicU32::new(0);
        let cancel = CancellationToken::new();
        let result: Result<(), _> = retry(&policy(retries), &cancel, SITE, |_| {
            count.fetch_add(1, Ordering::SeqCst);
            async move { Err(Failure::from(make())) }
        })
        .await;
        assert!(result.is_err());
        count.load(Ordering::SeqCst)
    }

    #[rstest::rstest]
    #[case::server_error(|| status(503), 4)]
    #[case::too_many_requests(|| status(429), 4)]
    #[case::not_found(|| status(404), 1)]
    #[case::denied(|| status(401), 1)]
    #[case::stall_retried_once(timed_out, 2)]
    #[tokio::test]
    async fn attempts_per_failure(#[case] make: fn() -> RegistryError, #[case] want: u32) {
        assert_eq!(attempts(3, make).await, want);
    }

    #[tokio::test]
    async fn the_last_attempt_is_marked_and_success_stops() {
        let cancel = CancellationToken::new();
        let seen = std::sync::Mutex::new(Vec::new());
        let value = retry(&policy(2), &cancel, SITE, |a| {
            seen.lock().unwrap().push(a);
            async move {
                if a.last {
                    Ok(7)
                } else {
                    Err(Failure::from(status(500)))
                }
            }
        })
        .await
        .unwrap();
        assert_eq!(value, 7);
        let lasts: Vec<bool> = seen.lock().unwrap().iter().map(|a| a.last).collect();
        assert_eq!(lasts, [false, false, true]);
    }

    #[tokio::test]
    async fn cancellation_ends_the_backoff() {
        let cancel = CancellationToken::new();
        let slow = RetryPolicy { retries: 5, base_delay: Duration::from_secs(60), max_delay: Duration::from_secs(60) };
        let trigger = cancel.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            trigger.cancel();
        });
        let err =
            retry(&slow, &cancel, SITE, |_| async { Err::<(), _>(Failure::from(status(503))) }).await.unwrap_err();
        assert!(matches!(err, RegistryError::Cancelled { .. }), "{err:?}");
    }

    #[test]
    fn backoff_grows_is_capped_and_jittered() {
        let p =
            RetryPolicy { retries: 5, base_delay: Duration::from_millis(100), max_delay: Duration::from_millis(1000) };
        for attempt in 1..=8u32 {
            let nominal = (100u64 << (attempt - 1).min(20)).min(1000) as f64;
            let d = p.delay(attempt).as_millis() as f64;
            assert!(d >= nominal * 0.5 - 1.0 && d <= nominal * 1.5 + 1.0, "{attempt}: {d}");
        }
    }
}
