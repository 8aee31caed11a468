//! The mount sequence of a RUN, written against [`Sys`]: make `/` private, mount the
//! overlay (or bind the root onto itself), `/proc`, `/dev`, `/sys`, the host's
//! `/etc/resolv.conf` and `/etc/hosts`, `RUN --mount` binds, then switch root.
//! Everything happens inside the RUN's private mount namespace, so it all vanishes with it.

use std::path::{Component, Path, PathBuf};

use nix::mount::MsFlags;
use serde::{Deserialize, Serialize};

use super::channel::{InitSpec, Placeholder, SetupError, SetupStep};
use super::sys::{MountCall, NodeKind, Sys};
use super::{devices, IsolationMode, ProcessSandbox};

/// Something the setup skipped or weakened, reported to the parent for its log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum SetupNote {
    /// `/sys` could not be bound (e.g. masked in a pod); the RUN has no `/sys`.
    SysSkipped { errno: i32 },
    /// A bind mount could not be made read-only and was left read-write.
    ReadOnlyFailed { path: PathBuf, errno: i32 },
}

/// What [`prepare_root`] created and noticed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Prepared {
    /// Mount points created in the root, to remove after the RUN.
    pub placeholders: Vec<Placeholder>,
    /// Skipped or weakened steps.
    pub notes: Vec<SetupNote>,
}

/// Resolve `inside` (absolute inside the root) to a host path under `root`, following
/// symlinks as if `root` were `/`, so a hostile `/etc -> /` link cannot point outside.
pub fn secure_join(sys: &dyn Sys, root: &Path, inside: &Path) -> PathBuf {
    let mut resolved = PathBuf::new();
    let mut pending: Vec<PathBuf> = inside.components().rev().map(|c| PathBuf::from(c.as_os_str())).collect();
    let mut hops = 0;
    while let Some(part) = pending.pop() {
        match part.components().next() {
            Some(Component::Normal(name)) => {
                let candidate = root.join(&resolved).join(name);
                match sys.read_link(&candidate) {
                    Some(target) if hops < 40 => {
                        hops += 1;
                        if target.is_absolute() {
                            resolved.clear();
                        }
                        pending.extend(target.components().rev().map(|c| PathBuf::from(c.as_os_str())));
                    }
                    _ => resolved.push(name),
                }
            }
            Some(Component::ParentDir) => {
                resolved.pop();
            }
            _ => {}
        }
    }
    root.join(resolved)
}

pub(crate) fn mount(sys: &dyn Sys, step: SetupStep, call: MountCall) -> Result<(), SetupError> {
    sys.mount(&call).map_err(|e| SetupError::new(step, e, Some(call.target.clone())))
}

pub(crate) fn bind(source: &Path, target: &Path, flags: MsFlags) -> MountCall {
    MountCall {
        source: Some(source.to_path_buf()),
        target: target.to_path_buf(),
        fstype: None,
        flags: MsFlags::MS_BIND | flags,
        data: None,
    }
}

/// Make a bind mount read-only, keeping the flags the kernel locks in a user namespace.
fn remount_readonly(sys: &dyn Sys, target: &Path, notes: &mut Vec<SetupNote>) {
    let base = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY;
    let locked = [
        MsFlags::empty(),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
    ];
    let mut last = nix::Error::EPERM;
    for extra in locked {
        let call =
            MountCall { source: None, target: target.to_path_buf(), fstype: None, flags: base | extra, data: None };
        match sys.mount(&call) {
            Ok(()) => return,
            Err(e) => last = e,
        }
    }
    notes.push(SetupNote::ReadOnlyFailed { path: target.to_path_buf(), errno: last as i32 });
}

/// Device nodes from layers are never devices inside RUN: the root is `nodev` (only the
/// standard `/dev`, mounted over it afterwards, holds usable devices), as a root mounted in a
/// user namespace already is. Keeps the flags the kernel locks in a user namespace.
fn remount_nodev(sys: &dyn Sys, root: &Path) -> Result<(), SetupError> {
    let base = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_NODEV;
    let mut last = nix::Error::EPERM;
    for extra in [MsFlags::empty(), MsFlags::MS_NOSUID, MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC] {
        let call =
            MountCall { source: None, target: root.to_path_buf(), fstype: None, flags: base | extra, data: None };
        match sys.mount(&call) {
            Ok(()) => return Ok(()),
            Err(e) => last = e,
        }
    }
    Err(SetupError::new(SetupStep::PrepareRoot, last, Some(root.to_path_buf())))
}

/// Create the missing nodes of `inside` (parents as directories, the last as `kind`);
/// returns the host path and records created nodes in `created` when given.
pub(crate) fn ensure_node(
    sys: &dyn Sys,
    root: &Path,
    inside: &Path,
    kind: NodeKind,
    mut created: Option<&mut Vec<Placeholder>>,
) -> Result<PathBuf, SetupError> {
    let mut partial = PathBuf::from("/");
    let parts: Vec<_> = inside.components().filter(|c| matches!(c, Component::Normal(_))).collect();
    for (i, part) in parts.iter().enumerate() {
        partial.push(part);
        let node_kind = if i + 1 == parts.len() { kind } else { NodeKind::Dir };
        let host = secure_join(sys, root, &partial);
        let made = sys
            .create_node(&host, node_kind)
            .map_err(|e| SetupError::new(SetupStep::CreateNode, e, Some(partial.clone())))?;
        if made {
            if let Some(list) = created.as_deref_mut() {
                list.push(Placeholder { path: partial.clone(), kind: node_kind });
            }
        }
    }
    Ok(secure_join(sys, root, inside))
}

