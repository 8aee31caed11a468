//! The parent/child handshake as a typed channel. The method names spell the protocol:
//!
//! 1. `parent.send_spec(spec)` → `child.receive_spec()`
//! 2. the child unshares its user namespace, then `child.request_id_map()`
//! 3. `parent.wait_for_id_map_request()` → the parent writes `setgroups`/`uid_map`/`gid_map`
//!    (or runs `newuidmap`/`newgidmap`) → `parent.id_map_written()`
//! 4. `child.wait_for_id_map()`, then the child sets up and execs, reporting
//!    `child.placeholders(..)`, `child.started(pid)` and `child.exited(status)`, or
//!    `child.report_error(e)` — errors come back typed, never as strings to parse.
//!
//! Frames are a 4-byte little-endian length followed by JSON.

use std::io::{self, Read, Write};
use std::path::PathBuf;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::idmap::IdMapKind;
use super::mounts::SetupNote;
use super::sys::NodeKind;
use super::{ExitStatus, IsolationMode, SandboxConfig};

/// Largest frame accepted (a spec with a big environment fits easily).
const MAX_FRAME: u32 = 16 << 20;

/// Everything the child needs, sent by the parent before anything else.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InitSpec {
    /// The RUN to perform.
    pub config: SandboxConfig,
    /// User namespace or chroot.
    pub isolation: IsolationMode,
    /// Which id map the parent will write (decides whether `setgroups` is allowed).
    pub id_map: IdMapKind,
    /// Host files bound read-only onto `/etc/resolv.conf` and `/etc/hosts`.
    pub host_files: Vec<(PathBuf, PathBuf)>,
}

/// The step of the child's setup that failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SetupStep {
    /// `unshare(CLONE_NEWUSER)`.
    UnshareUser,
    /// Waiting for the parent to write the id map.
    WaitIdMap,
    /// `unshare` of mount, pid, ipc, uts (and net) namespaces.
    UnshareNamespaces,
    /// `fork` of the namespace's first process.
    Fork,
    /// Making `/` private, binding the root onto itself.
    PrepareRoot,
    /// Mounting overlayfs over the stage root.
    Overlay,
    /// Mounting `/proc`.
    MountProc,
    /// Building `/dev`.
    MountDev,
    /// Mounting `/sys`.
    MountSys,
    /// Binding `/etc/resolv.conf`, `/etc/hosts` or a `RUN --mount`.
    BindMount,
    /// Creating a missing mount point or the working directory.
    CreateNode,
    /// `pivot_root` or `chroot`.
    SwitchRoot,
    /// `sethostname`.
    Hostname,
    /// Bringing `lo` up in a new network namespace.
    Network,
    /// `setgroups`, `setresgid`, `setresuid`.
    Credentials,
    /// `chdir` into the working directory.
    Chdir,
    /// Finding or `execve`-ing the command.
    Exec,
    /// Registering qemu-user in the RUN's own `binfmt_misc` (foreign platforms).
    Emulation,
    /// Reading the spec or talking to the parent.
    Protocol,
}

/// A failure inside the child, sent back typed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{step:?} failed{}: {}", path.as_ref().map(|p| format!(" on {}", p.display())).unwrap_or_default(), nix::Error::from_raw(*errno).desc())]
pub struct SetupError {
    /// Which step.
    pub step: SetupStep,
    /// The `errno` of the failing call.
    pub errno: i32,
    /// The path involved, if any.
    pub path: Option<PathBuf>,
}

impl SetupError {
    /// A failure of `step` with `err` on `path`.
    pub fn new(step: SetupStep, err: nix::Error, path: Option<PathBuf>) -> Self {
        Self { step, errno: err as i32, path }
    }
}

/// A mount point the child had to create; the parent removes it after the RUN.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Placeholder {
    /// Path inside the root (absolute, e.g. `/etc/resolv.conf`).
    pub path: PathBuf,
    /// File or directory.
    pub kind: NodeKind,
}

#[derive(Debug, Serialize, Deserialize)]
enum ParentMsg {
    Spec(Box<InitSpec>),
    IdMapWritten,
    IdMapFailed,
}

/// Messages from the child, after the handshake.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ChildMsg {
    /// The child unshared its user namespace and waits for its map.
    IdMapRequest,
    /// The root is prepared: mount points created in it, and skipped steps.
    Prepared { placeholders: Vec<Placeholder>, notes: Vec<SetupNote> },
    /// The command runs as host pid `pid` (the pid namespace's init).
    Started { pid: i32 },
    /// The command ended.
    Exited(ExitStatus),
    /// Setup failed.
    Error(SetupError),
}

