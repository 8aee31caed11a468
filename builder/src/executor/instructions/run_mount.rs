//! `RUN --mount`, BuildKit's semantics: each mount becomes a sandbox mount (bind or tmpfs)
//! or, for `type=secret,env=`, an environment variable. Nothing mounted is ever in the
//! layer: the snapshot walks the stage root on the host, where only the mount points exist,
//! and the sandbox removes the ones it created.
//!
//! * `bind`: from the build context (`.dockerignore` applied) or `from=<stage>`'s root,
//!   `source` inside it; read-only unless `rw`, whose writes go to a throw-away copy.
//! * `cache`: a directory under the local state (`--cache-dir`/`mounts`), keyed by `id`
//!   (default: the target), kept between builds; `sharing=locked` holds an exclusive lock for
//!   the RUN, `private` takes another instance while one is in use; `mode/uid/gid` and the
//!   `from`/`source` seed apply when the directory is created.
//! * `secret`: the `--secret` value as a read-only file (default `/run/secrets/<id>`, mode
//!   0400) and/or an environment variable (`env=`); a missing `required` secret fails.
//! * `tmpfs`: a fresh tmpfs of `size` bytes.
//! * `ssh`: not supported (an error naming the line).

use std::fs::{self, File};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::{absolute, InstructionError, StepContext};
use crate::dockerfile::instruction::{Mount, MountKind, Sharing};
use crate::executor::Identity;
use crate::image::ImageConfig;
use crate::layer::root_path::{Escape, MissingDirs, RootDir};
use crate::sandbox::{ExtraMount, MountSource};

/// Where a bind or a cache seed comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Origin {
    /// A stage name or index; `None` for the build context.
    pub from: Option<String>,
    /// Path inside it.
    pub source: String,
}

/// Ownership and mode of a created cache directory or secret file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Attrs {
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
}

/// One `--mount` with BuildKit's defaults applied (pure; see [`resolve`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Planned {
    Bind { origin: Origin, target: String, readonly: bool },
    Cache { id: String, target: String, readonly: bool, sharing: Sharing, attrs: Attrs, seed: Option<Origin> },
    Secret { id: String, file: Option<String>, env: Option<String>, required: bool, attrs: Attrs },
    Tmpfs { target: String, size: Option<u64> },
}

/// Applies BuildKit's defaults to a parsed mount; relative targets are taken from the
/// RUN's working directory.
pub(super) fn resolve(m: &Mount, config: &ImageConfig) -> Result<Planned, InstructionError> {
    let target = |t: &str| absolute(t, config);
    let attrs = |mode: u32| Attrs { mode: m.mode.unwrap_or(mode), uid: m.uid.unwrap_or(0), gid: m.gid.unwrap_or(0) };
    Ok(match m.kind {
        MountKind::Bind => Planned::Bind {
            origin: Origin { from: m.from.clone(), source: m.source.clone().unwrap_or_else(|| "/".into()) },
            target: m
                .target
                .as_deref()
                .map_or_else(|| config.config.working_dir.clone().unwrap_or_else(|| "/".into()), target),
            readonly: m.readonly,
        },
        MountKind::Cache => {
            let target = target(m.target.as_deref().unwrap_or_default());
            Planned::Cache {
                id: m.id.clone().filter(|i| !i.is_empty()).unwrap_or_else(|| target.clone()),
                readonly: m.readonly,
                sharing: m.sharing,
                attrs: attrs(0o755),
                seed: (m.from.is_some() || m.source.is_some())
                    .then(|| Origin { from: m.from.clone(), source: m.source.clone().unwrap_or_else(|| "/".into()) }),
                target,
            }
        }
        MountKind::Secret => {
            let explicit = m.target.as_deref().map(target);
            let id = match (&m.id, &explicit) {
                (Some(id), _) if !id.is_empty() => id.clone(),
                (_, Some(t)) => Path::new(t).file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
                _ => return Err(InstructionError::Mount { detail: "a secret mount needs an id or a target".into() }),
            };
            let file = match (explicit, &m.env) {
                (Some(t), _) => Some(t),
                (None, Some(_)) => None,
                (None, None) => Some(format!("/run/secrets/{id}")),
            };
            Planned::Secret { id, file, env: m.env.clone(), required: m.required, attrs: attrs(0o400) }
        }
        MountKind::Tmpfs => Planned::Tmpfs {
            target: target(m.target.as_deref().unwrap_or_default()),
            size: m.size.as_deref().map(parse_size).transpose()?,
        },
        MountKind::Ssh => return Err(InstructionError::unsupported("RUN --mount=type=ssh")),
    })
}

