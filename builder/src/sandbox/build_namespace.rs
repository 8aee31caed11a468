//! The build's own user namespace, as `buildah unshare` / podman rootless do it: a rootless
//! caller with a subordinate id range re-executes its command ([`BUILD_NS_ARG`]) as uid 0 of
//! a user namespace where its own id is 0 and the range is 1–65535. The whole build (unpack,
//! RUN, snapshot walk, layer write, cleanup) then runs there, so files owned by any of those
//! ids are handled with plain `lchown`/`unlink` and nothing is left that the caller cannot
//! remove. RUNs nest their own user namespace inside it with the same ids
//! ([`super::idmap::nested_map`]).
//!
//! The parent only writes the map (`newuidmap`/`newgidmap`), forwards signals and exits
//! with the child's code. Where the namespace cannot be had (no range, no helpers, user
//! namespaces refused) the caller builds in-process with the single-id map instead.

use std::ffi::OsString;
use std::os::unix::net::UnixStream;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use nix::sched::CloneFlags;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use signal_hook::consts::{SIGHUP, SIGINT, SIGQUIT, SIGTERM};

use super::channel::{ChannelError, ChildChannel, ParentChannel, SetupError, SetupStep};
use super::idmap::{IdMapError, IdMapMode, IdMapSources};
use super::linux::{spawn_with_socket, take_init_socket};

/// First argument of the re-executed command: the binary's `main` calls
/// [`enter_build_namespace`] first thing (before any thread starts), then drops this
/// argument and runs the command as usual.
pub const BUILD_NS_ARG: &str = "__build-userns";

/// Errors of the build namespace.
#[derive(Debug, thiserror::Error)]
pub enum BuildNamespaceError {
    /// The child could not be started.
    #[error("cannot re-execute {program} in a user namespace")]
    Spawn {
        program: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The handshake with the parent failed (child side).
    #[error("build namespace handshake")]
    Channel(#[from] ChannelError),
    /// `unshare(CLONE_NEWUSER)` failed (child side).
    #[error("cannot create the build user namespace")]
    Unshare(#[source] SetupError),
    /// Signal forwarding could not be installed.
    #[error("cannot forward signals to the build process")]
    Signals(#[source] std::io::Error),
    /// Waiting for the child failed.
    #[error("cannot wait for the build process")]
    Wait(#[source] std::io::Error),
}

/// What [`run_in_build_namespace`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reexec {
    /// The command ran in the namespace and exited with this code (128 + signal if killed).
    Finished(i32),
    /// No namespace (already uid 0, no subordinate range or helpers, or user namespaces
    /// refused): run the command in this process.
    InProcess,
}

/// Parent side: runs `program BUILD_NS_ARG args…` in a new user namespace with the caller's
/// subordinate range mapped and waits for it, forwarding SIGINT, SIGTERM, SIGHUP and SIGQUIT.
/// The child runs in its own process group, so a terminal's Ctrl-C reaches it once, through us.
pub fn run_in_build_namespace(
    sources: &IdMapSources,
    program: &Path,
    args: &[OsString],
) -> Result<Reexec, BuildNamespaceError> {
    let uid = nix::unistd::getuid().as_raw();
    let gid = nix::unistd::getgid().as_raw();
    if uid == 0 {
        return Ok(Reexec::InProcess);
    }
    let name = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid)).ok().flatten().map(|u| u.name);
    let plan = match sources.plan(IdMapMode::Range, name.as_deref(), uid, gid) {
        Ok(plan) => plan,
        Err(err) => {
            tracing::debug!(%err, "no build user namespace: RUN gets a single-id map");
            return Ok(Reexec::InProcess);
        }
    };
    let spawn_err = |source| BuildNamespaceError::Spawn { program: program.to_path_buf(), source };
    let (parent_sock, child_sock) = UnixStream::pair().map_err(spawn_err)?;
    let mut cmd = Command::new(program);
    cmd.arg(BUILD_NS_ARG).args(args).process_group(0);
    let mut child = spawn_with_socket(&mut cmd, &child_sock).map_err(spawn_err)?;
    drop(child_sock);
    let mut chan = ParentChannel::new(parent_sock);
    let refused = match chan.wait_for_id_map_request() {
        Ok(()) => match sources.write(Path::new("/proc"), child.id(), &plan.map, plan.writer) {
            Ok(()) => None,
            Err(err) => {
                let _ = chan.id_map_failed();
                Some(Fallback::Map(err))
            }
        },
        Err(err) => Some(Fallback::Handshake(err)),
    };
    if let Some(why) = refused {
        let _ = child.wait();
        tracing::warn!(reason = %why, "cannot enter the build user namespace; RUN gets a single-id map");
        return Ok(Reexec::InProcess);
    }
    chan.id_map_written()?;
    drop(chan);
    let pid = Pid::from_raw(i32::try_from(child.id()).unwrap_or(i32::MAX));
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP, SIGQUIT])
        .map_err(BuildNamespaceError::Signals)?;
    let handle = signals.handle();
    let forwarder = std::thread::spawn(move || {
        for sig in signals.forever() {
            if let Ok(sig) = Signal::try_from(sig) {
                let _ = kill(pid, sig);
            }
        }
    });
    let status = child.wait().map_err(BuildNamespaceError::Wait);
    handle.close();
    let _ = forwarder.join();
    let status = status?;
    Ok(Reexec::Finished(status.code().or_else(|| status.signal().map(|s| 128 + s)).unwrap_or(1)))
}

/// Why the parent fell back to an in-process build.
#[derive(Debug, thiserror::Error)]
enum Fallback {
    #[error("{0}")]
    Map(IdMapError),
    #[error("{0}")]
    Handshake(ChannelError),
}

/// Child side, first thing in `main` when the first argument is [`BUILD_NS_ARG`] (the
/// process must still be single-threaded): create the user namespace and wait until the
/// parent has mapped it; afterwards this process is uid 0 with the range mapped.
/// On error the process should exit at once: the parent builds in-process instead.
pub fn enter_build_namespace() -> Result<(), BuildNamespaceError> {
    let socket = take_init_socket().map_err(|e| BuildNamespaceError::Channel(ChannelError::Io(e)))?;
    let mut chan = ChildChannel::new(socket);
    if let Err(e) = nix::sched::unshare(CloneFlags::CLONE_NEWUSER) {
        let err = SetupError::new(SetupStep::UnshareUser, e, None);
        let _ = chan.report_error(err.clone());
        return Err(BuildNamespaceError::Unshare(err));
    }
    chan.request_id_map()?;
    chan.wait_for_id_map()?;
    // If the parent dies, cancel the build cleanly (the work dir is removed inside the
    // namespace). Set after the credential change of unshare, which clears it.
    let _ = nix::sys::prctl::set_pdeathsig(Signal::SIGTERM);
    Ok(())
}
