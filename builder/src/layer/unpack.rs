//! Applies layer tars to a root directory, refusing hostile input.
//!
//! Entry names with `..` components or absolute paths are refused; every other path
//! is resolved through [`RootDir`] with [`Escape::Refuse`], so a symlink that points
//! above the root (or an entry that replaced a directory with one) cannot carry a
//! write outside. Absolute symlinks are followed re-rooted, as the container sees them.
//! Ownership, devices and unsettable xattrs follow the contract in [`super::ownership`].

use std::collections::HashSet;
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rustix::fs::{self as rfs, AtFlags, FileType, Mode, OFlags, Timespec, Timestamps};
use rustix::io::Errno;
use tar::EntryType;

use super::exclusions::Exclusions;
use super::ownership::{
    fallback_xattr, widen_mode, DeviceKind, DeviceRecord, IdMaps, OwnerRecord, OwnershipError, DEVICE_XATTR,
    OWNER_XATTR, RBUILD_XATTR_PREFIX,
};
use super::root_path::{Escape, MissingDirs, RootDir, RootPathError};
use super::sparse::{self, PaxSparse, SparseError};
use super::whiteout::{classify, WhiteoutName};
use super::Codec;

/// Errors applying a layer.
#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    /// Reading or decompressing the archive failed.
    #[error("cannot read layer archive")]
    Read {
        #[source]
        source: io::Error,
    },
    /// An entry name is absolute.
    #[error("layer entry {path:?} has an absolute path")]
    AbsolutePath { path: String },
    /// An entry name (or hardlink target) has a `..` component.
    #[error("layer entry {path:?} has a '..' component")]
    ParentComponent { path: String },
    /// Resolving the entry's location under the root failed (includes escapes).
    #[error("cannot place layer entry {path}")]
    Resolve {
        path: PathBuf,
        #[source]
        source: RootPathError,
    },
    /// A file system call failed.
    #[error("{op} failed for layer entry {path}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The entry's owner cannot be mapped.
    #[error("cannot set owner of layer entry {path}")]
    Owner {
        path: PathBuf,
        #[source]
        source: OwnershipError,
    },
    /// The entry type is not supported.
    #[error("layer entry {path} has unsupported type {kind:?}")]
    UnsupportedEntry { path: PathBuf, kind: u8 },
    /// A PAX sparse entry is malformed or cut short.
    #[error("sparse layer entry {path}")]
    Sparse {
        path: PathBuf,
        #[source]
        source: SparseError,
    },
}

/// How ownership from the layer reaches the disk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OwnershipMode {
    /// `chown` to the layer's ids, translated container → host through the maps
    /// (real root, or a full subuid range).
    Chown(IdMaps),
    /// Keep files owned by the caller and record intended `uid:gid:mode` in
    /// [`OWNER_XATTR`] (single-id rootless).
    Record,
}

/// Options for [`unpack_layer`].
#[derive(Clone, Debug)]
pub struct UnpackOptions {
    /// Ownership handling.
    pub ownership: OwnershipMode,
}

/// Counters from one unpacked layer.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UnpackStats {
    /// Entries applied (incl. whiteouts).
    pub entries: u64,
    /// Regular file bytes written.
    pub bytes: u64,
    /// Whiteouts and opaque markers applied.
    pub whiteouts: u64,
    /// Device nodes stored as placeholders.
    pub recorded_devices: u64,
}

struct Meta {
    mode: u32,
    uid: u32,
    gid: u32,
    mtime: i64,
    xattrs: Vec<(String, Vec<u8>)>,
}

struct Unpacker<'a> {
    root: &'a RootDir,
    opts: &'a UnpackOptions,
    /// A layer applies whiteouts; an archive (ADD) keeps `.wh.` names as plain files.
    whiteouts: bool,
    /// Paths neither written nor removed (container isolation spares its own state).
    excluded: &'a Exclusions,
    this_layer: HashSet<PathBuf>,
    dirs: Vec<(PathBuf, Meta)>,
    stats: UnpackStats,
}