/// A byte size as BuildKit reads `size=` (`units.RAMInBytes`): a number with an optional
/// binary suffix `k`, `m`, `g`, `t`, `p` (optionally followed by `b` or `ib`), any case.
pub(super) fn parse_size(text: &str) -> Result<u64, InstructionError> {
    let bad = || InstructionError::Mount { detail: format!("invalid tmpfs size {text:?}") };
    let lower = text.trim().to_ascii_lowercase();
    let unit_at = lower.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(lower.len());
    let (number, unit) = lower.split_at(unit_at);
    let number: f64 = number.parse().map_err(|_| bad())?;
    let shift = match unit.trim_end_matches("ib").trim_end_matches('b') {
        "" => 0,
        "k" => 10,
        "m" => 20,
        "g" => 30,
        "t" => 40,
        "p" => 50,
        _ => return Err(bad()),
    };
    let bytes = number * f64::from(1u32 << (shift % 30)) * f64::from(1u32 << (shift - shift % 30));
    if bytes.is_finite() && bytes >= 0.0 && bytes < u64::MAX as f64 {
        Ok(bytes as u64)
    } else {
        Err(bad())
    }
}

/// The prepared mounts of one RUN; scratch copies, secret files and cache locks live as
/// long as this value (drop it after the RUN).
#[derive(Default)]
pub(super) struct RunMounts {
    pub mounts: Vec<ExtraMount>,
    /// Secret environment variables (never logged).
    pub env: Vec<(String, String)>,
    _scratch: Option<tempfile::TempDir>,
    /// Secret files, on a tmpfs (never on disk).
    _secrets: Option<tempfile::TempDir>,
    _locks: Vec<File>,
}

/// Where secret files live: memory only. A private directory on the `/dev/shm` tmpfs, named
/// after this process (`rbuild-secrets-<pid>-…`) so that the next start removes what a killed
/// build left (`rbuild_cache::state::sweep_dead_secrets`); removed when the RUN ends.
fn secret_dir() -> Result<tempfile::TempDir, InstructionError> {
    let shm = Path::new(SECRET_TMPFS);
    let on_tmpfs = rustix::fs::statfs(shm).is_ok_and(|s| s.f_type as i64 == TMPFS_MAGIC);
    if !on_tmpfs {
        return Err(InstructionError::Mount {
            detail: format!("secrets are kept in memory only, but {SECRET_TMPFS} is not a tmpfs here"),
        });
    }
    tempfile::Builder::new()
        .prefix(&rbuild_cache::state::secret_dir_prefix())
        .permissions(fs::Permissions::from_mode(0o700))
        .tempdir_in(shm)
        .map_err(InstructionError::io("create a secret directory in", shm))
}

/// The tmpfs secret files are written to.
const SECRET_TMPFS: &str = "/dev/shm";
/// `statfs` type of a tmpfs.
const TMPFS_MAGIC: i64 = 0x0102_1994;

impl std::fmt::Debug for RunMounts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.env.iter().map(|(k, _)| k.as_str()).collect();
        f.debug_struct("RunMounts").field("mounts", &self.mounts).field("env", &names).finish_non_exhaustive()
    }
}

