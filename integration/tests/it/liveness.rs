//! Liveness (issue 16): a registry that accepts connections and never answers fails the build
//! in bounded time naming it; SIGTERM ends a stalled build within 2 s; killing the build's
//! parent ends the build child. The bounds are behaviour bounds measured from outside (the
//! requirement), not speed benchmarks. The never-answering registry is a real TCP server on
//! 127.0.0.1 ([`SilentServer`]); the build is the real binary.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rbuild_integration::fault_proxy::SilentServer;

use crate::build::{chown_to_user, make_readable, rustix_is_root, USER};
use crate::support::rbuild_bin;

/// A context whose only base lives on `registry`, in a directory the build user can read.
fn stalled_context(dir: &Path, registry: &str) -> std::path::PathBuf {
    let context = dir.join("context");
    std::fs::create_dir_all(&context).unwrap();
    std::fs::write(context.join("Dockerfile"), format!("FROM {registry}/stalled/base:1\nRUN true\n")).unwrap();
    context
}

/// `rbuild build` of `context` against the silent `registry`; as `user` when given.
fn spawn_build(dir: &Path, context: &Path, registry: &str, user: Option<&str>) -> Child {
    let cache = dir.join("cache");
    std::fs::create_dir_all(&cache).unwrap();
    let mut cmd = match user {
        Some(user) => {
            let bin = dir.join("rbuild");
            std::fs::copy(rbuild_bin(), &bin).unwrap();
            make_readable(dir);
            chown_to_user(&cache);
            let mut c = Command::new("setpriv");
            c.args(["--reuid", user, "--regid", user, "--init-groups"]).arg(bin);
            c
        }
        None => Command::new(rbuild_bin()),
    };
    cmd.arg("build")
        .arg("-c")
        .arg(context)
        .args(["--insecure-registry", registry, "--no-push", "--cache-dir"])
        .arg(&cache)
        .env("HOME", dir)
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    cmd.spawn().expect("start rbuild")
}

/// Waits for `child` at most `limit`; its exit code and stderr, or `None` (then it is killed).
fn wait_bounded(mut child: Child, limit: Duration) -> Option<(Option<i32>, String)> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if child.try_wait().unwrap().is_some() {
            let out = child.wait_with_output().unwrap();
            return Some((out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned()));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

/// Processes whose command line mentions `needle`.
fn processes_mentioning(needle: &str) -> Vec<u32> {
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let cmdline: Vec<u8> = std::fs::read(entry.path().join("cmdline"))
            .unwrap_or_default()
            .into_iter()
            .map(|b| if b == 0 { b' ' } else { b })
            .collect();
        if String::from_utf8_lossy(&cmdline).contains(needle) {
            pids.push(pid);
        }
    }
    pids
}

fn signal(pid: u32, sig: &str) {
    let status = Command::new("kill").args(["-s", sig, &pid.to_string()]).status().unwrap();
    assert!(status.success(), "kill -s {sig} {pid}");
}

#[test]
fn issue_16_a_registry_that_never_answers_fails_the_build_within_a_minute_naming_it() {
    let server = SilentServer::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let context = stalled_context(dir.path(), server.addr());
    let started = Instant::now();
    let child = spawn_build(dir.path(), &context, server.addr(), None);
    let (code, stderr) = wait_bounded(child, Duration::from_secs(60)).expect("the build must end within 60 s");
    assert_ne!(code, Some(0), "{stderr}");
    assert!(server.wait_for_client(Duration::ZERO), "the build never connected to the registry");
    eprintln!("a silent registry failed the build after {:?}", started.elapsed());
    assert!(
        stderr.contains(&format!("{}/stalled/base", server.addr())) && stderr.contains("timed out"),
        "the error must name the registry, the repository and the timeout:\n{stderr}"
    );
}