/// Wraps `reader` in the decompressor `codec` asks for.
pub fn decompress<'r, R: Read + 'r>(codec: Codec, reader: R) -> io::Result<Box<dyn Read + 'r>> {
    Ok(match codec {
        Codec::None => Box::new(reader),
        Codec::Gzip => Box::new(flate2::read::MultiGzDecoder::new(io::BufReader::new(reader))),
        Codec::Zstd => Box::new(zstd::stream::read::Decoder::new(reader)?),
    })
}

/// Applies one layer (compressed as `codec`) on top of what `root` holds.
pub fn unpack_layer<R: Read>(
    root: &RootDir,
    codec: Codec,
    reader: R,
    opts: &UnpackOptions,
) -> Result<UnpackStats, UnpackError> {
    unpack_layer_excluding(root, codec, reader, opts, &Exclusions::none())
}

/// [`unpack_layer`] that neither writes nor removes anything `excluded` keeps (entries
/// below an excluded path are skipped; whiteouts and opaque markers spare them).
pub fn unpack_layer_excluding<R: Read>(
    root: &RootDir,
    codec: Codec,
    reader: R,
    opts: &UnpackOptions,
    excluded: &Exclusions,
) -> Result<UnpackStats, UnpackError> {
    let reader = decompress(codec, reader).map_err(|source| UnpackError::Read { source })?;
    unpack_tar(root, reader, opts, true, excluded)
}

/// Extracts a plain tar archive (ADD of a local archive, already decompressed) into `root`
/// with the same safety rules as a layer; `.wh.` names are ordinary files here, as in
/// Docker's `Untar`. Existing files are replaced, existing directories merged.
pub fn unpack_archive<R: Read>(root: &RootDir, reader: R, opts: &UnpackOptions) -> Result<UnpackStats, UnpackError> {
    unpack_tar(root, reader, opts, false, &Exclusions::none())
}

fn unpack_tar<R: Read>(
    root: &RootDir,
    reader: R,
    opts: &UnpackOptions,
    whiteouts: bool,
    excluded: &Exclusions,
) -> Result<UnpackStats, UnpackError> {
    let mut archive = tar::Archive::new(reader);
    let mut u = Unpacker {
        root,
        opts,
        whiteouts,
        excluded,
        this_layer: HashSet::new(),
        dirs: Vec::new(),
        stats: UnpackStats::default(),
    };
    for entry in archive.entries().map_err(|source| UnpackError::Read { source })? {
        let mut entry = entry.map_err(|source| UnpackError::Read { source })?;
        u.apply(&mut entry)?;
    }
    u.finish_dirs()?;
    tracing::debug!(root = %root.path().display(), ?u.stats, "unpacked tar");
    Ok(u.stats)
}

/// Validates an entry name: relative, no `..`; `None` for the root itself.
fn entry_path(bytes: &[u8]) -> Result<Option<PathBuf>, UnpackError> {
    let shown = || String::from_utf8_lossy(bytes).into_owned();
    if bytes.first() == Some(&b'/') {
        return Err(UnpackError::AbsolutePath { path: shown() });
    }
    let mut out = PathBuf::new();
    for c in bytes.split(|b| *b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => return Err(UnpackError::ParentComponent { path: shown() }),
            c => out.push(OsStr::from_bytes(c)),
        }
    }
    Ok((!out.as_os_str().is_empty()).then_some(out))
}

fn io_err(op: &'static str, path: &Path, e: impl Into<io::Error>) -> UnpackError {
    UnpackError::Io { op, path: path.to_path_buf(), source: e.into() }
}

fn proc_path(dir: &OwnedFd, name: &OsStr) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}", dir.as_raw_fd())).join(name)
}

