//! What this host allows, found by trying: a RUN of a missing command in an empty root
//! gets as far as `execve` only if every namespace and mount step works.

use std::fs;
use std::os::unix::fs::PermissionsExt;

use super::channel::SetupStep;
use super::idmap::IdMapKind;
use super::run::{Sandbox, SandboxError};
use super::{CancelToken, IdMapMode, NetworkMode, OverlaySpec, ProcessSandbox, SandboxConfig, UserSpec};

/// What the sandbox can do here; the executor picks the snapshotter and hints from it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Capabilities {
    /// A user namespace with mount, pid, `/proc` and `/dev` works end to end.
    pub user_namespaces: bool,
    /// The step that failed when it does not (the error's hint says what fixes it).
    pub failed_step: Option<SetupStep>,
    /// The full 65536-id map is available (subordinate range and helpers).
    pub subid_range: bool,
    /// overlayfs with `userxattr` can be mounted in the user namespace.
    pub overlay_in_userns: bool,
}

impl Sandbox {
    /// Try the sandbox on empty temporary roots (with and without overlay) and report.
    pub fn probe(&self) -> Capabilities {
        let mut caps = Capabilities::default();
        let Ok(dir) = tempfile::Builder::new().prefix("rbuild-probe-").tempdir() else { return caps };
        let root = dir.path().join("root");
        let (lower, upper, work) = (dir.path().join("lower"), dir.path().join("upper"), dir.path().join("work"));
        let work_dir = work.clone();
        if [&root, &lower, &upper, &work].iter().any(|d| fs::create_dir(d).is_err()) {
            return caps;
        }
        let mut cfg = SandboxConfig {
            rootfs: root,
            argv: vec!["rbuild-probe-missing".into()],
            env: Vec::new(),
            cwd: "/".into(),
            user: UserSpec::root(),
            network: NetworkMode::Host,
            hostname: String::new(),
            mounts: Vec::new(),
            id_map: IdMapMode::Auto,
            process_sandbox: ProcessSandbox::Private,
            overlay: None,
            emulation: None,
        };
        let cancel = CancelToken::new();
        let reached_exec = |r: &Result<_, SandboxError>| match r {
            Err(SandboxError::Setup { source, .. }) => (source.step == SetupStep::Exec, Some(source.step)),
            _ => (false, None),
        };
        let (ok, step) = reached_exec(&self.run(&cfg, |_, _| {}, &cancel));
        caps.user_namespaces = ok;
        caps.failed_step = if ok { None } else { step };
        caps.subid_range = self.id_map_kind_for(IdMapMode::Auto) == IdMapKind::Range;
        if ok {
            cfg.overlay = Some(OverlaySpec { lower: vec![lower], upper, work });
            caps.overlay_in_userns = reached_exec(&self.run(&cfg, |_, _| {}, &cancel)).0;
        }
        // overlayfs leaves `work/work` with mode 000; open it up so the temp dir can go.
        let _ = fs::set_permissions(work_dir.join("work"), fs::Permissions::from_mode(0o700));
        caps
    }
}
