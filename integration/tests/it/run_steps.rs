//! RUN as Docker/BuildKit runs it, built by the unprivileged `rbuild-test` user (who has a
//! subordinate id range, so the build runs in rbuild's build user namespace) against the
//! real registry, the pushed image read back with skopeo and umoci: real owners from
//! `USER`/`chown`/`adduser`, the single-id fallback for `rbuild-nosub`, and a local state
//! directory the user can still clean up.

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;

use crate::build::{chown_to, ok, Harness, USER};

const NOSUB: &str = "rbuild-nosub";

fn uid_of(user: &str) -> u32 {
    let out = Command::new("id").args(["-u", user]).output().unwrap();
    String::from_utf8(out.stdout).unwrap().trim().parse().unwrap()
}

/// Every entry under `dir` belongs to `uid`, and `user` can delete all of it.
fn assert_removable_by(user: &str, dir: &Path) {
    let uid = uid_of(user);
    let walk = Command::new("find").arg(dir).args(["-not", "-uid", &uid.to_string()]).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&walk.stdout), "", "entries not owned by {user}");
    let leftovers: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("build-"))
        .collect();
    assert!(leftovers.is_empty(), "work dirs left: {leftovers:?}");
    let rm = Command::new("setpriv")
        .args(["--reuid", user, "--regid", user, "--init-groups", "sh", "-c", "rm -rf \"$1\"/*", "rm"])
        .arg(dir)
        .output()
        .unwrap();
    assert!(rm.status.success(), "{user} cannot remove {}: {}", dir.display(), String::from_utf8_lossy(&rm.stderr));
}

fn owner(rootfs: &Path, path: &str) -> (u32, u32) {
    let m = std::fs::symlink_metadata(rootfs.join(path)).unwrap_or_else(|e| panic!("{path}: {e}"));
    (m.uid(), m.gid())
}

/// Builds `build/run-owners` as `user` and checks the owners in the pushed image.
async fn build_owners_as(user: &str) {
    let Some(h) = Harness::start().await else { return };
    let context = h.context("build/run-owners");
    let image = h.image(&format!("run/owners-{user}:v1"));
    let cache = h.shared.path().join(format!("cache-{user}"));
    std::fs::create_dir(&cache).unwrap();
    chown_to(user, &cache);
    ok(h.build_as(
        user,
        &cache,
        &["--context", context.to_str().unwrap(), "--build-arg", &h.base(), "--destination", &image],
    ));
    let rootfs = h.unpack(&image);
    for (path, want) in [
        ("data/chowned", (1234, 5678)),
        ("data/by-1000", (1000, 1000)),
        ("data/by-builder", (2000, 2000)),
        ("home/builder/cache/f", (2000, 2000)),
        ("home/builder", (2000, 2000)),
        ("bin/busybox", (0, 0)),
    ] {
        assert_eq!(owner(&rootfs, path), want, "{path}");
    }
    assert_eq!(std::fs::read_to_string(rootfs.join("data/id-1000")).unwrap(), "1000\n");
    assert_eq!(std::fs::read_to_string(rootfs.join("data/chowned")).unwrap(), "again\n");
    assert!(std::fs::read_to_string(rootfs.join("etc/passwd")).unwrap().contains("builder:x:2000:2000:"));
    assert_removable_by(user, &cache);
}

#[tokio::test]
async fn run_owners_come_from_user_chown_and_adduser() {
    build_owners_as(USER).await;
}

/// Real root (CI) gets the same ids in RUN, passed through unchanged.
#[tokio::test]
async fn run_owners_as_real_root() {
    build_owners_as("root").await;
}

