//! A root file system built like rbuild's image (the project's `Dockerfile`), from host
//! files instead of Debian packages (no network here): busybox as the shell, the rbuild
//! binary and its libraries, `newuidmap`/`newgidmap` with file capabilities instead of the
//! setuid bit (`setcap cap_setuid+ep`), CA certificates, `/etc/passwd` with `rbuild` (1000),
//! `/etc/subuid`/`subgid` granting it `100000:65536`, and the own-image marker.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

const DIRS: [&str; 14] = [
    "bin",
    "usr/bin",
    "usr/local/bin",
    "etc/rbuild",
    "etc/ssl/certs",
    "proc",
    "dev",
    "sys",
    "tmp",
    "root",
    "home/rbuild/.cache",
    "workspace",
    "run",
    "var/tmp",
];

/// Files of the image and their contents (as the `Dockerfile` writes them).
const ETC: [(&str, &str); 8] = [
    ("etc/passwd", "root:x:0:0:root:/root:/bin/sh\nrbuild:x:1000:1000:rbuild:/home/rbuild:/bin/sh\n"),
    ("etc/group", "root:x:0:\nrbuild:x:1000:\n"),
    ("etc/shadow", "root:*:19000:0:99999:7:::\nrbuild:!:19000:0:99999:7:::\n"),
    ("etc/subuid", "rbuild:100000:65536\n"),
    ("etc/subgid", "rbuild:100000:65536\n"),
    (
        "etc/rbuild/own-image",
        "This root file system is the rbuild image; rbuild --isolation container may replace it.\n",
    ),
    ("etc/hosts", "127.0.0.1 localhost\n::1 localhost\n"),
    ("etc/resolv.conf", "nameserver 127.0.0.1\n"),
];

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(out.status.success(), "{cmd:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// The absolute library paths `ldd` lists for `binary` (a static binary has none).
pub fn shared_libraries(binary: &Path) -> Vec<PathBuf> {
    let out = Command::new("ldd").arg(binary).output().unwrap();
    String::from_utf8_lossy(&out.stdout).split_whitespace().filter(|w| w.starts_with('/')).map(PathBuf::from).collect()
}

/// Copies `src` to `root/dst` with the libraries it needs.
fn install(root: &Path, src: &Path, dst: &str, mode: u32) {
    let target = root.join(dst);
    std::fs::copy(src, &target).unwrap_or_else(|e| panic!("{}: {e}", src.display()));
    std::fs::set_permissions(&target, std::fs::Permissions::from_mode(mode)).unwrap();
    for lib in shared_libraries(src) {
        let to = root.join(lib.strip_prefix("/").unwrap());
        if !to.exists() {
            std::fs::create_dir_all(to.parent().unwrap()).unwrap();
            std::fs::copy(&lib, &to).unwrap();
        }
    }
}

/// Writes rbuild's image into the empty directory `root`, files owned as in the image
/// (root, except `rbuild`'s home and `/workspace`), each id shifted by `id_shift` (the
/// host id of the pod's uid 0 under `hostUsers: false`, else 0).
pub fn build(root: &Path, rbuild: &Path, id_shift: u32) {
    for d in DIRS {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    std::fs::set_permissions(root.join("tmp"), std::fs::Permissions::from_mode(0o1777)).unwrap();
    std::fs::set_permissions(root.join("var/tmp"), std::fs::Permissions::from_mode(0o1777)).unwrap();
    install(root, Path::new("/bin/busybox"), "bin/busybox", 0o755);
    for applet in ["sh", "id", "cat", "ls", "echo", "env", "sleep", "mkdir", "cp", "rm", "test"] {
        std::os::unix::fs::symlink("busybox", root.join("bin").join(applet)).unwrap();
    }
    install(root, rbuild, "usr/local/bin/rbuild", 0o755);
    install(root, Path::new("/usr/bin/newuidmap"), "usr/bin/newuidmap", 0o755);
    install(root, Path::new("/usr/bin/newgidmap"), "usr/bin/newgidmap", 0o755);
    // The Dockerfile installs git: `--commit-suffix auto` asks it whether the tree is clean.
    install_git(root);
    std::fs::copy("/etc/ssl/certs/ca-certificates.crt", root.join("etc/ssl/certs/ca-certificates.crt")).unwrap();
    for (path, text) in ETC {
        std::fs::write(root.join(path), text).unwrap();
    }
    std::fs::set_permissions(root.join("etc/shadow"), std::fs::Permissions::from_mode(0o640)).unwrap();
    shift_owners(root, id_shift);
    for d in ["home/rbuild", "home/rbuild/.cache", "workspace"] {
        std::os::unix::fs::lchown(root.join(d), Some(id_shift + 1000), Some(id_shift + 1000)).unwrap();
    }
    // After the chown, which would clear them: file capabilities, as the Dockerfile sets them.
    run(Command::new("setcap").arg("cap_setuid+ep").arg(root.join("usr/bin/newuidmap")));
    run(Command::new("setcap").arg("cap_setgid+ep").arg(root.join("usr/bin/newgidmap")));
}

/// A tools image for the pipeline's other steps (Argo's `git_image`, `test_image`): busybox
/// and git (`/usr/bin/git`, its helpers as links to it in `/usr/lib/git-core`), `/etc/passwd`.
pub fn build_tools(root: &Path, id_shift: u32) {
    for d in ["bin", "usr/bin", "etc", "proc", "dev", "sys", "tmp", "root", "home/rbuild"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    std::fs::set_permissions(root.join("tmp"), std::fs::Permissions::from_mode(0o1777)).unwrap();
    install(root, Path::new("/bin/busybox"), "bin/busybox", 0o755);
    for applet in ["sh", "id", "cat", "ls", "echo", "env", "test", "tee", "rm", "mkdir", "make", "grep"] {
        std::os::unix::fs::symlink("busybox", root.join("bin").join(applet)).unwrap();
    }
    install_git(root);
    for (path, text) in &ETC[..3] {
        std::fs::write(root.join(path), text).unwrap();
    }
    shift_owners(root, id_shift);
}

/// Installs the host's git as `/usr/bin/git`, its helpers as links to it in
/// `/usr/lib/git-core`.
fn install_git(root: &Path) {
    std::fs::create_dir_all(root.join("usr/lib/git-core")).unwrap();
    install(root, Path::new("/usr/bin/git"), "usr/bin/git", 0o755);
    for helper in ["git", "git-upload-pack", "git-receive-pack"] {
        std::os::unix::fs::symlink("../../bin/git", root.join("usr/lib/git-core").join(helper)).unwrap();
    }
}

/// Adds `shift` to the owner of every file under `root` (no-op for 0).
pub fn shift_owners(root: &Path, shift: u32) {
    if shift == 0 {
        return;
    }
    let mut stack = vec![root.to_path_buf()];
    while let Some(path) = stack.pop() {
        let meta = std::fs::symlink_metadata(&path).unwrap();
        std::os::unix::fs::lchown(&path, Some(meta.uid() + shift), Some(meta.gid() + shift)).unwrap();
        if meta.is_dir() {
            stack.extend(std::fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()));
        }
    }
}
