//! The parent side of a RUN: spawn the init process, answer the id-map handshake, stream
//! output, watch for cancellation, reap, and remove the placeholders it created.

use std::fs;
use std::io::Read;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use super::channel::{ChannelError, ChildMsg, InitSpec, ParentChannel, Placeholder, SetupError, SetupStep};
use super::idmap::{IdMapError, IdMapKind, IdMapMode, IdMapSources, PlannedMap};
use super::linux::{spawn_with_socket, LinuxSys};
use super::mounts::SetupNote;
use super::sys::{NodeKind, Sys};
use super::{CancelToken, ExitStatus, IsolationMode, ProcessSandbox, SandboxConfig, Stream, INIT_ARG};

/// How often a waiting RUN looks at its cancel token.
const CANCEL_POLL: Duration = Duration::from_millis(20);

/// How long output may stay open after the command's exit was reported. In a private pid
/// namespace every writer is dead by then; in the shared one a background process of the
/// RUN could hold the pipes forever.
const OUTPUT_GRACE: Duration = Duration::from_secs(2);

/// Errors of a RUN (not its command's failure: that is an [`ExitStatus`]).
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// The config is unusable.
    #[error("invalid sandbox config: {field} {problem}")]
    InvalidConfig { field: &'static str, problem: &'static str },
    /// The id map could not be planned or written.
    #[error("cannot set up the user namespace id map")]
    IdMap(#[from] IdMapError),
    /// The init process could not be started.
    #[error("cannot start the sandbox init process {program}")]
    Spawn {
        program: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Talking to the init process failed.
    #[error("sandbox init process protocol")]
    Channel(#[from] ChannelError),
    /// A setup step inside the sandbox failed; `hint` says what usually fixes it.
    #[error("sandbox setup failed{}", hint.map(|h| format!(" (hint: {h})")).unwrap_or_default())]
    Setup {
        #[source]
        source: SetupError,
        hint: Option<&'static str>,
    },
    /// The init process died without reporting an exit.
    #[error("sandbox init process ended without a report ({status:?})")]
    InitDied { status: Option<std::process::ExitStatus> },
    /// The RUN was cancelled; its processes are gone.
    #[error("cancelled")]
    Cancelled,
}

/// What a RUN did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunReport {
    /// The command's exit.
    pub status: ExitStatus,
    /// Which id map it ran with ([`IdMapKind::Single`] explains `chown` failures).
    pub id_map: IdMapKind,
    /// Mount points created for the RUN and removed again; a snapshot must ignore them.
    pub placeholders: Vec<PathBuf>,
    /// Setup steps skipped or weakened.
    pub notes: Vec<SetupNote>,
}

impl RunReport {
    /// A hint for a failed command that ran with a single-id map, where `chown` and
    /// `USER` with other ids fail with `EINVAL`/`EPERM`.
    pub fn id_map_hint(&self) -> Option<&'static str> {
        (self.id_map == IdMapKind::Single && !self.status.success()).then_some(
            "this RUN had a single-id user namespace map, so chown and setuid to ids other than 0 fail; grant the user a subordinate range of 65536 ids in /etc/subuid and /etc/subgid (usermod --add-subuids 100000-165535 --add-subgids 100000-165535 USER) and install uidmap",
        )
    }
}

