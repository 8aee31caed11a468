//! RUN for a foreign platform through qemu-user: a handler the host registered in
//! `binfmt_misc` is used as it is; otherwise (kernel ≥ 6.7) the RUN's init registers a
//! qemu-user static interpreter in a `binfmt_misc` instance of the RUN's own user namespace,
//! which needs no host privilege and is gone with the namespace. Neither: a clear error
//! instead of `Exec format error`.

use std::fs::File;
use std::path::{Path, PathBuf};

use nix::mount::MsFlags;
use serde::{Deserialize, Serialize};

use super::channel::{SetupError, SetupStep};
use super::sys::{MountCall, Sys};
use crate::plan::Platform;

/// Where the RUN's init mounts its private `binfmt_misc` instance (in its own mount
/// namespace; the host's view is untouched).
const PRIVATE_MOUNT: &str = "/proc/sys/fs/binfmt_misc";

/// Where to look for handlers and interpreters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmulatorSearch {
    /// The host's `binfmt_misc` (a registered `qemu-<arch>` entry there is used as is).
    pub binfmt_dir: PathBuf,
    /// Directories holding static qemu-user interpreters (`qemu-<arch>-static`, or Debian's
    /// `<arch>-binfmt-P` wrappers).
    pub interpreter_dirs: Vec<PathBuf>,
}

impl Default for EmulatorSearch {
    fn default() -> Self {
        Self {
            binfmt_dir: PathBuf::from("/proc/sys/fs/binfmt_misc"),
            interpreter_dirs: ["/usr/libexec/qemu-binfmt", "/usr/bin", "/usr/local/bin"]
                .iter()
                .map(PathBuf::from)
                .collect(),
        }
    }
}

/// A handler for the RUN's init to register in its own `binfmt_misc` instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BinfmtHandler {
    /// Entry name (`qemu-aarch64`).
    pub name: String,
    /// ELF header bytes to match, `\xHH`-escaped.
    pub magic: String,
    /// Mask over the header, `\xHH`-escaped.
    pub mask: String,
    /// The static interpreter (opened at registration: flag `F`).
    pub interpreter: PathBuf,
    /// Flags (`F`, plus `P` for Debian's argv[0]-preserving wrappers).
    pub flags: String,
}

impl BinfmtHandler {
    /// The line written to `register`.
    fn register_line(&self) -> String {
        format!(":{}:M::{}:{}:{}:{}", self.name, self.magic, self.mask, self.interpreter.display(), self.flags)
    }
}

/// Why a foreign platform cannot run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EmulationError {
    /// No handler and no interpreter.
    #[error("RUN for platform {platform} needs emulation: no binfmt_misc handler for {qemu_arch} is registered on this host and no qemu-user static interpreter (qemu-{qemu_arch}-static) was found in {searched}; install qemu-user-static (Debian/Ubuntu: apt-get install qemu-user-static binfmt-support), or build this platform on a native {platform} node (Kubernetes: nodeSelector kubernetes.io/arch)")]
    NoEmulator { platform: String, qemu_arch: String, searched: String },
    /// An interpreter exists but this isolation has no user namespace of its own to register it in.
    #[error("RUN for platform {platform} needs emulation: qemu-{qemu_arch}-static is installed but no binfmt_misc handler for it is registered on this host, and {isolation} isolation has no user namespace of its own to register one in; register the host handler (update-binfmts --enable qemu-{qemu_arch}, from binfmt-support), use user-namespace isolation, or build on a native {platform} node")]
    CannotRegister { platform: String, qemu_arch: String, isolation: String },
    /// An architecture rbuild knows no qemu-user header for.
    #[error("RUN for platform {platform} cannot be emulated: rbuild knows no qemu-user handler for architecture {arch}; build it on a native {platform} node")]
    Unsupported { platform: String, arch: String },
}

