//! A Kubernetes pod emulator: an OCI runtime spec made from `securityContext`-like settings
//! the way containerd makes one for a pod, run with runc (Debian package) in a root file
//! system built like rbuild's image ([`rootfs`]), with emptyDir-like volumes and a secret.
//!
//! Modelled: containerd's default capabilities (plus `capabilities.add`), the masked and
//! read-only `/proc` paths unless `procMount: Unmasked`, `seccompProfile: RuntimeDefault`
//! ([`seccomp::convert`]) or `Unconfined`, `runAsUser`, `allowPrivilegeEscalation: false`
//! (`noNewPrivileges`), `readOnlyRootFilesystem`, and `hostUsers: false` (a user namespace of
//! 65536 ids; the root file system's owners are shifted to match, as the kubelet's id-mapped
//! mounts would). Not modelled: AppArmor (not enabled on this machine), cgroup limits, and
//! the pod network: every pod shares the host's network namespace so that it can reach the
//! test registry on 127.0.0.1.
//!
//! Every pod runs bounded in time (`runc kill` + `runc delete -f` when it overstays); its
//! runc state and bundle are removed on drop.

pub mod rootfs;
pub mod seccomp;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// containerd's default capability set (Kubernetes ≥ 1.30), without the `CAP_` prefix.
pub const DEFAULT_CAPABILITIES: [&str; 14] = [
    "CHOWN",
    "DAC_OVERRIDE",
    "FSETID",
    "FOWNER",
    "MKNOD",
    "NET_RAW",
    "SETGID",
    "SETUID",
    "SETFCAP",
    "SETPCAP",
    "NET_BIND_SERVICE",
    "SYS_CHROOT",
    "KILL",
    "AUDIT_WRITE",
];

/// Paths containerd masks unless `procMount: Unmasked`.
pub const MASKED_PATHS: [&str; 11] = [
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

/// Paths containerd makes read-only unless `procMount: Unmasked`.
pub const READONLY_PATHS: [&str; 5] = ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"];

/// Host id of the pod's uid 0 under `hostUsers: false` (clear of the test users' ranges).
pub const USERNS_HOST_BASE: u32 = 2_000_000;

/// Ids of a `hostUsers: false` pod's user namespace.
pub const USERNS_SIZE: u32 = 65536;

/// `securityContext.procMount`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProcMount {
    Default,
    Unmasked,
}

/// `securityContext.seccompProfile.type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seccomp {
    RuntimeDefault,
    Unconfined,
}

/// The pod and container `securityContext` settings a builder cares about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodSecurity {
    pub run_as_user: u32,
    pub allow_privilege_escalation: bool,
    pub read_only_root_fs: bool,
    pub proc_mount: ProcMount,
    pub seccomp: Seccomp,
    /// `capabilities.add`, without `CAP_`.
    pub capabilities_add: Vec<String>,
    pub host_users: bool,
}

impl Default for PodSecurity {
    /// What a pod gets with no securityContext (the image's user aside): root, default caps.
    fn default() -> Self {
        Self {
            run_as_user: 0,
            allow_privilege_escalation: true,
            read_only_root_fs: false,
            proc_mount: ProcMount::Default,
            seccomp: Seccomp::RuntimeDefault,
            capabilities_add: Vec::new(),
            host_users: true,
        }
    }
}

impl PodSecurity {
    /// The host id of id 0 inside the pod (0 unless `hostUsers: false`).
    pub fn id_shift(&self) -> u32 {
        if self.host_users {
            0
        } else {
            USERNS_HOST_BASE
        }
    }

    /// The container's bounding set, `CAP_*` names.
    pub fn capabilities(&self) -> Vec<String> {
        DEFAULT_CAPABILITIES
            .iter()
            .map(|c| c.to_string())
            .chain(self.capabilities_add.iter().cloned())
            .map(|c| format!("CAP_{c}"))
            .collect()
    }
}

/// A volume mount: an emptyDir (host directory), a secret, a config map.
#[derive(Debug, Clone)]
pub struct Volume {
    pub host: PathBuf,
    pub mount_path: String,
    pub read_only: bool,
}

/// One container of a pod: its command, environment and mounts.
#[derive(Debug, Clone)]
pub struct Container {
    pub security: PodSecurity,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    pub cwd: String,
    pub volumes: Vec<Volume>,
}

