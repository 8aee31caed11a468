//! COPY and ADD of local files: sources from the context (`.dockerignore` applied, wildcards),
//! from an earlier stage's root (`--from`) or heredocs; Docker's destination rules;
//! `--chown` (resolved in the stage's own passwd/group) and `--chmod`.

use std::fs;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::{absolute, InstructionError, StepContext, StepEffect};
use crate::dockerfile::instruction::Copy;
use crate::executor::context::has_wildcard;
use crate::image::ImageConfig;
use crate::layer::root_path::{Escape, MissingDirs, RootDir};
use crate::sandbox::resolve_user;

/// One source to copy.
enum Source {
    /// A file, directory or symlink on the host; `ignore_prefix` is its context-relative
    /// path when `.dockerignore` applies to what is inside it.
    Path { host: PathBuf, name: String, ignore_prefix: Option<String> },
    /// A heredoc's body.
    Inline { name: String, content: String },
}

/// How copied files are owned and moded.
#[derive(Clone, Copy)]
struct Attrs {
    uid: u32,
    gid: u32,
    chmod: Option<u32>,
}

/// Copies the sources into the stage root.
pub(super) fn copy(c: &Copy, keyword: &'static str, config: &ImageConfig, ctx: &StepContext<'_>) -> Result<StepEffect, InstructionError> {
    reject_unsupported(c, keyword)?;
    let attrs = attrs(c, ctx)?;
    let sources = sources(c, keyword, ctx)?;
    let dest = absolute(&c.dest, config);
    let many = c.sources.len() > 1 || c.sources.iter().any(|s| has_wildcard(s));
    let dest_is_dir = c.dest.ends_with('/') || many;
    let root = RootDir::open(ctx.rootfs).map_err(|source| InstructionError::Resolve { path: dest.clone(), source })?;
    let copier = Copier { root: &root, ctx, attrs };
    for source in &sources {
        match source {
            Source::Path { host, name, ignore_prefix } => {
                let meta = fs::symlink_metadata(host).map_err(InstructionError::io("read", host))?;
                if meta.is_dir() {
                    copier.tree(host, &dest, ignore_prefix.as_deref())?;
                } else {
                    let target = copier.resolve(&copier.file_target(&dest, name, dest_is_dir)?)?;
                    copier.entry(host, &meta, &target)?;
                }
            }
            Source::Inline { name, content } => {
                let target = copier.file_target(&dest, name, dest_is_dir)?;
                copier.inline(content, &target)?;
            }
        }
    }
    Ok(StepEffect::Filesystem)
}

fn reject_unsupported(c: &Copy, keyword: &'static str) -> Result<(), InstructionError> {
    if c.parents {
        return Err(InstructionError::unsupported(format!("{keyword} --parents")));
    }
    if !c.exclude.is_empty() {
        return Err(InstructionError::unsupported(format!("{keyword} --exclude")));
    }
    if c.checksum.is_some() {
        return Err(InstructionError::unsupported("ADD --checksum"));
    }
    if keyword == "ADD" {
        if let Some(url) = c.sources.iter().find(|s| s.contains("://") || s.starts_with("git@")) {
            return Err(InstructionError::unsupported(format!("ADD of a URL or git repository ({url})")));
        }
    }
    Ok(())
}

fn attrs(c: &Copy, ctx: &StepContext<'_>) -> Result<Attrs, InstructionError> {
    let (uid, gid) = match c.chown.as_deref() {
        None => (0, 0),
        Some(spec) => {
            let user = resolve_user(ctx.rootfs, spec)?;
            // Docker: a user without a group uses the uid as the gid.
            if spec.contains(':') { (user.uid, user.gid) } else { (user.uid, user.uid) }
        }
    };
    let chmod = c
        .chmod
        .as_deref()
        .map(|m| u32::from_str_radix(m, 8).ok().filter(|m| *m <= 0o7777).ok_or(InstructionError::Chmod { value: m.into() }))
        .transpose()?;
    Ok(Attrs { uid, gid, chmod })
}

