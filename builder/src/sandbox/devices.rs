//! The minimal `/dev` of a RUN: a tmpfs with the host's harmless character devices bound
//! in (a user namespace cannot `mknod`), a private `devpts`, `/dev/shm` and the usual links.

use std::path::{Path, PathBuf};

use nix::mount::MsFlags;

use super::channel::{Placeholder, SetupError, SetupStep};
use super::mounts::{bind, ensure_node, mount};
use super::sys::{MountCall, NodeKind, Sys};

/// Host devices bound into every RUN's `/dev`.
pub const DEVICES: [&str; 6] = ["null", "zero", "full", "random", "urandom", "tty"];

/// Links created in `/dev` (`link`, `target`).
pub const LINKS: [(&str, &str); 5] = [
    ("ptmx", "pts/ptmx"),
    ("fd", "/proc/self/fd"),
    ("stdin", "/proc/self/fd/0"),
    ("stdout", "/proc/self/fd/1"),
    ("stderr", "/proc/self/fd/2"),
];

fn tmpfs(target: PathBuf, flags: MsFlags, data: &str) -> MountCall {
    MountCall {
        source: Some(PathBuf::from("tmpfs")),
        target,
        fstype: Some("tmpfs".into()),
        flags,
        data: Some(data.into()),
    }
}

/// Build `/dev` under `root`; a missing `/dev` directory is recorded as a placeholder.
pub fn mount_dev(sys: &dyn Sys, root: &Path, placeholders: &mut Vec<Placeholder>) -> Result<(), SetupError> {
    let dev = ensure_node(sys, root, Path::new("/dev"), NodeKind::Dir, Some(placeholders))?;
    let step = SetupStep::MountDev;
    let node_err = |e, p: &Path| SetupError::new(step, e, Some(p.to_path_buf()));
    mount(sys, step, tmpfs(dev.clone(), MsFlags::MS_NOSUID | MsFlags::MS_STRICTATIME, "mode=755,size=65536k"))?;
    for name in DEVICES {
        let target = dev.join(name);
        sys.create_node(&target, NodeKind::File).map_err(|e| node_err(e, &target))?;
        mount(sys, step, bind(&Path::new("/dev").join(name), &target, MsFlags::empty()))?;
    }
    let pts = dev.join("pts");
    sys.create_node(&pts, NodeKind::Dir).map_err(|e| node_err(e, &pts))?;
    let devpts = MountCall {
        source: Some(PathBuf::from("devpts")),
        target: pts,
        fstype: Some("devpts".into()),
        flags: MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
        data: Some("newinstance,ptmxmode=0666,mode=0620".into()),
    };
    mount(sys, step, devpts)?;
    let shm = dev.join("shm");
    sys.create_node(&shm, NodeKind::Dir).map_err(|e| node_err(e, &shm))?;
    mount(sys, step, tmpfs(shm, MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC, "mode=1777,size=65536k"))?;
    for (link, target) in LINKS {
        let link = dev.join(link);
        sys.symlink(Path::new(target), &link).map_err(|e| node_err(e, &link))?;
    }
    Ok(())
}