fn overlay_data(spec: &super::OverlaySpec) -> String {
    let lower: Vec<String> = spec.lower.iter().rev().map(|p| p.display().to_string()).collect();
    format!("lowerdir={},upperdir={},workdir={},userxattr", lower.join(":"), spec.upper.display(), spec.work.display())
}

/// Mount everything the RUN sees under its root (still at its host path).
pub fn prepare_root(sys: &dyn Sys, spec: &InitSpec) -> Result<Prepared, SetupError> {
    let cfg = &spec.config;
    let root = cfg.rootfs.as_path();
    let mut out = Prepared::default();
    let private = MountCall {
        source: None,
        target: PathBuf::from("/"),
        fstype: None,
        flags: MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        data: None,
    };
    mount(sys, SetupStep::PrepareRoot, private)?;
    match &cfg.overlay {
        Some(ov) => {
            let call = MountCall {
                source: Some(PathBuf::from("overlay")),
                target: root.to_path_buf(),
                fstype: Some("overlay".into()),
                flags: MsFlags::MS_NODEV,
                data: Some(overlay_data(ov)),
            };
            mount(sys, SetupStep::Overlay, call)?;
        }
        None => {
            mount(sys, SetupStep::PrepareRoot, bind(root, root, MsFlags::MS_REC))?;
            remount_nodev(sys, root)?;
        }
    }
    let proc_dir = ensure_node(sys, root, Path::new("/proc"), NodeKind::Dir, Some(&mut out.placeholders))?;
    let proc_call = match cfg.process_sandbox {
        ProcessSandbox::Private => MountCall {
            source: Some(PathBuf::from("proc")),
            target: proc_dir,
            fstype: Some("proc".into()),
            flags: MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
            data: None,
        },
        ProcessSandbox::SharedPidNs => bind(Path::new("/proc"), &proc_dir, MsFlags::MS_REC),
    };
    mount(sys, SetupStep::MountProc, proc_call)?;
    devices::mount_dev(sys, root, &mut out.placeholders)?;
    mount_sys(sys, root, &mut out)?;
    for (host, inside) in &spec.host_files {
        let target = ensure_node(sys, root, inside, NodeKind::File, Some(&mut out.placeholders))?;
        mount(sys, SetupStep::BindMount, bind(host, &target, MsFlags::empty()))?;
        remount_readonly(sys, &target, &mut out.notes);
    }
    for m in &cfg.mounts {
        let kind = match &m.source {
            super::MountSource::Bind(source) if !sys.is_dir(source) => NodeKind::File,
            _ => NodeKind::Dir,
        };
        let target = ensure_node(sys, root, &m.target, kind, Some(&mut out.placeholders))?;
        match &m.source {
            super::MountSource::Bind(source) => {
                mount(sys, SetupStep::BindMount, bind(source, &target, MsFlags::MS_REC))?
            }
            super::MountSource::Tmpfs { size } => {
                let data = size.map_or_else(|| "mode=1777".to_string(), |s| format!("mode=1777,size={s}"));
                let flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV;
                let call = MountCall {
                    source: Some(PathBuf::from("tmpfs")),
                    target: target.clone(),
                    fstype: Some("tmpfs".into()),
                    flags,
                    data: Some(data),
                };
                mount(sys, SetupStep::BindMount, call)?;
            }
        }
        if m.readonly {
            remount_readonly(sys, &target, &mut out.notes);
        }
    }
    ensure_node(sys, root, &cfg.cwd, NodeKind::Dir, None)?;
    Ok(out)
}

fn mount_sys(sys: &dyn Sys, root: &Path, out: &mut Prepared) -> Result<(), SetupError> {
    let target = ensure_node(sys, root, Path::new("/sys"), NodeKind::Dir, Some(&mut out.placeholders))?;
    match sys.mount(&bind(Path::new("/sys"), &target, MsFlags::MS_REC)) {
        Ok(()) => {
            remount_readonly(sys, &target, &mut out.notes);
            Ok(())
        }
        Err(e) => {
            out.notes.push(SetupNote::SysSkipped { errno: e as i32 });
            Ok(())
        }
    }
}

/// Make the prepared root the process's `/`: `pivot_root` (detaching the old root) in a
/// user namespace, a plain `chroot` in [`IsolationMode::Chroot`].
pub fn switch_root(sys: &dyn Sys, root: &Path, isolation: IsolationMode) -> Result<(), SetupError> {
    let err = |e, p: &Path| SetupError::new(SetupStep::SwitchRoot, e, Some(p.to_path_buf()));
    let dot = Path::new(".");
    sys.chdir(root).map_err(|e| err(e, root))?;
    match isolation {
        IsolationMode::UserNs => {
            // pivot_root(".", ".") stacks the old root on top of the new one; detaching it
            // leaves the new root, with no put_old directory to create in the image.
            sys.pivot_root(dot, dot).map_err(|e| err(e, root))?;
            sys.umount_detach(dot).map_err(|e| err(e, root))?;
        }
        // Container isolation never gets here (`container::run` spawns directly).
        IsolationMode::Chroot | IsolationMode::Container => sys.chroot(dot).map_err(|e| err(e, root))?,
    }
    sys.chdir(Path::new("/")).map_err(|e| err(e, root))
}

/// Drop to the RUN's user: groups (only where a full map allows `setgroups`), gid, uid.
pub fn enter_user(sys: &dyn Sys, spec: &InitSpec) -> Result<(), SetupError> {
    let user = &spec.config.user;
    let err = |e| SetupError::new(SetupStep::Credentials, e, None);
    if spec.id_map != super::IdMapKind::Single {
        sys.setgroups(&user.groups).map_err(err)?;
    }
    sys.set_ids(user.uid, user.gid).map_err(err)
}
