//! COPY and ADD end to end: contexts under `testdata/build/copy-*` built by the real binary as
//! `rbuild-test`, pushed to the real registry, read back with skopeo and unpacked with umoci.
//! ADD of URLs fetches from Python's `http.server` on 127.0.0.1, started by the test.

use std::io::{BufRead, BufReader};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, UNIX_EPOCH};

use crate::build::{make_readable, ok, run_in, Harness};

/// sha256 of the served `data.bin` ("payload").
const PAYLOAD_SHA256: &str = "sha256:239f59ed55e737c77147cf55ad0c1b030b6d7ee748a7426952f9b852d5a935e5";

fn read(root: &Path, path: &str) -> String {
    std::fs::read_to_string(root.join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn failed(out: &std::process::Output) -> String {
    assert!(!out.status.success(), "the build should fail");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[tokio::test]
async fn add_extracts_local_archives_of_every_compression() {
    let Some(h) = Harness::start().await else { return };
    let context = h.context("build/copy-archive");
    let image = h.image("copy/archive:v1");
    ok(h.build(&["--context", context.to_str().unwrap(), "--build-arg", &h.base(), "--destination", &image]));
    let rootfs = h.unpack(&image);
    for kind in ["tar", "gz", "bz2", "xz", "zst"] {
        assert_eq!(read(&rootfs, &format!("x/{kind}/app/hello.txt")), "hello from the archive\n", "{kind}");
        let run = std::fs::metadata(rootfs.join(format!("x/{kind}/app/bin/run"))).unwrap();
        assert_eq!(run.permissions().mode() & 0o777, 0o755, "{kind}");
        assert_eq!(run.mtime(), 1_700_000_000, "{kind}: the archive's mtime is kept");
    }
    assert!(rootfs.join("x/plain/notes.gz").is_file(), "a compressed non-tar is added as is");
    assert!(rootfs.join("x/copied/app.tar.gz").is_file(), "COPY does not extract");
    assert!(!rootfs.join("x/copied/app").exists());
    assert_eq!(run_in(&rootfs, &["/x/gz/app/bin/run"]), "extracted\n");
}

#[tokio::test]
async fn hostile_archives_are_contained_or_refused() {
    let Some(h) = Harness::start().await else { return };
    let context = h.context("build/copy-hostile");
    let image = h.image("copy/hostile:v1");
    ok(h.build(&["--context", context.to_str().unwrap(), "--build-arg", &h.base(), "--destination", &image]));
    let rootfs = h.unpack(&image);
    assert_eq!(read(&rootfs, "x/contained.txt"), "stayed inside\n");
    assert_eq!(std::fs::read_link(rootfs.join("x/etc")).unwrap(), Path::new("/"));
    assert!(!rootfs.join("contained.txt").exists() && !rootfs.join("etc/contained.txt").exists());

    let climb = context.join("Dockerfile.climb");
    let out = h.build(&[
        "--context",
        context.to_str().unwrap(),
        "-f",
        climb.to_str().unwrap(),
        "--build-arg",
        &h.base(),
        "--no-push",
    ]);
    let stderr = failed(&out);
    assert!(stderr.contains("ADD (line 4)") && stderr.contains("'..' component"), "{stderr}");
    assert!(!Path::new("/tmp/rbuild-escaped").exists(), "the archive wrote outside the root");
}

/// Python's `http.server` on 127.0.0.1 (port chosen by the OS), killed on drop.
pub(crate) struct FileServer {
    child: Child,
    pub(crate) url: String,
}

impl FileServer {
    pub(crate) fn start(dir: &Path) -> Self {
        let mut child = Command::new("python3")
            .args(["-u", "-m", "http.server", "--bind", "127.0.0.1", "0", "--directory"])
            .arg(dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3 is installed");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        // "Serving HTTP on 127.0.0.1 port 41234 (http://127.0.0.1:41234/) ..."
        let port = line
            .split(" port ")
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .unwrap_or_else(|| panic!("http.server said {line:?}"));
        Self { child, url: format!("http://127.0.0.1:{port}") }
    }
}

impl Drop for FileServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn add_url_verifies_the_checksum() {
    let Some(h) = Harness::start().await else { return };
    let served = tempfile::tempdir().unwrap();
    std::fs::write(served.path().join("data.bin"), "payload").unwrap();
    let old = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    std::fs::File::options().write(true).open(served.path().join("data.bin")).unwrap().set_modified(old).unwrap();
    std::fs::copy(h.context("build/copy-archive").join("app.tar"), served.path().join("app.tar")).unwrap();
    let server = FileServer::start(served.path());
    let context = h.context("build/copy-url");
    let image = h.image("copy/url:v1");
    let url = format!("URL={}", server.url);
    let sum = format!("SUM={PAYLOAD_SHA256}");
    ok(h.build(&[
        "--context",
        context.to_str().unwrap(),
        "--build-arg",
        &h.base(),
        "--build-arg",
        &url,
        "--build-arg",
        &sum,
        "--destination",
        &image,
    ]));
    let rootfs = h.unpack(&image);
    let data = std::fs::metadata(rootfs.join("dl/data.bin")).unwrap();
    assert_eq!(read(&rootfs, "dl/data.bin"), "payload");
    assert_eq!((data.permissions().mode() & 0o7777, data.uid(), data.gid()), (0o600, 0, 0));
    assert_eq!(data.mtime(), 1_700_000_000, "mtime from Last-Modified");
    assert!(
        rootfs.join("dl/app.tar").is_file() && !rootfs.join("dl/app").exists(),
        "remote archives are not extracted"
    );
    assert_eq!(std::fs::metadata(rootfs.join("dl/renamed.bin")).unwrap().permissions().mode() & 0o7777, 0o644);

    let wrong = "SUM=sha256:1111111111111111111111111111111111111111111111111111111111111111";
    let out = h.build(&[
        "--context",
        context.to_str().unwrap(),
        "--build-arg",
        &h.base(),
        "--build-arg",
        &url,
        "--build-arg",
        wrong,
        "--no-push",
    ]);
    let stderr = failed(&out);
    assert!(stderr.contains("checksum mismatch"), "{stderr}");
    assert!(stderr.contains("expected sha256:1111") && stderr.contains(&format!("got {PAYLOAD_SHA256}")), "{stderr}");
}

#[tokio::test]
async fn copy_selects_parents_excludes_symlinks_and_heredocs() {
    let Some(h) = Harness::start().await else { return };
    let context = h.context("build/copy-select");
    let image = h.image("copy/select:v1");
    ok(h.build(&["--context", context.to_str().unwrap(), "--build-arg", &h.base(), "--destination", &image]));
    let rootfs = h.unpack(&image);
    assert_eq!(read(&rootfs, "parents/x/y/a.txt"), "ya\n");
    assert_eq!(read(&rootfs, "parents/y/b.txt"), "yb\n", "the /./ pivot drops x/");
    assert_eq!(read(&rootfs, "excluded/a.txt"), "a\n");
    assert_eq!(read(&rootfs, "excluded/sub/d.txt"), "d\n");
    assert!(!rootfs.join("excluded/b.md").exists() && !rootfs.join("excluded/sub/c.log").exists());
    assert_eq!(std::fs::read_link(rootfs.join("links/rel")).unwrap(), Path::new("target.txt"));
    assert_eq!(std::fs::read_link(rootfs.join("links/abs")).unwrap(), Path::new("/etc/passwd"));
    let followed = std::fs::symlink_metadata(rootfs.join("followed.txt")).unwrap();
    assert!(followed.is_file(), "a top-level symlink source is followed");
    assert_eq!(read(&rootfs, "followed.txt"), "target\n");
    assert_eq!(read(&rootfs, "heredoc.txt"), "hello world\n");
    assert_eq!(read(&rootfs, "literal.txt"), "$GREETING\n");

    let climbing = context.join("Dockerfile.climbing");
    let out = h.build(&[
        "--context",
        context.to_str().unwrap(),
        "-f",
        climbing.to_str().unwrap(),
        "--build-arg",
        &h.base(),
        "--no-push",
    ]);
    let stderr = failed(&out);
    assert!(stderr.contains("\"climbing\" not found in the build context"), "{stderr}");
}

#[tokio::test]
async fn copy_from_an_image_pulls_it_and_reads_its_root() {
    let Some(h) = Harness::start().await else { return };
    let context = h.context("build/copy-from-image");
    let image = h.image("copy/from-image:v1");
    ok(h.build(&["--context", context.to_str().unwrap(), "--build-arg", &h.base(), "--destination", &image]));
    let rootfs = h.unpack(&image);
    assert!(rootfs.join("etc/passwd").is_file(), "wildcard in a --from source");
    assert!(!rootfs.join("bin/sh").exists(), "only the copied files, FROM scratch");
    assert_eq!(run_in(&rootfs, &["/bin/busybox", "echo", "copied"]), "copied\n");
}

#[tokio::test]
async fn onbuild_triggers_run_in_the_child_build() {
    let Some(h) = Harness::start().await else { return };
    let base_ctx = h.context("build/copy-onbuild-base");
    let parent = h.image("copy/onbuild-base:v1");
    ok(h.build(&["--context", base_ctx.to_str().unwrap(), "--build-arg", &h.base(), "--destination", &parent]));
    let parent_config = h.config(&parent);
    let triggers = parent_config["config"]["OnBuild"].as_array().cloned().unwrap_or_default();
    assert_eq!(triggers.len(), 3, "{parent_config}");
    assert_eq!(triggers[0], "COPY child.txt /onbuild/child.txt");

    let child_ctx = h.context("build/copy-onbuild-child");
    make_readable(&child_ctx);
    let child = h.image("copy/onbuild-child:v1");
    let parent_arg = format!("PARENT={parent}");
    let out =
        ok(h.build(&["--context", child_ctx.to_str().unwrap(), "--build-arg", &parent_arg, "--destination", &child]));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("RUN echo \"trigger ran\""), "the trigger shows as a step: {stderr}");
    let rootfs = h.unpack(&child);
    assert_eq!(
        read(&rootfs, "onbuild/child.txt"),
        "from the child context\n",
        "COPY trigger reads the child's context"
    );
    assert_eq!(read(&rootfs, "onbuild/after.txt"), "trigger ran\n", "triggers run before the child's own steps");
    let config = h.config(&child);
    let c = &config["config"];
    assert!(c["OnBuild"].as_array().is_none_or(|a| a.is_empty()), "the child carries no triggers: {c}");
    assert!(c["Env"].as_array().unwrap().contains(&"TRIGGERED=yes".into()), "{c}");
    assert_eq!(run_in(&rootfs, &["cat", "/onbuild/child.txt"]), "from the child context\n");
}
