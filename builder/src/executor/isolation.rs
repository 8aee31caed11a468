//! Which isolation a build uses, and where its stage roots live.
//!
//! [`choose`] picks the strongest isolation the environment allows (user namespaces, else
//! chroot as real root, else container isolation inside rbuild's own image) and says why.
//! Under container isolation ([`IsolationMode::Container`], Kaniko's model for pods that
//! forbid user namespaces) every stage is built in place in the container's own root
//! ([`StageRoots::InPlace`]): the root is wiped ([`clear_root`]), the base unpacked into it,
//! RUN runs there and snapshots walk it, all sparing the [`container_exclusions`].

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use std::thread::JoinHandle;

use crate::layer::exclusions::Exclusions;
use crate::sandbox::{IsolationMode, ProbeFailure, ProcessSandbox, Sandbox};

/// The file that marks a root file system as rbuild's own image (written by the project's
/// `Dockerfile`); container isolation replaces the root it runs in only when it is there.
pub const OWN_IMAGE_MARKER: &str = "/etc/rbuild/own-image";

/// Paths excluded under container isolation whatever is mounted: the kernel's file systems
/// and the service-account secrets (under both spellings of `/run`).
const ALWAYS_EXCLUDED: [&str; 5] = ["proc", "sys", "dev", "run/secrets/kubernetes.io", "var/run/secrets/kubernetes.io"];

/// The isolation asked for on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IsolationRequest {
    /// The strongest the environment allows.
    #[default]
    Auto,
    /// Exactly this mode.
    Mode(IsolationMode),
}

/// The RUN sandbox of a build, possibly still being chosen. The `auto` probe runs a trial
/// sandbox (tens of milliseconds); on its own thread it overlaps the cache lookups, and only a
/// step that runs a command waits for it, so a fully cached build never does.
pub struct SandboxChoice {
    chosen: OnceLock<Result<Sandbox, String>>,
    pending: Mutex<Option<JoinHandle<Result<Sandbox, String>>>>,
}

impl SandboxChoice {
    /// A sandbox chosen already.
    pub fn ready(sandbox: Sandbox) -> Self {
        Self { chosen: OnceLock::from(Ok(sandbox)), pending: Mutex::new(None) }
    }

    /// A sandbox a thread is choosing; `Err` is why no isolation works (reported by the first
    /// step that needs one).
    pub fn deferred(choosing: JoinHandle<Result<Sandbox, String>>) -> Self {
        Self { chosen: OnceLock::new(), pending: Mutex::new(Some(choosing)) }
    }

    /// The sandbox, waiting for the choice if it is still being made.
    pub fn get(&self) -> Result<&Sandbox, String> {
        let chosen = self.chosen.get_or_init(|| {
            let pending = self.pending.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take();
            match pending.map(JoinHandle::join) {
                Some(Ok(result)) => result,
                Some(Err(_)) => Err("the isolation probe panicked".into()),
                None => Err("no isolation was chosen".into()),
            }
        });
        chosen.as_ref().map_err(Clone::clone)
    }
}

impl From<Sandbox> for SandboxChoice {
    fn from(sandbox: Sandbox) -> Self {
        Self::ready(sandbox)
    }
}

impl Drop for SandboxChoice {
    /// A probe still running finishes (and reaps its trial sandbox) before the build exits.
    fn drop(&mut self) {
        if let Some(pending) = self.pending.get_mut().unwrap_or_else(std::sync::PoisonError::into_inner).take() {
            let _ = pending.join();
        }
    }
}

/// What start-up probing found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probed {
    /// `None` when a user namespace with a fresh `/proc` and `/dev` works; else why not.
    pub user_namespace_failure: Option<ProbeFailure>,
    /// The user namespace works when RUN shares the pid namespace and binds the existing
    /// `/proc` (only the fresh `/proc` was refused: a masked `/proc` in a pod).
    pub shared_pid_works: bool,
    /// Real root with working mount/pid namespaces and `chroot`.
    pub chroot_works: bool,
    /// rbuild runs as uid 0 (container isolation switches users and replaces `/`).
    pub root: bool,
}