/// What usually fixes a failed setup step.
pub fn hint_for(err: &SetupError) -> Option<&'static str> {
    match err.step {
        SetupStep::UnshareUser => Some("user namespaces are refused: in a pod set seccompProfile Unconfined and AppArmor unconfined; on a host check sysctl user.max_user_namespaces > 0 and kernel.unprivileged_userns_clone=1 (docs/rootless.md)"),
        SetupStep::MountProc => Some("/proc cannot be mounted, usually a masked /proc in a pod: set securityContext.procMount: Unmasked (with hostUsers: false), or pass --no-process-sandbox (the RUN shares the pod's pid namespace and /proc) or --isolation auto, which falls back to it"),
        SetupStep::Overlay => Some("overlayfs is not permitted in this user namespace (needs kernel >= 5.11); use the native snapshotter"),
        SetupStep::UnshareNamespaces | SetupStep::PrepareRoot | SetupStep::MountDev => Some("mounts are refused in the user namespace: check seccomp and AppArmor (docs/rootless.md)"),
        SetupStep::Emulation => Some("binfmt_misc cannot be mounted in the user namespace (needs kernel >= 6.7): register a host qemu-user handler (apt-get install qemu-user-static binfmt-support) or build on a native node"),
        SetupStep::Credentials => Some("the USER's ids are outside the id map: grant a subordinate range of 65536 ids in /etc/subuid and /etc/subgid and install uidmap"),
        SetupStep::Exec if err.errno == nix::Error::ENOENT as i32 => Some("executable file not found in PATH"),
        _ => None,
    }
}

/// Runs RUN steps. Configure with the `&mut self` builder methods, then [`Sandbox::run`].
#[derive(Debug, Clone)]
pub struct Sandbox {
    isolation: IsolationMode,
    init_program: PathBuf,
    id_sources: IdMapSources,
    proc_root: PathBuf,
    host_files: Vec<(PathBuf, PathBuf)>,
    process_sandbox: ProcessSandbox,
    emulators: super::emulation::EmulatorSearch,
}

impl Default for Sandbox {
    fn default() -> Self {
        Self::new()
    }
}

impl Sandbox {
    /// Rootless isolation, init program `/proc/self/exe`, the host's id files and helpers,
    /// the host's `/etc/resolv.conf` and `/etc/hosts`.
    pub fn new() -> Self {
        let etc = |f: &str| (Path::new("/etc").join(f), Path::new("/etc").join(f));
        Self {
            isolation: IsolationMode::UserNs,
            init_program: PathBuf::from("/proc/self/exe"),
            id_sources: IdMapSources::host(),
            proc_root: PathBuf::from("/proc"),
            host_files: vec![etc("resolv.conf"), etc("hosts")],
            process_sandbox: ProcessSandbox::Private,
            emulators: super::emulation::EmulatorSearch::default(),
        }
    }

    /// The isolation mode.
    pub fn isolation_mode(&self) -> IsolationMode {
        self.isolation
    }

    /// Set the isolation mode.
    pub fn isolation(&mut self, mode: IsolationMode) -> &mut Self {
        self.isolation = mode;
        self
    }

    /// The binary re-executed as init (it must call [`super::sandbox_init_main`] on [`INIT_ARG`]).
    pub fn init_program(&mut self, program: impl Into<PathBuf>) -> &mut Self {
        self.init_program = program.into();
        self
    }

    /// [`ProcessSandbox::SharedPidNs`] here makes every RUN share the caller's pid namespace
    /// and `/proc`, whatever its config asks (BuildKit's `--oci-worker-no-process-sandbox`).
    pub fn process_sandbox(&mut self, process_sandbox: ProcessSandbox) -> &mut Self {
        self.process_sandbox = process_sandbox;
        self
    }

    /// Where `/etc/subuid`, `/etc/subgid` and the map helpers are.
    pub fn id_map_sources(&mut self, sources: IdMapSources) -> &mut Self {
        self.id_sources = sources;
        self
    }

    /// Host files bound read-only into every RUN: `(host path, path inside)`.
    pub fn host_files(&mut self, files: Vec<(PathBuf, PathBuf)>) -> &mut Self {
        self.host_files = files;
        self
    }

    /// Where foreign-platform RUNs look for binfmt handlers and qemu-user interpreters.
    pub fn emulators(&mut self, search: super::emulation::EmulatorSearch) -> &mut Self {
        self.emulators = search;
        self
    }

