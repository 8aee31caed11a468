//! Symlink-safe path resolution under a root directory (RESOLVE_IN_ROOT semantics).
//!
//! Every component is opened relative to the directory file descriptor of its parent
//! with `O_NOFOLLOW`; symlinks are read and expanded by us, never by the kernel.
//! Absolute symlink targets restart at the root; `..` at the root is clamped
//! ([`Escape::Clamp`], what a container sees — for COPY/WORKDIR) or refused
//! ([`Escape::Refuse`], for unpacking untrusted layers). Because each step holds a
//! directory fd, swapping a directory for a symlink after it was resolved cannot
//! redirect a write outside the root.

use std::collections::VecDeque;
use std::ffi::{OsStr, OsString};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use rustix::fs::{self as rfs, AtFlags, FileType, Mode, OFlags};
use rustix::io::Errno;

/// Maximum number of symlinks expanded in one resolution (as Linux's `MAXSYMLINKS`).
const MAX_LINKS: usize = 40;

/// Errors resolving a path under a root.
#[derive(Debug, thiserror::Error)]
pub enum RootPathError {
    /// The root itself could not be opened.
    #[error("cannot open root directory {root}")]
    OpenRoot {
        root: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A symlink or `..` would leave the root.
    #[error("path {path} escapes the root directory")]
    Escape { path: PathBuf },
    /// A component is missing.
    #[error("path {path} does not exist (missing {missing})")]
    NotFound { path: PathBuf, missing: PathBuf },
    /// A non-final component is not a directory.
    #[error("component {component} of {path} is not a directory")]
    NotADirectory { path: PathBuf, component: PathBuf },
    /// Symlink loop or too many symlinks.
    #[error("too many symlinks resolving {path}")]
    TooManyLinks { path: PathBuf },
    /// The path has no final name (e.g. it is the root or ends in `..`).
    #[error("path {path} names no entry")]
    NoName { path: PathBuf },
    /// Any other system call failure.
    #[error("{op} failed on {path}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// What to do when `..` or a symlink would climb above the root.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Escape {
    /// Stay at the root (the kernel's `RESOLVE_IN_ROOT`).
    Clamp,
    /// Fail with [`RootPathError::Escape`].
    Refuse,
}

/// Whether missing intermediate directories are created (mode 0755).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MissingDirs {
    /// Create them.
    Create,
    /// Fail with [`RootPathError::NotFound`].
    Fail,
}

/// A directory that paths are resolved under.
#[derive(Debug)]
pub struct RootDir {
    fd: OwnedFd,
    path: PathBuf,
}

/// A resolved parent directory and the final (unfollowed) name in it.
#[derive(Debug)]
pub struct Resolved {
    /// The parent directory (an `O_PATH` descriptor).
    pub dir: OwnedFd,
    /// Host path of the parent (for messages and path-based calls; may race).
    pub dir_path: PathBuf,
    /// The final component, never `.`/`..`/empty.
    pub name: OsString,
}

struct Walk<'a> {
    root: &'a RootDir,
    input: &'a Path,
    policy: Escape,
    missing: MissingDirs,
    stack: Vec<(OwnedFd, OsString)>,
    links: usize,
}

fn io_err(op: &'static str, path: &Path, e: Errno) -> RootPathError {
    RootPathError::Io { op, path: path.to_path_buf(), source: e.into() }
}

/// Splits a path into its normal, `..` and `.`-free-of-root components (as bytes).
fn components(p: &Path) -> impl Iterator<Item = OsString> + '_ {
    p.components().filter_map(|c| match c {
        Component::Normal(n) => Some(n.to_os_string()),
        Component::ParentDir => Some(OsString::from("..")),
        Component::RootDir | Component::Prefix(_) | Component::CurDir => None,
    })
}

impl RootDir {
    /// Opens `path` as a root.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, RootPathError> {
        let path = path.as_ref();
        let fd = rfs::open(path, OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
            .map_err(|e| RootPathError::OpenRoot { root: path.to_path_buf(), source: e.into() })?;
        Ok(RootDir { fd, path: path.to_path_buf() })
    }

