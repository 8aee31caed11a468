//! Shared helpers for layer and image tests: raw (hostile) archive builders,
//! tree fixtures and a tree comparison.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::os::unix::fs::{symlink, FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use tar::{EntryType, Header};

/// One entry of a hand-built archive; names are written raw (no sanitising).
pub enum Raw<'a> {
    Dir(&'a str),
    File(&'a str, &'a [u8]),
    Symlink(&'a str, &'a str),
    Hardlink(&'a str, &'a str),
    Char(&'a str, u32, u32),
}

fn raw_header(name: &str, kind: EntryType, size: u64, link: &str) -> Header {
    let mut h = Header::new_ustar();
    let u = h.as_ustar_mut().unwrap();
    u.name[..name.len()].copy_from_slice(name.as_bytes());
    u.linkname[..link.len()].copy_from_slice(link.as_bytes());
    h.set_entry_type(kind);
    h.set_size(size);
    h.set_mode(if kind == EntryType::Directory { 0o755 } else { 0o644 });
    h.set_mtime(1_600_000_000);
    h.set_uid(0);
    h.set_gid(0);
    h.set_cksum();
    h
}

/// A ustar header with every numeric field set.
pub fn header(path: &str, kind: EntryType, mode: u32, size: u64) -> Header {
    let mut h = Header::new_ustar();
    h.set_path(path).unwrap();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_size(size);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h.set_cksum();
    h
}

/// Builds an uncompressed tar from raw entries.
pub fn raw_tar(entries: &[Raw<'_>]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for e in entries {
        let (h, data): (Header, &[u8]) = match *e {
            Raw::Dir(n) => (raw_header(n, EntryType::Directory, 0, ""), b""),
            Raw::File(n, d) => (raw_header(n, EntryType::Regular, d.len() as u64, ""), d),
            Raw::Symlink(n, t) => (raw_header(n, EntryType::Symlink, 0, t), b""),
            Raw::Hardlink(n, t) => (raw_header(n, EntryType::Link, 0, t), b""),
            Raw::Char(n, ma, mi) => {
                let mut h = raw_header(n, EntryType::Char, 0, "");
                h.set_device_major(ma).unwrap();
                h.set_device_minor(mi).unwrap();
                h.set_cksum();
                (h, b"")
            }
        };
        b.append(&h, data).unwrap();
    }
    b.into_inner().unwrap()
}

/// Every path under `dir` (relative), for "nothing written outside" checks.
pub fn list_tree(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = walkdir::WalkDir::new(dir)
        .min_depth(1)
        .sort_by_file_name()
        .into_iter()
        .map(|e| e.unwrap().path().strip_prefix(dir).unwrap().to_path_buf())
        .collect();
    v.sort();
    v
}

/// A tree with most of what layers must carry. Needs root for owners and devices.
pub fn rich_tree(root: &Path) {
    let w = |p: &str, data: &[u8], mode: u32| {
        let p = root.join(p);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, data).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
    };
    w("bin/tool", b"#!/bin/sh\necho hi\n", 0o4755);
    w("etc/config", b"key=value\n", 0o640);
    w("home/user/notes.txt", &b"lorem ipsum ".repeat(5000), 0o600);
    w("empty", b"", 0o644);
    let long = format!("deep/{}/{}", "d".repeat(120), "f".repeat(150));
    w(&long, b"long name", 0o644);
    std::fs::create_dir_all(root.join("tmp")).unwrap();
    std::fs::set_permissions(root.join("tmp"), std::fs::Permissions::from_mode(0o1777)).unwrap();
    std::fs::create_dir_all(root.join("var/empty")).unwrap();
    symlink("../bin/tool", root.join("etc/tool-link")).unwrap();
    symlink(format!("/{}", "t".repeat(130)), root.join("etc/long-link")).unwrap();
    std::fs::hard_link(root.join("bin/tool"), root.join("bin/tool-hard")).unwrap();
    std::os::unix::fs::chown(root.join("home/user"), Some(1000), Some(1000)).unwrap();
    std::os::unix::fs::chown(root.join("home/user/notes.txt"), Some(1000), Some(100)).unwrap();
    xattr::set(root.join("etc/config"), "user.comment", b"hello").unwrap();
    // security.capability v2 for cap_net_bind_service, as setcap writes it.
    let cap: [u8; 20] = [0, 0, 0, 2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    let _ = xattr::set(root.join("bin/tool"), "security.capability", &cap);
    std::fs::create_dir_all(root.join("dev")).unwrap();
    let status = std::process::Command::new("mknod").arg(root.join("dev/null")).args(["c", "1", "3"]).status();
    assert!(status.unwrap().success(), "mknod needs root");
    let status = std::process::Command::new("mkfifo").arg(root.join("dev/fifo")).status();
    assert!(status.unwrap().success());
    // Fix mtimes after creating children.
    for p in list_tree(root).into_iter().rev() {
        let p = root.join(p);
        let t = filetime_secs(1_650_000_000);
        let _ = rustix::fs::utimensat(rustix::fs::CWD, &p, &t, rustix::fs::AtFlags::SYMLINK_NOFOLLOW);
    }
}

pub fn filetime_secs(s: i64) -> rustix::fs::Timestamps {
    let t = rustix::fs::Timespec { tv_sec: s, tv_nsec: 0 };
    rustix::fs::Timestamps { last_access: t, last_modification: t }
}

/// What a comparison looks at.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Compare {
    /// Everything incl. owners, mtimes and xattrs.
    Full,
    /// Skip owners, mtimes, device nodes and non-user xattrs (rootless unpackers).
    Rootless,
}

