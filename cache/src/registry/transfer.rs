//! Byte progress of blob transfers, reported to whoever shows it (the binary's progress
//! display). Reporting never changes what a transfer does; the default reports nothing.

use std::fmt;
use std::sync::Arc;

use crate::oci::Digest;

/// Which way a blob moves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Registry → blob store (pull).
    Download,
    /// Blob store → registry (push).
    Upload,
}

/// Receives blob transfer progress; implementations must be cheap (called per network chunk).
pub trait TransferProgress: Send + Sync {
    /// A transfer of `size` bytes starts; after a retry it starts again from zero.
    fn started(&self, direction: Direction, digest: &Digest, size: u64);
    /// `bytes` more bytes of `digest` went over the wire.
    fn advanced(&self, direction: Direction, digest: &Digest, bytes: u64);
    /// The transfer ended (successfully or not).
    fn finished(&self, direction: Direction, digest: &Digest);
}

/// Reports nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoTransferProgress;

impl TransferProgress for NoTransferProgress {
    fn started(&self, _: Direction, _: &Digest, _: u64) {}
    fn advanced(&self, _: Direction, _: &Digest, _: u64) {}
    fn finished(&self, _: Direction, _: &Digest) {}
}

/// A shared progress receiver (cheap to clone into request bodies).
#[derive(Clone)]
pub struct ProgressSink(pub Arc<dyn TransferProgress>);

impl Default for ProgressSink {
    fn default() -> Self {
        Self(Arc::new(NoTransferProgress))
    }
}

impl fmt::Debug for ProgressSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ProgressSink")
    }
}

/// The progress of one blob: where to report and which blob it is.
#[derive(Debug, Clone)]
pub struct BlobProgress {
    /// Where progress goes.
    pub sink: ProgressSink,
    /// Which way.
    pub direction: Direction,
    /// The blob.
    pub digest: Digest,
}

impl BlobProgress {
    /// `bytes` more were transferred.
    pub fn advanced(&self, bytes: u64) {
        self.sink.0.advanced(self.direction, &self.digest, bytes);
    }
}