/// qemu's name and the ELF magic/mask for an OCI architecture (as Debian's binfmts have them).
fn qemu_arch(arch: &str) -> Option<(&'static str, &'static str, &'static str)> {
    const MASK: &str = r"\xff\xff\xff\xff\xff\xff\xff\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff";
    Some(match arch {
        "arm64" => (
            "aarch64",
            concat!(r"\x7f\x45\x4c\x46\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00", r"\xb7\x00"),
            MASK,
        ),
        "amd64" => (
            "x86_64",
            concat!(r"\x7f\x45\x4c\x46\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00", r"\x3e\x00"),
            MASK,
        ),
        "riscv64" => (
            "riscv64",
            concat!(r"\x7f\x45\x4c\x46\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00", r"\xf3\x00"),
            MASK,
        ),
        "arm" => ("arm", r"\x7f\x45\x4c\x46\x01\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\x28\x00", MASK),
        "386" => ("i386", r"\x7f\x45\x4c\x46\x01\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\x03\x00", MASK),
        "ppc64le" => (
            "ppc64le",
            r"\x7f\x45\x4c\x46\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\x15\x00",
            r"\xff\xff\xff\xff\xff\xff\xff\xfc\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\x00",
        ),
        "s390x" => (
            "s390x",
            r"\x7f\x45\x4c\x46\x02\x02\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\x16",
            r"\xff\xff\xff\xff\xff\xff\xff\xfc\xff\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff",
        ),
        _ => return None,
    })
}

/// Whether `platform`'s binaries run on this host without emulation.
pub fn is_native(platform: &Platform) -> bool {
    let host = Platform::host();
    platform.os == host.os && platform.architecture == host.architecture
}

/// What a RUN for `platform` needs: nothing (native, or a host handler), a handler to
/// register in its own user namespace (unless the isolation, `without_userns`, has none), or an error saying what to do.
pub fn plan_emulation(
    platform: &Platform,
    search: &EmulatorSearch,
    without_userns: Option<&str>,
) -> Result<Option<BinfmtHandler>, EmulationError> {
    if is_native(platform) {
        return Ok(None);
    }
    let Some((qemu, magic, mask)) = qemu_arch(&platform.architecture) else {
        return Err(EmulationError::Unsupported {
            platform: platform.to_string(),
            arch: platform.architecture.clone(),
        });
    };
    if host_handler_enabled(&search.binfmt_dir, qemu) {
        tracing::debug!(%platform, qemu, "using the host's binfmt_misc handler");
        return Ok(None);
    }
    let Some((interpreter, flags)) = find_interpreter(&search.interpreter_dirs, qemu) else {
        let searched = search.interpreter_dirs.iter().map(|d| d.display().to_string()).collect::<Vec<_>>().join(", ");
        return Err(EmulationError::NoEmulator {
            platform: platform.to_string(),
            qemu_arch: qemu.to_owned(),
            searched: if searched.is_empty() { "no directory (RBUILD_QEMU_PATH is empty)".into() } else { searched },
        });
    };
    if let Some(isolation) = without_userns {
        return Err(EmulationError::CannotRegister {
            platform: platform.to_string(),
            qemu_arch: qemu.to_owned(),
            isolation: isolation.to_owned(),
        });
    }
    tracing::debug!(%platform, interpreter = %interpreter.display(), "registering qemu-user in the RUN's user namespace");
    Ok(Some(BinfmtHandler {
        name: format!("qemu-{qemu}"),
        magic: magic.to_owned(),
        mask: mask.to_owned(),
        interpreter,
        flags: flags.to_owned(),
    }))
}

/// A `qemu-<arch>` entry of the host's `binfmt_misc` that is enabled.
fn host_handler_enabled(binfmt_dir: &Path, qemu: &str) -> bool {
    std::fs::read_to_string(binfmt_dir.join(format!("qemu-{qemu}"))).is_ok_and(|s| s.lines().next() == Some("enabled"))
}

/// Debian's argv[0]-preserving wrapper first (flags `FP`), else plain `qemu-<arch>-static`.
fn find_interpreter(dirs: &[PathBuf], qemu: &str) -> Option<(PathBuf, &'static str)> {
    dirs.iter().find_map(|dir| {
        let wrapper = dir.join(format!("{qemu}-binfmt-P"));
        let plain = dir.join(format!("qemu-{qemu}-static"));
        if wrapper.is_file() {
            Some((wrapper, "FP"))
        } else {
            plain.is_file().then_some((plain, "F"))
        }
    })
}