fn read_meta<R: Read>(entry: &mut tar::Entry<'_, R>, rel: &Path) -> Result<Meta, UnpackError> {
    let h = entry.header();
    let bad = |e| io_err("read header", rel, e);
    let mut meta = Meta {
        mode: h.mode().map_err(bad)? & 0o7777,
        uid: u32::try_from(h.uid().map_err(bad)?).unwrap_or(65534),
        gid: u32::try_from(h.gid().map_err(bad)?).unwrap_or(65534),
        mtime: i64::try_from(h.mtime().map_err(bad)?).unwrap_or(0),
        xattrs: Vec::new(),
    };
    if let Some(exts) = entry.pax_extensions().map_err(|e| io_err("read pax", rel, e))? {
        for ext in exts {
            let ext = ext.map_err(|e| io_err("read pax", rel, e))?;
            let Ok(key) = ext.key() else { continue };
            let number = || ext.value().ok().and_then(|v| v.split('.').next()?.parse::<i64>().ok());
            match (key, number()) {
                ("uid", Some(v)) => meta.uid = u32::try_from(v).unwrap_or(65534),
                ("gid", Some(v)) => meta.gid = u32::try_from(v).unwrap_or(65534),
                ("mtime", Some(v)) => meta.mtime = v,
                _ => {}
            }
            let Some(name) = key.strip_prefix("SCHILY.xattr.") else { continue };
            // Never let input forge rbuild's own records or overlayfs internals.
            if name.starts_with(RBUILD_XATTR_PREFIX) || name.contains(".overlay.") {
                continue;
            }
            meta.xattrs.push((name.to_owned(), ext.value_bytes().to_vec()));
        }
    }
    Ok(meta)
}

/// The PAX sparse description of a regular-file entry (GNU tar 0.0, 0.1, 1.0), if any.
fn pax_sparse<R: Read>(entry: &mut tar::Entry<'_, R>, kind: EntryType) -> Result<Option<PaxSparse>, UnpackError> {
    if !matches!(kind, EntryType::Regular | EntryType::Continuous) {
        return Ok(None);
    }
    let shown = PathBuf::from(OsStr::from_bytes(&entry.path_bytes()));
    let Some(exts) = entry.pax_extensions().map_err(|e| io_err("read pax", &shown, e))? else {
        return Ok(None);
    };
    let mut records = Vec::new();
    for ext in exts {
        let ext = ext.map_err(|e| io_err("read pax", &shown, e))?;
        if let Ok(key) = ext.key() {
            records.push((key, ext.value_bytes()));
        }
    }
    sparse::detect(records).map_err(|source| UnpackError::Sparse { path: shown, source })
}

