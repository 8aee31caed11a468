//! COPY and ADD: sources from the context (`.dockerignore`, wildcards, `--parents`,
//! `--exclude`), from an earlier stage's or an image's root (`--from`), heredocs, and for ADD
//! local archives and URLs ([`super::add`]); Docker's destination rules; `--chown` (resolved
//! in the stage's own passwd/group) and `--chmod`; mtimes kept, directories' included.

use std::collections::HashMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use rustix::fs::{self as rfs, AtFlags, Timespec, Timestamps};

use super::add::{self, AddError, Checksum};
use super::copy_source::{self, Excludes, Selected, SourceRoot};
use super::{absolute, InstructionError, StepContext, StepEffect};
use crate::dockerfile::instruction::Copy;
use crate::image::ImageConfig;
use crate::layer::exclusions::Exclusions;
use crate::layer::ownership::{OwnerRecord, OWNER_XATTR};
use crate::layer::root_path::{Escape, MissingDirs, RootDir};
use crate::layer::unpack::UnpackOptions;
use crate::layer::verify::unpack_verified;
use crate::sandbox::resolve_user;

/// Owner and mode of copied files: `--chown`/`--chmod`, else from the source.
#[derive(Clone, Copy)]
struct Attrs {
    /// `--chown` ids; `None` gives context files 0:0 and keeps the owner of `--from` files
    /// (BuildKit copies their ownership).
    chown: Option<(u32, u32)>,
    chmod: Option<u32>,
}

/// Copies the sources of a COPY or ADD into the stage root.
pub(super) fn copy(
    c: &Copy,
    keyword: &'static str,
    config: &ImageConfig,
    ctx: &StepContext<'_>,
) -> Result<StepEffect, InstructionError> {
    let is_add = keyword == "ADD";
    let checksum = check_remote(c, is_add)?;
    let attrs = attrs(c, ctx)?;
    let dest = absolute(&c.dest, config);
    // A wildcard that matches one entry copies it to `dest` as named (BuildKit's
    // copyWithWildcard); several matches, like several sources, need a directory.
    let many = c.sources.len() > 1;
    let dest_is_dir = c.dest.ends_with('/') || c.dest == "." || c.dest.ends_with("/.") || many || c.parents;
    let root = RootDir::open(ctx.rootfs).map_err(|source| InstructionError::Resolve { path: dest.clone(), source })?;
    let image_root; // keeps an unpacked `--from` image alive while copying
    let (source_root, from_root) = match &c.from {
        None => (SourceRoot::Context(ctx.exec.context), false),
        Some(from) => {
            image_root = from_root_dir(from, ctx)?;
            (SourceRoot::Root { dir: image_root.path(), name: from }, true)
        }
    };
    let mut copier = Copier { root: &root, ctx, attrs, from_root, dir_times: Vec::new() };
    let excludes = Excludes::new(&c.exclude)?;
    for src in &c.sources {
        if let Some(name) = src.strip_prefix("<<") {
            let (name, content) = heredoc(c, src, name)?;
            let target = copier.file_target(&dest, &name, dest_is_dir)?;
            copier.inline(&content, &target)?;
        } else if is_add && add::is_url(src) {
            copier.download(src, checksum.as_ref(), &dest, dest_is_dir)?;
        } else {
            let selected = copy_source::select(source_root, src, c.parents, &excludes)?;
            let into_dir = dest_is_dir || selected.len() > 1;
            for selected in selected {
                copier.selected(source_root, &selected, &excludes, &dest, into_dir, is_add)?;
            }
        }
    }
    copier.finish()?;
    Ok(StepEffect::Filesystem)
}

/// Checks the flags that only make sense for remote sources; returns the parsed checksum.
fn check_remote(c: &Copy, is_add: bool) -> Result<Option<Checksum>, InstructionError> {
    if let Some(git) = c.sources.iter().find(|s| add::is_git(s)) {
        return Err(AddError::Git { source_url: git.clone() }.into());
    }
    if !is_add {
        if let Some(url) = c.sources.iter().find(|s| add::is_url(s)) {
            return Err(AddError::CopyUrl { url: url.clone() }.into());
        }
    }
    if c.keep_git_dir {
        return Err(AddError::KeepGitDir.into());
    }
    let Some(value) = &c.checksum else { return Ok(None) };
    if c.sources.len() != 1 {
        return Err(AddError::ChecksumUse { reason: "can't be specified for multiple sources" }.into());
    }
    if !c.sources.iter().all(|s| add::is_url(s)) {
        return Err(AddError::ChecksumUse { reason: "can't be specified for non-HTTP(S) sources" }.into());
    }
    Ok(Some(Checksum::parse(value)?))
}

