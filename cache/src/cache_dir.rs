//! Cleanup of `--cache-dir` (`rbuild cache prune --local`). The directory holds the blob
//! store (`store/blobs/<alg>/<hex>`), the local index of cache entries (`entries/…`), the
//! push record (`pushed/`), `RUN --mount=type=cache` directories (`mounts/<id>`) and the work
//! directories of running builds (`build-*`, never touched here). Everything pruned is a
//! copy or a hint: a missing blob is fetched again, a missing entry or push record costs a
//! registry request, a missing cache mount starts empty, as BuildKit's prune leaves them.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// Errors reading or cleaning the cache directory.
#[derive(Debug, thiserror::Error)]
pub enum CacheDirError {
    /// A directory could not be listed.
    #[error("cannot read {path}")]
    Read {
        /// The directory.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// Something could not be removed.
    #[error("cannot remove {path}")]
    Remove {
        /// The file or directory.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
}

/// What to remove: items unused for longer than `older_than`, then the least recently used
/// until the total is at most `max_size` bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PrunePolicy {
    /// Remove what was last used longer ago than this.
    pub older_than: Option<Duration>,
    /// Then keep at most this many bytes.
    pub max_size: Option<u64>,
}

/// What a prune did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LocalPruneReport {
    /// Items removed (blobs, entries, push records, cache mounts) and their bytes.
    pub removed: usize,
    pub removed_bytes: u64,
    /// Items kept and their bytes.
    pub kept: usize,
    pub kept_bytes: u64,
}

/// One prunable thing: a file, or a cache mount directory as a whole.
#[derive(Debug)]
struct Item {
    path: PathBuf,
    bytes: u64,
    /// Last use: the later of its access and modification times.
    used: SystemTime,
    is_dir: bool,
}

/// Prunes `cache_dir` by `policy`, as of `now`.
pub fn prune(cache_dir: &Path, policy: PrunePolicy, now: SystemTime) -> Result<LocalPruneReport, CacheDirError> {
    let mut items = Vec::new();
    for sub in ["store/blobs", "entries", "pushed"] {
        files_under(&cache_dir.join(sub), &mut items)?;
    }
    for dir in list(&cache_dir.join("mounts"))? {
        if dir.is_dir() {
            let mut inner = Vec::new();
            files_under(&dir, &mut inner)?;
            // Its files say when it was last used (listing the directory touches its own times).
            let used = inner.iter().map(|i| i.used).max().or_else(|| last_use(&dir)).unwrap_or(SystemTime::UNIX_EPOCH);
            items.push(Item { bytes: inner.iter().map(|i| i.bytes).sum(), path: dir, used, is_dir: true });
        }
    }
    // Least recently used first.
    items.sort_by_key(|i| i.used);
    let mut total: u64 = items.iter().map(|i| i.bytes).sum();
    let mut report = LocalPruneReport::default();
    for item in items {
        let old = policy.older_than.is_some_and(|d| now.duration_since(item.used).is_ok_and(|age| age > d));
        let over = policy.max_size.is_some_and(|max| total > max);
        if old || over {
            remove(&item)?;
            total -= item.bytes;
            report.removed += 1;
            report.removed_bytes += item.bytes;
        } else {
            report.kept += 1;
            report.kept_bytes += item.bytes;
        }
    }
    tracing::info!(?report, dir = %cache_dir.display(), "local cache pruned");
    Ok(report)
}

fn remove(item: &Item) -> Result<(), CacheDirError> {
    let result = if item.is_dir { std::fs::remove_dir_all(&item.path) } else { std::fs::remove_file(&item.path) };
    match result {
        // Removed meanwhile (another prune): nothing left to do.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        other => other.map_err(|source| CacheDirError::Remove { path: item.path.clone(), source }),
    }
}

