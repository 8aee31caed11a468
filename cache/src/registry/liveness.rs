//! Liveness limits of registry requests: how long rbuild waits for an answer, for the next
//! byte of a body, and how slowly a body may trickle in; every wait also ends on
//! cancellation. A slow but moving transfer is fine, a silent one is not: there is no fixed
//! deadline for a whole blob, only for the lack of progress.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use futures_util::{Stream, StreamExt};
use tokio_util::sync::CancellationToken;

use crate::registry::error::{Operation, RegistryError, Stall};
use crate::registry::retry::Site;

/// Manifests and configs larger than this are refused (containerd's limit): they are read
/// into memory, and no real image needs more.
pub const MAX_MANIFEST_SIZE: u64 = 4 * 1024 * 1024;

/// How long a request may go without progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// From the last byte sent to the response headers.
    pub response: Duration,
    /// The same for requests after which the registry verifies or moves a whole blob (the
    /// closing `PUT` of an upload, a manifest `PUT`): large blobs take it a while.
    pub commit: Duration,
    /// Longest silence between two chunks of a body.
    pub idle: Duration,
    /// A body must bring at least this many bytes per `window` (trickle detection).
    pub min_bytes: u64,
    /// The window of `min_bytes`.
    pub window: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            response: Duration::from_secs(20),
            commit: Duration::from_secs(120),
            idle: Duration::from_secs(30),
            min_bytes: 16 * 1024,
            window: Duration::from_secs(60),
        }
    }
}

impl Timeouts {
    /// The response timeout for `operation`.
    pub fn response_for(&self, operation: Operation) -> Duration {
        match operation {
            Operation::FinishUpload | Operation::PutManifest => self.commit.max(self.response),
            _ => self.response,
        }
    }
}

/// The last sign of life of a request: bytes of its body leaving (uploads), or its start.
#[derive(Debug, Clone)]
pub struct Activity {
    start: Instant,
    last_ms: Arc<AtomicU64>,
}

impl Activity {
    /// Activity starting now.
    pub fn new() -> Self {
        Self { start: Instant::now(), last_ms: Arc::new(AtomicU64::new(0)) }
    }

    /// Something moved.
    pub fn bump(&self) {
        let ms = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    /// Time since the last sign of life.
    pub fn idle(&self) -> Duration {
        let last = Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
        self.start.elapsed().saturating_sub(last)
    }
}

impl Default for Activity {
    fn default() -> Self {
        Self::new()
    }
}

/// Watches one body: silence and trickle.
#[derive(Debug)]
pub struct BodyWatch {
    timeouts: Timeouts,
    window_start: Instant,
    window_bytes: u64,
}

impl BodyWatch {
    /// A watch starting now.
    pub fn new(timeouts: Timeouts) -> Self {
        Self { timeouts, window_start: Instant::now(), window_bytes: 0 }
    }

    fn record(&mut self, bytes: u64) -> Result<(), Stall> {
        self.window_bytes += bytes;
        if self.window_start.elapsed() < self.timeouts.window {
            return Ok(());
        }
        if self.window_bytes < self.timeouts.min_bytes {
            return Err(Stall::TooSlow { bytes: self.timeouts.min_bytes, window: self.timeouts.window });
        }
        self.window_start = Instant::now();
        self.window_bytes = 0;
        Ok(())
    }
}

/// The next chunk of `body`, or `None` at its end; fails on silence, trickle, a body cut
/// short, or cancellation.
pub async fn next_chunk<S>(
    body: &mut S,
    watch: &mut BodyWatch,
    site: Site<'_>,
    cancel: &CancellationToken,
) -> Result<Option<Bytes>, RegistryError>
where
    S: Stream<Item = reqwest::Result<Bytes>> + Unpin,
{
    let stalled = |stall| RegistryError::TimedOut {
        registry: site.registry.to_owned(),
        repository: site.repository.to_owned(),
        operation: site.operation,
        stall,
    };
    let idle = watch.timeouts.idle;
    let next = tokio::select! {
        next = tokio::time::timeout(idle, body.next()) => next,
        () = cancel.cancelled() => return Err(site.cancelled()),
    };
    match next {
        Err(_) => Err(stalled(Stall::NoData(idle))),
        Ok(None) => Ok(None),
        Ok(Some(Err(source))) => Err(RegistryError::Body {
            registry: site.registry.to_owned(),
            repository: site.repository.to_owned(),
            operation: site.operation,
            source,
        }),
        Ok(Some(Ok(chunk))) => {
            watch.record(chunk.len() as u64).map_err(stalled)?;
            Ok(Some(chunk))
        }
    }
}

/// Read a whole (small) body into memory: at most `limit` bytes, else
/// [`RegistryError::TooLarge`] naming `what`.
pub async fn read_body(
    response: reqwest::Response,
    site: Site<'_>,
    timeouts: Timeouts,
    cancel: &CancellationToken,
    limit: u64,
    what: &'static str,
) -> Result<Bytes, RegistryError> {
    let too_large = || RegistryError::TooLarge {
        registry: site.registry.to_owned(),
        repository: site.repository.to_owned(),
        operation: site.operation,
        what,
        limit,
    };
    if response.content_length().is_some_and(|len| len > limit) {
        return Err(too_large());
    }
    let mut out = BytesMut::new();
    let mut body = response.bytes_stream();
    let mut watch = BodyWatch::new(timeouts);
    while let Some(chunk) = next_chunk(&mut body, &mut watch, site, cancel).await? {
        if (out.len() + chunk.len()) as u64 > limit {
            return Err(too_large());
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trickle_fails_after_a_window_and_moving_bodies_pass() {
        let timeouts = Timeouts { min_bytes: 100, window: Duration::from_millis(30), ..Timeouts::default() };
        let mut slow = BodyWatch::new(timeouts);
        assert!(slow.record(10).is_ok());
        std::thread::sleep(Duration::from_millis(40));
        assert!(matches!(slow.record(10), Err(Stall::TooSlow { bytes: 100, .. })));
        let mut fast = BodyWatch::new(timeouts);
        for _ in 0..4 {
            std::thread::sleep(Duration::from_millis(20));
            assert!(fast.record(1000).is_ok());
        }
    }

    #[test]
    fn commits_wait_longer_than_other_requests() {
        let t = Timeouts::default();
        assert_eq!(t.response_for(Operation::GetManifest), t.response);
        assert!(t.response_for(Operation::FinishUpload) > t.response);
    }

    #[test]
    fn activity_measures_silence() {
        let a = Activity::new();
        std::thread::sleep(Duration::from_millis(20));
        assert!(a.idle() >= Duration::from_millis(20));
        a.bump();
        assert!(a.idle() < Duration::from_millis(20));
    }

    #[tokio::test]
    async fn silent_bodies_time_out_naming_the_site() {
        let timeouts = Timeouts { idle: Duration::from_millis(20), ..Timeouts::default() };
        let mut body = futures_util::stream::pending::<reqwest::Result<Bytes>>();
        let site = Site { registry: "r.test:5000", repository: "team/app", operation: Operation::GetBlob };
        let err =
            next_chunk(&mut body, &mut BodyWatch::new(timeouts), site, &CancellationToken::new()).await.unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("r.test:5000/team/app") && msg.contains("no data"), "{msg}");
    }
}
