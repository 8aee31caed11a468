//! Real RUNs in real namespaces, as an unprivileged user, through the `sandbox_run` example.
//!
//! Needs root to create the test users (`integration/scripts/test-users.sh`) and switch to
//! them with `setpriv`; without root the tests skip with a message (and fail under `CI`).
//! The rootfs is Debian's `busybox-static` plus a passwd/group with `root`, `nobody`, `app`.

use std::fs;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::{lchown, FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use rstest::rstest;

const WITH_RANGE: &str = "rbuild-test";
const WITHOUT_RANGE: &str = "rbuild-nosub";
const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\napp:x:1000:1000:app:/home/app:/bin/sh\n";
const GROUP: &str = "root:x:0:\nwheel:x:10:app\napp:x:1000:\nnogroup:x:65534:\n";

/// Skip (return `None`) with a message, or fail under CI.
fn skip(why: &str) -> Option<Harness> {
    assert!(std::env::var_os("CI").is_none(), "sandbox tests cannot run under CI: {why}");
    eprintln!("skipping sandbox test: {why}");
    None
}

fn user_ids(name: &str) -> Option<(u32, u32)> {
    let out = Command::new("getent").args(["passwd", name]).output().ok()?;
    let line = String::from_utf8(out.stdout).ok()?;
    let f: Vec<&str> = line.trim().split(':').collect();
    Some((f.get(2)?.parse().ok()?, f.get(3)?.parse().ok()?))
}

fn ensure_users() -> Result<(), String> {
    if user_ids(WITH_RANGE).is_some() && user_ids(WITHOUT_RANGE).is_some() {
        return Ok(());
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../integration/scripts/test-users.sh");
    let status = Command::new("bash").arg(&script).status().map_err(|e| format!("{}: {e}", script.display()))?;
    status.success().then_some(()).ok_or_else(|| format!("{} failed", script.display()))
}

/// The `sandbox_run` example, rebuilt once per test process so it is never stale
/// (`cargo test --test sandbox_run` alone does not rebuild examples).
fn example_binary() -> PathBuf {
    static BUILT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BUILT
        .get_or_init(|| {
            let exe = std::env::current_exe().unwrap();
            let profile_dir = exe.parent().and_then(Path::parent).unwrap();
            let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
            let mut build = Command::new(cargo);
            build.args(["build", "-p", "rbuild-builder", "--example", "sandbox_run"]);
            if profile_dir.file_name().is_some_and(|n| n == "release") {
                build.arg("--release");
            }
            assert!(build.status().unwrap().success(), "cannot build the sandbox_run example");
            profile_dir.join("examples/sandbox_run")
        })
        .clone()
}

struct Harness {
    dir: tempfile::TempDir,
    user: &'static str,
    uid: u32,
    bin: PathBuf,
}

fn chown_tree(path: &Path, uid: u32, gid: u32) {
    lchown(path, Some(uid), Some(gid)).unwrap();
    if path.symlink_metadata().unwrap().is_dir() {
        for entry in fs::read_dir(path).unwrap() {
            chown_tree(&entry.unwrap().path(), uid, gid);
        }
    }
}

fn write_busybox_root(root: &Path) {
    for d in ["bin", "etc", "tmp"] {
        fs::create_dir_all(root.join(d)).unwrap();
    }
    fs::set_permissions(root.join("tmp"), fs::Permissions::from_mode(0o1777)).unwrap();
    fs::copy("/bin/busybox", root.join("bin/busybox")).unwrap();
    let list = Command::new("/bin/busybox").arg("--list").output().unwrap();
    for applet in String::from_utf8_lossy(&list.stdout).lines().filter(|a| *a != "busybox") {
        std::os::unix::fs::symlink("busybox", root.join("bin").join(applet)).unwrap();
    }
    fs::write(root.join("etc/passwd"), PASSWD).unwrap();
    fs::write(root.join("etc/group"), GROUP).unwrap();
}

fn harness(user: &'static str) -> Option<Harness> {
    if !nix::unistd::geteuid().is_root() {
        return skip("needs root to create and switch to the unprivileged test users");
    }
    if !Path::new("/bin/busybox").exists() {
        return skip("/bin/busybox missing: apt-get install busybox-static");
    }
    if let Err(e) = ensure_users() {
        return skip(&e);
    }
    let (uid, gid) = user_ids(user)?;
    let dir = tempfile::Builder::new().prefix("rbuild-sandbox-test-").tempdir_in("/tmp").unwrap();
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    write_busybox_root(&dir.path().join("root"));
    let bin = dir.path().join("sandbox_run");
    fs::copy(example_binary(), &bin).unwrap();
    fs::set_permissions(&bin, fs::Permissions::from_mode(0o755)).unwrap();
    chown_tree(dir.path(), uid, gid);
    Some(Harness { dir, user, uid, bin })
}

impl Harness {
    fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    fn command(&self, args: &[&str], root: &Path, argv: &[&str]) -> Command {
        let mut cmd = Command::new("setpriv");
        cmd.args(["--reuid", self.user, "--regid", self.user, "--init-groups"]).arg(&self.bin);
        cmd.args(args).arg(root).arg("--").args(argv);
        cmd
    }

    fn run(&self, args: &[&str], argv: &[&str]) -> Output {
        self.command(args, &self.root(), argv).output().unwrap()
    }

    fn report(&self) -> String {
        self.dir.path().join("report").display().to_string()
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[rstest]
#[case::id_is_root(&[], &["/bin/sh", "-c", "id"], 0, "uid=0(root) gid=0(root)\n")]
#[case::exit_code(&[], &["/bin/sh", "-c", "exit 3"], 3, "")]
#[case::signal_is_128_plus_n(&["--shared-pid"], &["/bin/sh", "-c", "kill -KILL $$"], 137, "")]
#[case::pid_1_is_the_step(&[], &["/bin/sh", "-c", "ps -o pid,comm >/tmp/ps; tr -s ' ' </tmp/ps | sed 's/^ //'"], 0, "PID COMMAND\n1 sh\n2 ps\n")]
#[case::env(&["--env", "FOO=bar baz"], &["/bin/sh", "-c", "echo \"$FOO\""], 0, "bar baz\n")]
#[case::user_by_name(&["--user", "app"], &["id"], 0, "uid=1000(app) gid=1000(app) groups=10(wheel)\n")]
#[case::user_by_id(&["--user", "1000"], &["id"], 0, "uid=1000(app) gid=1000(app) groups=10(wheel)\n")]
#[case::user_and_group(&["--user", "app:wheel"], &["id"], 0, "uid=1000(app) gid=10(wheel)\n")]
#[case::workdir_created(&["--cwd", "/work/dir"], &["/bin/sh", "-c", "pwd"], 0, "/work/dir\n")]
#[case::exec_form_keeps_words(&[], &["/bin/echo", "a  b", "c"], 0, "a  b c\n")]
#[case::path_lookup_inside_root(&["--env", "PATH=/bin"], &["echo", "hi"], 0, "hi\n")]
#[case::hostname(&[], &["hostname"], 0, "rbuild\n")]
#[case::network_none_has_only_lo(&["--network", "none"], &["/bin/sh", "-c", "tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' '; ip route; tail -n +2 /proc/net/route"], 0, "lo\n")]
#[case::network_none_lo_is_up(&["--network", "none"], &["/bin/sh", "-c", "ip -o link show lo | grep -o 'UP,LOWER_UP'"], 0, "UP,LOWER_UP\n")]
#[case::stderr_is_separate(&[], &["/bin/sh", "-c", "echo out; echo err >&2"], 0, "out\n")]
#[case::sigpipe_ends_yes(&[], &["/bin/sh", "-c", "yes | head -c 5"], 0, "y\ny\ny")]
#[case::signals_as_under_runc(&[], &["grep", "-E", "^Sig(Blk|Ign)", "/proc/self/status"], 0, "SigBlk:\t0000000000000000\nSigIgn:\t0000000080000000\n")]
#[case::umask_022(&[], &["/bin/sh", "-c", "umask"], 0, "0022\n")]
#[case::only_fds_0_to_2_and_ls_own(&[], &["ls", "/proc/self/fd"], 0, "0\n1\n2\n3\n")]
fn run_cases(#[case] args: &[&str], #[case] argv: &[&str], #[case] code: i32, #[case] stdout: &str) {
    let Some(h) = harness(WITH_RANGE) else { return };
    let out = h.run(args, argv);
    assert_eq!((out.status.code(), text(&out.stdout).as_str()), (Some(code), stdout), "stderr: {}", text(&out.stderr));
}

#[test]
fn missing_command_is_a_setup_error_with_a_hint() {
    let Some(h) = harness(WITH_RANGE) else { return };
    let out = h.run(&[], &["no-such-command"]);
    assert_eq!(out.status.code(), Some(125));
    assert!(text(&out.stderr).contains("executable file not found in PATH"), "{}", text(&out.stderr));
}

fn subuid_start(user: &str) -> u32 {
    let subuid = fs::read_to_string("/etc/subuid").unwrap();
    let line = subuid.lines().find(|l| l.starts_with(&format!("{user}:"))).unwrap();
    line.split(':').nth(1).unwrap().parse().unwrap()
}

/// uid 0 inside is the caller on disk; uid 1000 is subuid start + 999 (0 → caller,
/// 1.. → the subordinate range, as podman and buildah map).
#[test]
fn files_are_owned_by_the_caller_and_chown_uses_the_subuid_range() {
    let Some(h) = harness(WITH_RANGE) else { return };
    let out = h.run(&["--report", &h.report()], &["/bin/sh", "-c", "touch /mine /theirs && chown 1000:1000 /theirs"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let owner = |f: &str| fs::metadata(h.root().join(f)).unwrap().uid();
    assert_eq!((owner("mine"), owner("theirs")), (h.uid, subuid_start(WITH_RANGE) + 999));
    assert!(fs::read_to_string(h.report()).unwrap().contains("id_map=Range"));
}

/// Without a subordinate range only id 0 exists: chown fails, and the report says the map
/// was single so the executor can print the hint.
#[test]
fn chown_fails_with_a_single_id_map_and_the_map_is_reported() {
    let Some(h) = harness(WITHOUT_RANGE) else { return };
    let out = h.run(&["--report", &h.report()], &["/bin/sh", "-c", "touch /mine && chown 1000:1000 /mine"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("Invalid argument"), "{}", text(&out.stderr));
    assert_eq!(fs::metadata(h.root().join("mine")).unwrap().uid(), h.uid);
    let report = fs::read_to_string(h.report()).unwrap();
    assert!(report.contains("id_map=Single") && report.contains("hint=this RUN had a single-id"), "{report}");
}

fn listing(dir: &Path) -> Vec<String> {
    let mut all = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            all.push(p.strip_prefix(dir).unwrap().display().to_string());
            if p.symlink_metadata().unwrap().is_dir() {
                stack.push(p);
            }
        }
    }
    all.sort();
    all
}

/// Mount points created for the RUN (/proc, /dev, /sys, /etc/resolv.conf, /etc/hosts) are
/// gone afterwards and reported, so they never land in a layer.
#[test]
fn placeholders_are_removed_and_reported() {
    let Some(h) = harness(WITH_RANGE) else { return };
    let before = listing(&h.root());
    let out = h.run(
        &["--report", &h.report()],
        &["/bin/sh", "-c", "test -c /dev/null && test -r /proc/self/status && cat /etc/hosts >/dev/null"],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(listing(&h.root()), before);
    let report = fs::read_to_string(h.report()).unwrap();
    for p in ["/proc", "/dev", "/sys", "/etc/hosts"] {
        assert!(report.contains(p), "{p} not reported: {report}");
    }
}

/// `RUN --mount` style binds: read-write writes through to the host, read-only refuses,
/// and the created mount points are removed afterwards.
#[test]
fn extra_mounts_bind_host_dirs() {
    let Some(h) = harness(WITH_RANGE) else { return };
    let (rw, ro) = (h.dir.path().join("cache"), h.dir.path().join("secret"));
    for d in [&rw, &ro] {
        fs::create_dir(d).unwrap();
        lchown(d, Some(h.uid), None).unwrap();
    }
    fs::write(ro.join("token"), "s3cret").unwrap();
    let before = listing(&h.root());
    let mounts = [format!("{}:/var/cache/x", rw.display()), format!("{}:/run/secrets:ro", ro.display())];
    let script = "touch /var/cache/x/written && cat /run/secrets/token && ! touch /run/secrets/nope 2>/dev/null";
    let out = h.run(&["--mount", &mounts[0], "--mount", &mounts[1]], &["/bin/sh", "-c", script]);
    assert_eq!((out.status.code(), text(&out.stdout).as_str()), (Some(0), "s3cret"), "{}", text(&out.stderr));
    assert!(rw.join("written").exists());
    assert!(!ro.join("nope").exists());
    assert_eq!(listing(&h.root()), before, "mount points removed");
}

#[test]
fn a_run_writing_10000_files() {
    let Some(h) = harness(WITH_RANGE) else { return };
    let script = "mkdir /many && i=0 && while [ $i -lt 10000 ]; do : > /many/f$i; i=$((i+1)); done";
    let out = h.run(&[], &["/bin/sh", "-c", script]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(fs::read_dir(h.root().join("many")).unwrap().count(), 10000);
}

/// The overlay's upper dir receives exactly the RUN's changes (new files, whiteouts), the
/// lower dir is untouched and no placeholder is left in the upper dir.
#[test]
fn overlay_upper_dir_is_the_diff() {
    let Some(h) = harness(WITH_RANGE) else { return };
    let d = h.dir.path();
    for sub in ["upper", "work", "merged"] {
        fs::create_dir(d.join(sub)).unwrap();
        lchown(d.join(sub), Some(h.uid), None).unwrap();
    }
    let spec = format!("{}:{}:{}", h.root().display(), d.join("upper").display(), d.join("work").display());
    let out = h
        .command(&["--overlay", &spec], &d.join("merged"), &["/bin/sh", "-c", "echo hi > /new && rm /bin/ls"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(fs::read_to_string(d.join("upper/new")).unwrap(), "hi\n");
    let whiteout = fs::symlink_metadata(d.join("upper/bin/ls")).unwrap();
    assert!(whiteout.file_type().is_char_device() && whiteout.rdev() == 0, "bin/ls is a whiteout");
    assert!(h.root().join("bin/ls").symlink_metadata().is_ok(), "lower untouched");
    for p in ["proc", "dev", "sys", "etc/resolv.conf", "etc/hosts"] {
        assert!(!d.join("upper").join(p).exists(), "placeholder {p} left in upper");
    }
    assert_eq!(fs::read_dir(d.join("merged")).unwrap().count(), 0, "merged view unmounted");
}

fn processes_with(marker: &str) -> Vec<String> {
    fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| fs::read(e.ok()?.path().join("cmdline")).ok())
        .map(|c| text(&c).replace('\0', " "))
        .filter(|c| c.starts_with(marker))
        .collect()
}

/// SIGTERM to the parent mid-RUN kills the whole RUN: no process, no mount, no file left.
#[test]
fn sigterm_mid_run_leaves_nothing_behind() {
    let Some(h) = harness(WITH_RANGE) else { return };
    let marker = format!("{}", 900_000 + std::process::id());
    let mounts_before = fs::read_to_string("/proc/self/mountinfo").unwrap();
    let root_before = listing(&h.root());
    let script = format!("echo ready; sleep {marker}; echo not-killed");
    let mut child = h
        .command(&[], &h.root(), &["/bin/sh", "-c", &script])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    assert_eq!(line, "ready\n");
    // "ready" is printed just before `sleep` starts; wait for it to show up.
    let started = Instant::now();
    while processes_with(&format!("sleep {marker}")).is_empty() {
        assert!(started.elapsed() < Duration::from_secs(10), "the RUN's sleep never started");
        std::thread::sleep(Duration::from_millis(10));
    }
    let sent = Instant::now();
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGTERM).unwrap();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(sent.elapsed() < Duration::from_secs(5), "not cancelled within 5 s");
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert_eq!(status.code(), Some(125), "{stderr}");
    assert!(stderr.contains("cancelled"), "{stderr}");
    assert_eq!(processes_with(&format!("sleep {marker}")), Vec::<String>::new());
    assert_eq!(fs::read_to_string("/proc/self/mountinfo").unwrap(), mounts_before);
    assert_eq!(listing(&h.root()), root_before);
}

/// The probe finds what this host allows; only the user with a range gets the full map.
#[rstest]
#[case::with_range(WITH_RANGE, "subid_range: true")]
#[case::without_range(WITHOUT_RANGE, "subid_range: false")]
fn probe_reports_capabilities(#[case] user: &'static str, #[case] range: &str) {
    let Some(h) = harness(user) else { return };
    let probe_dirs = || -> Vec<PathBuf> {
        let ours = |p: &PathBuf| {
            p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("rbuild-probe-"))
                && fs::metadata(p).is_ok_and(|m| m.uid() == h.uid)
        };
        fs::read_dir("/tmp").unwrap().filter_map(|e| Some(e.ok()?.path())).filter(ours).collect()
    };
    let before = probe_dirs();
    let out = Command::new("setpriv")
        .args(["--reuid", user, "--regid", user, "--init-groups"])
        .arg(&h.bin)
        .arg("--probe")
        .output()
        .unwrap();
    let caps = text(&out.stdout);
    assert!(
        caps.contains("user_namespaces: true") && caps.contains("overlay_in_userns: true") && caps.contains(range),
        "{caps} {}",
        text(&out.stderr)
    );
    assert_eq!(probe_dirs(), before, "the probe removes its temp dirs");
}

/// As real root, `--isolation chroot` runs without a user namespace: uid 0 is the host's
/// root, yet the RUN still has its own pid namespace and leaves no placeholder.
#[test]
fn chroot_isolation_as_real_root() {
    let Some(h) = harness(WITH_RANGE) else { return };
    let before = listing(&h.root());
    let out = Command::new(&h.bin)
        .args(["--chroot", "--report", &h.report()])
        .arg(h.root())
        .args(["--", "/bin/sh", "-c", "cat /proc/self/uid_map | tr -s ' '; echo $$"])
        .output()
        .unwrap();
    assert_eq!(text(&out.stdout), " 0 0 4294967295\n1\n", "{}", text(&out.stderr));
    assert!(fs::read_to_string(h.report()).unwrap().contains("id_map=Host"));
    assert_eq!(listing(&h.root()), before);
}