impl Unpacker<'_> {
    fn apply<R: Read>(&mut self, entry: &mut tar::Entry<'_, R>) -> Result<(), UnpackError> {
        let kind = entry.header().entry_type();
        if matches!(kind, EntryType::XGlobalHeader | EntryType::XHeader) {
            return Ok(());
        }
        let sparse = pax_sparse(entry, kind)?;
        let name = match sparse.as_ref().and_then(|s| s.name.clone()) {
            Some(real) => real,
            None => entry.path_bytes().into_owned(),
        };
        let Some(rel) = entry_path(&name)? else {
            return Ok(()); // the root directory itself: keep the root's own metadata
        };
        if self.excluded.covers(&rel) {
            return Ok(());
        }
        self.stats.entries += 1;
        let name = rel.file_name().unwrap_or_default().to_os_string();
        let class = if self.whiteouts { classify(&name) } else { WhiteoutName::Plain };
        match class {
            WhiteoutName::Opaque => return self.opaque(rel.parent().unwrap_or(Path::new(""))),
            WhiteoutName::Delete(target) => {
                let target = rel.with_file_name(target);
                return self.whiteout(&target);
            }
            WhiteoutName::Plain => {}
        }
        let meta = read_meta(entry, &rel)?;
        let res = self
            .root
            .resolve_parent(&rel, Escape::Refuse, MissingDirs::Create)
            .map_err(|source| UnpackError::Resolve { path: rel.clone(), source })?;
        self.clear_existing(&res.dir, &res.name, &rel, kind == EntryType::Directory)?;
        self.this_layer.insert(rel.clone());
        match kind {
            EntryType::Directory => {
                match rfs::mkdirat(&res.dir, res.name.as_os_str(), Mode::from_raw_mode(0o700)) {
                    Ok(()) | Err(Errno::EXIST) => {}
                    Err(e) => return Err(io_err("mkdirat", &rel, e)),
                }
                self.dirs.push((rel, meta));
                Ok(())
            }
            EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse => {
                let mut file = create_file(&res.dir, &res.name, &rel)?;
                self.stats.bytes += match &sparse {
                    Some(sp) => {
                        let stored = entry.size();
                        sparse::write(sp, entry, stored, &mut file)
                            .map_err(|source| UnpackError::Sparse { path: rel.clone(), source })?
                    }
                    None => io::copy(entry, &mut file).map_err(|e| io_err("write", &rel, e))?,
                };
                self.set_meta_fd(file.as_fd(), &meta, false, &rel)
            }
            EntryType::Symlink => {
                let target = entry.link_name_bytes().unwrap_or_default().into_owned();
                rfs::symlinkat(OsStr::from_bytes(&target), &res.dir, res.name.as_os_str())
                    .map_err(|e| io_err("symlinkat", &rel, e))?;
                self.set_meta_at(&res.dir, &res.name, &meta, &rel)
            }
            EntryType::Link => {
                let target = entry.link_name_bytes().unwrap_or_default().into_owned();
                self.hardlink(&res.dir, &res.name, &target, &rel)?;
                // The link's header owner and mode apply to the shared inode, as Docker's and
                // containerd's tar appliers do (the last header of the inode wins).
                let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
                let fd = rfs::openat(&res.dir, res.name.as_os_str(), flags, Mode::empty())
                    .map_err(|e| io_err("openat", &rel, e))?;
                self.set_meta_fd(fd.as_fd(), &meta, false, &rel)
            }
            EntryType::Char | EntryType::Block | EntryType::Fifo => {
                let major = entry.header().device_major().ok().flatten().unwrap_or(0);
                let minor = entry.header().device_minor().ok().flatten().unwrap_or(0);
                self.special(&res.dir, &res.name, kind, (major, minor), &meta, &rel)
            }
            other => Err(UnpackError::UnsupportedEntry { path: rel, kind: other.as_byte() }),
        }
    }

    /// Removes what is in the way of a new entry (a directory stays for a directory).
    fn clear_existing(&self, dir: &OwnedFd, name: &OsStr, rel: &Path, new_is_dir: bool) -> Result<(), UnpackError> {
        match rfs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
            Err(Errno::NOENT) => Ok(()),
            Err(e) => Err(io_err("fstatat", rel, e)),
            Ok(st) if new_is_dir && FileType::from_raw_mode(st.st_mode) == FileType::Directory => Ok(()),
            Ok(_) if self.excluded.holds(rel) => {
                Err(io_err("replace a directory holding excluded paths", rel, Errno::BUSY))
            }
            Ok(_) => remove_all(dir.as_fd(), name, rel),
        }
    }

    fn whiteout(&mut self, target: &Path) -> Result<(), UnpackError> {
        self.stats.whiteouts += 1;
        if self.excluded.keeps(target) {
            return Ok(());
        }
        let res = match self.root.resolve_parent(target, Escape::Refuse, MissingDirs::Fail) {
            Ok(r) => r,
            Err(RootPathError::NotFound { .. }) => return Ok(()),
            Err(source) => return Err(UnpackError::Resolve { path: target.to_path_buf(), source }),
        };
        match rfs::statat(&res.dir, res.name.as_os_str(), AtFlags::SYMLINK_NOFOLLOW) {
            Err(Errno::NOENT) => Ok(()),
            Err(e) => Err(io_err("fstatat", target, e)),
            Ok(_) => remove_all(res.dir.as_fd(), &res.name, target),
        }
    }

    /// Removes everything in `dir` that this layer did not put there.
    fn opaque(&mut self, dir: &Path) -> Result<(), UnpackError> {
        self.stats.whiteouts += 1;
        let (pfd, _) = self
            .root
            .open_dir(dir, Escape::Refuse, MissingDirs::Create)
            .map_err(|source| UnpackError::Resolve { path: dir.to_path_buf(), source })?;
        for name in list_dir(pfd.as_fd(), dir)? {
            if !self.this_layer.contains(&dir.join(&name)) && !self.excluded.keeps(&dir.join(&name)) {
                remove_all(pfd.as_fd(), &name, &dir.join(&name))?;
            }
        }
        Ok(())
    }

    fn hardlink(&mut self, dir: &OwnedFd, name: &OsStr, target: &[u8], rel: &Path) -> Result<(), UnpackError> {
        let target = entry_path(target)?.ok_or_else(|| io_err("link", rel, Errno::INVAL))?;
        let t = self
            .root
            .resolve_parent(&target, Escape::Refuse, MissingDirs::Fail)
            .map_err(|source| UnpackError::Resolve { path: target.clone(), source })?;
        rfs::linkat(&t.dir, t.name.as_os_str(), dir, name, AtFlags::empty()).map_err(|e| io_err("linkat", rel, e))
    }

    fn special(
        &mut self,
        dir: &OwnedFd,
        name: &OsStr,
        kind: EntryType,
        (major, minor): (u32, u32),
        meta: &Meta,
        rel: &Path,
    ) -> Result<(), UnpackError> {
        let ft = match kind {
            EntryType::Char => FileType::CharacterDevice,
            EntryType::Block => FileType::BlockDevice,
            _ => FileType::Fifo,
        };
        let dev = rfs::makedev(major, minor);
        match rfs::mknodat(dir, name, ft, Mode::from_raw_mode(0o600), dev) {
            Ok(()) => self.set_meta_at(dir, name, meta, rel),
            Err(Errno::PERM) if ft != FileType::Fifo => {
                let kind = if ft == FileType::CharacterDevice { DeviceKind::Char } else { DeviceKind::Block };
                let record = DeviceRecord { kind, major, minor };
                let file = create_file(dir, name, rel)?;
                rfs::fsetxattr(&file, DEVICE_XATTR, record.to_string().as_bytes(), rfs::XattrFlags::empty())
                    .map_err(|e| io_err("fsetxattr", rel, e))?;
                self.stats.recorded_devices += 1;
                tracing::debug!(path = %rel.display(), %record, "recorded device node as placeholder");
                self.set_meta_fd(file.as_fd(), meta, false, rel)
            }
            Err(e) => Err(io_err("mknodat", rel, e)),
        }
    }

    /// A failed chown: `EINVAL` means the ids are outside the user namespace's map, said so
    /// with the ids; anything else is the plain I/O error.
    fn chown_err(op: &'static str, rel: &Path, meta: &Meta, e: rustix::io::Errno) -> UnpackError {
        if e == rustix::io::Errno::INVAL {
            let source = OwnershipError::OutsideNamespace { uid: meta.uid, gid: meta.gid };
            return UnpackError::Owner { path: rel.to_path_buf(), source };
        }
        io_err(op, rel, e)
    }

    /// Owner, mode, xattrs and mtime through an open descriptor.
    fn set_meta_fd(&self, fd: BorrowedFd<'_>, meta: &Meta, is_dir: bool, rel: &Path) -> Result<(), UnpackError> {
        match &self.opts.ownership {
            OwnershipMode::Chown(maps) => {
                let (u, g) = maps
                    .host_owner(meta.uid, meta.gid)
                    .map_err(|source| UnpackError::Owner { path: rel.to_path_buf(), source })?;
                rfs::fchown(fd, Some(rfs::Uid::from_raw(u)), Some(rfs::Gid::from_raw(g)))
                    .map_err(|e| Self::chown_err("fchown", rel, meta, e))?;
                rfs::fchmod(fd, Mode::from_raw_mode(meta.mode)).map_err(|e| io_err("fchmod", rel, e))?;
            }
            OwnershipMode::Record => {
                let rec = OwnerRecord { uid: meta.uid, gid: meta.gid, mode: meta.mode };
                rfs::fchmod(fd, Mode::from_raw_mode(widen_mode(meta.mode, is_dir)))
                    .map_err(|e| io_err("fchmod", rel, e))?;
                rfs::fsetxattr(fd, OWNER_XATTR, rec.to_string().as_bytes(), rfs::XattrFlags::empty())
                    .map_err(|e| io_err("fsetxattr", rel, e))?;
            }
        }
        for (k, v) in &meta.xattrs {
            if let Err(e) = rfs::fsetxattr(fd, k.as_str(), v, rfs::XattrFlags::empty()) {
                if k.starts_with("user.") {
                    return Err(io_err("fsetxattr", rel, e));
                }
                rfs::fsetxattr(fd, fallback_xattr(k).as_str(), v, rfs::XattrFlags::empty())
                    .map_err(|e| io_err("fsetxattr", rel, e))?;
            }
        }
        rfs::futimens(fd, &times(meta.mtime)).map_err(|e| io_err("futimens", rel, e))
    }

    /// Owner, mode, xattrs and mtime of a symlink or device node, by name.
    fn set_meta_at(&self, dir: &OwnedFd, name: &OsStr, meta: &Meta, rel: &Path) -> Result<(), UnpackError> {
        let st = rfs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW).map_err(|e| io_err("fstatat", rel, e))?;
        let is_link = FileType::from_raw_mode(st.st_mode) == FileType::Symlink;
        if let OwnershipMode::Chown(maps) = &self.opts.ownership {
            let (u, g) = maps
                .host_owner(meta.uid, meta.gid)
                .map_err(|source| UnpackError::Owner { path: rel.to_path_buf(), source })?;
            rfs::chownat(
                dir,
                name,
                Some(rfs::Uid::from_raw(u)),
                Some(rfs::Gid::from_raw(g)),
                AtFlags::SYMLINK_NOFOLLOW,
            )
            .map_err(|e| Self::chown_err("fchownat", rel, meta, e))?;
        }
        let path = proc_path(dir, name);
        if !is_link {
            rfs::chmodat(dir, name, Mode::from_raw_mode(meta.mode), AtFlags::empty())
                .map_err(|e| io_err("fchmodat", rel, e))?;
            if self.opts.ownership == OwnershipMode::Record {
                let rec = OwnerRecord { uid: meta.uid, gid: meta.gid, mode: meta.mode };
                // Linux allows user.* xattrs only on files and directories: a fifo or a
                // device node (created as real root) keeps the caller as owner.
                match rfs::lsetxattr(&path, OWNER_XATTR, rec.to_string().as_bytes(), rfs::XattrFlags::empty()) {
                    Ok(()) | Err(Errno::PERM) => {}
                    Err(e) => return Err(io_err("lsetxattr", rel, e)),
                }
            }
        }
        for (k, v) in &meta.xattrs {
            if let Err(e) = rfs::lsetxattr(&path, k.as_str(), v, rfs::XattrFlags::empty()) {
                tracing::warn!(path = %rel.display(), xattr = %k, error = %e, "xattr not kept on special file");
            }
        }
        rfs::utimensat(dir, name, &times(meta.mtime), AtFlags::SYMLINK_NOFOLLOW)
            .map_err(|e| io_err("utimensat", rel, e))
    }

    /// Directory metadata last, deepest first, so creating children does not undo it.
    fn finish_dirs(&mut self) -> Result<(), UnpackError> {
        let dirs = std::mem::take(&mut self.dirs);
        for (rel, meta) in dirs.iter().rev() {
            let res = self
                .root
                .resolve_parent(rel, Escape::Refuse, MissingDirs::Fail)
                .map_err(|source| UnpackError::Resolve { path: rel.clone(), source })?;
            let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
            let fd = match rfs::openat(&res.dir, res.name.as_os_str(), flags, Mode::empty()) {
                Ok(fd) => fd,
                // Replaced by a non-directory later in the same layer.
                Err(Errno::NOTDIR) | Err(Errno::LOOP) | Err(Errno::NOENT) => continue,
                Err(e) => return Err(io_err("openat", rel, e)),
            };
            self.set_meta_fd(fd.as_fd(), meta, true, rel)?;
        }
        Ok(())
    }
}

