//! What this host allows, found by trying: a RUN of a missing command in an empty root
//! gets as far as `execve` only if every namespace and mount step works.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use super::channel::SetupStep;
use super::idmap::IdMapKind;
use super::run::{Sandbox, SandboxError};
use super::{CancelToken, IdMapMode, NetworkMode, OverlaySpec, ProcessSandbox, SandboxConfig, UserSpec};

/// What the sandbox can do here; the executor picks the snapshotter and hints from it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Capabilities {
    /// A user namespace with mount, pid, `/proc` and `/dev` works end to end.
    pub user_namespaces: bool,
    /// Why it does not (the failing step, typed; [`ProbeFailure::pod_setting`] says what fixes it).
    pub failure: Option<ProbeFailure>,
    /// With [`ProcessSandbox::SharedPidNs`] (the existing `/proc` bound, no pid namespace)
    /// the sandbox works: only a fresh `/proc` was refused.
    pub shared_pid_ns: bool,
    /// The full 65536-id map is available (subordinate range and helpers).
    pub subid_range: bool,
    /// overlayfs with `userxattr` can be mounted in the user namespace.
    pub overlay_in_userns: bool,
}

/// Why the trial sandbox did not reach `execve`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProbeFailure {
    /// A setup step inside the new namespaces was refused.
    #[error("step {0:?}")]
    Step(SetupStep),
    /// The id map could not be written (by `newuidmap`/`newgidmap` or directly).
    #[error("step WriteIdMap: {0}")]
    IdMap(String),
    /// The probe's directory in rbuild's state dir could not be made.
    #[error("step ProbeDir: cannot create {}: {reason}", path.display())]
    StateDir { path: PathBuf, reason: String },
    /// The init process could not be started or died without a report.
    #[error("step StartInit: {0}")]
    Start(String),
}

impl ProbeFailure {
    /// The pod `securityContext` change (or host setting) that makes the failing step work.
    pub fn pod_setting(&self) -> &'static str {
        match self {
            Self::Step(SetupStep::UnshareUser) => {
                "seccompProfile: Unconfined and appArmorProfile: Unconfined (RuntimeDefault allows unshare only with CAP_SYS_ADMIN)"
            }
            Self::Step(SetupStep::MountProc) => "procMount: Unmasked (with hostUsers: false), or --no-process-sandbox",
            Self::Step(SetupStep::UnshareNamespaces | SetupStep::PrepareRoot | SetupStep::MountDev | SetupStep::Overlay) => {
                "seccompProfile: Unconfined and appArmorProfile: Unconfined"
            }
            Self::Step(_) => "see docs/rootless.md",
            Self::IdMap(_) => {
                "allowPrivilegeEscalation: true with rbuild's image (newuidmap/newgidmap carry file capabilities), or hostUsers: false with runAsUser: 0"
            }
            Self::StateDir { .. } => "a writable --cache-dir (an emptyDir volume; readOnlyRootFilesystem leaves only volumes writable)",
            Self::Start(_) => "see docs/rootless.md",
        }
    }

    fn from_error(err: &SandboxError) -> Option<Self> {
        match err {
            SandboxError::Setup { source, .. } if source.step == SetupStep::Exec => None,
            SandboxError::Setup { source, .. } => Some(Self::Step(source.step)),
            SandboxError::IdMap(e) => Some(Self::IdMap(error_chain(e))),
            other => Some(Self::Start(error_chain(other))),
        }
    }
}

fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

impl Sandbox {
    /// [`Sandbox::probe_in`] the system's temporary directory (for diagnostics only).
    pub fn probe(&self) -> Capabilities {
        self.probe_in(&std::env::temp_dir())
    }

    /// Try the sandbox on empty roots made under `state_dir` (rbuild's own state directory,
    /// never `/tmp`, so a read-only root file system with a writable volume works): private
    /// pid namespace first, the shared one if only `/proc` was refused, then overlay.
    pub fn probe_in(&self, state_dir: &Path) -> Capabilities {
        let mut caps = Capabilities::default();
        let dir = fs::create_dir_all(state_dir)
            .and_then(|()| tempfile::Builder::new().prefix("probe-").tempdir_in(state_dir));
        let dir = match dir {
            Ok(dir) => dir,
            Err(e) => {
                caps.failure = Some(ProbeFailure::StateDir { path: state_dir.to_path_buf(), reason: e.to_string() });
                return caps;
            }
        };
        let root = dir.path().join("root");
        let (lower, upper, work) = (dir.path().join("lower"), dir.path().join("upper"), dir.path().join("work"));
        let work_dir = work.clone();
        if let Some(d) = [&root, &lower, &upper, &work].into_iter().find(|d| fs::create_dir(d).is_err()) {
            caps.failure = Some(ProbeFailure::StateDir { path: d.clone(), reason: "mkdir failed".into() });
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
        let failure = |r: Result<_, SandboxError>| match r {
            Ok(_) => Some(ProbeFailure::Start("the probe's missing command ran".into())),
            Err(e) => ProbeFailure::from_error(&e),
        };
        caps.failure = failure(self.run(&cfg, |_, _| {}, &cancel));
        caps.user_namespaces = caps.failure.is_none();
        if caps.failure == Some(ProbeFailure::Step(SetupStep::MountProc)) {
            cfg.process_sandbox = ProcessSandbox::SharedPidNs;
            caps.shared_pid_ns = failure(self.run(&cfg, |_, _| {}, &cancel)).is_none();
        }
        caps.subid_range = self.id_map_kind_for(IdMapMode::Auto) == IdMapKind::Range;
        if caps.user_namespaces || caps.shared_pid_ns {
            cfg.overlay = Some(OverlaySpec { lower: vec![lower], upper, work });
            caps.overlay_in_userns = failure(self.run(&cfg, |_, _| {}, &cancel)).is_none();
        }
        // overlayfs leaves `work/work` with mode 000; open it up so the temp dir can go.
        let _ = fs::set_permissions(work_dir.join("work"), fs::Permissions::from_mode(0o700));
        caps
    }
}