impl Probed {
    /// Tries the sandbox with its trial roots under `state_dir` (rbuild's own state, never
    /// `/tmp`): rootless first, chroot isolation only as real root and only when the rootless
    /// probe failed.
    pub fn probe(state_dir: &Path) -> Self {
        let caps = Sandbox::new().probe_in(state_dir);
        let root = rustix::process::geteuid().is_root();
        let user_namespace_failure = caps.failure.filter(|_| !caps.user_namespaces);
        let chroot_works = user_namespace_failure.is_some()
            && !caps.shared_pid_ns
            && root
            && Sandbox::new().isolation(IsolationMode::Chroot).probe_in(state_dir).user_namespaces;
        Self { user_namespace_failure, shared_pid_works: caps.shared_pid_ns, chroot_works, root }
    }
}

/// The isolation a build runs with and why it was picked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chosen {
    pub mode: IsolationMode,
    /// Whether RUN gets its own pid namespace and `/proc`.
    pub process_sandbox: ProcessSandbox,
    pub reason: String,
}

impl Chosen {
    /// The `--isolation` spelling of the mode (with the process sandbox), as docs/rootless.md names it.
    pub fn name(&self) -> &'static str {
        match (self.mode, self.process_sandbox) {
            (IsolationMode::UserNs, ProcessSandbox::Private) => "userns",
            (IsolationMode::UserNs, ProcessSandbox::SharedPidNs) => "userns, no process sandbox",
            (IsolationMode::Chroot, ProcessSandbox::Private) => "chroot",
            (IsolationMode::Chroot, ProcessSandbox::SharedPidNs) => "chroot, no process sandbox",
            (IsolationMode::Container, _) => "container",
        }
    }
}

/// No acceptable isolation.
#[derive(Debug, thiserror::Error)]
pub enum IsolationError {
    /// Container isolation outside rbuild's own image, not forced.
    #[error("refusing container isolation: {marker} is missing, so this is not rbuild's own image, and container isolation replaces the root file system it runs in; run rbuild's image or pass --force")]
    NotOwnImage { marker: PathBuf },
    /// Nothing works here.
    #[error("no RUN isolation works here: user namespaces are refused ({failure}; to enable them set {setting}), rbuild is not root with mount namespaces, and container isolation needs {container}; see docs/rootless.md")]
    NothingAllowed { failure: ProbeFailure, setting: &'static str, container: String },
}

/// Picks the isolation for `request`; `probe` runs only for [`IsolationRequest::Auto`].
/// `no_process_sandbox` (`--no-process-sandbox`) shares the pid namespace and `/proc` in
/// every mode that has namespaces; `auto` falls back to it by itself where only `/proc` fails.
pub fn choose(
    request: IsolationRequest,
    own_image: bool,
    force: bool,
    no_process_sandbox: bool,
    marker: &Path,
    probe: impl FnOnce() -> Probed,
) -> Result<Chosen, IsolationError> {
    let process = if no_process_sandbox { ProcessSandbox::SharedPidNs } else { ProcessSandbox::Private };
    let chosen = |mode, process_sandbox, reason: String| Ok(Chosen { mode, process_sandbox, reason });
    let container_allowed = own_image || force;
    let container_reason = if own_image {
        format!("{} marks this as rbuild's own image", marker.display())
    } else {
        "--force".to_string()
    };
    match request {
        IsolationRequest::Mode(IsolationMode::Container) if !container_allowed => {
            Err(IsolationError::NotOwnImage { marker: marker.to_path_buf() })
        }
        IsolationRequest::Mode(IsolationMode::Container) => {
            chosen(IsolationMode::Container, ProcessSandbox::SharedPidNs, format!("requested; {container_reason}"))
        }
        IsolationRequest::Mode(mode) => chosen(mode, process, "requested".into()),
        IsolationRequest::Auto => {
            let probed = probe();
            let Some(failure) = probed.user_namespace_failure else {
                return chosen(IsolationMode::UserNs, process, "user namespaces work".into());
            };
            if probed.shared_pid_works {
                let reason = format!(
                    "WARNING: a fresh /proc cannot be mounted ({failure}), so RUN shares this container's pid namespace and /proc (BuildKit's --oci-worker-no-process-sandbox) and can see and signal its processes; for the full sandbox set {}",
                    failure.pod_setting()
                );
                return chosen(IsolationMode::UserNs, ProcessSandbox::SharedPidNs, reason);
            }
            let setting = failure.pod_setting();
            if probed.chroot_works {
                chosen(IsolationMode::Chroot, process, format!("user namespaces are refused ({failure}; {setting} enables them); real root with mount namespaces"))
            } else if container_allowed && probed.root {
                chosen(IsolationMode::Container, ProcessSandbox::SharedPidNs, format!("user namespaces are refused ({failure}; {setting} enables them) and mount namespaces too; {container_reason}"))
            } else {
                let container = if container_allowed {
                    "root (runAsUser: 0)".to_string()
                } else {
                    format!("rbuild's own image ({}) or --force, as root", marker.display())
                };
                Err(IsolationError::NothingAllowed { failure, setting, container })
            }
        }
    }
}

/// Where stage roots live.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum StageRoots {
    /// Each stage in a fresh directory under the work dir; stages may run concurrently.
    #[default]
    Fresh,
    /// Every stage in place in `root` (`/` under container isolation), one stage at a time;
    /// `excluded` is never removed, unpacked over or snapshotted.
    InPlace { root: PathBuf, excluded: Exclusions },
}