fn times(mtime: i64) -> Timestamps {
    let t = Timespec { tv_sec: mtime, tv_nsec: 0 };
    Timestamps { last_access: t, last_modification: t }
}

fn create_file(dir: &OwnedFd, name: &OsStr, rel: &Path) -> Result<File, UnpackError> {
    let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let fd = rfs::openat(dir, name, flags, Mode::from_raw_mode(0o600)).map_err(|e| io_err("openat", rel, e))?;
    Ok(File::from(fd))
}

fn list_dir(fd: BorrowedFd<'_>, rel: &Path) -> Result<Vec<OsString>, UnpackError> {
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let dfd = rfs::openat(fd, ".", flags, Mode::empty()).map_err(|e| io_err("openat", rel, e))?;
    let dir = rfs::Dir::read_from(&dfd).map_err(|e| io_err("opendir", rel, e))?;
    let mut out = Vec::new();
    for ent in dir {
        let ent = ent.map_err(|e| io_err("readdir", rel, e))?;
        let n = ent.file_name().to_bytes();
        if n != b"." && n != b".." {
            out.push(OsStr::from_bytes(n).to_os_string());
        }
    }
    Ok(out)
}

/// Removes `name` in `dir`, recursively, never following symlinks.
pub(crate) fn remove_all(dir: BorrowedFd<'_>, name: &OsStr, rel: &Path) -> Result<(), UnpackError> {
    match rfs::unlinkat(dir, name, AtFlags::empty()) {
        Ok(()) | Err(Errno::NOENT) => return Ok(()),
        Err(Errno::ISDIR) | Err(Errno::PERM) => {}
        Err(e) => return Err(io_err("unlinkat", rel, e)),
    }
    let flags = OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let sub = rfs::openat(dir, name, flags, Mode::empty()).map_err(|e| io_err("openat", rel, e))?;
    for child in list_dir(sub.as_fd(), rel)? {
        remove_all(sub.as_fd(), &child, &rel.join(&child))?;
    }
    rfs::unlinkat(dir, name, AtFlags::REMOVEDIR).map_err(|e| io_err("rmdir", rel, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[rstest::rstest]
    #[case(b"a/b", Ok(Some("a/b")))]
    #[case(b"./a//b/", Ok(Some("a/b")))]
    #[case(b"./", Ok(None))]
    #[case(b"/etc/passwd", Err("absolute"))]
    #[case(b"a/../../b", Err("'..'"))]
    fn entry_names(#[case] input: &[u8], #[case] want: Result<Option<&str>, &str>) {
        match (entry_path(input), want) {
            (Ok(got), Ok(w)) => assert_eq!(got, w.map(PathBuf::from)),
            (Err(e), Err(w)) => assert!(e.to_string().contains(w), "{e}"),
            (got, want) => panic!("got {got:?}, want {want:?}"),
        }
    }
}
