//! `--isolation container` (Kaniko's model: no namespaces, the build replaces the root it runs
//! in), never on the host's own `/`: a throwaway root (busybox, the rbuild binary and the
//! libraries `ldd` names, a context, a "volume", service-account secrets, the own-image
//! marker) entered with `unshare -m` (private mounts: `/proc`, `/dev`, a tmpfs volume) and
//! `chroot`, as root without `CAP_SYS_ADMIN` (so, as in a Kubernetes "baseline" pod, neither
//! user nor mount namespaces work and `--isolation auto` must pick container isolation).
//! rbuild pushes to the test registry over loopback (the chroot shares the network
//! namespace); skopeo + umoci check the image: RUN output present, excluded paths absent.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::build::{workspace, Harness};
use crate::support::rbuild_bin;

/// A throwaway root for rbuild under container isolation.
struct ThrowawayRoot {
    dir: tempfile::TempDir,
}

impl ThrowawayRoot {
    fn new(marker: bool) -> Self {
        let dir = tempfile::Builder::new().prefix("rbuild-container-root-").tempdir_in("/tmp").unwrap();
        let root = dir.path();
        for d in [
            "bin",
            "etc/rbuild",
            "proc",
            "dev",
            "tmp",
            "state",
            "mnt/volume",
            "run/secrets/kubernetes.io/serviceaccount",
            "usr/local/bin",
            "workspace",
        ] {
            std::fs::create_dir_all(root.join(d)).unwrap();
        }
        std::fs::copy("/bin/busybox", root.join("bin/busybox")).unwrap();
        std::os::unix::fs::symlink("busybox", root.join("bin/sh")).unwrap();
        let rbuild = root.join("usr/local/bin/rbuild");
        std::fs::copy(rbuild_bin(), &rbuild).unwrap();
        for lib in shared_libraries(&rbuild) {
            let dst = root.join(lib.strip_prefix("/").unwrap());
            std::fs::create_dir_all(dst.parent().unwrap()).unwrap();
            std::fs::copy(&lib, &dst).unwrap();
        }
        if marker {
            std::fs::write(root.join("etc/rbuild/own-image"), "rbuild image\n").unwrap();
        }
        std::fs::write(root.join("etc/image-only.txt"), "a file of the rbuild image\n").unwrap();
        std::fs::write(root.join("run/secrets/kubernetes.io/serviceaccount/token"), "secret token\n").unwrap();
        crate::build::copy_tree(&workspace().join("testdata/build/container"), &root.join("workspace/ctx"));
        Self { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Runs `rbuild ARGS` chrooted into the root, in a private mount namespace with `/proc`,
    /// `/dev` and a tmpfs volume holding `keep.txt`, without `CAP_SYS_ADMIN`.
    fn rbuild(&self, args: &[&str]) -> Output {
        let root = self.path().display().to_string();
        let script = format!(
            "set -e; mount --make-rprivate /; mount -t proc proc {root}/proc; mount --bind /dev {root}/dev; \
             mount -t tmpfs tmpfs {root}/mnt/volume; echo kept > {root}/mnt/volume/keep.txt; \
             exec setpriv --bounding-set -sys_admin chroot {root} /usr/local/bin/rbuild \"$@\"; \
             "
        );
        Command::new("unshare")
            .args(["-m", "sh", "-c", &script, "sh"])
            .args(args)
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .env("HOME", "/root")
            .output()
            .unwrap()
    }
}

/// The absolute library paths `ldd` lists for `binary` (a static binary has none).
fn shared_libraries(binary: &Path) -> Vec<PathBuf> {
    let out = Command::new("ldd").arg(binary).output().unwrap();
    String::from_utf8_lossy(&out.stdout).split_whitespace().filter(|w| w.starts_with('/')).map(PathBuf::from).collect()
}

#[tokio::test]
async fn auto_picks_container_isolation_and_builds_in_the_own_root() {
    let Some(h) = Harness::start().await else { return };
    let root = ThrowawayRoot::new(true);
    let image = h.image("container/app:v1");
    let out = root.rbuild(&[
        "build",
        "--context",
        "/workspace/ctx",
        "--cache-dir",
        "/state",
        "--insecure-registry",
        h.ctx.registry.addr(),
        "--build-arg",
        &h.base(),
        "--destination",
        &image,
        "--digest-file",
        "/state/digest",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "rbuild in the throwaway root failed:\n{stderr}");
    assert!(stderr.contains("isolation: container (user namespaces are refused"), "{stderr}");
    assert!(stderr.contains("/etc/rbuild/own-image marks this as rbuild's own image"), "{stderr}");

    let digest = std::fs::read_to_string(root.path().join("state/digest")).unwrap();
    assert_eq!(h.digest(&image), digest);
    let rootfs = h.unpack(&image);
    for (path, content) in [
        ("app/hello.txt", "hello from the context\n"),
        ("app/run.txt", "run in the container's own root\n"),
        ("out/uid", "1000\n"),
        ("app/from-tool.txt", "from the first stage\n"),
    ] {
        assert_eq!(std::fs::read_to_string(rootfs.join(path)).unwrap(), content, "{path}");
    }
    assert_eq!(std::fs::metadata(rootfs.join("out/by-user")).unwrap().uid(), 1000);
    // The RUN saw the base, not the rbuild image it replaced nor the first stage.
    assert!(!rootfs.join("app/leftover").exists());
    for absent in [
        "etc/rbuild/own-image",
        "etc/image-only.txt",
        "state",
        "workspace",
        "mnt/volume/keep.txt",
        "run/secrets",
        "usr/local/bin/rbuild",
        "proc/self",
        "dev/null",
        "tool",
    ] {
        assert!(std::fs::symlink_metadata(rootfs.join(absent)).is_err(), "{absent} must not be in the image");
    }

    // The build replaced the root but spared the excluded paths.
    let r = root.path();
    assert!(!r.join("etc/image-only.txt").exists(), "the rbuild image's own files are wiped");
    assert!(!r.join("etc/rbuild/own-image").exists(), "the marker goes with them: a second build refuses");
    assert_eq!(std::fs::read_to_string(r.join("app/run.txt")).unwrap(), "run in the container's own root\n");
    assert_eq!(
        std::fs::read_to_string(r.join("run/secrets/kubernetes.io/serviceaccount/token")).unwrap(),
        "secret token\n"
    );
    assert!(r.join("workspace/ctx/Dockerfile").is_file());
    assert!(r.join("usr/local/bin/rbuild").is_file());
}

#[rstest::rstest]
#[case::explicit_container(&["--isolation", "container"], "refusing container isolation: /etc/rbuild/own-image is missing")]
#[case::auto_without_namespaces(&[], "no RUN isolation works here: user namespaces are refused")]
#[tokio::test]
async fn outside_the_own_image_container_isolation_refuses_and_touches_nothing(
    #[case] flags: &[&str],
    #[case] message: &str,
) {
    let Some(h) = Harness::start().await else { return };
    let root = ThrowawayRoot::new(false);
    let image = h.image("container/refused:v1");
    // Under `auto` the refusal comes with the first RUN (a Dockerfile without RUN would build),
    // so the base must resolve.
    let base = h.base();
    let mut args = vec![
        "build",
        "--context",
        "/workspace/ctx",
        "--cache-dir",
        "/state",
        "--insecure-registry",
        h.ctx.registry.addr(),
        "--build-arg",
        &base,
        "--destination",
        &image,
    ];
    args.extend_from_slice(flags);
    let out = root.rbuild(&args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains(message), "{stderr}");
    assert!(root.path().join("etc/image-only.txt").is_file(), "nothing may be removed");
    assert!(root.path().join("bin/busybox").is_file());
}