#[derive(Debug, PartialEq, Eq)]
struct Node {
    kind: String,
    mode: u32,
    owner: Option<(u32, u32)>,
    mtime: Option<i64>,
    content: Option<Vec<u8>>,
    xattrs: BTreeMap<String, Vec<u8>>,
    rdev: u64,
}

fn describe(root: &Path, how: Compare) -> (BTreeMap<PathBuf, Node>, Vec<Vec<PathBuf>>) {
    let mut nodes = BTreeMap::new();
    let mut inodes: HashMap<u64, Vec<PathBuf>> = HashMap::new();
    for rel in list_tree(root) {
        let p = root.join(&rel);
        let md = std::fs::symlink_metadata(&p).unwrap();
        let ft = md.file_type();
        if how == Compare::Rootless && (ft.is_char_device() || ft.is_block_device() || rel.starts_with("dev")) {
            continue; // rootless unpackers cannot create device nodes
        }
        let kind = [
            (ft.is_dir(), "dir"),
            (ft.is_file(), "file"),
            (ft.is_symlink(), "symlink"),
            (ft.is_char_device(), "char"),
            (ft.is_block_device(), "block"),
            (ft.is_fifo(), "fifo"),
        ]
        .iter()
        .find(|(y, _)| *y)
        .map_or("other", |(_, k)| k)
        .to_string();
        let content = if ft.is_file() {
            Some(std::fs::read(&p).unwrap())
        } else if ft.is_symlink() {
            Some(std::fs::read_link(&p).unwrap().into_os_string().into_encoded_bytes())
        } else {
            None
        };
        if ft.is_file() && md.nlink() > 1 {
            inodes.entry(md.ino()).or_default().push(rel.clone());
        }
        let mut xattrs = BTreeMap::new();
        if !ft.is_symlink() {
            for n in xattr::list(&p).unwrap() {
                let n = n.to_string_lossy().to_string();
                let keep = n.starts_with("user.") || (how == Compare::Full && n == "security.capability");
                // umoci --rootless records owners in user.rootlesscontainers, as we do in user.rbuild.*
                if keep && !n.starts_with("user.rbuild.") && n != "user.rootlesscontainers" {
                    xattrs.insert(n.clone(), xattr::get(&p, &n).unwrap().unwrap_or_default());
                }
            }
        }
        let full = how == Compare::Full;
        nodes.insert(
            rel,
            Node {
                kind,
                mode: if ft.is_symlink() { 0 } else { md.mode() & 0o7777 },
                owner: full.then_some((md.uid(), md.gid())),
                mtime: (full && !ft.is_dir()).then_some(md.mtime()),
                content,
                xattrs,
                rdev: md.rdev(),
            },
        );
    }
    let mut groups: Vec<Vec<PathBuf>> = inodes.into_values().collect();
    groups.sort();
    (nodes, groups)
}

/// Asserts two trees hold the same paths, types, modes, contents, symlink targets,
/// hardlink groups, (user) xattrs and — with [`Compare::Full`] — owners and mtimes.
pub fn assert_same_tree(a: &Path, b: &Path, how: Compare) {
    let (na, ga) = describe(a, how);
    let (nb, gb) = describe(b, how);
    let ka: Vec<_> = na.keys().collect();
    let kb: Vec<_> = nb.keys().collect();
    assert_eq!(ka, kb, "paths differ");
    for (k, va) in &na {
        assert_eq!(Some(va), nb.get(k), "{} differs", k.display());
    }
    assert_eq!(ga, gb, "hardlink groups differ");
}
