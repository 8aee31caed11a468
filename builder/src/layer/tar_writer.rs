//! Deterministic tar writing of a change set.
//!
//! Headers are built by hand from `lstat`: ustar with PAX records for long names,
//! big sizes/ids and xattrs; empty user/group names; whole-second mtimes (kept or
//! clamped); hardlinks within the layer written as links. Recorded owners and
//! devices ([`super::ownership`]) are turned back into what the layer must say.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use tar::{EntryType, Header};

use super::ownership::{
    DeviceKind, DeviceRecord, IdMaps, OwnerRecord, OwnershipError, DEVICE_XATTR, FALLBACK_XATTR_PREFIX, OWNER_XATTR,
    RBUILD_XATTR_PREFIX,
};
use super::whiteout::{whiteout_name, OPAQUE_MARKER};
use super::MtimePolicy;

/// Errors writing tar entries.
#[derive(Debug, thiserror::Error)]
pub enum TarWriteError {
    /// `lstat`, `readlink`, open or read of a source file failed.
    #[error("cannot read {path}")]
    Source {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// A recorded owner/device xattr is malformed.
    #[error("bad ownership record on {path}")]
    Record {
        path: PathBuf,
        #[source]
        source: OwnershipError,
    },
    /// Writing the archive failed.
    #[error("cannot write layer tar")]
    Write {
        #[source]
        source: io::Error,
    },
}

/// One entry of a change set, by path relative to the source root.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LayerEntry {
    /// Add or replace this path with what the source root holds.
    Path(PathBuf),
    /// This path was deleted (written as `.wh.NAME`).
    Whiteout(PathBuf),
    /// This directory hides everything below it in lower layers (`DIR/.wh..wh..opq`).
    Opaque(PathBuf),
}

impl LayerEntry {
    /// The path of this entry in the tar (the sort key).
    pub fn tar_path(&self) -> PathBuf {
        match self {
            LayerEntry::Path(p) => p.clone(),
            LayerEntry::Whiteout(p) => p.with_file_name(whiteout_name(p.file_name().unwrap_or_default())),
            LayerEntry::Opaque(p) => p.join(OPAQUE_MARKER),
        }
    }
}

/// Writes [`LayerEntry`]s read from `src` into a tar stream.
pub struct TarLayerWriter<W: Write> {
    out: tar::Builder<W>,
    src: PathBuf,
    mtime: MtimePolicy,
    ids: IdMaps,
    links: HashMap<(u64, u64), Vec<u8>>,
}

struct Stat {
    kind: EntryType,
    mode: u32,
    uid: u64,
    gid: u64,
    size: u64,
    mtime: u64,
    link: Option<Vec<u8>>,
    device: Option<(u32, u32)>,
    xattrs: BTreeMap<String, Vec<u8>>,
}

impl<W: Write> TarLayerWriter<W> {
    /// A writer reading files under `src`.
    pub fn new(out: W, src: &Path, mtime: MtimePolicy, ids: IdMaps) -> Self {
        TarLayerWriter { out: tar::Builder::new(out), src: src.to_path_buf(), mtime, ids, links: HashMap::new() }
    }

    /// Appends one entry. Callers pass entries sorted by [`LayerEntry::tar_path`].
    pub fn append(&mut self, entry: &LayerEntry) -> Result<(), TarWriteError> {
        match entry {
            LayerEntry::Path(rel) => self.append_path(rel),
            LayerEntry::Whiteout(_) | LayerEntry::Opaque(_) => {
                let st = Stat {
                    kind: EntryType::Regular,
                    mode: 0o644,
                    uid: 0,
                    gid: 0,
                    size: 0,
                    mtime: 0,
                    link: None,
                    device: None,
                    xattrs: BTreeMap::new(),
                };
                self.write_entry(entry.tar_path().as_os_str().as_bytes(), &st, io::empty())
            }
        }
    }

    /// Writes the end-of-archive blocks and returns the inner writer.
    pub fn finish(self) -> Result<W, TarWriteError> {
        self.out.into_inner().map_err(|source| TarWriteError::Write { source })
    }

