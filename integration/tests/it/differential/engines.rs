//! The reference builders: a private Docker engine (Debian's `docker.io` 20.10 `dockerd`,
//! BuildKit on) started once for the whole differential run, and buildah as a second
//! opinion. Both push their result to the test registry.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Longest a single reference build or push may take (the cases are small).
const STEP_TIMEOUT: &str = "300";

/// A private dockerd: its own data-root, exec-root, pidfile and unix socket in a temp dir,
/// no bridge or iptables (RUN uses the host network), the test registry allowed over HTTP.
/// Stopped (SIGTERM, then SIGKILL) and its directory removed on drop.
pub(crate) struct Dockerd {
    dir: tempfile::TempDir,
    child: Child,
}

impl Dockerd {
    /// Starts dockerd and waits until it answers; panics with its log if it does not.
    pub(crate) fn start(registry: &str) -> Self {
        // Short path: containerd's socket under exec-root must fit in sun_path.
        let dir = tempfile::Builder::new().prefix("rbd-").tempdir_in("/tmp").unwrap();
        let d = dir.path();
        std::fs::create_dir(d.join("config")).unwrap();
        let log = std::fs::File::create(d.join("dockerd.log")).unwrap();
        let child = Command::new("dockerd")
            .arg("--data-root")
            .arg(d.join("data"))
            .arg("--exec-root")
            .arg(d.join("exec"))
            .arg("--pidfile")
            .arg(d.join("docker.pid"))
            .arg("--host")
            .arg(format!("unix://{}", d.join("docker.sock").display()))
            .args(["--bridge=none", "--iptables=false", "--ip-masq=false", "--log-level", "warn"])
            .args(["--insecure-registry", registry])
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("dockerd is missing: apt-get install docker.io (scripts/test.sh installs it)");
        let mut engine = Self { dir, child };
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if engine.docker(&["version"]).output().is_ok_and(|o| o.status.success()) {
                return engine;
            }
            assert!(engine.child.try_wait().unwrap().is_none(), "dockerd exited: {}", engine.log());
            std::thread::sleep(Duration::from_millis(250));
        }
        panic!("dockerd did not answer within 60 s: {}", engine.log());
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("dockerd.log")).unwrap_or_default()
    }

    /// `docker ARGS` against this engine (Debian's 20.10 client, which builds with BuildKit
    /// itself; the newer client in /usr/local/bin wants buildx).
    fn docker(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new("timeout");
        cmd.args([STEP_TIMEOUT, "/usr/bin/docker", "-H"])
            .arg(format!("unix://{}", self.dir.path().join("docker.sock").display()))
            .args(args)
            .env("DOCKER_BUILDKIT", "1")
            .env("DOCKER_CONFIG", self.dir.path().join("config"))
            .stdin(Stdio::null());
        cmd
    }

    /// Builds `context` into `image` (with `--network host`) and pushes it.
    pub(crate) fn build(&self, context: &Path, image: &str, extra: &[String]) -> Result<(), String> {
        let mut args: Vec<&str> = vec!["build", "-q", "--network", "host", "-t", image];
        args.extend(extra.iter().map(String::as_str));
        args.push(context.to_str().unwrap());
        run(self.docker(&args), "docker build")?;
        run(self.docker(&["push", image]), "docker push")
    }
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline && matches!(self.child.try_wait(), Ok(None)) {
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        // Mounts left by a killed engine would make the temp dir's removal fail.
        let _ = Command::new("umount").arg("-R").arg("-l").arg(self.dir.path().join("exec")).status();
    }
}

fn run(mut cmd: Command, what: &str) -> Result<(), String> {
    let out = cmd.output().map_err(|e| format!("{what}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("{what} failed ({}):\n{}", out.status, String::from_utf8_lossy(&out.stderr)))
    }
}

/// `buildah bud` the context as root (chroot isolation, vfs storage in its own temp dir),
/// then push the result to `image`.
pub(crate) fn buildah_build(context: &Path, image: &str, extra: &[String]) -> Result<(), String> {
    let storage = tempfile::tempdir().unwrap();
    let buildah = |args: &[&str]| {
        let mut cmd = Command::new("timeout");
        cmd.args([STEP_TIMEOUT, "buildah", "--root"])
            .arg(storage.path().join("root"))
            .arg("--runroot")
            .arg(storage.path().join("runroot"))
            .args(["--storage-driver", "vfs"])
            .args(args)
            .env("BUILDAH_ISOLATION", "chroot");
        run(cmd, "buildah")
    };
    let mut args: Vec<&str> = vec![
        "bud",
        "--isolation",
        "chroot",
        "--runtime",
        "/usr/sbin/runc",
        "--network",
        "host",
        "--format",
        "docker",
        "--tls-verify=false",
        "-t",
        image,
    ];
    args.extend(extra.iter().map(String::as_str));
    args.push(context.to_str().unwrap());
    buildah(&args)?;
    buildah(&["push", "--tls-verify=false", image, &format!("docker://{image}")])
}