/// Prepares every mount of a RUN on the host.
pub(super) fn prepare(
    mounts: &[Mount],
    config: &ImageConfig,
    ctx: &StepContext<'_>,
) -> Result<RunMounts, InstructionError> {
    let mut out = RunMounts::default();
    if mounts.is_empty() {
        return Ok(out);
    }
    let work = &ctx.exec.work_dir;
    let scratch = tempfile::Builder::new()
        .prefix("run-mounts-")
        .tempdir_in(work)
        .map_err(InstructionError::io("create", work))?;
    for (i, m) in mounts.iter().enumerate() {
        match resolve(m, config)? {
            Planned::Bind { origin, target, readonly } => {
                let source = origin_path(&origin, ctx)?;
                let source = if readonly && !has_excluded(&origin, &source, ctx) {
                    source
                } else {
                    let copy = scratch.path().join(format!("bind-{i}"));
                    copy_tree(&source, &copy, &|rel| excluded(&origin, rel, &source, ctx), !readonly)?;
                    copy
                };
                out.mounts.push(ExtraMount { source: MountSource::Bind(source), target: target.into(), readonly });
            }
            Planned::Cache { id, target, readonly, sharing, attrs, seed } => {
                let (dir, lock) = cache_dir(&ctx.exec.cache_mounts, &id, sharing)?;
                if !dir.exists() {
                    create_cache(&dir, attrs, seed.as_ref(), ctx)?;
                }
                out._locks.extend(lock);
                out.mounts.push(ExtraMount { source: MountSource::Bind(dir), target: target.into(), readonly });
            }
            Planned::Secret { id, file, env, required, attrs } => {
                let Some(value) = ctx.exec.secrets.get(&id) else {
                    if required {
                        return Err(InstructionError::Mount { detail: format!("secret {id:?} is required but was not given (pass --secret id={id},src=PATH or id={id},env=VAR)") });
                    }
                    continue;
                };
                if let Some(var) = env {
                    out.env.push((var, String::from_utf8_lossy(value.expose()).into_owned()));
                }
                if let Some(target) = file {
                    if out._secrets.is_none() {
                        out._secrets = Some(secret_dir()?);
                    }
                    let dir = out._secrets.as_ref().map_or(scratch.path(), |d| d.path());
                    let host = dir.join(format!("secret-{i}"));
                    fs::write(&host, value.expose()).map_err(InstructionError::io("write", &host))?;
                    set_attrs(ctx.exec.identity, &host, attrs)?;
                    out.mounts.push(ExtraMount {
                        source: MountSource::Bind(host),
                        target: target.into(),
                        readonly: true,
                    });
                }
            }
            Planned::Tmpfs { target, size } => out.mounts.push(ExtraMount {
                source: MountSource::Tmpfs { size },
                target: target.into(),
                readonly: false,
            }),
        }
    }
    out._scratch = Some(scratch);
    Ok(out)
}

/// The host path of a bind or seed origin: the context or a finished stage's root, with
/// `source` resolved inside it (symlinks cannot leave it).
fn origin_path(origin: &Origin, ctx: &StepContext<'_>) -> Result<PathBuf, InstructionError> {
    let (root, place) = match &origin.from {
        None => (ctx.exec.context.dir().to_path_buf(), "the build context".to_string()),
        Some(from) => {
            let stage = ctx.plan.stages.iter().find(|s| {
                s.name.as_deref().is_some_and(|n| n.eq_ignore_ascii_case(from)) || s.index.to_string() == *from
            });
            let Some(stage) = stage else {
                return Err(InstructionError::unsupported(format!("RUN --mount from an image ({from})")));
            };
            let out = ctx
                .earlier
                .get(stage.index)
                .and_then(Option::as_ref)
                .ok_or_else(|| InstructionError::UnknownStage { name: from.clone() })?;
            (out.rootfs.clone(), format!("stage {from}"))
        }
    };
    let missing = || InstructionError::SourceMissing { source_path: origin.source.clone(), place: place.clone() };
    let dir =
        RootDir::open(&root).map_err(|source| InstructionError::Resolve { path: origin.source.clone(), source })?;
    let host =
        dir.resolve_host_path(Path::new(&origin.source), Escape::Clamp, MissingDirs::Fail).map_err(|_| missing())?;
    fs::symlink_metadata(&host).map_err(|_| missing())?;
    Ok(host)
}

/// `rel` (relative to `source`) is left out by `.dockerignore` (context origins only).
fn excluded(origin: &Origin, rel: &Path, source: &Path, ctx: &StepContext<'_>) -> bool {
    if origin.from.is_some() {
        return false;
    }
    let full = source.join(rel);
    full.strip_prefix(ctx.exec.context.dir())
        .is_ok_and(|r| !r.as_os_str().is_empty() && ctx.exec.context.is_excluded(&r.to_string_lossy()))
}

/// Whether anything under a context origin is excluded (then it is copied, not bound).
fn has_excluded(origin: &Origin, source: &Path, ctx: &StepContext<'_>) -> bool {
    origin.from.is_none()
        && walkdir::WalkDir::new(source)
            .min_depth(1)
            .into_iter()
            .flatten()
            .any(|e| e.path().strip_prefix(source).is_ok_and(|r| excluded(origin, r, source, ctx)))
}

