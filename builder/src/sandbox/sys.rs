//! The system-call seam of the sandbox: every namespace, mount and credential call the
//! sandbox makes goes through the [`Sys`] trait, so the ordering logic can be unit-tested
//! with [`super::fake::FakeSys`] while [`super::linux::LinuxSys`] makes the real calls.

use std::path::{Path, PathBuf};

use nix::mount::MsFlags;
use nix::sched::CloneFlags;
use serde::{Deserialize, Serialize};

use super::idmap::IdMapError;

/// Result of one system call: the raw `errno` on failure.
pub type SysResult<T = ()> = Result<T, nix::Error>;

/// One `mount(2)` call, typed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountCall {
    /// Source device or directory (`None` for pseudo file systems given by `fstype`).
    pub source: Option<PathBuf>,
    /// Mount point.
    pub target: PathBuf,
    /// File system type (`proc`, `tmpfs`, `overlay`, …); `None` for bind and remount.
    pub fstype: Option<String>,
    /// `MS_*` flags.
    pub flags: MsFlags,
    /// File-system specific options (`mode=755`, `lowerdir=…`).
    pub data: Option<String>,
}

/// Which kind of node a placeholder mount point is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum NodeKind {
    /// A directory.
    Dir,
    /// An empty regular file (for binding a file onto it).
    File,
}

/// A uid or gid map for a user namespace: `(inside, outside, count)` triples.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdMap {
    /// Lines of `/proc/<pid>/uid_map`.
    pub uids: Vec<IdRange>,
    /// Lines of `/proc/<pid>/gid_map`.
    pub gids: Vec<IdRange>,
}

/// One line of an id map.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdRange {
    /// First id inside the namespace.
    pub inside: u32,
    /// First id outside (in the parent namespace).
    pub outside: u32,
    /// Number of ids.
    pub count: u32,
}

/// How an id map is written into a child's user namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum IdMapWriter {
    /// Write `setgroups`=deny, `uid_map` and `gid_map` directly (one id, no helper needed).
    Direct,
    /// Run the setuid helpers `newuidmap` and `newgidmap` (subordinate ranges).
    Helpers,
    /// Write `uid_map` and `gid_map` directly, `setgroups` left allowed: the writer is uid 0
    /// with `CAP_SETUID`/`CAP_SETGID` over the parent namespace (real root, or root of
    /// rbuild's build namespace), so it may map every id its own namespace has.
    Privileged,
}

/// The typed system calls the sandbox needs. Paths are absolute.
pub trait Sys {
    /// `unshare(2)` the given namespaces.
    fn unshare(&self, flags: CloneFlags) -> SysResult;
    /// `mount(2)`.
    fn mount(&self, call: &MountCall) -> SysResult;
    /// `umount2(path, MNT_DETACH)`.
    fn umount_detach(&self, target: &Path) -> SysResult;
    /// `pivot_root(new_root, put_old)`.
    fn pivot_root(&self, new_root: &Path, put_old: &Path) -> SysResult;
    /// `chroot(2)`.
    fn chroot(&self, root: &Path) -> SysResult;
    /// `chdir(2)`.
    fn chdir(&self, dir: &Path) -> SysResult;
    /// Create `path` as `kind` (mode 0755 for dirs, 0644 for files); `Ok(false)` if it existed.
    fn create_node(&self, path: &Path, kind: NodeKind) -> SysResult<bool>;
    /// `symlink(2)`: create `link` pointing to `target`.
    fn symlink(&self, target: &Path, link: &Path) -> SysResult;
    /// Whether `path` exists (without following a final symlink).
    fn exists(&self, path: &Path) -> bool;
    /// Whether `path` is a directory (following symlinks).
    fn is_dir(&self, path: &Path) -> bool;
    /// The target of `path` if it is a symlink.
    fn read_link(&self, path: &Path) -> Option<PathBuf>;
    /// Bring the loopback interface of the current network namespace up.
    fn loopback_up(&self) -> SysResult;
    /// `sethostname(2)`.
    fn sethostname(&self, name: &str) -> SysResult;
    /// `setgroups(2)`.
    fn setgroups(&self, groups: &[u32]) -> SysResult;
    /// `setresgid(2)` then `setresuid(2)` to the same id each.
    fn set_ids(&self, uid: u32, gid: u32) -> SysResult;
    /// Write the id map of process `pid` (the child that created the user namespace).
    fn write_id_map(&self, pid: u32, map: &IdMap, writer: IdMapWriter) -> Result<(), IdMapError>;
}