    /// What a RUN for `platform` needs to execute (see [`super::emulation::plan_emulation`]).
    pub fn emulation_for(
        &self,
        platform: &crate::plan::Platform,
    ) -> Result<Option<super::emulation::BinfmtHandler>, super::emulation::EmulationError> {
        let without_userns = match self.isolation {
            IsolationMode::UserNs => None,
            IsolationMode::Chroot => Some("chroot"),
            IsolationMode::Container => Some("container"),
        };
        super::emulation::plan_emulation(platform, &self.emulators, without_userns)
    }

    /// Which map a RUN asking for `mode` would get (so a failing RUN can be hinted at).
    pub fn id_map_kind_for(&self, mode: IdMapMode) -> IdMapKind {
        match self.plan_map(mode) {
            Ok(Some(plan)) => plan.kind,
            Ok(None) => IdMapKind::Host,
            Err(_) => IdMapKind::Single,
        }
    }

    fn plan_map(&self, mode: IdMapMode) -> Result<Option<PlannedMap>, SandboxError> {
        if self.isolation != IsolationMode::UserNs {
            return Ok(None);
        }
        let uid = nix::unistd::getuid().as_raw();
        let gid = nix::unistd::getgid().as_raw();
        if uid == 0 && mode != IdMapMode::Single {
            let own = |f: &str| fs::read_to_string(self.proc_root.join("self").join(f)).unwrap_or_default();
            if let Some(plan) = super::idmap::nested_map(&own("uid_map"), &own("gid_map")) {
                return Ok(Some(plan));
            }
        }
        let name = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid)).ok().flatten().map(|u| u.name);
        Ok(Some(self.id_sources.plan(mode, name.as_deref(), uid, gid)?))
    }

    /// Run one RUN; `output` gets its stdout and stderr live. Returns when every process of
    /// the RUN is gone; on cancel it kills them all and returns [`SandboxError::Cancelled`].
    ///
    /// Blocks the calling thread, which must live until it returns (the RUN's processes
    /// die with it through `PR_SET_PDEATHSIG`); call it from a dedicated or blocking thread.
    pub fn run(
        &self,
        cfg: &SandboxConfig,
        mut output: impl FnMut(Stream, &[u8]),
        cancel: &CancelToken,
    ) -> Result<RunReport, SandboxError> {
        validate(cfg)?;
        if self.isolation == IsolationMode::Container {
            return super::container::run(cfg, &mut output, cancel);
        }
        let mut config = cfg.clone();
        if self.process_sandbox == ProcessSandbox::SharedPidNs {
            config.process_sandbox = ProcessSandbox::SharedPidNs;
        }
        if config.process_sandbox == ProcessSandbox::SharedPidNs {
            // Warned about once, when the isolation is chosen.
            tracing::debug!("RUN shares the caller's pid namespace and /proc");
        }
        if self.isolation == IsolationMode::Chroot {
            tracing::warn!("RUN isolated by chroot without a user namespace: uid 0 in the RUN is the host's root");
        }
        let plan = self.plan_map(cfg.id_map)?;
        let spec = InitSpec {
            config,
            isolation: self.isolation,
            id_map: plan.as_ref().map_or(IdMapKind::Host, |p| p.kind),
            host_files: self.host_files.iter().filter(|(h, _)| h.is_file()).cloned().collect(),
        };
        let (parent_sock, child_sock) = UnixStream::pair().map_err(ChannelError::Io)?;
        let mut cmd = Command::new(&self.init_program);
        cmd.arg(INIT_ARG)
            .env_clear()
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        let spawn_err = |source| SandboxError::Spawn { program: self.init_program.clone(), source };
        let mut child = spawn_with_socket(&mut cmd, &child_sock).map_err(spawn_err)?;
        drop(child_sock);
        let init_pid = Pid::from_raw(i32::try_from(child.id()).unwrap_or(i32::MAX));
        let (tx, rx) = mpsc::channel::<Event>();
        if let Some(out) = child.stdout.take() {
            spawn_reader(out, Stream::Stdout, tx.clone());
        }
        if let Some(err) = child.stderr.take() {
            spawn_reader(err, Stream::Stderr, tx.clone());
        }
        let sys = LinuxSys { id_sources: self.id_sources.clone(), proc_root: self.proc_root.clone() };
        let raw_pid = child.id();
        let control =
            thread::spawn(move || control_loop(ParentChannel::new(parent_sock), &spec, plan, &sys, raw_pid, &tx));
        let outcome = watch(&rx, &mut output, cancel, init_pid);
        let init_status = child.wait().ok();
        let control = control.join().unwrap_or(Ok(()));
        let removed = remove_placeholders(cfg, &outcome.placeholders);
        if outcome.cancelled {
            return Err(SandboxError::Cancelled);
        }
        control?;
        if let Some(source) = outcome.error {
            let hint = hint_for(&source);
            return Err(SandboxError::Setup { source, hint });
        }
        match outcome.status {
            Some(status) => Ok(RunReport {
                status,
                id_map: outcome.id_map.unwrap_or(IdMapKind::Host),
                placeholders: removed,
                notes: outcome.notes,
            }),
            None => Err(SandboxError::InitDied { status: init_status }),
        }
    }
}