fn attrs(c: &Copy, ctx: &StepContext<'_>) -> Result<Attrs, InstructionError> {
    let chown = match c.chown.as_deref() {
        None => None,
        Some(spec) => {
            let user = resolve_user(ctx.rootfs, spec)?;
            // Docker: a user without a group uses the uid as the gid.
            Some(if spec.contains(':') { (user.uid, user.gid) } else { (user.uid, user.uid) })
        }
    };
    let chmod = c
        .chmod
        .as_deref()
        .map(|m| {
            u32::from_str_radix(m, 8).ok().filter(|m| *m <= 0o7777).ok_or(InstructionError::Chmod { value: m.into() })
        })
        .transpose()?;
    Ok(Attrs { chown, chmod })
}

/// A heredoc source's file name and body (expanded by the plan when the delimiter was unquoted).
fn heredoc(c: &Copy, src: &str, name: &str) -> Result<(String, String), InstructionError> {
    let name = name.trim_start_matches('-').trim_matches(['"', '\'']);
    let doc = c.heredocs.iter().find(|h| h.name == name).ok_or_else(|| InstructionError::SourceMissing {
        source_path: src.into(),
        place: "the heredocs of this instruction".into(),
    })?;
    Ok((name.to_string(), doc.body()))
}

/// The directory a `--from` reads: an earlier stage's root, or an image unpacked into a
/// scratch directory under the work dir (removed when the step ends).
fn from_root_dir(from: &str, ctx: &StepContext<'_>) -> Result<FromRoot, InstructionError> {
    let stage = ctx
        .plan
        .stages
        .iter()
        .find(|s| s.name.as_deref().is_some_and(|n| n.eq_ignore_ascii_case(from)) || s.index.to_string() == from);
    if let Some(stage) = stage {
        let output = ctx
            .earlier
            .get(stage.index)
            .and_then(Option::as_ref)
            .ok_or_else(|| InstructionError::UnknownStage { name: from.into() })?;
        return Ok(FromRoot::Stage(output.rootfs.clone()));
    }
    let image = ctx.bases.image(from).ok_or_else(|| InstructionError::ImageNotPulled { image: from.into() })?;
    let dir = tempfile::Builder::new()
        .prefix("copy-from-")
        .tempdir_in(&ctx.exec.work_dir)
        .map_err(InstructionError::io("create a directory in", &ctx.exec.work_dir))?;
    let root = RootDir::open(dir.path()).map_err(|source| InstructionError::Resolve { path: from.into(), source })?;
    let opts = UnpackOptions { ownership: ctx.exec.identity.unpack_ownership() };
    // Bases are resolved without their layers; fetch the ones this image needs.
    if let Some(remote) = ctx.exec.remote {
        remote
            .fetch(ctx.exec.store, &image.layers, |_| false)
            .map_err(|source| InstructionError::FromImageFetch { image: from.into(), source: Box::new(source) })?;
    }
    for layer in &image.layers {
        let d = &layer.descriptor;
        unpack_verified(
            &root,
            &layer.blob,
            (d.codec, d.digest.digest(), d.diff_id.digest()),
            &opts,
            &Exclusions::none(),
        )
        .map_err(|source| InstructionError::FromImage { image: from.into(), source: Box::new(source) })?;
    }
    Ok(FromRoot::Image(dir))
}

/// The root a `--from` reads.
enum FromRoot {
    Stage(PathBuf),
    Image(tempfile::TempDir),
}

impl FromRoot {
    fn path(&self) -> &Path {
        match self {
            Self::Stage(p) => p,
            Self::Image(d) => d.path(),
        }
    }
}

struct Copier<'a> {
    root: &'a RootDir,
    ctx: &'a StepContext<'a>,
    attrs: Attrs,
    /// Sources come from a stage or image root (their owners are kept without `--chown`).
    from_root: bool,
    /// Directories whose mtime is set last (creating children changes it).
    dir_times: Vec<(PathBuf, SystemTime)>,
}

