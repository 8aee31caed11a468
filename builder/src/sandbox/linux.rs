//! The real [`Sys`], and the only `unsafe` of rbuild: handing the control socket to the
//! re-executed init process, taking it there, `fork` in that single-threaded process, and
//! the `ioctl` that brings `lo` up in a RUN without network.
#![allow(unsafe_code)]

use std::fs;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::{symlink, DirBuilderExt, OpenOptionsExt};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};

use nix::errno::Errno;
use nix::fcntl::{fcntl, FcntlArg, FdFlag};
use nix::mount::{mount, umount2, MntFlags};
use nix::sched::{unshare, CloneFlags};
use nix::sys::socket::{socket, AddressFamily, SockFlag, SockType};
use nix::unistd::{chdir, chroot, pivot_root, setgroups, sethostname, setresgid, setresuid, ForkResult, Gid, Uid};

use super::idmap::{IdMapError, IdMapSources};
use super::sys::{IdMap, IdMapWriter, MountCall, NodeKind, Sys, SysResult};

/// The descriptor number the init process finds its control socket on.
pub const INIT_FD: RawFd = 3;

/// The host's system calls.
#[derive(Debug, Clone)]
pub struct LinuxSys {
    /// Where id maps are written and helpers found.
    pub id_sources: IdMapSources,
    /// The proc file system of the parent (normally `/proc`).
    pub proc_root: PathBuf,
}

impl Sys for LinuxSys {
    fn unshare(&self, flags: CloneFlags) -> SysResult {
        unshare(flags)
    }
    fn mount(&self, c: &MountCall) -> SysResult {
        mount(c.source.as_deref(), &c.target, c.fstype.as_deref(), c.flags, c.data.as_deref())
    }
    fn umount_detach(&self, target: &Path) -> SysResult {
        umount2(target, MntFlags::MNT_DETACH)
    }
    fn pivot_root(&self, new_root: &Path, put_old: &Path) -> SysResult {
        pivot_root(new_root, put_old)
    }
    fn chroot(&self, root: &Path) -> SysResult {
        chroot(root)
    }
    fn chdir(&self, dir: &Path) -> SysResult {
        chdir(dir)
    }
    fn create_node(&self, path: &Path, kind: NodeKind) -> SysResult<bool> {
        if self.exists(path) {
            return Ok(false);
        }
        let made = match kind {
            NodeKind::Dir => fs::DirBuilder::new().mode(0o755).create(path),
            NodeKind::File => fs::OpenOptions::new().write(true).create_new(true).mode(0o644).open(path).map(drop),
        };
        match made {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(false),
            Err(e) => Err(errno_of(&e)),
        }
    }
    fn symlink(&self, target: &Path, link: &Path) -> SysResult {
        symlink(target, link).map_err(|e| errno_of(&e))
    }
    fn exists(&self, path: &Path) -> bool {
        path.symlink_metadata().is_ok()
    }
    fn is_dir(&self, path: &Path) -> bool {
        path.is_dir()
    }
    fn read_link(&self, path: &Path) -> Option<PathBuf> {
        fs::read_link(path).ok()
    }
    fn loopback_up(&self) -> SysResult {
        let sock = socket(AddressFamily::Inet, SockType::Datagram, SockFlag::SOCK_CLOEXEC, None)?;
        // SAFETY: `ifreq` is plain old data (arrays, integers, a union of such and a raw
        // pointer), for which all-zero bytes are a valid value.
        let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
        for (dst, src) in req.ifr_name.iter_mut().zip(b"lo") {
            *dst = *src as libc::c_char;
        }
        // SAFETY: `sock` is an open socket and `req` a valid, writable ifreq that outlives
        // the call; SIOCGIFFLAGS writes only `ifr_ifru.ifru_flags`.
        Errno::result(unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) })?;
        // SAFETY: the kernel just initialised `ifru_flags`, the union field read here.
        unsafe { req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short };
        // SAFETY: as above; SIOCSIFFLAGS only reads `req`.
        Errno::result(unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &req) }).map(drop)
    }
    fn sethostname(&self, name: &str) -> SysResult {
        sethostname(name)
    }
    fn setgroups(&self, groups: &[u32]) -> SysResult {
        let gids: Vec<Gid> = groups.iter().copied().map(Gid::from_raw).collect();
        setgroups(&gids)
    }
    fn set_ids(&self, uid: u32, gid: u32) -> SysResult {
        let (uid, gid) = (Uid::from_raw(uid), Gid::from_raw(gid));
        setresgid(gid, gid, gid)?;
        setresuid(uid, uid, uid)
    }
    fn write_id_map(&self, pid: u32, map: &IdMap, writer: IdMapWriter) -> Result<(), IdMapError> {
        self.id_sources.write(&self.proc_root, pid, map, writer)
    }
}

fn errno_of(e: &io::Error) -> nix::Error {
    e.raw_os_error().map_or(nix::Error::EIO, nix::Error::from_raw)
}