impl StageRoots {
    /// Stages share one root, so they run one after the other.
    pub fn in_place(&self) -> bool {
        matches!(self, Self::InPlace { .. })
    }

    /// The paths snapshots and unpacking leave alone.
    pub fn exclusions(&self) -> Exclusions {
        match self {
            Self::Fresh => Exclusions::none(),
            Self::InPlace { excluded, .. } => excluded.clone(),
        }
    }

    /// The root of a stage whose fresh directory would be `fresh`.
    pub fn stage_root(&self, fresh: &Path) -> PathBuf {
        match self {
            Self::Fresh => fresh.to_path_buf(),
            Self::InPlace { root, .. } => root.clone(),
        }
    }

    /// Empties `rootfs` for a new stage: a fresh directory, or the shared root wiped.
    pub fn prepare(&self, rootfs: &Path) -> io::Result<()> {
        match self {
            Self::Fresh => {
                if rootfs.exists() {
                    fs::remove_dir_all(rootfs)?;
                }
                fs::create_dir_all(rootfs)
            }
            Self::InPlace { excluded, .. } => clear_root(rootfs, excluded),
        }
    }
}

/// Removes everything under `root` except what `excluded` keeps (parents of excluded paths
/// stay as directories). Symlinks are removed, never followed.
pub fn clear_root(root: &Path, excluded: &Exclusions) -> io::Result<()> {
    clear_dir(root, Path::new(""), excluded)
}

fn clear_dir(root: &Path, rel: &Path, excluded: &Exclusions) -> io::Result<()> {
    for entry in fs::read_dir(root.join(rel))? {
        let entry = entry?;
        let child = rel.join(entry.file_name());
        if excluded.covers(&child) {
            continue;
        }
        let path = root.join(&child);
        if excluded.holds(&child) && entry.file_type()?.is_dir() {
            clear_dir(root, &child, excluded)?;
        } else if entry.file_type()?.is_dir() {
            fs::remove_dir_all(&path)?;
        } else {
            fs::remove_file(&path)?;
        }
    }
    Ok(())
}

/// What container isolation at `root` must spare: [`ALWAYS_EXCLUDED`], every mount point
/// in `mountinfo` (the text of `/proc/self/mountinfo`: volumes, secrets, `/etc/hosts`) other
/// than the root itself, and `extra` (rbuild's state directory, the context, the binary,
/// the registry credentials). Paths outside `root` are ignored.
pub fn container_exclusions(root: &Path, mountinfo: &str, extra: &[PathBuf]) -> Exclusions {
    let mounts =
        mountinfo.lines().filter_map(|line| line.split(' ').nth(4)).map(|p| PathBuf::from(unescape_mount_path(p)));
    let under_root = |p: PathBuf| p.strip_prefix(root).ok().map(Path::to_path_buf);
    let fixed = ALWAYS_EXCLUDED.iter().map(PathBuf::from);
    Exclusions::new(fixed.chain(mounts.chain(extra.iter().cloned()).filter_map(under_root)))
}