    /// The root's host path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The root's directory descriptor.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Resolves every component of `path` but the last (following symlinks inside the
    /// root) and returns the parent directory and the final name, which is not followed.
    pub fn resolve_parent(&self, path: &Path, policy: Escape, missing: MissingDirs) -> Result<Resolved, RootPathError> {
        let mut comps: VecDeque<OsString> = components(path).collect();
        let name = match comps.pop_back() {
            Some(n) if n != ".." => n,
            _ => return Err(RootPathError::NoName { path: path.to_path_buf() }),
        };
        let mut walk = Walk { root: self, input: path, policy, missing, stack: Vec::new(), links: 0 };
        walk.run(comps)?;
        let (dir, dir_path) = walk.finish()?;
        Ok(Resolved { dir, dir_path, name })
    }

    /// Resolves `path` completely (following a final symlink too) to a directory.
    pub fn open_dir(
        &self,
        path: &Path,
        policy: Escape,
        missing: MissingDirs,
    ) -> Result<(OwnedFd, PathBuf), RootPathError> {
        let mut walk = Walk { root: self, input: path, policy, missing, stack: Vec::new(), links: 0 };
        walk.run(components(path).collect())?;
        walk.finish()
    }

    /// Host path of `path` inside the root with every symlink resolved in-root
    /// (for COPY destinations and WORKDIR). A missing final component is allowed;
    /// missing parents follow `missing`. The result is a path, so it is only as
    /// safe as the absence of concurrent writers to the root.
    pub fn resolve_host_path(
        &self,
        path: &Path,
        policy: Escape,
        missing: MissingDirs,
    ) -> Result<PathBuf, RootPathError> {
        let r = match self.resolve_parent(path, policy, missing) {
            Ok(r) => r,
            Err(RootPathError::NoName { .. }) => return Ok(self.open_dir(path, policy, missing)?.1),
            Err(e) => return Err(e),
        };
        match rfs::readlinkat(&r.dir, r.name.as_os_str(), Vec::new()) {
            Ok(_) => Ok(self.open_dir(path, policy, missing)?.1),
            Err(_) => Ok(r.dir_path.join(&r.name)),
        }
    }
}

