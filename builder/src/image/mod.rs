//! Image assembly: config, manifest, OCI layout and docker-archive outputs.
//!
//! JSON is canonical by construction: our own serde structs with fields in a fixed
//! order and `BTreeMap`s for maps, serialised compactly, so the same inputs give
//! the same config and manifest digests (see `docs/decisions.md`, "Layers").

pub mod archive;
pub mod config;
pub mod layout;
pub mod manifest;

use std::io;
use std::path::PathBuf;

pub use archive::write_docker_archive;
pub use config::{ContainerConfig, Healthcheck, History, ImageConfig, RootFs};
pub use layout::{write_oci_layout, write_oci_layout_index};
pub use manifest::{assemble, AssembledImage, ImageLayer};

/// Errors assembling or writing an image.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// The history does not describe the layers.
    #[error("history has {history} non-empty entries but the image has {layers} layers")]
    HistoryMismatch { history: usize, layers: usize },
    /// Serialising JSON failed.
    #[error("cannot serialise {what}")]
    Json {
        what: &'static str,
        #[source]
        source: serde_json::Error,
    },
    /// Writing an output failed.
    #[error("cannot write {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// A layer blob could not be read.
    #[error("cannot read layer blob {path}")]
    Blob {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// Formats seconds since the epoch as RFC 3339 UTC (`1970-01-01T00:00:00Z`).
pub fn rfc3339_utc(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil-from-days (proleptic Gregorian), valid for the whole i64 day range we accept.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

#[cfg(test)]
mod tests {
    #[rstest::rstest]
    #[case(0, "1970-01-01T00:00:00Z")]
    #[case(951_782_400, "2000-02-29T00:00:00Z")]
    #[case(1_700_000_000, "2023-11-14T22:13:20Z")]
    fn rfc3339(#[case] secs: i64, #[case] want: &str) {
        assert_eq!(super::rfc3339_utc(secs), want);
    }
}
