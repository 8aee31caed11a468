//! `rbuild build` end to end: the real binary, run as the unprivileged `rbuild-test` user
//! (RUN in a user namespace), pushing to the real registry; the image is read back with
//! skopeo, unpacked with umoci and its command run in a user namespace (`unshare -Ur chroot`).
//! Other build test modules reuse [`Harness`] and the helpers here.
//! Needs root to switch users (like `builder/tests/sandbox_run.rs`); skips otherwise.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use rbuild_integration::registry::scripts_dir;
use rbuild_integration::Variant;

use crate::support::{rbuild_bin, TestContext};

pub(crate) const USER: &str = "rbuild-test";

/// A registry with base images, plus a world-readable copy of the binary and the cases.
pub(crate) struct Harness {
    pub(crate) ctx: TestContext,
    /// World-readable directory holding `rbuild`, the contexts and the cache.
    pub(crate) shared: tempfile::TempDir,
}

impl Harness {
    pub(crate) async fn start() -> Option<Self> {
        if !rustix_is_root() {
            eprintln!("skipping build tests: they need root to run rbuild as {USER}");
            return None;
        }
        let users = Command::new(scripts_dir().join("test-users.sh")).output().ok()?;
        assert!(users.status.success(), "test-users.sh: {}", String::from_utf8_lossy(&users.stderr));
        let ctx = TestContext::start(Variant::Http).await?;
        let shared = tempfile::Builder::new().prefix("rbuild-build-it-").tempdir_in("/tmp").unwrap();
        std::fs::copy(rbuild_bin(), shared.path().join("rbuild")).unwrap();
        let cache = shared.path().join("cache");
        std::fs::create_dir(&cache).unwrap();
        chown_to_user(&cache);
        make_readable(shared.path());
        Some(Self { ctx, shared })
    }

    pub(crate) fn base(&self) -> String {
        format!("BASE={}/busybox:latest", self.ctx.registry.addr())
    }

    pub(crate) fn image(&self, repo_tag: &str) -> String {
        format!("{}/{repo_tag}", self.ctx.registry.addr())
    }

    /// Copies `testdata/<case>` into the shared directory (readable by the build user).
    pub(crate) fn context(&self, case: &str) -> PathBuf {
        let src = workspace().join("testdata").join(case);
        let dst = self.shared.path().join(case.replace('/', "-"));
        copy_tree(&src, &dst);
        make_readable(&dst);
        dst
    }

    /// Runs `rbuild build ARGS` as the unprivileged user.
    pub(crate) fn build(&self, args: &[&str]) -> Output {
        self.build_as(USER, &self.shared.path().join("cache"), args)
    }

    /// Runs `rbuild build ARGS` as the unprivileged user with local state in `cache_dir`.
    pub(crate) fn build_in(&self, cache_dir: &Path, args: &[&str]) -> Output {
        self.build_as(USER, cache_dir, args)
    }

    /// Runs `rbuild build ARGS` as `user` with the local state in `cache` (which `user` owns).
    pub(crate) fn build_as(&self, user: &str, cache: &Path, args: &[&str]) -> Output {
        self.build_command(user, cache, args).output().unwrap()
    }

    /// The `rbuild build ARGS` command as `user`, not started.
    pub(crate) fn build_command(&self, user: &str, cache: &Path, args: &[&str]) -> Command {
        let mut cmd = Command::new("setpriv");
        cmd.args(["--reuid", user, "--regid", user, "--init-groups"])
            .arg(self.shared.path().join("rbuild"))
            .arg("build")
            .args(["--insecure-registry", self.ctx.registry.addr()])
            .arg("--cache-dir")
            .arg(cache)
            .args(args)
            .env("HOME", self.shared.path())
            .env_remove("RBUILD_LOG")
            .env_remove("SOURCE_DATE_EPOCH");
        cmd
    }

    /// Copies the pushed image to an OCI layout and unpacks it; returns the rootfs.
    pub(crate) fn unpack(&self, image: &str) -> PathBuf {
        let dir = self.ctx.dir.path().join(image.replace(['/', ':', '.'], "_"));
        std::fs::create_dir_all(&dir).unwrap();
        let layout = format!("oci:{}:img", dir.join("oci").display());
        self.ctx.skopeo(&[
            "copy".into(),
            "-q".into(),
            "--src-tls-verify=false".into(),
            format!("docker://{image}"),
            layout.clone(),
        ]);
        let bundle = dir.join("bundle");
        let out = Command::new("umoci").args(["unpack", "--image", &layout[4..]]).arg(&bundle).output().unwrap();
        assert!(out.status.success(), "umoci: {}", String::from_utf8_lossy(&out.stderr));
        bundle.join("rootfs")
    }

    /// The image config blob as the registry serves it.
    pub(crate) fn config(&self, image: &str) -> serde_json::Value {
        let out = self.ctx.skopeo(&[
            "inspect".into(),
            "--tls-verify=false".into(),
            "--config".into(),
            "--raw".into(),
            format!("docker://{image}"),
        ]);
        serde_json::from_slice(&out.stdout).unwrap()
    }