fn sources(c: &Copy, keyword: &'static str, ctx: &StepContext<'_>) -> Result<Vec<Source>, InstructionError> {
    let mut out = Vec::new();
    for src in &c.sources {
        if let Some(name) = src.strip_prefix("<<") {
            let name = name.trim_start_matches('-').trim_matches(['"', '\'']);
            let doc = c.heredocs.iter().find(|h| h.name == name).ok_or_else(|| InstructionError::SourceMissing {
                source_path: src.clone(),
                place: "the heredocs of this instruction".into(),
            })?;
            if doc.expand && doc.content.contains('$') {
                return Err(InstructionError::unsupported(format!("variable expansion in the {keyword} heredoc <<{name} (quote the delimiter)")));
            }
            let content = if doc.chomp { strip_tabs(&doc.content) } else { doc.content.clone() };
            out.push(Source::Inline { name: name.to_string(), content });
            continue;
        }
        match &c.from {
            Some(from) => out.push(stage_source(from, src, keyword, ctx)?),
            None => out.extend(context_sources(src, keyword, ctx)?),
        }
    }
    Ok(out)
}

fn strip_tabs(content: &str) -> String {
    content.split_inclusive('\n').map(|l| l.trim_start_matches('\t')).collect()
}

fn context_sources(src: &str, keyword: &'static str, ctx: &StepContext<'_>) -> Result<Vec<Source>, InstructionError> {
    let context = ctx.exec.context;
    let selected = context.select(src)?;
    if selected.is_empty() {
        return Err(InstructionError::SourceMissing { source_path: src.into(), place: "the build context".into() });
    }
    selected
        .into_iter()
        .map(|rel| {
            let host = context.dir().join(&rel);
            if fs::symlink_metadata(&host).is_err() {
                return Err(InstructionError::SourceMissing { source_path: src.into(), place: "the build context".into() });
            }
            if keyword == "ADD" && is_archive(&host) {
                return Err(InstructionError::unsupported(format!("ADD of a local archive ({src}), which would be extracted")));
            }
            let name = Path::new(&rel).file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            Ok(Source::Path { host, name, ignore_prefix: Some(rel) })
        })
        .collect()
}

/// Whether a file starts like a tar or a compressed stream (ADD would extract it).
fn is_archive(path: &Path) -> bool {
    let Ok(mut f) = fs::File::open(path) else { return false };
    let mut head = [0u8; 262];
    let n = f.read(&mut head).unwrap_or(0);
    let head = head.get(..n).unwrap_or_default();
    let magic: [&[u8]; 4] = [&[0x1f, 0x8b], b"BZh", &[0xfd, b'7', b'z', b'X', b'Z', 0], &[0x28, 0xb5, 0x2f, 0xfd]];
    magic.iter().any(|m| head.starts_with(m)) || head.get(257..262) == Some(b"ustar".as_slice())
}

fn stage_source(from: &str, src: &str, keyword: &'static str, ctx: &StepContext<'_>) -> Result<Source, InstructionError> {
    let stage = ctx
        .plan
        .stages
        .iter()
        .find(|s| s.name.as_deref().is_some_and(|n| n.eq_ignore_ascii_case(from)) || s.index.to_string() == from);
    let Some(stage) = stage else {
        return Err(InstructionError::unsupported(format!("{keyword} --from an image ({from})")));
    };
    let output = ctx.earlier.get(stage.index).and_then(Option::as_ref).ok_or_else(|| InstructionError::UnknownStage { name: from.into() })?;
    if has_wildcard(src) {
        return Err(InstructionError::unsupported(format!("wildcards in {keyword} --from sources ({src})")));
    }
    let root = RootDir::open(&output.rootfs).map_err(|source| InstructionError::Resolve { path: src.into(), source })?;
    let host = root
        .resolve_host_path(Path::new(src), Escape::Clamp, MissingDirs::Fail)
        .map_err(|_| InstructionError::SourceMissing { source_path: src.into(), place: format!("stage {from}") })?;
    if fs::symlink_metadata(&host).is_err() {
        return Err(InstructionError::SourceMissing { source_path: src.into(), place: format!("stage {from}") });
    }
    let name = Path::new(src).file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    Ok(Source::Path { host, name, ignore_prefix: None })
}

struct Copier<'a> {
    root: &'a RootDir,
    ctx: &'a StepContext<'a>,
    attrs: Attrs,
}