    fn append_path(&mut self, rel: &Path) -> Result<(), TarWriteError> {
        let full = self.src.join(rel);
        let src_err = |source| TarWriteError::Source { path: full.clone(), source };
        let md = std::fs::symlink_metadata(&full).map_err(src_err)?;
        let ft = md.file_type();
        if ft.is_socket() {
            // Sockets cannot live in a layer (Docker and BuildKit skip them too).
            tracing::warn!(path = %full.display(), "skipping socket");
            return Ok(());
        }
        let mut st = self.stat(&full, &md)?;
        let mut name = rel.as_os_str().as_bytes().to_vec();
        if ft.is_dir() {
            name.push(b'/');
        }
        if ft.is_file() && md.nlink() > 1 && st.device.is_none() {
            if let Some(first) = self.links.get(&(md.dev(), md.ino())) {
                st.kind = EntryType::Link;
                st.size = 0;
                st.link = Some(first.clone());
                return self.write_entry(&name, &st, io::empty());
            }
            self.links.insert((md.dev(), md.ino()), name.clone());
        }
        if st.kind == EntryType::Regular && st.size > 0 {
            let file = std::fs::OpenOptions::new()
                .read(true)
                .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
                .open(&full)
                .map_err(src_err)?;
            let reader = Exact { inner: file, left: st.size, path: &full };
            return self.write_entry(&name, &st, reader);
        }
        self.write_entry(&name, &st, io::empty())
    }

    fn stat(&self, full: &Path, md: &std::fs::Metadata) -> Result<Stat, TarWriteError> {
        let src_err = |source| TarWriteError::Source { path: full.to_path_buf(), source };
        let ft = md.file_type();
        let (mut uid, mut gid) = self.ids.container_owner(md.uid(), md.gid());
        let mut mode = md.mode() & 0o7777;
        let mut xattrs = BTreeMap::new();
        let mut device = None;
        for name in xattr::list(full).map_err(src_err)? {
            let Some(name) = name.to_str().map(str::to_owned) else { continue };
            let Some(value) = xattr::get(full, &name).map_err(src_err)? else { continue };
            let rec_err = |source| TarWriteError::Record { path: full.to_path_buf(), source };
            if name == OWNER_XATTR {
                let r = OwnerRecord::parse(&value).map_err(rec_err)?;
                (uid, gid, mode) = (r.uid, r.gid, r.effective_mode(md.mode(), ft.is_dir()));
            } else if name == DEVICE_XATTR {
                device = Some(DeviceRecord::parse(&value).map_err(rec_err)?);
            } else if let Some(orig) = name.strip_prefix(FALLBACK_XATTR_PREFIX) {
                xattrs.insert(orig.to_owned(), value);
            } else if !skip_xattr(&name) {
                xattrs.entry(name).or_insert(value);
            }
        }
        let (kind, device, link) = if let Some(d) = device {
            let kind = if d.kind == DeviceKind::Char { EntryType::Char } else { EntryType::Block };
            (kind, Some((d.major, d.minor)), None)
        } else if ft.is_dir() {
            (EntryType::Directory, None, None)
        } else if ft.is_symlink() {
            let target = std::fs::read_link(full).map_err(src_err)?;
            (EntryType::Symlink, None, Some(target.as_os_str().as_bytes().to_vec()))
        } else if ft.is_char_device() || ft.is_block_device() {
            let kind = if ft.is_char_device() { EntryType::Char } else { EntryType::Block };
            let rdev = md.rdev();
            (kind, Some((rustix::fs::major(rdev), rustix::fs::minor(rdev))), None)
        } else if ft.is_fifo() {
            (EntryType::Fifo, None, None)
        } else if ft.is_file() {
            (EntryType::Regular, None, None)
        } else {
            return Err(TarWriteError::Source {
                path: full.to_path_buf(),
                source: io::Error::new(io::ErrorKind::Unsupported, "file type cannot be stored in a layer"),
            });
        };
        let size = if kind == EntryType::Regular { md.size() } else { 0 };
        let mtime = u64::try_from(match self.mtime {
            MtimePolicy::Keep => md.mtime(),
            MtimePolicy::Clamp(epoch) => md.mtime().min(epoch),
        })
        .unwrap_or(0);
        Ok(Stat { kind, mode, uid: uid.into(), gid: gid.into(), size, mtime, link, device, xattrs })
    }