/// SIGTERM while the build waits on the silent registry: as root (in-process build) and as
/// an unprivileged user (the signal goes through the build namespace's parent).
#[rstest::rstest]
#[case::root(None)]
#[case::rootless(Some(USER))]
fn issue_16_sigterm_ends_a_stalled_build_within_two_seconds(#[case] user: Option<&str>) {
    if user.is_some() && !rustix_is_root() {
        eprintln!("skipping: needs root to run rbuild as {USER}");
        return;
    }
    let server = SilentServer::start().unwrap();
    let dir = tempfile::Builder::new().prefix("rbuild-liveness-").tempdir_in("/tmp").unwrap();
    let context = stalled_context(dir.path(), server.addr());
    let child = spawn_build(dir.path(), &context, server.addr(), user);
    assert!(server.wait_for_client(Duration::from_secs(30)), "the build never reached the registry");
    std::thread::sleep(Duration::from_millis(300));
    let pid = child.id();
    let sent = Instant::now();
    signal(pid, "TERM");
    let (code, stderr) = wait_bounded(child, Duration::from_secs(10)).expect("the build ignored SIGTERM");
    let took = sent.elapsed();
    assert!(took < Duration::from_secs(2), "SIGTERM took {took:?} to end the build:\n{stderr}");
    assert_ne!(code, Some(0), "{stderr}");
    // Nothing of the build is left running (the build-namespace child included).
    std::thread::sleep(Duration::from_millis(200));
    let cache = dir.path().join("cache");
    assert_eq!(processes_mentioning(cache.to_str().unwrap()), Vec::<u32>::new(), "{stderr}");
}

/// The build namespace's parent killed outright: its child (the actual build) must not go on
/// alone (`PR_SET_PDEATHSIG`).
#[test]
fn issue_16_the_build_child_dies_with_its_parent() {
    if !rustix_is_root() {
        eprintln!("skipping: needs root to run rbuild as {USER}");
        return;
    }
    let server = SilentServer::start().unwrap();
    let dir = tempfile::Builder::new().prefix("rbuild-liveness-").tempdir_in("/tmp").unwrap();
    let context = stalled_context(dir.path(), server.addr());
    let child = spawn_build(dir.path(), &context, server.addr(), Some(USER));
    assert!(server.wait_for_client(Duration::from_secs(30)), "the build never reached the registry");
    let cache = dir.path().join("cache");
    let needle = cache.to_str().unwrap().to_owned();
    let before = processes_mentioning(&needle);
    assert!(before.len() >= 2, "expected the parent and the build-namespace child, got {before:?}");
    signal(child.id(), "KILL");
    let _ = wait_bounded(child, Duration::from_secs(5));
    let start = Instant::now();
    while !processes_mentioning(&needle).is_empty() && start.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(processes_mentioning(&needle), Vec::<u32>::new(), "the build child outlived its parent by 5 s");
}

/// kill -9 of a build in the middle of a RUN (parent and build-namespace child at once): its
/// RUN dies with it, and the next build with the same cache dir succeeds and leaves no work
/// directory, no temporary store file and no process behind.
#[tokio::test]
async fn issue_16_kill_9_mid_build_then_a_rebuild_leaves_nothing_behind() {
    let Some(h) = crate::build::Harness::start().await else {
        return;
    };
    let cache = h.shared.path().join("cache-kill9");
    std::fs::create_dir(&cache).unwrap();
    chown_to_user(&cache);
    let context = h.shared.path().join("kill9");
    std::fs::create_dir(&context).unwrap();
    let base = h.base();
    let base = base.trim_start_matches("BASE=");
    // A sleep no other test runs, so the processes found are this build's.
    let sleep = format!("sleep {}", 30000 + std::process::id() % 30000);
    std::fs::write(context.join("Dockerfile"), format!("FROM {base}\nRUN echo started > /started && {sleep}\n"))
        .unwrap();
    make_readable(&context);
    let log = h.shared.path().join("kill9.log");
    let mut child = h
        .build_command(USER, &cache, &["-c", context.to_str().unwrap(), "--no-push"])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let needle = cache.to_str().unwrap().to_owned();
    // Whatever happens below, nothing of this build survives the test.
    let _guard = KillOnDrop(vec![sleep.clone(), needle.clone()]);
    let start = Instant::now();
    let running = |pattern: &str| processes_mentioning(pattern);
    while running(&sleep).is_empty() && start.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        !running(&sleep).is_empty(),
        "the RUN never started: {}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );

    let listing = || {
        std::fs::read_dir(&cache)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect::<Vec<_>>()
    };
    assert!(listing().iter().any(|n| n.starts_with("build-")), "no work directory: {:?}", listing());
    for pid in running(&needle) {
        signal(pid, "KILL");
    }
    let _ = child.wait();
    let start = Instant::now();
    while !(running(&sleep).is_empty() && running(&needle).is_empty()) && start.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(running(&sleep).is_empty(), "the RUN outlived its build");
    // The next build in the same state dir succeeds and cleans up what the killed one left.
    std::fs::write(context.join("Dockerfile"), format!("FROM {base}\nRUN echo ok > /ok\n")).unwrap();
    let out = h.build_in(&cache, &["-c", context.to_str().unwrap(), "--no-push"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let leftovers: Vec<String> = std::fs::read_dir(&cache)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("build-"))
        .collect();
    assert_eq!(leftovers, Vec::<String>::new(), "work directories left behind");
    let tmp: Vec<String> = std::fs::read_dir(cache.join("store/blobs/sha256"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".tmp-"))
        .collect();
    assert_eq!(tmp, Vec::<String>::new(), "temporary store files left behind");
    assert_eq!(running(&needle), Vec::<u32>::new());
}

/// Kills the processes whose command lines mention any of its patterns.
struct KillOnDrop(Vec<String>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        for pattern in &self.0 {
            for pid in processes_mentioning(pattern) {
                let _ = Command::new("kill").args(["-s", "KILL", &pid.to_string()]).status();
            }
        }
    }
}