impl Walk<'_> {
    fn current(&self) -> BorrowedFd<'_> {
        self.stack.last().map(|(fd, _)| fd.as_fd()).unwrap_or(self.root.fd.as_fd())
    }

    fn host_path(&self) -> PathBuf {
        let mut p = self.root.path.clone();
        p.extend(self.stack.iter().map(|(_, n)| n));
        p
    }

    fn finish(self) -> Result<(OwnedFd, PathBuf), RootPathError> {
        let path = self.host_path();
        let fd = self.current().try_clone_to_owned().map_err(|e| RootPathError::Io {
            op: "dup",
            path: path.clone(),
            source: e,
        })?;
        Ok((fd, path))
    }

    fn run(&mut self, mut todo: VecDeque<OsString>) -> Result<(), RootPathError> {
        while let Some(c) = todo.pop_front() {
            if c == ".." {
                if self.stack.pop().is_none() && self.policy == Escape::Refuse {
                    return Err(RootPathError::Escape { path: self.input.to_path_buf() });
                }
                continue;
            }
            self.step(&c, &mut todo)?;
        }
        Ok(())
    }

    fn step(&mut self, name: &OsStr, todo: &mut VecDeque<OsString>) -> Result<(), RootPathError> {
        let flags = OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        match rfs::openat(self.current(), name, flags, Mode::empty()) {
            Ok(fd) => {
                self.stack.push((fd, name.to_os_string()));
                Ok(())
            }
            Err(Errno::NOENT) if self.missing == MissingDirs::Create => {
                match rfs::mkdirat(self.current(), name, Mode::from_raw_mode(0o755)) {
                    Ok(()) | Err(Errno::EXIST) => {}
                    Err(e) => return Err(io_err("mkdirat", &self.host_path().join(name), e)),
                }
                let fd = rfs::openat(self.current(), name, flags, Mode::empty())
                    .map_err(|e| io_err("openat", &self.host_path().join(name), e))?;
                self.stack.push((fd, name.to_os_string()));
                Ok(())
            }
            Err(Errno::NOENT) => {
                Err(RootPathError::NotFound { path: self.input.to_path_buf(), missing: self.host_path().join(name) })
            }
            Err(Errno::NOTDIR) | Err(Errno::LOOP) => self.expand_link(name, todo),
            Err(e) => Err(io_err("openat", &self.host_path().join(name), e)),
        }
    }

    /// `name` is not a directory: if it is a symlink, queue its target's components.
    fn expand_link(&mut self, name: &OsStr, todo: &mut VecDeque<OsString>) -> Result<(), RootPathError> {
        let st = rfs::statat(self.current(), name, AtFlags::SYMLINK_NOFOLLOW)
            .map_err(|e| io_err("fstatat", &self.host_path().join(name), e))?;
        if FileType::from_raw_mode(st.st_mode) != FileType::Symlink {
            return Err(RootPathError::NotADirectory {
                path: self.input.to_path_buf(),
                component: self.host_path().join(name),
            });
        }
        self.links += 1;
        if self.links > MAX_LINKS {
            return Err(RootPathError::TooManyLinks { path: self.input.to_path_buf() });
        }
        let target = rfs::readlinkat(self.current(), name, Vec::new())
            .map_err(|e| io_err("readlinkat", &self.host_path().join(name), e))?;
        let target = PathBuf::from(OsStr::from_bytes(target.as_bytes()));
        if target.is_absolute() {
            self.stack.clear();
        }
        for c in components(&target).collect::<Vec<_>>().into_iter().rev() {
            todo.push_front(c);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn tree() -> tempfile::TempDir {
        let t = tempfile::tempdir().unwrap();
        let r = t.path().join("root");
        std::fs::create_dir_all(r.join("usr/lib")).unwrap();
        symlink("usr/lib", r.join("lib")).unwrap();
        symlink("/usr", r.join("abs")).unwrap();
        symlink("../../..", r.join("up")).unwrap();
        symlink("loop", r.join("loop")).unwrap();
        std::fs::write(r.join("file"), b"x").unwrap();
        t
    }

    #[rstest::rstest]
    #[case("lib/x", Escape::Refuse, Ok("usr/lib/x"))]
    #[case("abs/lib/x", Escape::Refuse, Ok("usr/lib/x"))]
    #[case("/usr/../usr/lib/x", Escape::Clamp, Ok("usr/lib/x"))]
    #[case("../../usr/x", Escape::Clamp, Ok("usr/x"))]
    #[case("up/usr/x", Escape::Clamp, Ok("usr/x"))]
    #[case("up/usr/x", Escape::Refuse, Err("escapes"))]
    #[case("../x", Escape::Refuse, Err("escapes"))]
    #[case("loop/x", Escape::Clamp, Err("too many"))]
    #[case("file/x", Escape::Clamp, Err("not a directory"))]
    #[case("nope/x", Escape::Clamp, Err("does not exist"))]
    fn resolves_in_root(#[case] input: &str, #[case] policy: Escape, #[case] want: Result<&str, &str>) {
        let t = tree();
        let root = RootDir::open(t.path().join("root")).unwrap();
        let got = root.resolve_parent(Path::new(input), policy, MissingDirs::Fail);
        match (got, want) {
            (Ok(r), Ok(w)) => assert_eq!(r.dir_path.join(r.name), root.path().join(w)),
            (Err(e), Err(w)) => assert!(e.to_string().contains(w), "{e}"),
            (got, want) => panic!("{input}: got {got:?}, want {want:?}"),
        }
    }

    #[test]
    fn host_path_follows_final_link_and_creates() {
        let t = tree();
        let root = RootDir::open(t.path().join("root")).unwrap();
        let p = root.resolve_host_path(Path::new("/lib"), Escape::Clamp, MissingDirs::Fail).unwrap();
        assert_eq!(p, root.path().join("usr/lib"));
        let p = root.resolve_host_path(Path::new("/a/b/c"), Escape::Clamp, MissingDirs::Create).unwrap();
        assert_eq!(p, root.path().join("a/b/c"));
        assert!(root.path().join("a/b").is_dir());
    }
}
