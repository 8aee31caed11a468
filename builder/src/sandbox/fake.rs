//! A [`Sys`] that records typed calls instead of making them, for unit tests of the
//! sandbox's ordering logic (what is mounted where, in which order, with which flags).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use nix::sched::CloneFlags;

use super::idmap::IdMapError;
use super::sys::{IdMap, IdMapWriter, MountCall, NodeKind, Sys, SysResult};

/// One recorded call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    /// `unshare(flags)`.
    Unshare(CloneFlags),
    /// `mount(…)`.
    Mount(MountCall),
    /// `umount2(target, MNT_DETACH)`.
    UmountDetach(PathBuf),
    /// `pivot_root(new_root, put_old)`.
    PivotRoot(PathBuf, PathBuf),
    /// `chroot(root)`.
    Chroot(PathBuf),
    /// `chdir(dir)`.
    Chdir(PathBuf),
    /// A node created because it was missing.
    CreateNode(PathBuf, NodeKind),
    /// `symlink(target, link)`.
    Symlink(PathBuf, PathBuf),
    /// `lo` set up.
    LoopbackUp,
    /// `sethostname(name)`.
    SetHostname(String),
    /// `setgroups(groups)`.
    SetGroups(Vec<u32>),
    /// `setresgid` + `setresuid`.
    SetIds { uid: u32, gid: u32 },
    /// An id map written for `pid`.
    WriteIdMap { pid: u32, map: IdMap, writer: IdMapWriter },
}

/// Records every call; paths listed in `existing` are reported as present (as directories
/// unless they end in `.file`), and a call matching `fail_on` fails with `EPERM`.
#[derive(Debug, Default)]
pub struct FakeSys {
    calls: Mutex<Vec<Call>>,
    existing: Mutex<BTreeSet<PathBuf>>,
    fail_on: Option<Box<Call>>,
    links: Mutex<Vec<(PathBuf, PathBuf)>>,
}

impl FakeSys {
    /// A fake where no path exists yet and no call fails.
    pub fn new() -> Self {
        Self::default()
    }

    /// Mark `paths` as already existing.
    pub fn with_existing<I: IntoIterator<Item = PathBuf>>(self, paths: I) -> Self {
        self.existing.lock_ok().extend(paths);
        self
    }

    /// Make `link` a symlink to `target` (for path-resolution tests).
    pub fn with_link(self, link: &str, target: &str) -> Self {
        self.existing.lock_ok().insert(PathBuf::from(link));
        self.links.lock_ok().push((PathBuf::from(link), PathBuf::from(target)));
        self
    }

    /// Make the call equal to `call` fail with `EPERM`.
    pub fn failing_on(mut self, call: Call) -> Self {
        self.fail_on = Some(Box::new(call));
        self
    }

    /// The calls made so far, in order.
    pub fn calls(&self) -> Vec<Call> {
        self.calls.lock_ok().clone()
    }

    fn record(&self, call: Call) -> SysResult {
        let fail = self.fail_on.as_deref() == Some(&call);
        self.calls.lock_ok().push(call);
        if fail {
            Err(nix::Error::EPERM)
        } else {
            Ok(())
        }
    }
}

impl Sys for FakeSys {
    fn unshare(&self, flags: CloneFlags) -> SysResult {
        self.record(Call::Unshare(flags))
    }
    fn mount(&self, call: &MountCall) -> SysResult {
        self.record(Call::Mount(call.clone()))
    }
    fn umount_detach(&self, target: &Path) -> SysResult {
        self.record(Call::UmountDetach(target.to_path_buf()))
    }
    fn pivot_root(&self, new_root: &Path, put_old: &Path) -> SysResult {
        self.record(Call::PivotRoot(new_root.to_path_buf(), put_old.to_path_buf()))
    }
    fn chroot(&self, root: &Path) -> SysResult {
        self.record(Call::Chroot(root.to_path_buf()))
    }
    fn chdir(&self, dir: &Path) -> SysResult {
        self.record(Call::Chdir(dir.to_path_buf()))
    }
    fn create_node(&self, path: &Path, kind: NodeKind) -> SysResult<bool> {
        if self.exists(path) {
            return Ok(false);
        }
        self.existing.lock_ok().insert(path.to_path_buf());
        self.record(Call::CreateNode(path.to_path_buf(), kind)).map(|()| true)
    }
    fn symlink(&self, target: &Path, link: &Path) -> SysResult {
        self.record(Call::Symlink(target.to_path_buf(), link.to_path_buf()))
    }
    fn exists(&self, path: &Path) -> bool {
        self.existing.lock_ok().contains(path)
    }
    fn is_dir(&self, path: &Path) -> bool {
        self.exists(path) && path.extension().is_none_or(|e| e != "file")
    }
    fn read_link(&self, path: &Path) -> Option<PathBuf> {
        self.links.lock_ok().iter().find(|(l, _)| l == path).map(|(_, t)| t.clone())
    }
    fn loopback_up(&self) -> SysResult {
        self.record(Call::LoopbackUp)
    }
    fn sethostname(&self, name: &str) -> SysResult {
        self.record(Call::SetHostname(name.to_string()))
    }
    fn setgroups(&self, groups: &[u32]) -> SysResult {
        self.record(Call::SetGroups(groups.to_vec()))
    }
    fn set_ids(&self, uid: u32, gid: u32) -> SysResult {
        self.record(Call::SetIds { uid, gid })
    }
    fn write_id_map(&self, pid: u32, map: &IdMap, writer: IdMapWriter) -> Result<(), IdMapError> {
        let call = Call::WriteIdMap { pid, map: map.clone(), writer };
        self.record(call).map_err(|source| IdMapError::Write {
            path: PathBuf::from(format!("/proc/{pid}/uid_map")),
            source: std::io::Error::from(source),
        })
    }
}

/// Lock a mutex of the fake, ignoring poisoning (a panicking test already failed).
trait LockOk<T> {
    fn lock_ok(&self) -> MutexGuard<'_, T>;
}

impl<T> LockOk<T> for Mutex<T> {
    fn lock_ok(&self) -> MutexGuard<'_, T> {
        self.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}