fn validate(cfg: &SandboxConfig) -> Result<(), SandboxError> {
    let bad = |field, problem| Err(SandboxError::InvalidConfig { field, problem });
    if cfg.argv.is_empty() {
        return bad("argv", "is empty");
    }
    if !cfg.rootfs.is_absolute() {
        return bad("rootfs", "is not absolute");
    }
    if !cfg.rootfs.is_dir() {
        return bad("rootfs", "is not a directory");
    }
    if !cfg.cwd.is_absolute() {
        return bad("cwd", "is not absolute");
    }
    Ok(())
}

enum Event {
    Output(Stream, Vec<u8>),
    OutputClosed,
    Report(ChildMsg),
    IdMap(IdMapKind),
    ControlClosed,
}

fn spawn_reader(mut pipe: impl Read + Send + 'static, stream: Stream, tx: mpsc::Sender<Event>) {
    thread::spawn(move || {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match pipe.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if tx.send(Event::Output(stream, buf[..n].to_vec())).is_err() {
                        break;
                    }
                }
            }
        }
        let _ = tx.send(Event::OutputClosed);
    });
}

fn control_loop(
    mut chan: ParentChannel<UnixStream>,
    spec: &InitSpec,
    plan: Option<PlannedMap>,
    sys: &dyn Sys,
    pid: u32,
    tx: &mpsc::Sender<Event>,
) -> Result<(), SandboxError> {
    let result = (|| {
        chan.send_spec(spec)?;
        if let Some(plan) = plan {
            match chan.wait_for_id_map_request() {
                Ok(()) => {}
                Err(ChannelError::Child(e)) => {
                    let _ = tx.send(Event::Report(ChildMsg::Error(e)));
                    return Ok(());
                }
                Err(e) => return Err(e.into()),
            }
            if let Err(e) = sys.write_id_map(pid, &plan.map, plan.writer) {
                let _ = chan.id_map_failed();
                return Err(SandboxError::IdMap(e));
            }
            tracing::debug!(pid, kind = ?plan.kind, "id map written");
            let _ = tx.send(Event::IdMap(plan.kind));
            chan.id_map_written()?;
        } else {
            let _ = tx.send(Event::IdMap(IdMapKind::Host));
        }
        while let Some(msg) = chan.next_report()? {
            let _ = tx.send(Event::Report(msg));
        }
        Ok(())
    })();
    let _ = tx.send(Event::ControlClosed);
    result
}

#[derive(Default)]
struct Outcome {
    status: Option<ExitStatus>,
    error: Option<SetupError>,
    id_map: Option<IdMapKind>,
    placeholders: Vec<Placeholder>,
    notes: Vec<SetupNote>,
    cancelled: bool,
}