/// The entries of `dir` (none when it does not exist).
fn list(dir: &Path) -> Result<Vec<PathBuf>, CacheDirError> {
    match std::fs::read_dir(dir) {
        Ok(entries) => Ok(entries.filter_map(Result::ok).map(|e| e.path()).collect()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(source) => Err(CacheDirError::Read { path: dir.to_path_buf(), source }),
    }
}

/// Every regular file under `dir`, recursively (symlinks are not followed).
fn files_under(dir: &Path, out: &mut Vec<Item>) -> Result<(), CacheDirError> {
    for path in list(dir)? {
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        if meta.is_dir() {
            files_under(&path, out)?;
        } else {
            let used = last_use(&path).unwrap_or(SystemTime::UNIX_EPOCH);
            out.push(Item { path, bytes: meta.len(), used, is_dir: false });
        }
    }
    Ok(())
}

fn last_use(path: &Path) -> Option<SystemTime> {
    let meta = std::fs::symlink_metadata(path).ok()?;
    [meta.accessed().ok(), meta.modified().ok()].into_iter().flatten().max()
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: Duration = Duration::from_secs(86_400);

    /// `(path, bytes, days since last use)`.
    fn layout(root: &Path, now: SystemTime, files: &[(&str, usize, u64)]) {
        for (path, bytes, days) in files {
            let p = root.join(path);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(&p, vec![b'x'; *bytes]).unwrap();
            let when = now - DAY * u32::try_from(*days).unwrap();
            let times = std::fs::FileTimes::new().set_accessed(when).set_modified(when);
            std::fs::File::options().write(true).open(&p).unwrap().set_times(times).unwrap();
        }
    }

    fn present(root: &Path, paths: &[&str]) -> Vec<String> {
        paths.iter().filter(|p| root.join(p).exists()).map(|p| p.to_string()).collect()
    }

    const FILES: &[(&str, usize, u64)] = &[
        ("store/blobs/sha256/aa", 100, 30),
        ("store/blobs/sha256/bb", 200, 2),
        ("entries/reg/app/cache/cc", 10, 40),
        ("pushed/dd", 5, 1),
        ("mounts/m1/x/y", 300, 10),
        ("build-123/stage-0/file", 1000, 50),
    ];

    #[rstest::rstest]
    #[case::older_than_a_week(PrunePolicy { older_than: Some(7 * DAY), max_size: None }, &["store/blobs/sha256/bb", "pushed/dd"], 3, 410)]
    #[case::max_size_drops_least_recently_used(PrunePolicy { older_than: None, max_size: Some(320) }, &["store/blobs/sha256/bb", "pushed/dd"], 3, 410)]
    #[case::max_size_keeps_what_fits(PrunePolicy { older_than: None, max_size: Some(600) }, &["store/blobs/sha256/bb", "pushed/dd", "mounts/m1/x/y"], 2, 110)]
    #[case::nothing_asked(PrunePolicy::default(), &["store/blobs/sha256/aa", "store/blobs/sha256/bb", "entries/reg/app/cache/cc", "pushed/dd", "mounts/m1/x/y"], 0, 0)]
    fn prunes_what_it_says(
        #[case] policy: PrunePolicy,
        #[case] kept: &[&str],
        #[case] removed: usize,
        #[case] removed_bytes: u64,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let now = SystemTime::now();
        layout(dir.path(), now, FILES);
        let report = prune(dir.path(), policy, now).unwrap();
        let all: Vec<&str> = FILES.iter().map(|f| f.0).filter(|p| !p.starts_with("build-")).collect();
        assert_eq!(present(dir.path(), &all), kept);
        assert_eq!((report.removed, report.removed_bytes), (removed, removed_bytes));
        assert_eq!(report.kept, kept.len());
        // Work directories of builds are never touched.
        assert!(dir.path().join("build-123/stage-0/file").exists());
    }

    #[test]
    fn a_missing_cache_dir_prunes_nothing() {
        let report = prune(
            Path::new("/nonexistent/rbuild-cache"),
            PrunePolicy { older_than: Some(DAY), max_size: Some(0) },
            SystemTime::now(),
        )
        .unwrap();
        assert_eq!(report, LocalPruneReport::default());
    }
}