/// Spawn `cmd` with `socket` available to it as descriptor [`INIT_FD`] (and nothing else
/// leaked: every other descriptor of ours stays close-on-exec).
pub(crate) fn spawn_with_socket(cmd: &mut Command, socket: &UnixStream) -> io::Result<Child> {
    let fd = socket.as_raw_fd();
    // SAFETY: the closure runs in the forked child before exec and only calls `dup2` and
    // `fcntl`, both async-signal-safe; it allocates nothing and touches no lock, so it is
    // sound even though the parent may be multithreaded. `fd` stays open in the parent
    // until `spawn` returns, because `socket` is borrowed for the whole call.
    unsafe {
        cmd.pre_exec(move || {
            let rc = if fd == INIT_FD { libc::fcntl(fd, libc::F_SETFD, 0) } else { libc::dup2(fd, INIT_FD) };
            if rc < 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    cmd.spawn()
}

/// Take the control socket the parent left on [`INIT_FD`]; call once, first thing in
/// the init process.
pub(crate) fn take_init_socket() -> io::Result<UnixStream> {
    // SAFETY: borrowing only to test validity with F_GETFD; the borrow ends at once.
    let valid = fcntl(unsafe { BorrowedFd::borrow_raw(INIT_FD) }, FcntlArg::F_GETFD).is_ok();
    if !valid {
        return Err(io::Error::from_raw_os_error(libc::EBADF));
    }
    // SAFETY: descriptor 3 was placed by `spawn_with_socket` for this process alone, it is
    // open (checked above) and nothing else in the process owns it, so taking ownership
    // once here cannot double-close.
    let owned = unsafe { OwnedFd::from_raw_fd(INIT_FD) };
    fcntl(&owned, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC)).map_err(io::Error::from)?;
    Ok(UnixStream::from(owned))
}

/// Give the command the process state runc gives a container process: every signal
/// disposition at its default and an empty mask, umask 022, and only descriptors 0–2 open.
/// The init process inherits `SIGPIPE` ignored from the Rust runtime (an ignored disposition
/// survives `execve`, so `yes | head` would never end) and whatever descriptors rbuild's own
/// caller leaked to it. Call right before `execve`.
pub(crate) fn reset_process_state() {
    close_on_exec_from(3);
    use nix::sys::signal::{sigaction, sigprocmask, SaFlags, SigAction, SigHandler, SigSet, SigmaskHow, Signal};
    let default = SigAction::new(SigHandler::SigDfl, SaFlags::empty(), SigSet::empty());
    for sig in Signal::iterator().filter(|s| !matches!(s, Signal::SIGKILL | Signal::SIGSTOP)) {
        // SAFETY: installing SIG_DFL runs no code of ours in a signal handler; the process
        // is single-threaded (forked from the single-threaded init) and about to exec.
        let _ = unsafe { sigaction(sig, &default) };
    }
    reset_realtime_signals();
    let _ = sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None);
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o022));
}

/// The real-time signals (32–64) as a process under runc finds them, with the raw system
/// call (glibc refuses 32 and 33, its own): default, except 32 ignored, which runc's init
/// leaves so (`SigIgn: 0000000080000000` in a RUN under Docker's BuildKit).
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
fn reset_realtime_signals() {
    /// The kernel's `struct sigaction` on x86_64 and aarch64.
    #[repr(C)]
    struct KernelSigaction {
        handler: usize,
        flags: libc::c_ulong,
        restorer: usize,
        mask: u64,
    }
    for sig in 32..=libc::SIGRTMAX() {
        let default = KernelSigaction { handler: usize::from(sig == 32), flags: 0, restorer: 0, mask: 0 };
        // SAFETY: `default` is a valid kernel sigaction (SIG_DFL, no flags, empty mask) that
        // outlives the call; no old action is read back; the size is the kernel's sigset.
        unsafe {
            libc::syscall(
                libc::SYS_rt_sigaction,
                sig,
                &default as *const KernelSigaction,
                std::ptr::null_mut::<KernelSigaction>(),
                8usize,
            )
        };
    }
}

#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
fn reset_realtime_signals() {}

/// Mark every descriptor from `first` on close-on-exec (`close_range` with
/// `CLOSE_RANGE_CLOEXEC`, Linux ≥ 5.11; else one `fcntl` per entry of `/proc/self/fd`).
/// Close-on-exec rather than closed, so the error pipe still works if `execve` fails.
fn close_on_exec_from(first: u32) {
    const CLOSE_RANGE_CLOEXEC: libc::c_uint = 1 << 2;
    // SAFETY: close_range only changes descriptor flags here; no memory is passed.
    let rc = unsafe { libc::syscall(libc::SYS_close_range, first, libc::c_uint::MAX, CLOSE_RANGE_CLOEXEC) };
    if rc == 0 {
        return;
    }
    let Ok(entries) = fs::read_dir("/proc/self/fd") else { return };
    let fds: Vec<RawFd> = entries.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok()).collect();
    for fd in fds.into_iter().filter(|fd| *fd >= first as RawFd) {
        // SAFETY: F_SETFD on a descriptor number touches no memory; a number that was the
        // directory handle of the listing (now closed) just fails with EBADF.
        unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
    }
}

/// The two sides of a `fork`.
#[derive(Debug)]
pub(crate) enum Forked {
    /// In the parent: the child's pid.
    Parent(nix::unistd::Pid),
    /// In the child.
    Child,
}

/// `fork(2)` in the init process.
///
/// Only called from the re-executed init process, which has a single thread (the lead's
/// `main` calls [`super::sandbox_init_main`] before starting anything).
pub(crate) fn fork_single_threaded() -> nix::Result<Forked> {
    // SAFETY: the init process is single-threaded (see above), so the child inherits no
    // lock held by another thread and may allocate and run arbitrary code after fork.
    match unsafe { nix::unistd::fork() }? {
        ForkResult::Parent { child } => Ok(Forked::Parent(child)),
        ForkResult::Child => Ok(Forked::Child),
    }
}