/// `/proc/self/mountinfo` escapes space, tab, newline and backslash as `\ooo`.
fn unescape_mount_path(raw: &str) -> String {
    let mut out = String::new();
    let mut rest = raw;
    while let Some(i) = rest.find('\\') {
        out.push_str(&rest[..i]);
        let code = rest.get(i + 1..i + 4).and_then(|o| u8::from_str_radix(o, 8).ok());
        match code {
            Some(c) => {
                out.push(char::from(c));
                rest = &rest[i + 4..];
            }
            None => {
                out.push('\\');
                rest = &rest[i + 1..];
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sandbox::SetupStep;

    const MOUNTINFO: &str = "\
22 1 0:21 / / rw,relatime - overlay overlay rw
23 22 0:22 / /proc rw,nosuid - proc proc rw
24 22 0:5 / /dev rw,nosuid - tmpfs tmpfs rw
25 22 8:1 /pods/x/etc-hosts /etc/hosts rw - ext4 /dev/sda1 rw
26 22 8:1 /pods/x/volumes/work /workspace rw - ext4 /dev/sda1 rw
27 22 0:40 / /run/secrets/kubernetes.io/serviceaccount ro - tmpfs tmpfs rw
28 22 8:1 /x /my\\040volume rw - ext4 /dev/sda1 rw
";

    #[test]
    fn exclusions_come_from_mounts_and_extras() {
        let ex = container_exclusions(
            Path::new("/"),
            MOUNTINFO,
            &[PathBuf::from("/root/.cache/rbuild"), PathBuf::from("/usr/local/bin/rbuild")],
        );
        let got: Vec<&str> = ex.paths().iter().map(|p| p.to_str().unwrap()).collect();
        assert_eq!(
            got,
            [
                "dev",
                "etc/hosts",
                "my volume",
                "proc",
                "root/.cache/rbuild",
                "run/secrets/kubernetes.io",
                "sys",
                "usr/local/bin/rbuild",
                "var/run/secrets/kubernetes.io",
                "workspace"
            ]
        );
    }

    #[test]
    fn exclusions_under_another_root_are_relative_to_it() {
        let ex = container_exclusions(
            Path::new("/tmp/r"),
            "1 0 0:1 / /tmp/r/vol rw - tmpfs t rw\n2 0 0:1 / /elsewhere rw - tmpfs t rw\n",
            &[],
        );
        assert!(ex.covers(Path::new("vol")));
        assert!(!ex.covers(Path::new("elsewhere")));
    }

    /// A deferred choice is waited for once and then answers the same; a failed probe is
    /// the error every RUN reports.
    #[test]
    fn deferred_sandbox_choice() {
        let ready = SandboxChoice::deferred(std::thread::spawn(|| Ok(Sandbox::new())));
        assert!(ready.get().is_ok());
        assert!(ready.get().is_ok());
        let refused = SandboxChoice::deferred(std::thread::spawn(|| Err("no RUN isolation works here".to_string())));
        assert_eq!(refused.get().err().as_deref(), Some("no RUN isolation works here"));
        assert_eq!(refused.get().err().as_deref(), Some("no RUN isolation works here"));
        assert!(SandboxChoice::from(Sandbox::new()).get().is_ok());
    }

    fn probed(userns: bool, chroot: bool) -> impl FnOnce() -> Probed {
        move || Probed {
            user_namespace_failure: (!userns).then_some(ProbeFailure::Step(SetupStep::UnshareUser)),
            shared_pid_works: false,
            chroot_works: chroot,
            root: true,
        }
    }

    #[rstest::rstest]
    #[case::userns_first(IsolationRequest::Auto, true, true, false, Some(IsolationMode::UserNs))]
    #[case::chroot_as_root(IsolationRequest::Auto, false, true, true, Some(IsolationMode::Chroot))]
    #[case::container_in_own_image(IsolationRequest::Auto, false, false, true, Some(IsolationMode::Container))]
    #[case::nothing(IsolationRequest::Auto, false, false, false, None)]
    #[case::container_refused(IsolationRequest::Mode(IsolationMode::Container), true, true, false, None)]
    #[case::container_requested(
        IsolationRequest::Mode(IsolationMode::Container),
        true,
        true,
        true,
        Some(IsolationMode::Container)
    )]
    #[case::chroot_requested(
        IsolationRequest::Mode(IsolationMode::Chroot),
        true,
        false,
        false,
        Some(IsolationMode::Chroot)
    )]
    fn choice(
        #[case] request: IsolationRequest,
        #[case] userns: bool,
        #[case] chroot: bool,
        #[case] own_image: bool,
        #[case] want: Option<IsolationMode>,
    ) {
        let got = choose(request, own_image, false, false, Path::new(OWN_IMAGE_MARKER), probed(userns, chroot));
        assert_eq!(got.as_ref().ok().map(|c| c.mode), want, "{got:?}");
        if let Err(e) = got {
            assert!(e.to_string().contains(OWN_IMAGE_MARKER), "{e}");
        }
    }

    #[test]
    fn force_allows_container_outside_the_own_image() {
        let got = choose(IsolationRequest::Auto, false, true, false, Path::new(OWN_IMAGE_MARKER), probed(false, false))
            .unwrap();
        assert_eq!(got.mode, IsolationMode::Container);
        assert!(got.reason.contains("UnshareUser") && got.reason.contains("--force"), "{}", got.reason);
    }

    /// Only a refused fresh `/proc` falls back to the shared pid namespace, with one warning
    /// naming the step and the setting; a refusal names both too, and container isolation
    /// is not picked for a non-root caller (it could neither replace `/` nor switch users).
    #[test]
    fn masked_proc_falls_back_to_the_shared_pid_namespace() {
        let marker = Path::new(OWN_IMAGE_MARKER);
        let masked = || Probed {
            user_namespace_failure: Some(ProbeFailure::Step(SetupStep::MountProc)),
            shared_pid_works: true,
            chroot_works: false,
            root: false,
        };
        let got = choose(IsolationRequest::Auto, true, false, false, marker, masked).unwrap();
        assert_eq!(
            (got.mode, got.process_sandbox, got.name()),
            (IsolationMode::UserNs, ProcessSandbox::SharedPidNs, "userns, no process sandbox")
        );
        assert!(
            got.reason.contains("step MountProc")
                && got.reason.contains("procMount: Unmasked")
                && got.reason.starts_with("WARNING"),
            "{}",
            got.reason
        );
        let flag = choose(IsolationRequest::Mode(IsolationMode::UserNs), false, false, true, marker, || unreachable!())
            .unwrap();
        assert_eq!(flag.process_sandbox, ProcessSandbox::SharedPidNs);
        let restricted = || Probed {
            user_namespace_failure: Some(ProbeFailure::Step(SetupStep::UnshareUser)),
            shared_pid_works: false,
            chroot_works: false,
            root: false,
        };
        let err = choose(IsolationRequest::Auto, true, false, false, marker, restricted).unwrap_err().to_string();
        for want in ["step UnshareUser", "seccompProfile: Unconfined", "runAsUser: 0"] {
            assert!(err.contains(want), "{want}: {err}");
        }
        let unmappable = || Probed {
            user_namespace_failure: Some(ProbeFailure::IdMap("newuidmap failed".into())),
            shared_pid_works: false,
            chroot_works: false,
            root: false,
        };
        let err = choose(IsolationRequest::Auto, true, false, false, marker, unmappable).unwrap_err().to_string();
        assert!(
            err.contains("step WriteIdMap: newuidmap failed") && err.contains("hostUsers: false with runAsUser: 0"),
            "{err}"
        );
    }

    #[test]
    fn clear_root_spares_exclusions_and_their_parents() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        for d in ["etc/rbuild", "run/secrets/kubernetes.io/sa", "run/lock", "state/store", "usr/bin"] {
            fs::create_dir_all(root.join(d)).unwrap();
        }
        for f in ["etc/passwd", "run/secrets/kubernetes.io/sa/token", "run/lock/x", "state/store/blob", "usr/bin/sh"] {
            fs::write(root.join(f), f).unwrap();
        }
        std::os::unix::fs::symlink("/usr", root.join("link-out")).unwrap();
        let ex = Exclusions::new(["run/secrets/kubernetes.io", "state"].map(PathBuf::from));
        clear_root(root, &ex).unwrap();
        let mut left: Vec<String> = walkdir::WalkDir::new(root)
            .min_depth(1)
            .into_iter()
            .map(|e| e.unwrap().path().strip_prefix(root).unwrap().display().to_string())
            .collect();
        left.sort();
        assert_eq!(
            left,
            [
                "run",
                "run/secrets",
                "run/secrets/kubernetes.io",
                "run/secrets/kubernetes.io/sa",
                "run/secrets/kubernetes.io/sa/token",
                "state",
                "state/store",
                "state/store/blob"
            ]
        );
    }
}