    fn write_entry<R: Read>(&mut self, name: &[u8], st: &Stat, data: R) -> Result<(), TarWriteError> {
        let wr = |source| TarWriteError::Write { source };
        let mut h = Header::new_ustar();
        let mut pax: Vec<(String, Vec<u8>)> = Vec::new();
        if !set_ustar_name(&mut h, name) {
            pax.push(("path".into(), name.to_vec()));
        }
        if let Some(link) = &st.link {
            if link.len() <= 100 {
                h.set_link_name_literal(link).map_err(wr)?;
            } else {
                pax.push(("linkpath".into(), link.clone()));
            }
        }
        const MAX_OCTAL_8: u64 = 0o7777777;
        const MAX_OCTAL_12: u64 = 0o77777777777;
        if st.size > MAX_OCTAL_12 {
            pax.push(("size".into(), st.size.to_string().into_bytes()));
        }
        if st.uid > MAX_OCTAL_8 {
            pax.push(("uid".into(), st.uid.to_string().into_bytes()));
        }
        if st.gid > MAX_OCTAL_8 {
            pax.push(("gid".into(), st.gid.to_string().into_bytes()));
        }
        for (k, v) in &st.xattrs {
            pax.push((format!("SCHILY.xattr.{k}"), v.clone()));
        }
        h.set_entry_type(st.kind);
        h.set_mode(st.mode);
        h.set_uid(st.uid.min(MAX_OCTAL_8));
        h.set_gid(st.gid.min(MAX_OCTAL_8));
        h.set_size(st.size);
        h.set_mtime(st.mtime);
        let (major, minor) = st.device.unwrap_or((0, 0));
        h.set_device_major(major).map_err(wr)?;
        h.set_device_minor(minor).map_err(wr)?;
        h.set_cksum();
        if !pax.is_empty() {
            self.write_pax(name, &pax, st.mtime)?;
        }
        self.out.append(&h, data).map_err(wr)
    }

    fn write_pax(&mut self, name: &[u8], records: &[(String, Vec<u8>)], mtime: u64) -> Result<(), TarWriteError> {
        let mut body = Vec::new();
        for (k, v) in records {
            let rest = k.len() + v.len() + 3; // ' ', '=', '\n'
            let mut len = rest + 1;
            while len != rest + len.to_string().len() {
                len = rest + len.to_string().len();
            }
            body.extend_from_slice(format!("{len} {k}=").as_bytes());
            body.extend_from_slice(v);
            body.push(b'\n');
        }
        let mut h = Header::new_ustar();
        let base = name.rsplit(|b| *b == b'/').find(|s| !s.is_empty()).unwrap_or(b"entry");
        let mut pax_name = b"PaxHeaders.0/".to_vec();
        pax_name.extend_from_slice(&base[..base.len().min(80)]);
        set_ustar_name(&mut h, &pax_name);
        h.set_entry_type(EntryType::XHeader);
        h.set_mode(0o644);
        h.set_size(body.len() as u64);
        h.set_mtime(mtime);
        h.set_cksum();
        self.out.append(&h, body.as_slice()).map_err(|source| TarWriteError::Write { source })
    }
}

/// Xattrs never written to layers: overlayfs internals and host SELinux labels.
fn skip_xattr(name: &str) -> bool {
    name.starts_with("trusted.overlay.")
        || name.starts_with("user.overlay.")
        || name.starts_with(RBUILD_XATTR_PREFIX)
        || name == "security.selinux"
}

/// Puts `name` into the ustar name/prefix fields; false (with a truncated name) if it does not fit.
fn set_ustar_name(h: &mut Header, name: &[u8]) -> bool {
    let Some(u) = h.as_ustar_mut() else { return false };
    if name.len() <= u.name.len() {
        u.name[..name.len()].copy_from_slice(name);
        return true;
    }
    let trimmed = name.strip_suffix(b"/").unwrap_or(name);
    let split = (0..trimmed.len())
        .rev()
        .find(|&i| trimmed[i] == b'/' && i <= u.prefix.len() && name.len() - i - 1 <= u.name.len() && i > 0);
    if let Some(i) = split {
        u.prefix[..i].copy_from_slice(&name[..i]);
        let rest = &name[i + 1..];
        u.name[..rest.len()].copy_from_slice(rest);
        return true;
    }
    let n = u.name.len();
    u.name.copy_from_slice(&name[..n]);
    false
}

/// Reads exactly `left` bytes, failing if the file ends early; stops at `left` if it grew.
struct Exact<'a> {
    inner: File,
    left: u64,
    path: &'a Path,
}

impl Read for Exact<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.left == 0 {
            return Ok(0);
        }
        let max = buf.len().min(usize::try_from(self.left).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..max])?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("{} shrank while being written to the layer", self.path.display()),
            ));
        }
        self.left -= n as u64;
        Ok(n)
    }
}

/// Writes `entries` (sorted) from `src` as a tar stream into `out`.
pub fn write_tar<W: Write>(
    out: W,
    src: &Path,
    entries: &[LayerEntry],
    mtime: MtimePolicy,
    ids: &IdMaps,
) -> Result<W, TarWriteError> {
    let mut w = TarLayerWriter::new(out, src, mtime, ids.clone());
    for e in entries {
        w.append(e)?;
    }
    w.finish()
}

/// Sorts entries into tar order (component-wise path order) and drops duplicates.
pub fn sort_entries(entries: &mut Vec<LayerEntry>) {
    entries.sort_by_key(|e| e.tar_path());
    entries.dedup_by_key(|e| e.tar_path());
}