impl Copier<'_> {
    /// Where a single file goes: into `dest` when it is (or must be) a directory, else `dest`.
    fn file_target(&self, dest: &str, name: &str, dest_is_dir: bool) -> Result<String, InstructionError> {
        let existing_dir = self.resolve(dest).ok().and_then(|h| fs::metadata(h).ok()).is_some_and(|m| m.is_dir());
        Ok(if dest_is_dir || existing_dir {
            format!("{}/{name}", dest.trim_end_matches('/'))
        } else {
            dest.to_string()
        })
    }

    /// Host path of a container path, parents created, every symlink resolved inside the root.
    fn resolve(&self, container: &str) -> Result<PathBuf, InstructionError> {
        self.create_parents(container)?;
        copy_source::follow_in_root(self.root, container, MissingDirs::Create)
            .map_err(|source| InstructionError::Resolve { path: container.into(), source })
    }

    /// With `--chown`, creates the missing parent directories of `container` owned by that
    /// user, mode 0755 (fsutil's `MkdirAll` with the chown user; buildah does the same).
    /// Without it, resolving creates them as 0:0, which is already what Docker gives.
    fn create_parents(&self, container: &str) -> Result<(), InstructionError> {
        let Some((uid, gid)) = self.attrs.chown else { return Ok(()) };
        let parts: Vec<&str> = container.split('/').filter(|c| !c.is_empty() && *c != ".").collect();
        let mut prefix = String::new();
        for part in parts.iter().take(parts.len().saturating_sub(1)) {
            prefix = format!("{prefix}/{part}");
            let err = |source| InstructionError::Resolve { path: prefix.clone(), source };
            let host = copy_source::follow_in_root(self.root, &prefix, MissingDirs::Fail).map_err(err)?;
            if fs::symlink_metadata(&host).is_ok() {
                continue;
            }
            fs::create_dir(&host).map_err(InstructionError::io("create directory", &host))?;
            self.owner(&host, uid, gid, 0o755, true)?;
        }
        Ok(())
    }

    /// Host path of an entry below a copied directory: parents resolved, the final name not
    /// followed (an image symlink in the way is replaced, as fsutil does).
    fn resolve_entry(&self, container: &str) -> Result<PathBuf, InstructionError> {
        let r = self
            .root
            .resolve_parent(Path::new(container), Escape::Clamp, MissingDirs::Create)
            .map_err(|source| InstructionError::Resolve { path: container.into(), source })?;
        Ok(r.dir_path.join(r.name))
    }

    /// Copies one top-level source: a directory's contents, an archive's (ADD), or a file.
    fn selected(
        &mut self,
        root: SourceRoot<'_>,
        sel: &Selected,
        excludes: &Excludes,
        dest: &str,
        dest_is_dir: bool,
        is_add: bool,
    ) -> Result<(), InstructionError> {
        let meta = fs::metadata(&sel.host).map_err(InstructionError::io("read", &sel.host))?;
        let base = dest.trim_end_matches('/');
        if let Some(keep) = &sel.keep {
            self.parent_dirs(&sel.host, base, keep)?;
        }
        if meta.is_dir() {
            let target = match &sel.keep {
                Some(keep) if !keep.is_empty() => format!("{base}/{keep}"),
                _ => base.to_string(),
            };
            return self.tree(root, sel, excludes, &target, &meta);
        }
        if is_add && !self.from_root {
            if let Some(compression) = add::archive_compression(&sel.host) {
                let host = self.resolve(if base.is_empty() { "/" } else { base })?;
                self.ensure_dir(&host)?;
                let opts = UnpackOptions { ownership: self.ctx.exec.identity.unpack_ownership() };
                return Ok(add::extract(&sel.host, compression, &host, &opts)?);
            }
        }
        let target = match &sel.keep {
            Some(keep) => format!("{base}/{keep}"),
            None => self.file_target(dest, &sel.name, dest_is_dir)?,
        };
        let host = self.resolve(&target)?;
        self.entry(&sel.host, &meta, &host)
    }

    /// `--parents`: creates the directories between `base` and `keep`'s last component,
    /// with the metadata of the matching source directories.
    fn parent_dirs(&mut self, source: &Path, base: &str, keep: &str) -> Result<(), InstructionError> {
        let parts: Vec<&str> = keep.split('/').filter(|p| !p.is_empty()).collect();
        let mut source_dirs: Vec<&Path> = source.ancestors().skip(1).take(parts.len().saturating_sub(1)).collect();
        source_dirs.reverse();
        let mut container = base.to_string();
        for (part, src_dir) in parts.iter().zip(source_dirs) {
            container = format!("{container}/{part}");
            let host = self.resolve_entry(&container)?;
            if !host.is_dir() {
                let meta = fs::metadata(src_dir).map_err(InstructionError::io("read", src_dir))?;
                self.entry(src_dir, &meta, &host)?;
            }
        }
        Ok(())
    }

    /// Copies the contents of directory source `sel` into `dest` (created like the source
    /// directory when missing; an existing destination keeps its own metadata).
    fn tree(
        &mut self,
        root: SourceRoot<'_>,
        sel: &Selected,
        excludes: &Excludes,
        dest: &str,
        meta: &fs::Metadata,
    ) -> Result<(), InstructionError> {
        let dest_host = self.resolve(if dest.is_empty() { "/" } else { dest })?;
        if !dest_host.exists() {
            // BuildKit's --chmod applies to what is copied, not to the destination directory
            // it creates for a directory source.
            let chmod = self.attrs.chmod.take();
            let made = self.entry(&sel.host, meta, &dest_host);
            self.attrs.chmod = chmod;
            made?;
        }
        // Files hard-linked to each other in the source stay linked (fsutil's inode map).
        let mut linked: HashMap<(u64, u64), PathBuf> = HashMap::new();
        for file in copy_source::walk(root, sel, excludes)? {
            let below = file.host.strip_prefix(&sel.host).map(|p| p.to_string_lossy().into_owned()).unwrap_or_default();
            let target = self.resolve_entry(&format!("{dest}/{below}"))?;
            let meta = file.host.symlink_metadata().map_err(InstructionError::io("read", &file.host))?;
            if meta.is_file() && meta.nlink() > 1 {
                if let Some(first) = linked.get(&(meta.dev(), meta.ino())) {
                    remove_existing(&target)?;
                    fs::hard_link(first, &target).map_err(InstructionError::io("link", &target))?;
                    continue;
                }
                linked.insert((meta.dev(), meta.ino()), target.clone());
            }
            self.entry(&file.host, &meta, &target)?;
        }
        Ok(())
    }

    /// Copies one file, directory (not its contents) or symlink to the host path `host`.
    fn entry(&mut self, src: &Path, meta: &fs::Metadata, host: &Path) -> Result<(), InstructionError> {
        let ft = meta.file_type();
        if ft.is_dir() {
            if !host.is_dir() {
                remove_existing(host)?;
                fs::create_dir(host).map_err(InstructionError::io("create directory", host))?;
            }
            self.set_attrs(src, meta, host, true)?;
            if let Ok(modified) = meta.modified() {
                self.dir_times.push((host.to_path_buf(), modified));
            }
            return Ok(());
        }
        remove_existing(host)?;
        if ft.is_symlink() {
            let link = fs::read_link(src).map_err(InstructionError::io("read link", src))?;
            std::os::unix::fs::symlink(&link, host).map_err(InstructionError::io("create symlink", host))?;
            let (uid, gid, _) = self.owner_mode(src, meta, false);
            self.ctx
                .exec
                .identity
                .set_link_owner(host, uid, gid)
                .map_err(InstructionError::io("set the owner of", host))?;
            return set_link_mtime(host, meta);
        }
        if !ft.is_file() {
            return Err(InstructionError::unsupported(format!("copying the special file {}", src.display())));
        }
        fs::copy(src, host).map_err(InstructionError::io("copy to", host))?;
        self.set_attrs(src, meta, host, false)?;
        if let Ok(modified) = meta.modified() {
            set_mtime(host, modified)?;
        }
        Ok(())
    }

    fn inline(&mut self, content: &str, target: &str) -> Result<(), InstructionError> {
        let host = self.resolve(target)?;
        remove_existing(&host)?;
        fs::write(&host, content).map_err(InstructionError::io("write", &host))?;
        let (uid, gid) = self.attrs.chown.unwrap_or((0, 0));
        self.owner(&host, uid, gid, self.attrs.chmod.unwrap_or(0o644), false)
    }

    /// ADD of a URL: downloaded next to the stage root, then moved into place (mode 0600
    /// unless `--chmod`, mtime from `Last-Modified`); never extracted.
    fn download(
        &mut self,
        url: &str,
        checksum: Option<&Checksum>,
        dest: &str,
        dest_is_dir: bool,
    ) -> Result<(), InstructionError> {
        let work = &self.ctx.exec.work_dir;
        let download = add::download(url, checksum, work, &self.ctx.exec.cancel)?;
        let target = self.file_target(dest, &add::url_file_name(url), dest_is_dir)?;
        let host = self.resolve(&target)?;
        remove_existing(&host)?;
        download.file.persist(&host).map_err(|e| InstructionError::io("move the download to", &host)(e.error))?;
        let (uid, gid) = self.attrs.chown.unwrap_or((0, 0));
        self.owner(&host, uid, gid, self.attrs.chmod.unwrap_or(0o600), false)?;
        match download.modified {
            Some(modified) => set_mtime(&host, modified),
            None => Ok(()),
        }
    }

    /// Creates the directory `host` (mode 0755, the `--chown` owner) when it is missing.
    fn ensure_dir(&self, host: &Path) -> Result<(), InstructionError> {
        if host.is_dir() {
            return Ok(());
        }
        fs::create_dir(host).map_err(InstructionError::io("create directory", host))?;
        let (uid, gid) = self.attrs.chown.unwrap_or((0, 0));
        self.owner(host, uid, gid, 0o755, true)
    }

    /// Source owner and mode: a `--from` root's recorded owner (rootless) or on-disk owner
    /// mapped to container ids; context files are 0:0 with their own mode.
    fn owner_mode(&self, src: &Path, meta: &fs::Metadata, is_dir: bool) -> (u32, u32, u32) {
        if !self.from_root {
            return (0, 0, meta.mode() & 0o7777);
        }
        let record = xattr::get(src, OWNER_XATTR).ok().flatten().and_then(|v| OwnerRecord::parse(&v).ok());
        match record {
            Some(r) => (r.uid, r.gid, r.effective_mode(meta.mode(), is_dir)),
            None => {
                let (uid, gid) = self.ctx.exec.identity.id_maps().container_owner(meta.uid(), meta.gid());
                (uid, gid, meta.mode() & 0o7777)
            }
        }
    }

    fn set_attrs(&self, src: &Path, meta: &fs::Metadata, host: &Path, is_dir: bool) -> Result<(), InstructionError> {
        let (uid, gid, mode) = self.owner_mode(src, meta, is_dir);
        let (uid, gid) = self.attrs.chown.unwrap_or((uid, gid));
        self.owner(host, uid, gid, self.attrs.chmod.unwrap_or(mode), is_dir)
    }

    fn owner(&self, host: &Path, uid: u32, gid: u32, mode: u32, is_dir: bool) -> Result<(), InstructionError> {
        self.ctx
            .exec
            .identity
            .set_owner(host, uid, gid, mode, is_dir)
            .map_err(InstructionError::io("set the owner and mode of", host))
    }

    /// Sets directory mtimes, children before parents.
    fn finish(&mut self) -> Result<(), InstructionError> {
        for (dir, modified) in self.dir_times.drain(..).rev() {
            set_mtime(&dir, modified)?;
        }
        Ok(())
    }
}

fn set_mtime(host: &Path, modified: SystemTime) -> Result<(), InstructionError> {
    let file = fs::File::open(host).map_err(InstructionError::io("open", host))?;
    file.set_modified(modified).map_err(InstructionError::io("set the mtime of", host))
}

fn set_link_mtime(host: &Path, meta: &fs::Metadata) -> Result<(), InstructionError> {
    let t = Timespec { tv_sec: meta.mtime(), tv_nsec: meta.mtime_nsec() };
    rfs::utimensat(rfs::CWD, host, &Timestamps { last_access: t, last_modification: t }, AtFlags::SYMLINK_NOFOLLOW)
        .map_err(|e| InstructionError::io("set the mtime of", host)(e.into()))
}

/// Removes a non-directory at `host` so it can be replaced (a directory stays).
fn remove_existing(host: &Path) -> Result<(), InstructionError> {
    match fs::symlink_metadata(host) {
        Ok(m) if !m.is_dir() => fs::remove_file(host).map_err(InstructionError::io("replace", host)),
        _ => Ok(()),
    }
}