#[tokio::test]
async fn without_a_subordinate_range_run_keeps_the_single_id_map_and_says_why() {
    let Some(h) = Harness::start().await else { return };
    let cache = h.shared.path().join("cache-nosub");
    std::fs::create_dir(&cache).unwrap();
    chown_to(NOSUB, &cache);
    let single = h.context("build/single");
    let image = h.image("run/nosub:v1");
    ok(h.build_as(
        NOSUB,
        &cache,
        &["--context", single.to_str().unwrap(), "--build-arg", &h.base(), "--destination", &image],
    ));
    assert_eq!(owner(&h.unpack(&image), "data/secret"), (1000, 1000));
    let owners = h.context("build/run-owners");
    let out = h.build_as(
        NOSUB,
        &cache,
        &["--context", owners.to_str().unwrap(), "--build-arg", &h.base(), "--destination", &image],
    );
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    for want in ["RUN (line 6)", "single-id user namespace map", "/etc/subuid"] {
        assert!(stderr.contains(want), "missing {want:?} in:\n{stderr}");
    }
    assert_removable_by(NOSUB, &cache);
}

/// `needle` appears in no blob of the OCI layout the image was copied to (layers
/// decompressed), nor in `text`.
fn assert_nowhere(needle: &str, layout: &Path, text: &str) {
    assert!(!text.contains(needle), "{needle:?} leaked into the output");
    for blob in std::fs::read_dir(layout.join("blobs/sha256")).unwrap().flatten() {
        let raw = std::fs::read(blob.path()).unwrap();
        let mut plain = Vec::new();
        let data = match std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(raw.as_slice()), &mut plain) {
            Ok(_) => plain,
            Err(_) => raw,
        };
        assert!(
            !data.windows(needle.len()).any(|w| w == needle.as_bytes()),
            "{needle:?} found in blob {}",
            blob.path().display()
        );
    }
}

#[tokio::test]
async fn run_mounts_cache_secret_bind_tmpfs() {
    let Some(h) = Harness::start().await else { return };
    let context = h.context("build/run-mounts");
    let secret = h.shared.path().join("token.txt");
    let value = "s3cr3t-token-4711";
    std::fs::write(&secret, value).unwrap();
    chown_to(USER, &secret);
    let image = h.image("run/mounts:v1");
    let build = |stamp: &str| {
        let stamp = format!("STAMP={stamp}");
        let src = format!("id=token,src={}", secret.display());
        ok(h.build(&[
            "--context",
            context.to_str().unwrap(),
            "--build-arg",
            &h.base(),
            "--build-arg",
            &stamp,
            "--secret",
            &src,
            "--destination",
            &image,
        ]))
    };
    build("first");
    let out = build("second");
    let rootfs = h.unpack(&image);
    let read = |p: &str| std::fs::read_to_string(rootfs.join(p)).unwrap_or_else(|e| panic!("{p}: {e}"));
    assert_eq!(read("cache-runs"), "first\nsecond\n", "the cache mount keeps its contents between builds");
    assert_eq!(read("secret-length").trim(), value.len().to_string());
    assert_eq!(read("from-context"), "context data\n");
    let listing = read("context-listing");
    assert!(
        listing.contains("data.txt") && !listing.contains("ignored.txt"),
        ".dockerignore applies to the bind: {listing}"
    );
    assert_eq!(read("from-stage"), "from-stage\nfrom-stage\n", "rw bind writes are discarded");
    assert_eq!(read("from-tmpfs"), "temp\n");
    for absent in ["var/cache", "run/secrets", "etc/tok2", "src", "tools", "scratch", "run"] {
        assert!(std::fs::symlink_metadata(rootfs.join(absent)).is_err(), "mount point {absent} left in the image");
    }
    let layout = rootfs.parent().unwrap().parent().unwrap().join("oci");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_nowhere(value, &layout, &stderr);
    assert_nowhere(value, &layout, &h.config(&image).to_string());
    assert_removable_by(USER, &h.shared.path().join("cache"));
}