/// Copies `src` (file or tree) to `dst`, skipping what `skip` names; hard links where
/// `copy` is false and the file system allows it (a read-only view), copies otherwise.
fn copy_tree(src: &Path, dst: &Path, skip: &dyn Fn(&Path) -> bool, copy: bool) -> Result<(), InstructionError> {
    let mut walk = walkdir::WalkDir::new(src).sort_by_file_name().into_iter();
    while let Some(entry) = walk.next() {
        let entry =
            entry.map_err(|e| InstructionError::Io { op: "walk", path: src.to_path_buf(), source: e.into() })?;
        let rel = entry.path().strip_prefix(src).unwrap_or(Path::new(""));
        if !rel.as_os_str().is_empty() && skip(rel) {
            if entry.file_type().is_dir() {
                walk.skip_current_dir();
            }
            continue;
        }
        let to = if rel.as_os_str().is_empty() { dst.to_path_buf() } else { dst.join(rel) };
        let ft = entry.file_type();
        let result = if ft.is_dir() {
            let mode = entry.metadata().map(|m| m.permissions().mode()).unwrap_or(0o755);
            fs::DirBuilder::new().mode(mode | 0o700).create(&to)
        } else if ft.is_symlink() {
            fs::read_link(entry.path()).and_then(|t| std::os::unix::fs::symlink(t, &to))
        } else if !copy && fs::hard_link(entry.path(), &to).is_ok() {
            Ok(())
        } else {
            fs::copy(entry.path(), &to).map(drop)
        };
        result.map_err(InstructionError::io("copy", &to))?;
    }
    Ok(())
}

/// How many instances of one `sharing=private` cache may be in use at once.
const PRIVATE_INSTANCES: u32 = 256;

/// The directory of cache `id` and, for `locked`/`private`, the lock held for the RUN.
fn cache_dir(root: &Path, id: &str, sharing: Sharing) -> Result<(PathBuf, Option<File>), InstructionError> {
    fs::create_dir_all(root).map_err(InstructionError::io("create", root))?;
    let key = hex::encode(Sha256::digest(id.as_bytes()));
    let lock = |dir: &Path, blocking: bool| -> Result<Option<File>, InstructionError> {
        let path = dir.with_extension("lock");
        let file = File::create(&path).map_err(InstructionError::io("create", &path))?;
        let op = if blocking {
            rustix::fs::FlockOperation::LockExclusive
        } else {
            rustix::fs::FlockOperation::NonBlockingLockExclusive
        };
        match rustix::fs::flock(&file, op) {
            Ok(()) => Ok(Some(file)),
            Err(rustix::io::Errno::WOULDBLOCK) if !blocking => Ok(None),
            Err(e) => Err(InstructionError::Io { op: "lock", path, source: e.into() }),
        }
    };
    match sharing {
        Sharing::Shared => Ok((root.join(&key), None)),
        Sharing::Locked => {
            let dir = root.join(&key);
            let held = lock(&dir, true)?;
            Ok((dir, held))
        }
        Sharing::Private => {
            for n in 0..PRIVATE_INSTANCES {
                let dir = if n == 0 { root.join(&key) } else { root.join(format!("{key}-{n}")) };
                if let Some(held) = lock(&dir, false)? {
                    return Ok((dir, Some(held)));
                }
            }
            Err(InstructionError::Mount {
                detail: format!("all {PRIVATE_INSTANCES} private instances of cache {id:?} are in use"),
            })
        }
    }
}

/// Creates a cache directory (atomically: built aside, then renamed) with its owner, mode
/// and seed contents.
fn create_cache(
    dir: &Path,
    attrs: Attrs,
    seed: Option<&Origin>,
    ctx: &StepContext<'_>,
) -> Result<(), InstructionError> {
    let parent = dir.parent().unwrap_or(Path::new("/"));
    let tmp =
        tempfile::Builder::new().prefix(".new-").tempdir_in(parent).map_err(InstructionError::io("create", parent))?;
    let fresh = tmp.path().join("dir");
    match seed {
        Some(origin) => copy_tree(&origin_path(origin, ctx)?, &fresh, &|_| false, true)?,
        None => fs::create_dir(&fresh).map_err(InstructionError::io("create", &fresh))?,
    }
    set_attrs(ctx.exec.identity, &fresh, attrs)?;
    match fs::rename(&fresh, dir) {
        Ok(()) => Ok(()),
        // Another build created it first: use theirs.
        Err(_) if dir.is_dir() => Ok(()),
        Err(e) => Err(InstructionError::io("rename", dir)(e)),
    }
}