/// The OCI runtime spec (`config.json`) containerd would give `container`, its root at `rootfs`.
pub fn runtime_spec(container: &Container, rootfs: &Path, seccomp_profile: &Value) -> Value {
    let sc = &container.security;
    let caps = sc.capabilities();
    let uid = sc.run_as_user;
    let mut env = vec![
        "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".to_string(),
        "HOSTNAME=pod".to_string(),
    ];
    env.extend(container.env.iter().map(|(k, v)| format!("{k}={v}")));
    let mut mounts = vec![
        json!({"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]}),
        json!({"destination": "/dev/pts", "type": "devpts", "source": "devpts", "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]}),
        json!({"destination": "/dev/shm", "type": "tmpfs", "source": "shm", "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]}),
        json!({"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]}),
        // sysfs cannot be mounted fresh without a network namespace of the pod's own; bound read-only.
        json!({"destination": "/sys", "type": "bind", "source": "/sys", "options": ["rbind", "nosuid", "noexec", "nodev", "ro"]}),
    ];
    for v in &container.volumes {
        let mode = if v.read_only { "ro" } else { "rw" };
        mounts.push(json!({"destination": v.mount_path, "type": "bind", "source": v.host, "options": ["rbind", mode, "nosuid", "nodev"]}));
    }
    let mut namespaces = vec![
        json!({"type": "pid"}),
        json!({"type": "ipc"}),
        json!({"type": "uts"}),
        json!({"type": "mount"}),
        json!({"type": "cgroup"}),
    ];
    let mut linux = json!({"namespaces": [], "resources": {"devices": [{"allow": false, "access": "rwm"}]}});
    if !sc.host_users {
        namespaces.push(json!({"type": "user"}));
        let map = json!([{"containerID": 0, "hostID": USERNS_HOST_BASE, "size": USERNS_SIZE}]);
        linux["uidMappings"] = map.clone();
        linux["gidMappings"] = map;
    }
    linux["namespaces"] = Value::Array(namespaces);
    if sc.proc_mount == ProcMount::Default {
        linux["maskedPaths"] = json!(MASKED_PATHS);
        linux["readonlyPaths"] = json!(READONLY_PATHS);
    }
    if sc.seccomp == Seccomp::RuntimeDefault {
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
        linux["seccomp"] = seccomp::convert(seccomp_profile, &caps, seccomp::native_arch(), kernel.trim());
    }
    json!({
        "ociVersion": "1.0.2",
        "process": {
            "terminal": false,
            "user": {"uid": uid, "gid": uid, "additionalGids": [uid]},
            "args": container.args,
            "env": env,
            "cwd": container.cwd,
            "capabilities": {"bounding": caps, "effective": caps, "permitted": caps},
            "noNewPrivileges": !sc.allow_privilege_escalation,
        },
        "root": {"path": rootfs, "readonly": sc.read_only_root_fs},
        "hostname": "pod",
        "mounts": mounts,
        "linux": linux,
    })
}

/// Docker's default seccomp profile, as the repository keeps it.
pub fn runtime_default_profile() -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata/pod-profiles/seccomp-runtime-default.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

/// The image a pod's container runs.
#[derive(Debug, Clone, Copy)]
pub enum PodImage<'a> {
    /// rbuild's image with this binary ([`rootfs::build`]).
    Rbuild(&'a Path),
    /// busybox and git ([`rootfs::build_tools`]).
    Tools,
}

/// One emulated pod: a bundle (spec + rbuild's image as root) and its runc state.
pub struct Pod {
    id: String,
    state: tempfile::TempDir,
    bundle: tempfile::TempDir,
}

impl Pod {
    /// Builds the root file system of `image` and the spec; `name` becomes part of the runc id.
    pub fn new(name: &str, container: &Container, image: PodImage) -> Self {
        let bundle = tempfile::Builder::new().prefix("rbuild-pod-").tempdir_in("/tmp").unwrap();
        let state = tempfile::Builder::new().prefix("rbuild-pod-state-").tempdir_in("/tmp").unwrap();
        // The pod's root under `hostUsers: false` is an unprivileged host id: it must reach the root.
        std::fs::set_permissions(bundle.path(), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        let rootfs = bundle.path().join("rootfs");
        std::fs::create_dir(&rootfs).unwrap();
        match image {
            PodImage::Rbuild(rbuild) => rootfs::build(&rootfs, rbuild, container.security.id_shift()),
            PodImage::Tools => rootfs::build_tools(&rootfs, container.security.id_shift()),
        }
        let spec = runtime_spec(container, &rootfs, &runtime_default_profile());
        std::fs::write(bundle.path().join("config.json"), serde_json::to_vec_pretty(&spec).unwrap()).unwrap();
        let suffix = bundle.path().file_name().unwrap().to_string_lossy().replace("rbuild-pod-", "");
        Self { id: format!("{name}-{suffix}"), state, bundle }
    }

    /// The pod's root file system on the host.
    pub fn rootfs(&self) -> PathBuf {
        self.bundle.path().join("rootfs")
    }

    fn runc(&self) -> Command {
        let mut cmd = Command::new("runc");
        cmd.arg("--root").arg(self.state.path());
        cmd
    }

    /// Runs the container to its end, at most `limit`; an overstaying pod is killed and its
    /// output so far returned with a failed status.
    pub fn run(&self, limit: Duration) -> Output {
        let mut child = self
            .runc()
            .args(["run", "--bundle"])
            .arg(self.bundle.path())
            .arg(&self.id)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("runc (Debian package runc) must be installed");
        let reader = |mut pipe: Box<dyn Read + Send>| {
            std::thread::spawn(move || {
                let mut buf = Vec::new();
                let _ = pipe.read_to_end(&mut buf);
                buf
            })
        };
        let out = reader(Box::new(child.stdout.take().unwrap()));
        let err = reader(Box::new(child.stderr.take().unwrap()));
        let start = Instant::now();
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if start.elapsed() > limit {
                let _ = self.runc().args(["kill", &self.id, "KILL"]).output();
                let _ = self.runc().args(["delete", "-f", &self.id]).output();
                let _ = child.kill();
                break child.wait().unwrap();
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let mut stderr = err.join().unwrap_or_default();
        if start.elapsed() > limit {
            stderr.extend_from_slice(format!("\npod emulator: killed after {limit:?}\n").as_bytes());
        }
        Output { status, stdout: out.join().unwrap_or_default(), stderr }
    }
}

impl Drop for Pod {
    fn drop(&mut self) {
        let _ = self.runc().args(["delete", "-f", &self.id]).output();
    }
}