/// Mount a `binfmt_misc` instance for the current (new) user namespace and register
/// `handler` in it; the returned handle keeps the instance alive after `pivot_root` detaches
/// the mount (it must live as long as the RUN).
pub fn register(sys: &dyn Sys, handler: &BinfmtHandler) -> Result<File, SetupError> {
    let target = PathBuf::from(PRIVATE_MOUNT);
    let call = MountCall {
        source: Some(PathBuf::from("binfmt_misc")),
        target: target.clone(),
        fstype: Some("binfmt_misc".into()),
        flags: MsFlags::empty(),
        data: None,
    };
    sys.mount(&call).map_err(|e| SetupError::new(SetupStep::Emulation, e, Some(target.clone())))?;
    let io = |e: std::io::Error| {
        SetupError::new(
            SetupStep::Emulation,
            nix::Error::from_raw(e.raw_os_error().unwrap_or(libc_eio())),
            Some(target.clone()),
        )
    };
    let keep = File::open(&target).map_err(io)?;
    std::fs::write(target.join("register"), handler.register_line()).map_err(io)?;
    Ok(keep)
}

fn libc_eio() -> i32 {
    nix::errno::Errno::EIO as i32
}

#[cfg(test)]
mod tests {
    use super::*;

    fn foreign() -> Platform {
        if Platform::host().architecture == "arm64" { "linux/amd64" } else { "linux/arm64" }.parse().unwrap()
    }

    fn search(dir: &Path, with_handler: bool, with_interpreter: bool) -> EmulatorSearch {
        let qemu = qemu_arch(&foreign().architecture).unwrap().0;
        let binfmt = dir.join("binfmt");
        let bin = dir.join("bin");
        std::fs::create_dir_all(&binfmt).unwrap();
        std::fs::create_dir_all(&bin).unwrap();
        if with_handler {
            std::fs::write(binfmt.join(format!("qemu-{qemu}")), "enabled\ninterpreter /x\n").unwrap();
        }
        if with_interpreter {
            std::fs::write(bin.join(format!("qemu-{qemu}-static")), "").unwrap();
        }
        EmulatorSearch { binfmt_dir: binfmt, interpreter_dirs: vec![bin] }
    }

    #[test]
    fn native_needs_nothing() {
        assert_eq!(
            plan_emulation(
                &Platform::host(),
                &EmulatorSearch { binfmt_dir: "/nonexistent".into(), interpreter_dirs: vec![] },
                None
            ),
            Ok(None)
        );
    }

    /// (host handler, interpreter, can register) → registers / uses host / which error.
    #[rstest::rstest]
    #[case(true, false, true, "host")]
    #[case(false, true, true, "register")]
    #[case(false, true, false, "update-binfmts --enable")]
    #[case(false, false, true, "install qemu-user-static")]
    fn decision(#[case] handler: bool, #[case] interpreter: bool, #[case] userns: bool, #[case] want: &str) {
        let dir = tempfile::tempdir().unwrap();
        let s = search(dir.path(), handler, interpreter);
        let got = plan_emulation(&foreign(), &s, if userns { None } else { Some("chroot") });
        match (want, got) {
            ("host", Ok(None)) => {}
            ("register", Ok(Some(h))) => {
                assert!(h.register_line().starts_with(":qemu-"), "{h:?}");
                assert_eq!(h.flags, "F");
            }
            (text, Err(e)) => {
                let msg = e.to_string();
                assert!(msg.contains(text) && msg.contains(&foreign().to_string()), "{msg}");
            }
            (want, got) => panic!("want {want}, got {got:?}"),
        }
    }

    #[test]
    fn unknown_architecture_is_named() {
        let err = plan_emulation(&"linux/mips64le".parse().unwrap(), &EmulatorSearch::default(), None).unwrap_err();
        assert!(err.to_string().contains("mips64le"), "{err}");
    }
}
