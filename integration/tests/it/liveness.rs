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
    std::fs::write(
        context.join("Dockerfile"),
        format!("FROM {registry}/stalled/base:1\nRUN true\n"),
    )
    .unwrap();
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
            c.args(["--reuid", user, "--regid", user, "--init-groups"])
                .arg(bin);
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
            return Some((
                out.status.code(),
                String::from_utf8_lossy(&out.stderr).into_owned(),
            ));
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
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        if String::from_utf8_lossy(&cmdline).contains(needle) {
            pids.push(pid);
        }
    }
    pids
}

fn signal(pid: u32, sig: &str) {
    let status = Command::new("kill")
        .args(["-s", sig, &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success(), "kill -s {sig} {pid}");
}

#[test]
fn issue_16_a_registry_that_never_answers_fails_the_build_within_a_minute_naming_it() {
    let server = SilentServer::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let context = stalled_context(dir.path(), server.addr());
    let started = Instant::now();
    let child = spawn_build(dir.path(), &context, server.addr(), None);
    let (code, stderr) =
        wait_bounded(child, Duration::from_secs(60)).expect("the build must end within 60 s");
    assert_ne!(code, Some(0), "{stderr}");
    assert!(
        server.wait_for_client(Duration::ZERO),
        "the build never connected to the registry"
    );
    eprintln!(
        "a silent registry failed the build after {:?}",
        started.elapsed()
    );
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
    let dir = tempfile::Builder::new()
        .prefix("rbuild-liveness-")
        .tempdir_in("/tmp")
        .unwrap();
    let context = stalled_context(dir.path(), server.addr());
    let child = spawn_build(dir.path(), &context, server.addr(), user);
    assert!(
        server.wait_for_client(Duration::from_secs(30)),
        "the build never reached the registry"
    );
    std::thread::sleep(Duration::from_millis(300));
    let pid = child.id();
    let sent = Instant::now();
    signal(pid, "TERM");
    let (code, stderr) =
        wait_bounded(child, Duration::from_secs(10)).expect("the build ignored SIGTERM");
    let took = sent.elapsed();
    assert!(
        took < Duration::from_secs(2),
        "SIGTERM took {took:?} to end the build:\n{stderr}"
    );
    assert_ne!(code, Some(0), "{stderr}");
    // Nothing of the build is left running (the build-namespace child included).
    std::thread::sleep(Duration::from_millis(200));
    let cache = dir.path().join("cache");
    assert_eq!(
        processes_mentioning(cache.to_str().unwrap()),
        Vec::<u32>::new(),
        "{stderr}"
    );
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
    let dir = tempfile::Builder::new()
        .prefix("rbuild-liveness-")
        .tempdir_in("/tmp")
        .unwrap();
    let context = stalled_context(dir.path(), server.addr());
    let child = spawn_build(dir.path(), &context, server.addr(), Some(USER));
    assert!(
        server.wait_for_client(Duration::from_secs(30)),
        "the build never reached the registry"
    );
    let cache = dir.path().join("cache");
    let needle = cache.to_str().unwrap().to_owned();
    let before = processes_mentioning(&needle);
    assert!(
        before.len() >= 2,
        "expected the parent and the build-namespace child, got {before:?}"
    );
    signal(child.id(), "KILL");
    let _ = wait_bounded(child, Duration::from_secs(5));
    let start = Instant::now();
    while !processes_mentioning(&needle).is_empty() && start.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        processes_mentioning(&needle),
        Vec::<u32>::new(),
        "the build child outlived its parent by 5 s"
    );
}
