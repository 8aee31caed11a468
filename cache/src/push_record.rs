//! What a local state has pushed where: per repository, the blobs that finished pushes put
//! there (Docker keeps the same record, its "distribution metadata"). A later push to that
//! repository does not ask the registry about them, so a warm rebuild's push is its manifest
//! alone; if the registry lost one, the manifest `PUT` says so and the push checks every blob
//! (see [`crate::registry::ImageToPush::assume_present`]).

use std::collections::BTreeSet;
use std::io::Write as _;
use std::path::PathBuf;

use sha2::{Digest as _, Sha256};

use crate::oci::Digest;
use crate::reference::Reference;

/// The record, one file of digests per repository under a directory of the local state.
#[derive(Debug, Clone)]
pub struct PushRecord {
    dir: PathBuf,
}

impl PushRecord {
    /// A record kept in `dir` (created on first write).
    pub fn new(dir: PathBuf) -> Self {
        Self { dir }
    }

    fn file(&self, repository: &Reference) -> PathBuf {
        let name = format!("{}/{}", repository.registry(), repository.repository());
        self.dir.join(hex::encode(Sha256::digest(name.as_bytes())))
    }

    /// The digests recorded for `repository`'s repository. An unreadable record is empty: it
    /// only ever saves requests.
    pub fn known(&self, repository: &Reference) -> BTreeSet<String> {
        std::fs::read_to_string(self.file(repository))
            .map(|text| text.lines().filter(|l| l.starts_with("sha256:")).map(str::to_owned).collect())
            .unwrap_or_default()
    }

    /// Records that `repository` holds `digests` (appended in one write, so concurrent builds
    /// sharing the state interleave whole lines). Failures are logged, not returned.
    pub fn add<'a>(&self, repository: &Reference, digests: impl IntoIterator<Item = &'a Digest>) {
        let known = self.known(repository);
        let text: String =
            digests.into_iter().map(ToString::to_string).filter(|d| !known.contains(d)).map(|d| d + "\n").collect();
        if text.is_empty() {
            return;
        }
        let written = std::fs::create_dir_all(&self.dir).and_then(|()| {
            let mut file = std::fs::OpenOptions::new().create(true).append(true).open(self.file(repository))?;
            file.write_all(text.as_bytes())
        });
        if let Err(error) = written {
            tracing::debug!(%error, "cannot record pushed blobs");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_per_repository_without_repeats() {
        let tmp = tempfile::tempdir().unwrap();
        let record = PushRecord::new(tmp.path().join("pushed"));
        let a: Reference = "127.0.0.1:5000/app:v1".parse().unwrap();
        let same_repo: Reference = "127.0.0.1:5000/app:v2".parse().unwrap();
        let other: Reference = "127.0.0.1:5000/other:v1".parse().unwrap();
        let d1: Digest = format!("sha256:{}", "1".repeat(64)).parse().unwrap();
        let d2: Digest = format!("sha256:{}", "2".repeat(64)).parse().unwrap();
        assert!(record.known(&a).is_empty());
        record.add(&a, [&d1]);
        record.add(&same_repo, [&d1, &d2]);
        assert_eq!(record.known(&a), BTreeSet::from([d1.to_string(), d2.to_string()]));
        assert!(record.known(&other).is_empty());
        let text = std::fs::read_to_string(record.file(&a)).unwrap();
        assert_eq!(text.lines().count(), 2, "{text}");
    }
}