    pub(crate) fn digest(&self, image: &str) -> String {
        let out = self.ctx.skopeo(&["inspect".into(), "--tls-verify=false".into(), format!("docker://{image}")]);
        let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        json["Digest"].as_str().unwrap().to_string()
    }
}

pub(crate) fn rustix_is_root() -> bool {
    std::fs::metadata("/proc/self").map(|m| m.uid() == 0).unwrap_or(false)
}

pub(crate) fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

pub(crate) fn copy_tree(src: &Path, dst: &Path) {
    let status = Command::new("cp").arg("-a").arg(src).arg(dst).status().unwrap();
    assert!(status.success());
}

pub(crate) fn make_readable(path: &Path) {
    let status = Command::new("chmod").args(["-R", "a+rX"]).arg(path).status().unwrap();
    assert!(status.success());
}

pub(crate) fn chown_to_user(path: &Path) {
    chown_to(USER, path);
}

pub(crate) fn chown_to(user: &str, path: &Path) {
    let status = Command::new("chown").arg(format!("{user}:{user}")).arg(path).status().unwrap();
    assert!(status.success());
}

pub(crate) fn ok(out: Output) -> Output {
    assert!(out.status.success(), "rbuild build failed:\n{}", String::from_utf8_lossy(&out.stderr));
    out
}

/// Runs `argv` inside `rootfs` in a user namespace, as the image would run.
pub(crate) fn run_in(rootfs: &Path, argv: &[&str]) -> String {
    let out = Command::new("unshare").args(["-Ur", "chroot"]).arg(rootfs).args(argv).output().unwrap();
    assert!(out.status.success(), "{argv:?} in the image: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

#[tokio::test]
async fn single_stage_image_has_files_owners_config_and_runs() {
    let Some(h) = Harness::start().await else { return };
    let context = h.context("build/single");
    let image = h.image("build/single:v1");
    let out = ok(h.build(&[
        "--context",
        context.to_str().unwrap(),
        "--build-arg",
        &h.base(),
        "--build-arg",
        "FLAVOUR=tested",
        "--destination",
        &image,
    ]));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("[stage 1/1] STEP 7/12: RUN echo"), "{stderr}");
    let rootfs = h.unpack(&image);
    for (path, content) in [
        ("data/hello.txt", "hello file\n"),
        ("data/run.txt", "hello from run (tested)\n"),
        ("ctx/hello.txt", "hello file\n"),
        ("ctx/ignored-dir/keep.txt", "kept by exception\n"),
        ("glob/hello.txt", "hello file\n"),
        ("glob/secret.txt", "top secret\n"),
    ] {
        assert_eq!(std::fs::read_to_string(rootfs.join(path)).unwrap(), content, "{path}");
    }
    for absent in ["ctx/ignored.txt", "ctx/ignored-dir/a.txt", "ctx/Dockerfile", "glob/ignored.txt"] {
        assert!(!rootfs.join(absent).exists(), "{absent} should be excluded by .dockerignore");
    }
    let secret = std::fs::metadata(rootfs.join("data/secret")).unwrap();
    assert_eq!((secret.uid(), secret.gid(), secret.permissions().mode() & 0o7777), (1000, 1000, 0o600));
    let hello = std::fs::metadata(rootfs.join("data/hello.txt")).unwrap();
    assert_eq!((hello.uid(), hello.gid()), (0, 0));
    assert_eq!(std::fs::read_link(rootfs.join("data/link")).unwrap(), Path::new("run.txt"));
    assert!(rootfs.join("work").is_dir());
    let config = h.config(&image);
    let c = &config["config"];
    assert_eq!(c["User"], "1000");
    assert_eq!(c["WorkingDir"], "/work");
    assert_eq!(c["Cmd"], serde_json::json!(["cat", "/data/run.txt"]));
    assert_eq!(c["Labels"]["case"], "single");
    assert!(c["Env"].as_array().unwrap().contains(&"GREETING=hello".into()), "{c}");
    let history = config["history"].as_array().unwrap();
    assert!(history
        .iter()
        .any(|e| e["created_by"].as_str().unwrap().starts_with("ENV GREETING") && e["empty_layer"] == true));
    let argv: Vec<String> = serde_json::from_value(c["Cmd"].clone()).unwrap();
    let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
    assert_eq!(run_in(&rootfs, &argv), "hello from run (tested)\n");
}

#[tokio::test]
async fn multi_stage_app_with_commit_suffix_pushes_both_tags_and_runs() {
    let Some(h) = Harness::start().await else { return };
    let context = h.context("app");
    let git = |args: &[&str]| {
        let out = Command::new("git").arg("-C").arg(&context).args(args).output().unwrap();
        assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    };
    git(&["init", "-q"]);
    // Everything committed: `--commit-suffix auto` refuses a context with changes.
    git(&["add", "-A"]);
    git(&["-c", "user.name=t", "-c", "user.email=t@e", "commit", "-q", "-m", "x"]);
    git(&["pack-refs", "--all"]);
    make_readable(&context);
    let sha = git(&["rev-parse", "--short=7", "HEAD"]).trim().to_string();
    let repo = h.image("example/app");
    let digest_file = h.shared.path().join("digest");
    std::fs::write(&digest_file, "").unwrap();
    chown_to_user(&digest_file);
    let out = ok(h.build(&[
        "-c",
        context.to_str().unwrap(),
        "--build-arg",
        &h.base(),
        "--image",
        &repo,
        "--tag",
        "v1.0.0",
        "--commit-suffix",
        "auto",
        "--latest",
        "--digest-file",
        digest_file.to_str().unwrap(),
    ]));
    let digest = std::fs::read_to_string(&digest_file).unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains(&digest));
    for tag in [format!("v1.0.0-{sha}"), "latest".into()] {
        assert_eq!(h.digest(&format!("{repo}:{tag}")), digest, "{tag}");
    }
    let rootfs = h.unpack(&format!("{repo}:latest"));
    let output = run_in(&rootfs, &["/app/hello.sh"]);
    assert!(output.starts_with("hello from rbuild\nbuilt for "), "{output}");
    let mode = std::fs::metadata(rootfs.join("app/hello.sh")).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o755);
    let config = h.config(&format!("{repo}:latest"));
    assert_eq!(config["config"]["Entrypoint"], serde_json::json!(["/app/hello.sh"]));
    assert_eq!(config["config"]["Healthcheck"]["Test"], serde_json::json!(["CMD", "/bin/true"]));
    assert_eq!(config["config"]["ExposedPorts"], serde_json::json!({"8080/tcp": {}}));
}

