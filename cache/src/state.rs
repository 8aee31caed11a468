//! Who owns the work files in a cache directory, so that what a killed process left (its
//! `build-*` work directory, the store's `.tmp-*` files of unfinished downloads) is removed by
//! the next start instead of piling up. A running process holds an exclusive lock on
//! `<cache-dir>/owners/<pid>` for as long as it lives (the kernel drops it when the process
//! dies, however it dies), and names its work files after its pid: `build-<pid>-…` and
//! `.tmp-<pid>-…`. [`sweep_dead`] removes the files whose owner holds no lock; files of the
//! old unnamed form are removed once they are a day old.

use std::fs::{self, File, TryLockError};
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// Work files without an owner pid (older rbuild versions) are removed after this long.
const UNOWNED_AGE: Duration = Duration::from_secs(24 * 3600);

/// Errors of the state sweep.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// The lock file could not be created or locked.
    #[error("cannot lock {path}")]
    Lock {
        /// The lock file.
        path: PathBuf,
        /// Cause.
        #[source]
        source: io::Error,
    },
}

/// This process's claim on its work files; released (and its lock file removed) on drop.
#[derive(Debug)]
pub struct ProcessLock {
    path: PathBuf,
    _file: File,
}

impl ProcessLock {
    /// Lock `<cache_dir>/owners/<pid>` for this process.
    pub fn acquire(cache_dir: &Path) -> Result<Self, StateError> {
        let path = owners_dir(cache_dir).join(std::process::id().to_string());
        let err = |source| StateError::Lock { path: path.clone(), source };
        fs::create_dir_all(owners_dir(cache_dir)).map_err(err)?;
        let file = File::create(&path).map_err(err)?;
        file.lock().map_err(err)?;
        Ok(Self { path, _file: file })
    }

    /// The prefix of this process's work directories (`build-<pid>-`).
    pub fn build_dir_prefix() -> String {
        format!("build-{}-", std::process::id())
    }
}

impl Drop for ProcessLock {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}

/// The prefix of this process's in-memory secret directories (`rbuild-secrets-<pid>-`).
pub fn secret_dir_prefix() -> String {
    format!("rbuild-secrets-{}-", std::process::id())
}

/// Removes the secret directories in `tmpfs` (`/dev/shm`) whose owner process is gone (no
/// `/proc/<pid>`); returns how many.
pub fn sweep_dead_secrets(tmpfs: &Path) -> usize {
    let mut removed = 0;
    for (path, name) in entries(tmpfs) {
        let Some(rest) = name.strip_prefix("rbuild-secrets-") else {
            continue;
        };
        let Some((pid, _)) = rest.split_once('-') else {
            continue;
        };
        let dead = pid.bytes().all(|b| b.is_ascii_digit()) && !process_alive(pid);
        if dead && fs::remove_dir_all(&path).is_ok() {
            removed += 1;
        }
    }
    removed
}

/// Whether `pid` runs (a zombie, killed but not yet reaped, does not).
fn process_alive(pid: &str) -> bool {
    let Ok(stat) = fs::read_to_string(Path::new("/proc").join(pid).join("stat")) else {
        return false;
    };
    // `pid (comm) S …`: the state follows the last ')'.
    stat.rsplit_once(')')
        .and_then(|(_, rest)| rest.trim_start().chars().next())
        .is_some_and(|state| state != 'Z' && state != 'X')
}

/// The prefix of this process's temporary store files (`.tmp-<pid>-`).
pub fn temp_file_prefix() -> String {
    format!(".tmp-{}-", std::process::id())
}

fn owners_dir(cache_dir: &Path) -> PathBuf {
    cache_dir.join("owners")
}

/// What [`sweep_dead`] removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Swept {
    /// Work directories removed.
    pub build_dirs: usize,
    /// Temporary store files removed.
    pub temp_files: usize,
}

/// Whether the process `pid` still holds its lock in `cache_dir`.
fn owner_alive(cache_dir: &Path, pid: &str) -> bool {
    let path = owners_dir(cache_dir).join(pid);
    let Ok(file) = File::options().write(true).open(&path) else {
        return false;
    };
    match file.try_lock() {
        Ok(()) => {
            // Nobody held it: the owner is gone; its lock file goes too.
            let _ = fs::remove_file(&path);
            false
        }
        Err(TryLockError::WouldBlock) => true,
        Err(TryLockError::Error(_)) => true,
    }
}

