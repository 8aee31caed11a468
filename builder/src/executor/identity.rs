//! Who owns the stage roots on the host, and therefore how ownership is stored: uid 0 (real
//! root, or root of rbuild's build user namespace) chowns; a rootless caller without one
//! keeps every file its own and records the intended owner and mode in `user.rbuild.owner`
//! (see [`crate::layer::ownership`]).

use std::ffi::OsStr;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use crate::layer::ownership::{widen_mode, IdMap, IdMaps, IdRange, OwnerRecord, OWNER_XATTR};
use crate::layer::unpack::OwnershipMode;
use crate::sandbox::IdMapMode;

/// The caller's relation to the files it builds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Identity {
    /// uid 0 (real root, or root of the build namespace): on-disk owners are the image's owners.
    Root,
    /// An ordinary user: every file is `uid:gid` on disk, which is 0:0 inside the RUN.
    Rootless { uid: u32, gid: u32 },
}

impl Identity {
    /// The identity of this process.
    pub fn current() -> Self {
        let uid = rustix::process::getuid().as_raw();
        let gid = rustix::process::getgid().as_raw();
        if uid == 0 {
            Self::Root
        } else {
            Self::Rootless { uid, gid }
        }
    }

    /// Host ↔ container id maps for the tar writer.
    pub fn id_maps(self) -> IdMaps {
        match self {
            Self::Root => IdMaps::default(),
            Self::Rootless { uid, gid } => IdMaps {
                uid: IdMap(vec![IdRange { container: 0, host: uid, len: 1 }]),
                gid: IdMap(vec![IdRange { container: 0, host: gid, len: 1 }]),
            },
        }
    }

    /// How base layers are unpacked.
    pub fn unpack_ownership(self) -> OwnershipMode {
        match self {
            Self::Root => OwnershipMode::Chown(IdMaps::default()),
            Self::Rootless { .. } => OwnershipMode::Record,
        }
    }

    /// The id map RUNs ask for. As uid 0 (real root, or root of the build namespace that
    /// `sandbox::run_in_build_namespace` sets up) the RUN gets every id of our namespace and
    /// files it chowns stay ours to read and remove. A rootless caller outside such a
    /// namespace keeps the single-id map: a subordinate owner would make files it cannot
    /// read or delete (see docs/decisions.md, "Executor").
    pub fn id_map_mode(self) -> IdMapMode {
        match self {
            Self::Root => IdMapMode::Auto,
            Self::Rootless { .. } => IdMapMode::Single,
        }
    }

    /// Gives `path` (not a symlink) the container owner `uid:gid` and `mode`.
    pub fn set_owner(self, path: &Path, uid: u32, gid: u32, mode: u32, is_dir: bool) -> std::io::Result<()> {
        match self {
            Self::Root => {
                std::os::unix::fs::lchown(path, Some(uid), Some(gid))?;
                fs::set_permissions(path, fs::Permissions::from_mode(mode & 0o7777))
            }
            Self::Rootless { .. } => {
                fs::set_permissions(path, fs::Permissions::from_mode(widen_mode(mode, is_dir)))?;
                let record = OwnerRecord { uid, gid, mode: mode & 0o7777 }.to_string();
                xattr::set(path, OsStr::new(OWNER_XATTR), record.as_bytes())
            }
        }
    }

    /// Gives a symlink its owner where possible (symlinks cannot carry the record).
    pub fn set_link_owner(self, path: &Path, uid: u32, gid: u32) -> std::io::Result<()> {
        match self {
            Self::Root => std::os::unix::fs::lchown(path, Some(uid), Some(gid)),
            Self::Rootless { .. } => Ok(()),
        }
    }
}