/// Relay events until the output pipes and the control channel are all closed.
fn watch(
    rx: &mpsc::Receiver<Event>,
    output: &mut dyn FnMut(Stream, &[u8]),
    cancel: &CancelToken,
    init: Pid,
) -> Outcome {
    let mut out = Outcome::default();
    let mut open = 3;
    let mut first_process: Option<Pid> = None;
    let mut exited_at: Option<std::time::Instant> = None;
    while open > 0 {
        if exited_at.is_some_and(|t| t.elapsed() > OUTPUT_GRACE) {
            tracing::warn!("RUN output still open after its exit; a background process of the RUN holds it");
            break;
        }
        if cancel.is_cancelled() && !out.cancelled {
            out.cancelled = true;
            // Killing the pid namespace's first process makes the kernel kill every process
            // in it, and it is reaped (by our init process) only after all of them are gone,
            // so the init process's report means "nothing left". Before the first process
            // exists, kill the init process; the first process follows by PDEATHSIG.
            let _ = kill(first_process.unwrap_or(init), Signal::SIGKILL);
        }
        match rx.recv_timeout(CANCEL_POLL) {
            Ok(Event::Output(stream, data)) => output(stream, &data),
            Ok(Event::OutputClosed | Event::ControlClosed) => open -= 1,
            Ok(Event::IdMap(kind)) => out.id_map = Some(kind),
            Ok(Event::Report(msg)) => match msg {
                ChildMsg::Prepared { placeholders, notes } => {
                    for note in &notes {
                        tracing::warn!(?note, "sandbox setup weakened");
                    }
                    out.placeholders = placeholders;
                    out.notes = notes;
                }
                ChildMsg::Started { pid } => first_process = Some(Pid::from_raw(pid)),
                ChildMsg::Exited(status) => {
                    out.status = Some(status);
                    exited_at = Some(std::time::Instant::now());
                }
                ChildMsg::Error(e) => out.error = Some(e),
                ChildMsg::IdMapRequest => {}
            },
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    out
}

/// Remove created mount points, deepest first, from the directory that holds the RUN's
/// writes (the overlay upper dir, or the root itself). As BuildKit's stub cleaner does,
/// the parent directory keeps the times it had after the RUN, and a directory the RUN
/// filled is left alone. Mount points inside other mounts (a tmpfs `/dev`) never reached
/// the disk and are skipped.
fn remove_placeholders(cfg: &SandboxConfig, placeholders: &[Placeholder]) -> Vec<PathBuf> {
    let base = cfg.overlay.as_ref().map_or(cfg.rootfs.as_path(), |o| o.upper.as_path());
    let mut removed = Vec::new();
    for p in placeholders.iter().rev() {
        let rel = p.path.strip_prefix("/").unwrap_or(&p.path);
        let host = base.join(rel);
        let parent_times = host.parent().and_then(|d| fs::metadata(d).ok()).map(|m| (m.accessed(), m.modified()));
        let res = match p.kind {
            NodeKind::File => fs::remove_file(&host),
            NodeKind::Dir => fs::remove_dir(&host),
        };
        match res {
            Ok(()) => restore_times(&host, parent_times),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            // The RUN filled it (a scratch image's first `mkdir -p /dev/...`): it stays, as
            // documented above, and that is no cause for a warning.
            Err(e) if e.kind() == std::io::ErrorKind::DirectoryNotEmpty => {
                tracing::debug!(path = %host.display(), "placeholder filled by the RUN, kept")
            }
            Err(e) => tracing::warn!(path = %host.display(), error = %e, "cannot remove sandbox placeholder"),
        }
        removed.push(p.path.clone());
    }
    removed
}

type Times = (std::io::Result<std::time::SystemTime>, std::io::Result<std::time::SystemTime>);

fn restore_times(child: &Path, times: Option<Times>) {
    let (Some(dir), Some((Ok(atime), Ok(mtime)))) = (child.parent(), times) else { return };
    let restored =
        fs::File::open(dir).and_then(|f| f.set_times(fs::FileTimes::new().set_accessed(atime).set_modified(mtime)));
    if let Err(e) = restored {
        tracing::debug!(path = %dir.display(), error = %e, "cannot restore the times of a placeholder's parent");
    }
}