/// Whether a work file named `name` (after `prefix`) belongs to nobody alive.
fn is_dead(cache_dir: &Path, name: &str, prefix: &str, path: &Path) -> bool {
    let Some(rest) = name.strip_prefix(prefix) else {
        return false;
    };
    match rest.split_once('-') {
        Some((pid, _)) if !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit()) => {
            pid != std::process::id().to_string() && !owner_alive(cache_dir, pid)
        }
        _ => fs::symlink_metadata(path)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| SystemTime::now().duration_since(t).ok())
            .is_some_and(|age| age > UNOWNED_AGE),
    }
}

/// Removes the work directories in `cache_dir` and the temporary files in the blob store
/// under `store_dir` (its `blobs/*/` directories) left by processes that are gone. Best
/// effort: what cannot be removed now is tried again at the next start.
pub fn sweep_dead(cache_dir: &Path, store_dir: &Path) -> Swept {
    let mut swept = Swept::default();
    for (path, name) in entries(cache_dir) {
        if is_dead(cache_dir, &name, "build-", &path) {
            match fs::remove_dir_all(&path) {
                Ok(()) => swept.build_dirs += 1,
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "cannot remove a dead build's work directory")
                }
            }
        }
    }
    for (algorithm, _) in entries(&store_dir.join("blobs")) {
        for (path, name) in entries(&algorithm) {
            if is_dead(cache_dir, &name, ".tmp-", &path) && fs::remove_file(&path).is_ok() {
                swept.temp_files += 1;
            }
        }
    }
    if swept != Swept::default() {
        tracing::info!(build_dirs = swept.build_dirs, temp_files = swept.temp_files, "removed what killed builds left");
    }
    swept
}

fn entries(dir: &Path) -> Vec<(PathBuf, String)> {
    let Ok(read) = fs::read_dir(dir) else {
        return Vec::new();
    };
    read.flatten().map(|e| (e.path(), e.file_name().to_string_lossy().into_owned())).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_of_dead_owners_go_and_live_ones_stay() {
        let dir = tempfile::tempdir().unwrap();
        let cache = dir.path();
        let store = cache.join("store");
        let blobs = store.join("blobs/sha256");
        fs::create_dir_all(&blobs).unwrap();
        let _me = ProcessLock::acquire(cache).unwrap();
        // A dead owner: a pid with a lock file nobody holds, and one with none at all.
        fs::write(owners_dir(cache).join("999999"), b"").unwrap();
        for name in ["build-999999-abc", "build-999998-x"] {
            fs::create_dir_all(cache.join(name).join("rootfs/etc")).unwrap();
        }
        fs::write(blobs.join(".tmp-999999-partial"), b"half a blob").unwrap();
        // Ours, a fresh unowned one, and a stored blob.
        let mine = cache.join(format!("{}abc", ProcessLock::build_dir_prefix()));
        fs::create_dir(&mine).unwrap();
        fs::create_dir(cache.join("build-legacy")).unwrap();
        fs::write(blobs.join(format!("{}x", temp_file_prefix())), b"").unwrap();
        fs::write(blobs.join("ab".repeat(32)), b"blob").unwrap();
        let swept = sweep_dead(cache, &store);
        assert_eq!(swept, Swept { build_dirs: 2, temp_files: 1 });
        let mut left: Vec<String> = entries(cache).into_iter().map(|(_, n)| n).collect();
        left.sort();
        assert_eq!(
            left,
            [
                mine.file_name().unwrap().to_string_lossy().into_owned(),
                "build-legacy".to_owned(),
                "owners".to_owned(),
                "store".to_owned()
            ]
        );
        assert_eq!(entries(&blobs).len(), 2);
    }

    #[test]
    fn a_held_lock_protects_its_files() {
        let dir = tempfile::tempdir().unwrap();
        let cache = dir.path();
        fs::create_dir_all(owners_dir(cache)).unwrap();
        let other = File::create(owners_dir(cache).join("4242")).unwrap();
        other.lock().unwrap();
        fs::create_dir(cache.join("build-4242-x")).unwrap();
        assert!(owner_alive(cache, "4242"));
        // flock locks belong to the open file description: another open sees it held.
        assert_eq!(sweep_dead(cache, &cache.join("store")).build_dirs, 0);
        drop(other);
        assert_eq!(sweep_dead(cache, &cache.join("store")).build_dirs, 1);
    }
}