#[rstest::rstest]
#[case::failing_run("build/fail", &["echo about to fail && exit 3", "exit code 3", "RUN (line 3)"], 0)]
#[case::failing_after_layers("build/fail-late", &["exit code 3", "RUN (line 6)"], 2)]
#[case::unsupported_security("build/unsupported", &["RUN (line 3)", "RUN --security=insecure is not supported yet"], 0)]
#[tokio::test]
async fn failing_builds_explain_and_exit_non_zero(
    #[case] case: &str,
    #[case] expected: &[&str],
    #[case] early_uploads: usize,
) {
    let Some(h) = Harness::start().await else { return };
    let context = h.context(case);
    let image = h.image("build/failing:v1");
    let out = h.build(&["--context", context.to_str().unwrap(), "--build-arg", &h.base(), "--destination", &image]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    for want in expected {
        assert!(stderr.contains(want), "missing {want:?} in:\n{stderr}");
    }
    // The image's layers are uploaded while later steps run (the registry's log shows each
    // finished upload); the tag is pushed only by a build that succeeds.
    let uploads = h.ctx.registry.log().lines().filter(|l| l.contains("\"PUT /v2/build/failing/blobs/uploads/")).count();
    assert_eq!(uploads, early_uploads, "{}", h.ctx.registry.log());
    let reference: rbuild_cache::reference::Reference = image.parse().unwrap();
    match h.ctx.client_with(|_| {}).get_raw_manifest(&reference).await {
        Err(rbuild_cache::registry::RegistryError::Status { status: 404, .. }) => {}
        other => panic!("a failed build left {image} behind: {other:?}"),
    }
}

#[tokio::test]
async fn invalid_tag_fails_before_building() {
    let Some(h) = Harness::start().await else { return };
    let context = h.context("build/single");
    let out = h.build(&["--context", context.to_str().unwrap(), "--image", &h.image("x/y"), "--tag", "bad tag!"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("bad tag!"), "{stderr}");
    assert!(!stderr.contains("STEP"), "nothing may be built: {stderr}");
}

#[tokio::test]
async fn reproducible_builds_give_the_same_digest() {
    let Some(h) = Harness::start().await else { return };
    let context = h.context("build/single");
    let digests: Vec<String> = (0..2)
        .map(|_| {
            let out = ok(h.build(&[
                "--context",
                context.to_str().unwrap(),
                "--build-arg",
                &h.base(),
                "--reproducible",
                "--no-push",
            ]));
            String::from_utf8(out.stdout).unwrap().trim().to_string()
        })
        .collect();
    assert!(digests[0].starts_with("sha256:"), "{digests:?}");
    assert_eq!(digests[0], digests[1]);
}

#[tokio::test]
async fn independent_stages_run_and_unneeded_stages_are_skipped() {
    let Some(h) = Harness::start().await else { return };
    let context = h.context("build/parallel");
    let image = h.image("build/parallel:v1");
    let out = ok(h.build(&["--context", context.to_str().unwrap(), "--build-arg", &h.base(), "--destination", &image]));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("AS unused"), "the unused stage must be skipped: {stderr}");
    assert!(stderr.contains("[stage 3/3] STEP 1/4"), "{stderr}");
    let rootfs = h.unpack(&image);
    assert_eq!(run_in(&rootfs, &["cat", "/out/a", "/out/b"]), "a\nb\n");
}
