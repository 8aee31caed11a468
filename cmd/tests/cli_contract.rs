//! The command-line contract through the real binary, without a registry: exit codes of
//! usage errors, `--version`, `cache prune --local` (issue 18).

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, SystemTime};

fn rbuild(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rbuild")).args(args).env_remove("RBUILD_LOG").output().unwrap()
}

#[rstest::rstest]
#[case::unknown_flag(&["build", "--no-such-flag"], "unexpected argument")]
#[case::nothing_to_push(&["build", "--cache-dir", "/tmp/rbuild-cli-contract"], "nothing to push to")]
#[case::prune_without_policy(&["cache", "prune", "--local", "--cache-dir", "/tmp/rbuild-cli-contract"], "needs --older-than")]
#[case::prune_both_kinds(&["cache", "prune", "--local", "--cache-repo", "r/c", "--older-than", "1h"], "cannot be used with")]
#[case::bad_size(&["cache", "prune", "--local", "--max-size", "ten"], "invalid size")]
fn usage_errors_exit_2(#[case] args: &[&str], #[case] message: &str) {
    let out = rbuild(args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains(message), "{stderr}");
}

#[test]
fn version_names_the_commit_profile_target_and_features() {
    let long = String::from_utf8(rbuild(&["--version"]).stdout).unwrap();
    let lines: Vec<&str> = long.lines().collect();
    assert!(lines[0].starts_with("rbuild 0."), "{long}");
    let commit = lines[1].strip_prefix("commit: ").expect("a commit line");
    // A checkout gives a full sha (`-dirty` when it had changes); an archive `unknown`.
    let sha = commit.trim_end_matches("-dirty");
    assert!(sha == "unknown" || (sha.len() == 40 && sha.chars().all(|c| c.is_ascii_hexdigit())), "{commit}");
    assert!(lines[2].starts_with("profile: ") && lines[2].contains("target: "), "{long}");
    assert!(lines[3].starts_with("features: "), "{long}");
    let short = String::from_utf8(rbuild(&["-V"]).stdout).unwrap();
    assert!(short.contains(&format!("({}", &commit[..7.min(commit.len())])), "{short}");
}

/// Writes `bytes` bytes at `path`, last used `days` ago.
fn file(root: &Path, path: &str, bytes: usize, days: u64) {
    let p = root.join(path);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(&p, vec![b'x'; bytes]).unwrap();
    let when = SystemTime::now() - Duration::from_secs(days * 86_400);
    let times = std::fs::FileTimes::new().set_accessed(when).set_modified(when);
    std::fs::File::options().write(true).open(&p).unwrap().set_times(times).unwrap();
}

#[test]
fn local_prune_removes_what_it_says() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    file(root, "store/blobs/sha256/old", 4000, 20);
    file(root, "entries/127.0.0.1:5000/app/cache/old", 100, 20);
    file(root, "mounts/go-build/a/b", 2000, 9);
    file(root, "store/blobs/sha256/new", 1000, 0);
    // A work directory of a killed build (no process holds pid 999999's lock) and one of a
    // running build (this test's pid, locked).
    file(root, "build-999999-dead/stage-0/f", 5000, 30);
    let _running = rbuild_cache::state::ProcessLock::acquire(root).unwrap();
    let live = format!("{}x/stage-0/f", rbuild_cache::state::ProcessLock::build_dir_prefix());
    file(root, &live, 5000, 30);
    let out = rbuild(&["cache", "prune", "--local", "--cache-dir", root.to_str().unwrap(), "--older-than", "7d"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("3 items removed (5.96 KiB), 1 kept (1000 B)"), "{stderr}");
    for gone in ["store/blobs/sha256/old", "entries/127.0.0.1:5000/app/cache/old", "mounts/go-build"] {
        assert!(!root.join(gone).exists(), "{gone} left");
    }
    assert!(root.join("store/blobs/sha256/new").exists());
    assert!(stderr.contains("1 work directories and 0 partial downloads of killed builds removed"), "{stderr}");
    assert!(!root.join("build-999999-dead").exists(), "a killed build's work directory left");
    assert!(root.join(&live).exists(), "a running build's work directory is not the prune's");
    // Then by size: the one blob left goes when the limit is below it.
    let out = rbuild(&["cache", "prune", "--local", "--cache-dir", root.to_str().unwrap(), "--max-size", "500B"]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("1 items removed (1000 B), 0 kept"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!root.join("store/blobs/sha256/new").exists());
}