/// Files under `dir` (recursively, not following symlinks) whose content holds `needle`.
fn files_containing(dir: &Path, needle: &[u8]) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    let Ok(read) = std::fs::read_dir(dir) else {
        return found;
    };
    for entry in read.flatten() {
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        if kind.is_dir() {
            found.extend(files_containing(&entry.path(), needle));
        } else if kind.is_file()
            && std::fs::read(entry.path()).is_ok_and(|b| b.windows(needle.len()).any(|w| w == needle))
        {
            found.push(entry.path());
        }
    }
    found
}

/// A `--secret` mounted into a RUN lives only on a tmpfs (`/dev/shm`), never under the cache
/// dir on disk, and what a kill -9 left there is removed by the next build.
#[tokio::test]
async fn issue_16_secrets_live_only_in_memory_and_a_killed_builds_are_removed() {
    let Some(h) = crate::build::Harness::start().await else {
        return;
    };
    let cache = h.shared.path().join("cache-secret");
    std::fs::create_dir(&cache).unwrap();
    chown_to_user(&cache);
    let value = format!("s3cr3t-{}-value", std::process::id());
    let secret = h.shared.path().join("secret.txt");
    std::fs::write(&secret, &value).unwrap();
    chown_to_user(&secret);
    let context = h.shared.path().join("secret-ctx");
    std::fs::create_dir(&context).unwrap();
    let base = h.base();
    let base = base.trim_start_matches("BASE=");
    let sleep = format!("sleep {}", 30000 + (std::process::id() + 7) % 30000);
    std::fs::write(
        context.join("Dockerfile"),
        format!("FROM {base}\nRUN --mount=type=secret,id=tok,required cat /run/secrets/tok >/dev/null && {sleep}\n"),
    )
    .unwrap();
    make_readable(&context);
    let src = format!("id=tok,src={}", secret.display());
    let mut child = h
        .build_command(USER, &cache, &["-c", context.to_str().unwrap(), "--no-push", "--secret", &src])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let needle = cache.to_str().unwrap().to_owned();
    let _guard = KillOnDrop(vec![sleep.clone(), needle.clone()]);
    let start = Instant::now();
    while processes_mentioning(&sleep).is_empty() && start.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(!processes_mentioning(&sleep).is_empty(), "the RUN never started");
    assert_eq!(files_containing(&cache, value.as_bytes()), Vec::<std::path::PathBuf>::new(), "the secret is on disk");
    let in_memory: Vec<_> = files_containing(Path::new("/dev/shm"), value.as_bytes());
    assert_eq!(in_memory.len(), 1, "the secret file on the tmpfs: {in_memory:?}");
    for pid in processes_mentioning(&needle) {
        signal(pid, "KILL");
    }
    let _ = child.wait();
    std::thread::sleep(Duration::from_millis(300));
    std::fs::write(context.join("Dockerfile"), format!("FROM {base}\nRUN true\n")).unwrap();
    let out = h.build_in(&cache, &["-c", context.to_str().unwrap(), "--no-push"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(
        files_containing(Path::new("/dev/shm"), value.as_bytes()),
        Vec::<std::path::PathBuf>::new(),
        "a killed build's secret was left in memory"
    );
}
