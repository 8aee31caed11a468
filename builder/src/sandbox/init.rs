//! The child side of a RUN, in the re-executed init process: enter the namespaces (with the
//! id-map handshake), fork the pid namespace's first process, prepare the root, drop to the
//! RUN's user and `execve` the command; the init process waits and reports the exit.

use std::ffi::CString;
use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use nix::sched::CloneFlags;
use nix::sys::signal::Signal;
use nix::sys::wait::{waitpid, WaitStatus};

use super::channel::{ChildChannel, ChildMsg, InitSpec, ParentChannel, SetupError, SetupStep};
use super::linux::{self, Forked};
use super::mounts;
use super::sys::Sys;
use super::{ExitStatus, IsolationMode, NetworkMode, ProcessSandbox};

/// `PATH` used for the lookup when the RUN's environment has none (Docker's default).
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Exit code of the init process when it cannot even talk to its parent.
const PROTOCOL_FAILURE: i32 = 125;

/// The namespaces unshared after the id map is in place.
pub fn namespace_flags(spec: &InitSpec) -> CloneFlags {
    let mut flags = CloneFlags::CLONE_NEWNS | CloneFlags::CLONE_NEWIPC | CloneFlags::CLONE_NEWUTS;
    if spec.config.process_sandbox == ProcessSandbox::Private {
        flags |= CloneFlags::CLONE_NEWPID;
    }
    if spec.config.network == NetworkMode::None {
        flags |= CloneFlags::CLONE_NEWNET;
    }
    flags
}

/// Enter the RUN's namespaces: user namespace first, then ask the parent for the id map
/// and wait for it, then the others (which the new user namespace owns).
pub fn enter_namespaces<S: Read + Write>(
    sys: &dyn Sys,
    spec: &InitSpec,
    chan: &mut ChildChannel<S>,
) -> Result<(), SetupError> {
    let proto = |_| SetupError::new(SetupStep::WaitIdMap, nix::Error::EPIPE, None);
    if spec.isolation == IsolationMode::UserNs {
        sys.unshare(CloneFlags::CLONE_NEWUSER).map_err(|e| SetupError::new(SetupStep::UnshareUser, e, None))?;
        chan.request_id_map().map_err(proto)?;
        chan.wait_for_id_map().map_err(proto)?;
    }
    sys.unshare(namespace_flags(spec)).map_err(|e| SetupError::new(SetupStep::UnshareNamespaces, e, None))
}

/// Everything between fork and exec in the namespace's first process, up to the
/// command lookup; returns the resolved program path.
pub fn setup_process(sys: &dyn Sys, spec: &InitSpec, report: &mut dyn FnMut(ChildMsg)) -> Result<PathBuf, SetupError> {
    let prepared = mounts::prepare_root(sys, spec)?;
    report(ChildMsg::Prepared { placeholders: prepared.placeholders, notes: prepared.notes });
    if spec.config.network == NetworkMode::None {
        sys.loopback_up().map_err(|e| SetupError::new(SetupStep::Network, e, None))?;
    }
    mounts::switch_root(sys, &spec.config.rootfs, spec.isolation)?;
    if !spec.config.hostname.is_empty() {
        sys.sethostname(&spec.config.hostname).map_err(|e| SetupError::new(SetupStep::Hostname, e, None))?;
    }
    mounts::enter_user(sys, spec)?;
    let cwd = &spec.config.cwd;
    sys.chdir(cwd).map_err(|e| SetupError::new(SetupStep::Chdir, e, Some(cwd.clone())))?;
    let program = spec.config.argv.first().ok_or_else(|| SetupError::new(SetupStep::Exec, nix::Error::EINVAL, None))?;
    find_program(program, path_of(&spec.config.env))
        .ok_or_else(|| SetupError::new(SetupStep::Exec, nix::Error::ENOENT, Some(PathBuf::from(program))))
}

fn path_of(env: &[(String, String)]) -> &str {
    env.iter().rev().find(|(k, _)| k == "PATH").map_or(DEFAULT_PATH, |(_, v)| v.as_str())
}

/// Look `program` up in `path` (inside the new root) the way `execvp` does.
pub fn find_program(program: &str, path: &str) -> Option<PathBuf> {
    if program.contains('/') {
        return Some(PathBuf::from(program));
    }
    path.split(':')
        .filter(|d| !d.is_empty())
        .map(|d| Path::new(d).join(program))
        .find(|p| p.metadata().is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0))
}

