//! Container isolation ([`IsolationMode::Container`](super::IsolationMode::Container)): a
//! RUN is a plain child process of rbuild, no namespaces, in the container's own `/`, which
//! the executor has made the stage root (Kaniko's model, for pods whose security policy
//! forbids user namespaces). `USER` is applied with `setgid`/`setuid` (root only), the
//! environment and working directory as usual. The command runs in its own process group,
//! which is killed on cancel and after the command exits, so nothing of a RUN outlives it.
//!
//! No `unsafe` here: `std::process::Command` does the credential change between fork and exec.

use std::io::Read;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;

use super::channel::{SetupError, SetupStep};
use super::idmap::IdMapKind;
use super::run::{hint_for, RunReport, SandboxError};
use super::{find_program, CancelToken, ExitStatus, NetworkMode, SandboxConfig, Stream, DEFAULT_PATH};

/// How often the wait loop looks at the cancel token and the child.
const POLL: Duration = Duration::from_millis(20);

/// How long output may stay open after the command exited (a background process of the RUN
/// holding the pipes is killed with the process group, so this is only a safety net).
const OUTPUT_GRACE: Duration = Duration::from_secs(2);

/// Runs one RUN as a child process in `/`; see the module docs.
pub(super) fn run(
    cfg: &SandboxConfig,
    output: &mut dyn FnMut(Stream, &[u8]),
    cancel: &CancelToken,
) -> Result<RunReport, SandboxError> {
    check(cfg)?;
    let setup = |step, errno, path: Option<PathBuf>| {
        let source = SetupError::new(step, errno, path);
        SandboxError::Setup { hint: hint_for(&source), source }
    };
    std::fs::create_dir_all(&cfg.cwd).map_err(|e| setup(SetupStep::Chdir, errno_of(&e), Some(cfg.cwd.clone())))?;
    let argv0 = cfg.argv.first().ok_or(SandboxError::InvalidConfig { field: "argv", problem: "is empty" })?;
    let path = cfg.env.iter().rev().find(|(k, _)| k == "PATH").map_or(DEFAULT_PATH, |(_, v)| v.as_str());
    let program = find_program(argv0, path)
        .ok_or_else(|| setup(SetupStep::Exec, nix::Error::ENOENT, Some(PathBuf::from(argv0))))?;
    let mut cmd = Command::new(&program);
    cmd.arg0(argv0)
        .args(cfg.argv.iter().skip(1))
        .env_clear()
        .envs(cfg.env.iter().map(|(k, v)| (k, v)))
        .current_dir(&cfg.cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let (uid, gid) = (nix::unistd::geteuid().as_raw(), nix::unistd::getegid().as_raw());
    if (cfg.user.uid, cfg.user.gid) != (uid, gid) {
        // std drops supplementary groups (setgroups(0)) when root changes uid.
        cmd.gid(cfg.user.gid).uid(cfg.user.uid);
    }
    let mut child = cmd.spawn().map_err(|e| setup(SetupStep::Exec, errno_of(&e), Some(program.clone())))?;
    let group = Pid::from_raw(i32::try_from(child.id()).unwrap_or(i32::MAX));
    tracing::debug!(?program, pid = child.id(), "RUN started in the container's own root");
    let (tx, rx) = mpsc::channel::<Option<(Stream, Vec<u8>)>>();
    let readers = [
        child.stdout.take().map(|p| spawn_reader(p, Stream::Stdout, tx.clone())),
        child.stderr.take().map(|p| spawn_reader(p, Stream::Stderr, tx.clone())),
    ];
    drop(tx);
    let mut open = readers.iter().flatten().count();
    let mut status = None;
    let mut exited_at: Option<Instant> = None;
    while open > 0 || status.is_none() {
        if cancel.is_cancelled() {
            let _ = killpg(group, Signal::SIGKILL);
            let _ = child.wait();
            return Err(SandboxError::Cancelled);
        }
        if status.is_none() {
            if let Ok(Some(s)) = child.try_wait() {
                status = Some(s);
                exited_at = Some(Instant::now());
                // Background processes the command left die with it, as in a pid namespace.
                let _ = killpg(group, Signal::SIGKILL);
            }
        }
        if exited_at.is_some_and(|t| t.elapsed() > OUTPUT_GRACE) {
            break;
        }
        match rx.recv_timeout(POLL) {
            Ok(Some((stream, data))) => output(stream, &data),
            Ok(None) => open = open.saturating_sub(1),
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => open = 0,
        }
    }
    let status = match status {
        Some(s) => s,
        None => child.wait().map_err(|source| SandboxError::Spawn { program: program.clone(), source })?,
    };
    let status = match (status.code(), status.signal()) {
        (Some(code), _) => ExitStatus::Exited(code),
        (None, Some(sig)) => ExitStatus::Signaled(sig),
        (None, None) => return Err(SandboxError::InitDied { status: Some(status) }),
    };
    Ok(RunReport { status, id_map: IdMapKind::Host, placeholders: Vec::new(), notes: Vec::new() })
}

/// What container isolation cannot do: another root, a private network, mounts, overlay.
fn check(cfg: &SandboxConfig) -> Result<(), SandboxError> {
    let bad = |field, problem| Err(SandboxError::InvalidConfig { field, problem });
    if cfg.rootfs != Path::new("/") {
        return bad("rootfs", "must be / under container isolation (the build runs in the container's own root)");
    }
    if cfg.network == NetworkMode::None {
        return bad("network", "none needs a network namespace, which container isolation does not create");
    }
    if !cfg.mounts.is_empty() {
        return bad("mounts", "need a mount namespace, which container isolation does not create");
    }
    if cfg.overlay.is_some() {
        return bad("overlay", "needs a mount namespace; container isolation snapshots by tree walk");
    }
    let uid = nix::unistd::geteuid().as_raw();
    if uid != 0 && (cfg.user.uid, cfg.user.gid) != (uid, nix::unistd::getegid().as_raw()) {
        return bad("user", "differs from rbuild's own and rbuild is not root, so it cannot switch to it");
    }
    Ok(())
}

fn errno_of(e: &std::io::Error) -> nix::Error {
    nix::Error::from_raw(e.raw_os_error().unwrap_or(nix::Error::EIO as i32))
}

fn spawn_reader(
    mut pipe: impl Read + Send + 'static,
    stream: Stream,
    tx: mpsc::Sender<Option<(Stream, Vec<u8>)>>,
) -> thread::JoinHandle<()> {
    thread::spawn(move || {
        let mut buf = vec![0u8; 64 * 1024];
        while let Ok(n @ 1..) = pipe.read(&mut buf) {
            if tx.send(Some((stream, buf[..n].to_vec()))).is_err() {
                return;
            }
        }
        let _ = tx.send(None);
    })
}