#[tokio::test]
async fn run_heredocs_follow_buildkit() {
    let Some(h) = Harness::start().await else { return };
    let context = h.context("build/run-heredocs");
    let image = h.image("run/heredocs:v1");
    ok(h.build(&["--context", context.to_str().unwrap(), "--build-arg", &h.base(), "--destination", &image]));
    let rootfs = h.unpack(&image);
    for (path, want) in [
        ("h1", "hello world\nsecond line\n"),
        ("h2", "from sh stdin world\n"),
        ("h3", "literal $WHO\n"),
        ("h4", "tabs stripped\n"),
        ("h5", "shebang /dev/pipes/EOF\n"),
        ("h6", "first\nsecond world\n"),
    ] {
        assert_eq!(
            std::fs::read_to_string(rootfs.join(path)).unwrap_or_else(|e| panic!("{path}: {e}")),
            want,
            "{path}"
        );
    }
    assert!(!rootfs.join("dev/pipes").exists());
}

#[rstest::rstest]
#[case::ssh("build/run-ssh", &["RUN (line 3)", "RUN --mount=type=ssh is not supported"])]
#[case::missing_secret("build/run-secret-missing", &["RUN (line 3)", "secret \"absent\" is required but was not given"])]
#[tokio::test]
async fn unusable_mounts_fail_naming_the_line(#[case] case: &str, #[case] expected: &[&str]) {
    let Some(h) = Harness::start().await else { return };
    let context = h.context(case);
    let out = h.build(&[
        "--context",
        context.to_str().unwrap(),
        "--build-arg",
        &h.base(),
        "--destination",
        &h.image("run/failing:v1"),
    ]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    for want in expected {
        assert!(stderr.contains(want), "missing {want:?} in:\n{stderr}");
    }
}

/// SIGTERM to `rbuild build` reaches the build in its user namespace, which cancels the RUN
/// and removes its work dir (with files owned by subordinate ids) before exiting.
#[tokio::test]
async fn sigterm_cancels_the_namespaced_build_and_cleans_up() {
    let Some(h) = Harness::start().await else { return };
    let context = h.context("build/run-cancel");
    let cache = h.shared.path().join("cache");
    let mut child = h
        .build_command(
            USER,
            &cache,
            &[
                "--context",
                context.to_str().unwrap(),
                "--build-arg",
                &h.base(),
                "--destination",
                &h.image("run/cancel:v1"),
            ],
        )
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut seen = String::new();
    while !seen.contains("STEP 3: started") {
        let mut line = String::new();
        assert!(std::io::BufRead::read_line(&mut stderr, &mut line).unwrap() > 0, "build ended early:\n{seen}");
        seen.push_str(&line);
    }
    assert!(Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap().success());
    let started = std::time::Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(started.elapsed() < std::time::Duration::from_secs(10), "not cancelled within 10 s");
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stderr, &mut rest).unwrap();
    assert!(!status.success());
    assert!(rest.contains("cancelled"), "{seen}{rest}");
    let sleeping = Command::new("pgrep").args(["-f", "sleep 86400"]).output().unwrap();
    assert!(sleeping.stdout.is_empty(), "RUN processes left");
    assert_removable_by(USER, &cache);
}

/// Issue 18: a RUN of a scratch stage that writes into a directory the sandbox created for
/// its mount points (`/etc`) keeps that directory and its files, with no "cannot remove
/// sandbox placeholder" warning; the placeholders it did not fill are gone.
#[tokio::test]
async fn issue_18_scratch_run_filling_a_placeholder_directory_warns_nothing() {
    let Some(h) = Harness::start().await else { return };
    let context = h.context("build/scratch-run");
    std::fs::copy("/bin/busybox", context.join("busybox")).unwrap();
    let image = h.image("run/scratch-filled:v1");
    let out = ok(h.build(&["--context", context.to_str().unwrap(), "--destination", &image, "--progress", "plain"]));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("placeholder") && !stderr.contains("WARN"), "{stderr}");
    let rootfs = h.unpack(&image);
    assert_eq!(std::fs::read_to_string(rootfs.join("etc/app/x")).unwrap(), "filled\n");
    for gone in ["etc/hosts", "etc/resolv.conf", "proc", "dev", "sys"] {
        assert!(std::fs::symlink_metadata(rootfs.join(gone)).is_err(), "{gone} left in the image");
    }
}