fn set_attrs(identity: Identity, path: &Path, attrs: Attrs) -> Result<(), InstructionError> {
    match identity {
        Identity::Root => std::os::unix::fs::lchown(path, Some(attrs.uid), Some(attrs.gid))
            .map_err(InstructionError::io("chown", path))?,
        Identity::Rootless { .. } if (attrs.uid, attrs.gid) != (0, 0) => {
            return Err(InstructionError::Mount {
                detail: format!(
                    "uid={} gid={} needs a subordinate id range (grant one in /etc/subuid and /etc/subgid)",
                    attrs.uid, attrs.gid
                ),
            })
        }
        Identity::Rootless { .. } => {}
    }
    fs::set_permissions(path, fs::Permissions::from_mode(attrs.mode & 0o7777))
        .map_err(InstructionError::io("chmod", path))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    fn mount(spec: &str) -> Mount {
        Mount::parse(spec).unwrap()
    }
    fn origin(from: Option<&str>, source: &str) -> Origin {
        Origin { from: from.map(Into::into), source: source.into() }
    }
    const ROOT: Attrs = Attrs { mode: 0o755, uid: 0, gid: 0 };
    const SECRET: Attrs = Attrs { mode: 0o400, uid: 0, gid: 0 };

    #[rstest]
    #[case::bind_defaults("type=bind,target=/src", Planned::Bind { origin: origin(None, "/"), target: "/src".into(), readonly: true })]
    #[case::bind_rw_from_stage("type=bind,from=build,source=/out,target=out,rw", Planned::Bind { origin: origin(Some("build"), "/out"), target: "/work/out".into(), readonly: false })]
    #[case::bind_without_target_is_workdir("type=bind,source=go.mod", Planned::Bind { origin: origin(None, "go.mod"), target: "/work".into(), readonly: true })]
    #[case::cache_id_defaults_to_target("type=cache,target=/root/.cache", Planned::Cache { id: "/root/.cache".into(), target: "/root/.cache".into(), readonly: false, sharing: Sharing::Shared, attrs: ROOT, seed: None })]
    #[case::cache_options("type=cache,id=go,target=.cache,sharing=locked,mode=0700,uid=1000,gid=100,from=base,source=/seed", Planned::Cache { id: "go".into(), target: "/work/.cache".into(), readonly: false, sharing: Sharing::Locked, attrs: Attrs { mode: 0o700, uid: 1000, gid: 100 }, seed: Some(origin(Some("base"), "/seed")) })]
    #[case::secret_default_target("type=secret,id=npm", Planned::Secret { id: "npm".into(), file: Some("/run/secrets/npm".into()), env: None, required: false, attrs: SECRET })]
    #[case::secret_id_from_target("type=secret,target=/etc/token,required", Planned::Secret { id: "token".into(), file: Some("/etc/token".into()), env: None, required: true, attrs: SECRET })]
    #[case::secret_env_only("type=secret,id=tok,env=TOKEN", Planned::Secret { id: "tok".into(), file: None, env: Some("TOKEN".into()), required: false, attrs: SECRET })]
    #[case::secret_env_and_file("type=secret,id=tok,env=TOKEN,dst=/t,mode=0440,uid=5", Planned::Secret { id: "tok".into(), file: Some("/t".into()), env: Some("TOKEN".into()), required: false, attrs: Attrs { mode: 0o440, uid: 5, gid: 0 } })]
    #[case::tmpfs_size("type=tmpfs,target=/tmp,size=64m", Planned::Tmpfs { target: "/tmp".into(), size: Some(64 << 20) })]
    fn resolves(#[case] spec: &str, #[case] want: Planned) {
        let mut config = ImageConfig::default();
        config.config.working_dir = Some("/work".into());
        assert_eq!(resolve(&mount(spec), &config).unwrap(), want);
    }

    #[rstest]
    #[case::ssh("type=ssh", "RUN --mount=type=ssh is not supported")]
    #[case::secret_without_id("type=secret,env=X", "needs an id or a target")]
    #[case::bad_size("type=tmpfs,target=/t,size=lots", "invalid tmpfs size")]
    fn refuses(#[case] spec: &str, #[case] want: &str) {
        let err = resolve(&mount(spec), &ImageConfig::default()).unwrap_err().to_string();
        assert!(err.contains(want), "{spec}: {err}");
    }

    #[rstest]
    #[case("1024", 1024)]
    #[case("1k", 1024)]
    #[case("64m", 64 << 20)]
    #[case("64MiB", 64 << 20)]
    #[case("1.5g", 3 << 29)]
    #[case("2T", 2 << 40)]
    fn sizes(#[case] text: &str, #[case] want: u64) {
        assert_eq!(parse_size(text).unwrap(), want);
    }

    #[test]
    fn private_cache_takes_another_instance_while_locked() {
        let dir = tempfile::tempdir().unwrap();
        let (first, held) = cache_dir(dir.path(), "x", Sharing::Private).unwrap();
        assert!(held.is_some());
        let (second, _held2) = cache_dir(dir.path(), "x", Sharing::Private).unwrap();
        assert_ne!(first, second);
        drop(held);
        let (third, _) = cache_dir(dir.path(), "x", Sharing::Private).unwrap();
        assert_eq!(third, first);
        assert_eq!(cache_dir(dir.path(), "x", Sharing::Shared).unwrap().0, first);
    }
}
