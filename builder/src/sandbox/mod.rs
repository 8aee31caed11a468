//! The RUN sandbox: runs one command in a new user, mount, pid, ipc and uts namespace
//! (optionally network) with `pivot_root` into the stage root, streaming its output.
//!
//! The parent re-executes its own binary ([`INIT_ARG`]) as the init process, hands it an
//! [`channel::InitSpec`] over a socket, writes its id map when asked (see [`channel`]), and
//! relays output and exit status. All `unsafe` lives in [`linux`]; the mount and handshake
//! logic is written against [`sys::Sys`] and tested with [`fake::FakeSys`].

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

pub mod build_namespace;
pub mod channel;
pub mod container;
pub mod devices;
pub mod fake;
pub mod idmap;
mod init;
pub mod linux;
pub mod mounts;
mod probe;
mod run;
pub mod sys;
pub mod user;

pub use build_namespace::{enter_build_namespace, run_in_build_namespace, BuildNamespaceError, Reexec, BUILD_NS_ARG};
pub use channel::{SetupError, SetupStep};
pub use idmap::{IdMapError, IdMapKind, IdMapMode, IdMapSources};
pub use init::{enter_namespaces, find_program, namespace_flags, sandbox_init_main, setup_process, DEFAULT_PATH};
pub use mounts::SetupNote;
pub use probe::Capabilities;
pub use run::{hint_for, RunReport, Sandbox, SandboxError};
pub use user::{resolve_user, UserError, UserSpec};

/// First argument that makes a binary act as the sandbox's init process; the binary's
/// `main` must then call [`sandbox_init_main`] before anything else.
pub const INIT_ARG: &str = "__sandbox-init";

/// One RUN: what to execute, where and as whom.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SandboxConfig {
    /// The stage root (absolute host path). With `overlay`, the (empty) mount point of the merged view.
    pub rootfs: PathBuf,
    /// The command, exec form (a shell form is `["/bin/sh", "-c", cmd]`).
    pub argv: Vec<String>,
    /// The complete environment; `PATH` from here is used to find `argv[0]`.
    pub env: Vec<(String, String)>,
    /// Working directory inside the root; created if missing.
    pub cwd: PathBuf,
    /// The resolved `USER` (see [`resolve_user`]).
    pub user: UserSpec,
    /// Host network, or none.
    pub network: NetworkMode,
    /// Hostname inside the RUN (empty: leave the host's).
    pub hostname: String,
    /// Extra bind mounts (`RUN --mount` cache, secret, bind).
    pub mounts: Vec<ExtraMount>,
    /// Which id map to ask for.
    pub id_map: IdMapMode,
    /// A private pid namespace, or the shared one where `/proc` cannot be mounted.
    pub process_sandbox: ProcessSandbox,
    /// Mount overlayfs over `rootfs` inside the namespace; its upper dir is the RUN's diff.
    pub overlay: Option<OverlaySpec>,
}

/// Network of a RUN.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum NetworkMode {
    /// The host's network namespace (Docker's default for builds).
    #[default]
    Host,
    /// A new network namespace with only the loopback device, brought up.
    None,
}

/// A mount into the RUN (`RUN --mount`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExtraMount {
    /// What is mounted.
    pub source: MountSource,
    /// Absolute path inside the root; created (and removed afterwards) if missing.
    pub target: PathBuf,
    /// Read-only.
    pub readonly: bool,
}

/// What an [`ExtraMount`] mounts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MountSource {
    /// A bind of this host path (file or directory).
    Bind(PathBuf),
    /// A fresh tmpfs, at most `size` bytes (the kernel's default, half the RAM, if `None`).
    Tmpfs { size: Option<u64> },
}

/// The BuildKit `--oci-worker-no-process-sandbox` trade-off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum ProcessSandbox {
    /// A new pid namespace with a fresh `/proc`: the RUN sees only its own processes.
    #[default]
    Private,
    /// The host's pid namespace and `/proc` (for pods with a masked `/proc`); the RUN can
    /// see and signal the caller's other processes. Weaker; opt in loudly.
    SharedPidNs,
}

/// Overlay directories; the mount uses `userxattr`, so opaque markers are `user.overlay.*`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OverlaySpec {
    /// Lower layers, bottom-most first (base image layer first).
    pub lower: Vec<PathBuf>,
    /// Upper dir: receives the RUN's changes (the diff).
    pub upper: PathBuf,
    /// Overlay work dir, on the same file system as `upper`.
    pub work: PathBuf,
}

/// How a RUN is isolated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum IsolationMode {
    /// Rootless: a new user namespace plus mount, pid, ipc, uts; `pivot_root`.
    #[default]
    UserNs,
    /// Real root only: mount, pid, ipc, uts namespaces and `chroot`, no user namespace.
    /// Weaker: uid 0 in the RUN is the host's root.
    Chroot,
    /// No isolation at all (Kaniko's model, for pods that forbid user namespaces): the RUN
    /// is a plain child process in the container's own `/`, which is the stage root.
    /// See [`container`].
    Container,
}

/// Which stream a chunk of output came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

/// How the RUN's command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ExitStatus {
    /// `exit(code)`.
    Exited(i32),
    /// Killed by a signal.
    Signaled(i32),
}

impl ExitStatus {
    /// Shell-style code: the exit code, or 128 + signal number.
    pub fn code(self) -> i32 {
        match self {
            Self::Exited(c) => c,
            Self::Signaled(s) => 128 + s,
        }
    }

    /// Whether the command exited with 0.
    pub fn success(self) -> bool {
        self == Self::Exited(0)
    }
}

/// Cancels running RUNs: cloneable, checked by [`Sandbox::run`] every few milliseconds.
#[derive(Debug, Clone, Default)]
pub struct CancelToken {
    flag: Arc<AtomicBool>,
}

impl CancelToken {
    /// A token that is not cancelled.
    pub fn new() -> Self {
        Self::default()
    }

    /// Cancel every RUN watching this token.
    pub fn cancel(&self) {
        self.flag.store(true, Ordering::SeqCst);
    }

    /// Whether [`CancelToken::cancel`] was called (or a watched signal arrived).
    pub fn is_cancelled(&self) -> bool {
        self.flag.load(Ordering::SeqCst)
    }
}

/// A token cancelled by SIGINT or SIGTERM; a second signal of the same kind exits at once.
/// The binary calls this once; the library installs no handler by itself.
pub fn cancel_on_signals() -> Result<CancelToken, std::io::Error> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let token = CancelToken::new();
    for sig in [SIGINT, SIGTERM] {
        signal_hook::flag::register_conditional_shutdown(sig, 128 + sig, Arc::clone(&token.flag))?;
        signal_hook::flag::register(sig, Arc::clone(&token.flag))?;
    }
    Ok(token)
}