/// Errors of the channel itself.
#[derive(Debug, thiserror::Error)]
pub enum ChannelError {
    /// Reading or writing the socket failed.
    #[error("sandbox channel i/o")]
    Io(#[from] io::Error),
    /// A frame could not be encoded or decoded.
    #[error("sandbox channel frame")]
    Frame(#[from] serde_json::Error),
    /// A frame larger than the limit.
    #[error("sandbox channel frame of {len} bytes exceeds the limit")]
    TooLarge { len: u32 },
    /// The peer closed the channel mid-protocol.
    #[error("sandbox peer closed the channel during {during}")]
    Closed { during: &'static str },
    /// The child reported a setup failure.
    #[error("sandbox setup failed")]
    Child(#[source] SetupError),
    /// The peer sent a message out of order.
    #[error("unexpected sandbox message during {during}")]
    Unexpected { during: &'static str },
}

fn send<T: Serialize>(w: &mut impl Write, msg: &T) -> Result<(), ChannelError> {
    let body = serde_json::to_vec(msg)?;
    let len = u32::try_from(body.len()).map_err(|_| ChannelError::TooLarge { len: u32::MAX })?;
    let mut frame = Vec::with_capacity(body.len() + 4);
    frame.extend_from_slice(&len.to_le_bytes());
    frame.extend_from_slice(&body);
    w.write_all(&frame)?;
    Ok(())
}

fn recv<T: DeserializeOwned>(r: &mut impl Read) -> Result<Option<T>, ChannelError> {
    let mut len = [0u8; 4];
    match r.read_exact(&mut len) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e.into()),
    }
    let len = u32::from_le_bytes(len);
    if len > MAX_FRAME {
        return Err(ChannelError::TooLarge { len });
    }
    let mut body = vec![0u8; len as usize];
    r.read_exact(&mut body)?;
    Ok(Some(serde_json::from_slice(&body)?))
}

/// The parent's end.
#[derive(Debug)]
pub struct ParentChannel<S> {
    stream: S,
}

impl<S: Read + Write> ParentChannel<S> {
    /// Wrap the parent's end of a socket pair.
    pub fn new(stream: S) -> Self {
        Self { stream }
    }

    /// Step 1: send the spec.
    pub fn send_spec(&mut self, spec: &InitSpec) -> Result<(), ChannelError> {
        send(&mut self.stream, &ParentMsg::Spec(Box::new(spec.clone())))
    }

    /// Step 3: wait until the child has its user namespace and asks for a map.
    pub fn wait_for_id_map_request(&mut self) -> Result<(), ChannelError> {
        const DURING: &str = "id map request";
        match recv::<ChildMsg>(&mut self.stream)? {
            Some(ChildMsg::IdMapRequest) => Ok(()),
            Some(ChildMsg::Error(e)) => Err(ChannelError::Child(e)),
            Some(_) => Err(ChannelError::Unexpected { during: DURING }),
            None => Err(ChannelError::Closed { during: DURING }),
        }
    }

    /// Step 3: tell the child its map is in place.
    pub fn id_map_written(&mut self) -> Result<(), ChannelError> {
        send(&mut self.stream, &ParentMsg::IdMapWritten)
    }

    /// Step 3, failure: tell the child to give up.
    pub fn id_map_failed(&mut self) -> Result<(), ChannelError> {
        send(&mut self.stream, &ParentMsg::IdMapFailed)
    }

    /// Step 4: the next report of the child; `None` once it closed the channel.
    pub fn next_report(&mut self) -> Result<Option<ChildMsg>, ChannelError> {
        recv(&mut self.stream)
    }
}

/// The child's end.
#[derive(Debug)]
pub struct ChildChannel<S> {
    stream: S,
}

impl<S: Read + Write> ChildChannel<S> {
    /// Wrap the child's end of a socket pair.
    pub fn new(stream: S) -> Self {
        Self { stream }
    }

    /// Step 1: receive the spec.
    pub fn receive_spec(&mut self) -> Result<InitSpec, ChannelError> {
        match recv::<ParentMsg>(&mut self.stream)? {
            Some(ParentMsg::Spec(spec)) => Ok(*spec),
            Some(_) => Err(ChannelError::Unexpected { during: "spec" }),
            None => Err(ChannelError::Closed { during: "spec" }),
        }
    }

    /// Step 2: ask the parent to write the id map.
    pub fn request_id_map(&mut self) -> Result<(), ChannelError> {
        send(&mut self.stream, &ChildMsg::IdMapRequest)
    }

    /// Step 4: wait for the parent's answer.
    pub fn wait_for_id_map(&mut self) -> Result<(), ChannelError> {
        const DURING: &str = "id map";
        match recv::<ParentMsg>(&mut self.stream)? {
            Some(ParentMsg::IdMapWritten) => Ok(()),
            Some(ParentMsg::IdMapFailed) => Err(ChannelError::Closed { during: DURING }),
            Some(_) => Err(ChannelError::Unexpected { during: DURING }),
            None => Err(ChannelError::Closed { during: DURING }),
        }
    }

    /// Report a child message (placeholders, started, exited, error).
    pub fn report(&mut self, msg: &ChildMsg) -> Result<(), ChannelError> {
        send(&mut self.stream, msg)
    }

    /// Report a setup failure.
    pub fn report_error(&mut self, err: SetupError) -> Result<(), ChannelError> {
        send(&mut self.stream, &ChildMsg::Error(err))
    }
}
