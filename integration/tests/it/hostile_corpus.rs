//! The hostile-archive corpus end to end (issue 16): every archive `testdata/hostile-corpus/
//! make-corpus.py` writes (traversal, absolute paths, symlink and hardlink escapes, whiteouts
//! and opaque markers aimed outside, devices, setuid, fifos, long and PAX names, duplicates,
//! truncated, tampered gzip, a bounded gzip bomb, bogus sparse maps) goes through `FROM` (as a
//! layer of a base image in the real registry) and `ADD` (local archive), built by the real
//! binary as `rbuild-test` and as root. The archives aim at a world-writable canary directory
//! outside the build root; it must be unchanged after every build, and every build either
//! succeeds or fails with an error, never a panic.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use flate2::read::GzDecoder;
use flate2::write::GzEncoder;
use rbuild_cache::oci::sha256_digest;
use rbuild_integration::images::{busybox_layer, push, write_image, Flavor, Layer};

use crate::build::{make_readable, workspace, Harness, USER};

/// Every entry under `dir`: relative path → kind, permissions and contents or link target.
fn snapshot(dir: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for entry in walk(dir) {
        let meta = std::fs::symlink_metadata(&entry).unwrap();
        let what = if meta.file_type().is_symlink() {
            format!("-> {}", std::fs::read_link(&entry).unwrap().display())
        } else if meta.is_file() {
            format!("file {:o} {:?}", meta.permissions().mode(), std::fs::read(&entry).unwrap())
        } else {
            format!("{:?} {:o}", meta.file_type(), meta.permissions().mode())
        };
        out.insert(entry.strip_prefix(dir).unwrap().display().to_string(), what);
    }
    out
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut all = vec![dir.to_path_buf()];
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if std::fs::symlink_metadata(&path).unwrap().is_dir() {
            all.extend(walk(&path));
        } else {
            all.push(path);
        }
    }
    all
}

/// The archive as a gzip layer; a `.gz` archive is the blob as is (its diff_id is what
/// decompresses, so a tampered one fails verification or decompression).
fn layer_of(store: &rbuild_cache::store::BlobStore, archive: &Path) -> Layer {
    let bytes = std::fs::read(archive).unwrap();
    if archive.extension().is_some_and(|e| e == "gz") {
        let mut raw = Vec::new();
        let _ = GzDecoder::new(&bytes[..]).read_to_end(&mut raw);
        return Layer { blob: store.put_bytes(&bytes).unwrap(), diff_id: sha256_digest(&raw) };
    }
    let mut gz = GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&bytes).unwrap();
    Layer { blob: store.put_bytes(&gz.finish().unwrap()).unwrap(), diff_id: sha256_digest(&bytes) }
}

/// A context directory holding `dockerfile` and, if given, the archive.
fn context(h: &Harness, name: &str, dockerfile: &str, archive: Option<&Path>) -> String {
    let dir = h.shared.path().join(name);
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("Dockerfile"), dockerfile).unwrap();
    if let Some(archive) = archive {
        std::fs::copy(archive, dir.join(archive.file_name().unwrap())).unwrap();
    }
    make_readable(&dir);
    dir.to_str().unwrap().to_owned()
}

#[tokio::test]
async fn issue_16_hostile_archive_corpus_stays_inside_the_build_root() {
    let Some(h) = Harness::start().await else { return };
    let canary = tempfile::Builder::new().prefix("rbuild-canary-").tempdir_in("/tmp").unwrap();
    std::fs::write(canary.path().join("keep"), "canary\n").unwrap();
    std::fs::create_dir(canary.path().join("sub")).unwrap();
    for (path, mode) in [("", 0o777), ("keep", 0o666), ("sub", 0o777)] {
        std::fs::set_permissions(canary.path().join(path), std::fs::Permissions::from_mode(mode)).unwrap();
    }
    let before = snapshot(canary.path());
    // The check can fail: a write into the canary changes its snapshot.
    std::fs::write(canary.path().join("sub/probe"), "x").unwrap();
    assert_ne!(snapshot(canary.path()), before, "the canary snapshot sees writes");
    std::fs::remove_file(canary.path().join("sub/probe")).unwrap();
    let corpus = h.shared.path().join("corpus");
    std::fs::create_dir(&corpus).unwrap();
    let script = workspace().join("testdata/hostile-corpus/make-corpus.py");
    let out = Command::new("python3").arg(script).arg(&corpus).arg(canary.path()).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let names: Vec<String> = String::from_utf8(out.stdout).unwrap().lines().map(str::to_owned).collect();
    assert!(names.len() >= 25, "the corpus has {} archives", names.len());

    let busybox = busybox_layer(&h.ctx.store, Path::new("/bin/busybox")).unwrap();
    let arch = rbuild_cache::platform::TargetPlatform::host().architecture;
    let root_cache = h.shared.path().join("cache-root");
    std::fs::create_dir(&root_cache).unwrap();
    let mut problems = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let archive = corpus.join(name);
        let layers = [busybox.clone(), layer_of(&h.ctx.store, &archive)];
        let manifest = write_image(&h.ctx.store, Flavor::Oci, &arch, None, &layers).unwrap();
        let base = format!("{}/corpus/case{i}", h.ctx.registry.addr());
        push(&h.ctx.client, &h.ctx.store, &base, &["1"], &manifest).await.unwrap();
        let add = format!("ARG BASE\nFROM ${{BASE}}\nADD {name} /x/\nRUN ls -la /x > /dev/null\n");
        let from = format!("FROM {base}:1\nRUN ls -la / > /dev/null\n");
        let contexts = [
            ("ADD", context(&h, &format!("add{i}"), &add, Some(&archive))),
            ("FROM", context(&h, &format!("from{i}"), &from, None)),
        ];
        for (how, dir) in &contexts {
            for (user, cache) in [(USER, h.shared.path().join("cache")), ("root", root_cache.clone())] {
                let out = h.build_as(user, &cache, &["--context", dir, "--build-arg", &h.base(), "--no-push"]);
                let stderr = String::from_utf8_lossy(&out.stderr);
                let outcome = if out.status.success() { "ok".to_owned() } else { last_error(&stderr) };
                eprintln!("{name} via {how} as {user}: {outcome}");
                if !out.status.success() && (out.status.code() == Some(101) || stderr.contains("panicked")) {
                    problems.push(format!("{name} via {how} as {user} panicked:\n{stderr}"));
                } else if !out.status.success() && !stderr.contains("rror") {
                    problems.push(format!("{name} via {how} as {user} failed without an error:\n{stderr}"));
                }
                if snapshot(canary.path()) != before {
                    problems
                        .push(format!("{name} via {how} as {user} changed the canary: {:?}", snapshot(canary.path())));
                    break;
                }
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// The last line of a failed build's stderr (the error), for the log of outcomes.
fn last_error(stderr: &str) -> String {
    stderr.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("(no output)").to_owned()
}