impl Copier<'_> {
    /// Where a single file goes: into `dest` when it is (or must be) a directory, else `dest`.
    fn file_target(&self, dest: &str, name: &str, dest_is_dir: bool) -> Result<String, InstructionError> {
        let existing_dir = self
            .resolve(dest)
            .ok()
            .and_then(|h| fs::metadata(h).ok())
            .is_some_and(|m| m.is_dir());
        Ok(if dest_is_dir || existing_dir { format!("{}/{name}", dest.trim_end_matches('/')) } else { dest.to_string() })
    }

    /// Host path of a container path, parents created, symlinks resolved inside the root.
    fn resolve(&self, container: &str) -> Result<PathBuf, InstructionError> {
        self.root
            .resolve_host_path(Path::new(container), Escape::Clamp, MissingDirs::Create)
            .map_err(|source| InstructionError::Resolve { path: container.into(), source })
    }

    /// Copies the contents of directory `src` into `dest`, skipping ignored context paths.
    fn tree(&self, src: &Path, dest: &str, ignore_prefix: Option<&str>) -> Result<(), InstructionError> {
        let base = dest.trim_end_matches('/');
        let dest_host = self.resolve(if base.is_empty() { "/" } else { base })?;
        if !dest_host.exists() {
            fs::create_dir(&dest_host).map_err(InstructionError::io("create directory", &dest_host))?;
            let meta = fs::metadata(src).map_err(InstructionError::io("read", src))?;
            self.set_attrs(&dest_host, meta.mode(), true)?;
        }
        for entry in walkdir::WalkDir::new(src).min_depth(1).sort_by_file_name() {
            let entry = entry.map_err(|e| InstructionError::io("walk", src)(e.into()))?;
            let Ok(rel) = entry.path().strip_prefix(src) else { continue };
            let rel = rel.to_string_lossy();
            if let Some(prefix) = ignore_prefix {
                let in_context = if prefix.is_empty() { rel.to_string() } else { format!("{prefix}/{rel}") };
                if self.ctx.exec.context.is_excluded(&in_context) {
                    continue;
                }
            }
            let target = self.resolve(&format!("{base}/{rel}"))?;
            let meta = entry.path().symlink_metadata().map_err(InstructionError::io("read", entry.path()))?;
            self.entry(entry.path(), &meta, &target)?;
        }
        Ok(())
    }

    /// Copies one file, directory (not its contents) or symlink to the host path `target`.
    fn entry(&self, src: &Path, meta: &fs::Metadata, host: &Path) -> Result<(), InstructionError> {
        let ft = meta.file_type();
        if ft.is_dir() {
            if !host.is_dir() {
                remove_existing(host)?;
                fs::create_dir(host).map_err(InstructionError::io("create directory", host))?;
            }
            return self.set_attrs(host, meta.mode(), true);
        }
        remove_existing(host)?;
        if ft.is_symlink() {
            let link = fs::read_link(src).map_err(InstructionError::io("read link", src))?;
            std::os::unix::fs::symlink(&link, host).map_err(InstructionError::io("create symlink", host))?;
            return self.ctx.exec.identity.set_link_owner(host, self.attrs.uid, self.attrs.gid).map_err(InstructionError::io("set the owner of", host));
        }
        fs::copy(src, host).map_err(InstructionError::io("copy to", host))?;
        if let Ok(modified) = meta.modified() {
            let file = fs::File::options().write(true).open(host).map_err(InstructionError::io("open", host))?;
            file.set_modified(modified).map_err(InstructionError::io("set the mtime of", host))?;
        }
        self.set_attrs(host, meta.mode(), false)
    }

    fn inline(&self, content: &str, target: &str) -> Result<(), InstructionError> {
        let host = self.resolve(target)?;
        remove_existing(&host)?;
        fs::write(&host, content).map_err(InstructionError::io("write", &host))?;
        self.set_attrs(&host, 0o644, false)
    }

    fn set_attrs(&self, host: &Path, source_mode: u32, is_dir: bool) -> Result<(), InstructionError> {
        let mode = self.attrs.chmod.unwrap_or(source_mode & 0o7777);
        self.ctx
            .exec
            .identity
            .set_owner(host, self.attrs.uid, self.attrs.gid, mode, is_dir)
            .map_err(InstructionError::io("set the owner and mode of", host))
    }
}

/// Removes a non-directory at `host` so it can be replaced (a directory stays).
fn remove_existing(host: &Path) -> Result<(), InstructionError> {
    match fs::symlink_metadata(host) {
        Ok(m) if !m.is_dir() => fs::remove_file(host).map_err(InstructionError::io("replace", host)),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::strip_tabs;

    #[test]
    fn chomp_strips_leading_tabs() {
        assert_eq!(strip_tabs("\t\ta\n\tb\n"), "a\nb\n");
    }
}