fn exec(program: &Path, spec: &InitSpec) -> SetupError {
    let err = |e| SetupError::new(SetupStep::Exec, e, Some(program.to_path_buf()));
    let cstr = |s: &str| CString::new(s).map_err(|_| err(nix::Error::EINVAL));
    let prog = match CString::new(program.as_os_str().as_encoded_bytes()) {
        Ok(p) => p,
        Err(_) => return err(nix::Error::EINVAL),
    };
    let argv: Result<Vec<CString>, _> = spec.config.argv.iter().map(|a| cstr(a)).collect();
    let env: Result<Vec<CString>, _> = spec.config.env.iter().map(|(k, v)| cstr(&format!("{k}={v}"))).collect();
    match (argv, env) {
        (Ok(argv), Ok(env)) => match nix::unistd::execve(&prog, &argv, &env) {
            Err(e) => err(e),
            Ok(never) => match never {},
        },
        (Err(e), _) | (_, Err(e)) => e,
    }
}

/// Entry point of the re-executed init process; never returns.
///
/// The binary that hosts the sandbox calls this first thing in `main` when its first
/// argument is [`super::INIT_ARG`], before any thread is started.
pub fn sandbox_init_main() -> ! {
    std::process::exit(init_main())
}

fn init_main() -> i32 {
    let Ok(socket) = linux::take_init_socket() else { return PROTOCOL_FAILURE };
    let mut chan = ChildChannel::new(socket);
    let Ok(spec) = chan.receive_spec() else { return PROTOCOL_FAILURE };
    // The init process dies with the parent's thread, and the namespace with it.
    let _ = nix::sys::prctl::set_pdeathsig(Signal::SIGKILL);
    let sys = linux::LinuxSys { id_sources: super::idmap::IdMapSources::host(), proc_root: PathBuf::from("/proc") };
    if let Err(e) = enter_namespaces(&sys, &spec, &mut chan) {
        let _ = chan.report_error(e);
        return PROTOCOL_FAILURE;
    }
    // A foreign platform's handler lives in this user namespace's own binfmt_misc, kept
    // alive by this handle until the RUN ends (init outlives the command).
    let _binfmt = match spec.config.emulation.as_ref().map(|h| super::emulation::register(&sys, h)) {
        Some(Err(e)) => {
            let _ = chan.report_error(e);
            return PROTOCOL_FAILURE;
        }
        other => other,
    };
    let Ok((report_r, report_w)) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC) else { return PROTOCOL_FAILURE };
    match linux::fork_single_threaded() {
        Err(e) => {
            let _ = chan.report_error(SetupError::new(SetupStep::Fork, e, None));
            PROTOCOL_FAILURE
        }
        Ok(Forked::Child) => {
            drop(report_r);
            drop(chan);
            first_process(&sys, &spec, File::from(report_w))
        }
        Ok(Forked::Parent(pid)) => {
            drop(report_w);
            supervise(&mut chan, File::from(report_r), pid)
        }
    }
}

/// The pid namespace's first process: set up, then exec (or report why not).
fn first_process(sys: &dyn Sys, spec: &InitSpec, report: File) -> i32 {
    let mut reports = ChildChannel::new(report);
    let _ = nix::sys::prctl::set_pdeathsig(Signal::SIGKILL);
    let result = setup_process(sys, spec, &mut |msg| {
        let _ = reports.report(&msg);
    });
    // Credential changes clear the parent-death signal; set it again right before exec.
    let _ = nix::sys::prctl::set_pdeathsig(Signal::SIGKILL);
    let err = match result {
        Ok(program) => {
            linux::reset_process_state();
            exec(&program, spec)
        }
        Err(e) => e,
    };
    let _ = reports.report_error(err);
    PROTOCOL_FAILURE
}

/// Forward the first process's setup reports, then its exit, to the parent.
fn supervise(chan: &mut ChildChannel<std::os::unix::net::UnixStream>, report: File, pid: nix::unistd::Pid) -> i32 {
    let mut reports = ParentChannel::new(report);
    let mut failed = false;
    while let Ok(Some(msg)) = reports.next_report() {
        failed |= matches!(msg, ChildMsg::Error(_));
        let _ = chan.report(&msg);
    }
    if !failed {
        let _ = chan.report(&ChildMsg::Started { pid: pid.as_raw() });
    }
    let status = loop {
        match waitpid(pid, None) {
            Ok(WaitStatus::Exited(_, code)) => break ExitStatus::Exited(code),
            Ok(WaitStatus::Signaled(_, sig, _)) => break ExitStatus::Signaled(sig as i32),
            Ok(_) | Err(nix::Error::EINTR) => continue,
            Err(_) => return PROTOCOL_FAILURE,
        }
    };
    if !failed {
        let _ = chan.report(&ChildMsg::Exited(status));
    }
    0
}
