//! Differential test: each `testdata/build/diff-*` Dockerfile is built by rbuild (the real
//! binary, as the unprivileged `rbuild-test` user) and by buildah (Debian's package, as root,
//! `--isolation chroot`, vfs storage in its own temp dirs) from the same context and the same
//! base image in the test registry. Both images are pushed to that registry, read back with
//! skopeo, unpacked with umoci and compared:
//!
//! - rootfs: every path, its type, permission bits, uid/gid, file content (sha256) and symlink
//!   target. Mtimes are not compared: each builder stamps the time it wrote a file, so they can
//!   never agree (`--reproducible` clamps only rbuild's).
//! - config: the fields in [`CONFIG_FIELDS`] plus `architecture`/`os`. History is not compared:
//!   `created_by` is free text each builder writes its own way (Docker: `/bin/sh -c #(nop) …`,
//!   rbuild: the instruction), and buildah without `--layers` commits one layer for all steps.
//!
//! Any difference fails the test unless [`EXCEPTIONS`] lists it with its reason (or
//! [`KNOWN_BUGS`], which must still reproduce). Finally the image's entrypoint + cmd run in a
//! user namespace as the image's `User`, and their output is checked. Needs root (to switch
//! users and for buildah); skips otherwise, and fails when buildah is missing
//! (`scripts/test.sh` installs it).

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;
use std::process::Command;

use serde_json::Value;
use sha2::{Digest as _, Sha256};

use crate::build::{ok, Harness};

/// Config fields compared between the two images.
const CONFIG_FIELDS: &[&str] = &[
    "Env", "Cmd", "Entrypoint", "WorkingDir", "User", "Labels", "ExposedPorts", "Volumes",
    "StopSignal", "Healthcheck", "Shell", "OnBuild",
];

/// One difference: what differs (a config field such as `config.Labels.<key>`, or a rootfs
/// path) and the two values.
#[derive(Debug)]
struct Difference {
    what: String,
    ours: String,
    theirs: String,
}

impl Difference {
    fn new(what: impl Into<String>, ours: impl std::fmt::Debug, theirs: impl std::fmt::Debug) -> Self {
        Self { what: what.into(), ours: format!("{ours:?}"), theirs: format!("{theirs:?}") }
    }
}

impl std::fmt::Display for Difference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: rbuild {} | buildah {}", self.what, self.ours, self.theirs)
    }
}

/// Which differences an exception allows.
enum Allowed {
    /// Any difference of this field or path.
    Any,
    /// The path exists only in buildah's image.
    OnlyInBuildah,
}

/// A difference that is expected, and why.
struct Exception {
    what: &'static str,
    allowed: Allowed,
    reason: &'static str,
}

/// Justified differences: buildah's behaviour differs from Docker/BuildKit's (which rbuild
/// follows) or buildah adds something of its own.
const EXCEPTIONS: &[Exception] = &[
    Exception {
        what: "config.Labels.io.buildah.version",
        allowed: Allowed::Any,
        reason: "buildah stamps its own version on every image it commits; rbuild adds no label of its own",
    },
    Exception {
        what: "config.Env (order)",
        allowed: Allowed::Any,
        reason: "ENV of a variable the base already has (PATH): rbuild replaces it in place as BuildKit \
                 (dockerfile2llb addEnv) and Docker do; buildah moves it behind the instruction's other \
                 variables. Same variables and values (compared separately)",
    },
    // RUN under `--isolation chroot` makes mount points for /dev, /proc, /sys, /run and empty
    // files to bind /etc/hosts, /etc/hostname and /etc/resolv.conf over, and commits them.
    // BuildKit and rbuild leave no trace of the sandbox in the image.
    Exception { what: "/dev", allowed: Allowed::OnlyInBuildah, reason: "buildah chroot mount point" },
    Exception { what: "/proc", allowed: Allowed::OnlyInBuildah, reason: "buildah chroot mount point" },
    Exception { what: "/sys", allowed: Allowed::OnlyInBuildah, reason: "buildah chroot mount point" },
    Exception { what: "/run", allowed: Allowed::OnlyInBuildah, reason: "buildah chroot mount point" },
    Exception { what: "/etc/hosts", allowed: Allowed::OnlyInBuildah, reason: "buildah chroot bind-mount target" },
    Exception { what: "/etc/hostname", allowed: Allowed::OnlyInBuildah, reason: "buildah chroot bind-mount target" },
    Exception { what: "/etc/resolv.conf", allowed: Allowed::OnlyInBuildah, reason: "buildah chroot bind-mount target" },
];

/// A difference that is an rbuild bug, to be fixed elsewhere.
struct KnownBug {
    /// The case (`testdata/build/<case>`) it shows in.
    case: &'static str,
    /// The path or config field that differs.
    what: &'static str,
    reason: &'static str,
}

/// Known rbuild bugs. The test requires each to still occur (so the entry must be removed
/// with the fix) and prints them.
const KNOWN_BUGS: &[KnownBug] = &[];

/// The exception that explains `d`, if any.
fn exception(d: &Difference) -> Option<&'static Exception> {
    EXCEPTIONS.iter().find(|e| {
        e.what == d.what && match e.allowed {
            Allowed::Any => true,
            Allowed::OnlyInBuildah => d.ours == "None",
        }
    })
}

/// One differential case: a context under `testdata/build`, and what its command prints.
struct Case {
    dir: &'static str,
    /// Output of the image's entrypoint + cmd, run as the image's user.
    expected_output: &'static str,
    /// Config fields the case sets (so that "both equal" cannot mean "both missing").
    sets: &'static [&'static str],
}

#[rstest::rstest]
#[case::every_instruction(Case {
    dir: "diff-instructions",
    expected_output: "hello world from RUN\nargs: differential\nuser: 1000:1000\n",
    sets: CONFIG_FIELDS,
})]
#[case::multi_stage(Case { dir: "diff-multistage", expected_output: "part1\npart2\npassed\n", sets: &["Entrypoint", "Cmd"] })]
#[case::run_as_user(Case { dir: "diff-userrun", expected_output: "1000\n", sets: &["User", "Cmd"] })]
#[tokio::test]
async fn rbuild_and_buildah_build_the_same_image(#[case] case: Case) {
    let Some(h) = Harness::start().await else { return };
    let context = h.context(&format!("build/{}", case.dir));
    let ours = h.image(&format!("diff/rbuild-{}:v1", case.dir));
    let theirs = h.image(&format!("diff/buildah-{}:v1", case.dir));
    ok(h.build(&["--context", context.to_str().unwrap(), "--build-arg", &h.base(), "--destination", &ours]));
    buildah_build(&h, &context, &theirs);

    let our_config = h.config(&ours);
    for field in case.sets {
        assert_ne!(unset_if_empty(&our_config["config"][field]), &Value::Null, "{field} should be set: {our_config}");
    }
    let mut differences = compare_configs(&our_config, &h.config(&theirs));
    let (our_root, their_root) = (h.unpack(&ours), h.unpack(&theirs));
    differences.extend(compare_trees(&snapshot(&our_root), &snapshot(&their_root)));
    let bugs: Vec<&KnownBug> = KNOWN_BUGS.iter().filter(|b| b.case == case.dir).collect();
    for bug in &bugs {
        assert!(
            differences.iter().any(|d| d.what == bug.what),
            "known bug at {} no longer shows; remove it from KNOWN_BUGS ({})",
            bug.what,
            bug.reason
        );
        eprintln!("known rbuild bug, tolerated: {}: {}", bug.what, bug.reason);
    }
    for d in &differences {
        if let Some(e) = exception(d) {
            eprintln!("tolerated: {d}\n  because {}", e.reason);
        }
    }
    let unexplained: Vec<String> = differences
        .iter()
        .filter(|d| exception(d).is_none() && !bugs.iter().any(|b| d.what == b.what))
        .map(|d| format!("  {d}\n"))
        .collect();
    assert!(unexplained.is_empty(), "rbuild and buildah images differ:\n{}", unexplained.concat());

    assert_eq!(run_image(&our_root, &our_config["config"]), case.expected_output);
}

/// `buildah bud` the context as root (chroot isolation, vfs storage under the test's temp
/// dir), then push the result to `image` in the test registry.
fn buildah_build(h: &Harness, context: &Path, image: &str) {
    let storage = tempfile::tempdir().unwrap();
    let buildah = |args: &[&str]| {
        let out = Command::new("buildah")
            .arg("--root")
            .arg(storage.path().join("root"))
            .arg("--runroot")
            .arg(storage.path().join("runroot"))
            .args(["--storage-driver", "vfs"])
            .args(args)
            .env("BUILDAH_ISOLATION", "chroot")
            .output()
            .expect("buildah is missing: apt-get install buildah (scripts/test.sh installs it)");
        assert!(out.status.success(), "buildah {args:?}:\n{}", String::from_utf8_lossy(&out.stderr));
    };
    let base = h.base();
    buildah(&[
        "bud", "--isolation", "chroot", "--runtime", "/usr/sbin/runc", "--network", "host", "--format", "docker",
        "--tls-verify=false", "--build-arg", &base, "-t", image, context.to_str().unwrap(),
    ]);
    buildah(&["push", "--tls-verify=false", image, &format!("docker://{image}")]);
}

/// Config fields that are maps, compared key by key (so an exception can name one key).
const MAP_FIELDS: &[&str] = &["Labels", "ExposedPorts", "Volumes"];

/// Differences between the compared config fields (`config.<Field>[.<key>]`).
fn compare_configs(ours: &Value, theirs: &Value) -> Vec<Difference> {
    let mut out = Vec::new();
    for top in ["architecture", "os"] {
        if ours[top] != theirs[top] {
            out.push(Difference::new(top, &ours[top], &theirs[top]));
        }
    }
    let empty = serde_json::Map::new();
    for field in CONFIG_FIELDS {
        let (a, b) = (&ours["config"][field], &theirs["config"][field]);
        if MAP_FIELDS.contains(field) {
            let (x, y) = (a.as_object().unwrap_or(&empty), b.as_object().unwrap_or(&empty));
            let keys: BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            for k in keys {
                if x.get(k) != y.get(k) {
                    out.push(Difference::new(format!("config.{field}.{k}"), x.get(k), y.get(k)));
                }
            }
        } else if *field == "Env" {
            out.extend(compare_env(a, b));
        } else if unset_if_empty(a) != unset_if_empty(b) {
            out.push(Difference::new(format!("config.{field}"), a, b));
        }
    }
    out
}

/// Env compared as a set of variables (`config.Env.<NAME>`), and its order on its own.
fn compare_env(a: &Value, b: &Value) -> Vec<Difference> {
    let vars = |v: &Value| -> Vec<(String, String)> {
        let list = v.as_array().cloned().unwrap_or_default();
        list.iter()
            .filter_map(Value::as_str)
            .map(|kv| kv.split_once('=').map_or((kv.to_string(), String::new()), |(k, v)| (k.to_string(), v.to_string())))
            .collect()
    };
    let (x, y) = (vars(a), vars(b));
    let (xm, ym): (BTreeMap<_, _>, BTreeMap<_, _>) = (x.iter().cloned().collect(), y.iter().cloned().collect());
    let names: BTreeSet<&String> = xm.keys().chain(ym.keys()).collect();
    let mut out: Vec<Difference> = names
        .into_iter()
        .filter(|n| xm.get(*n) != ym.get(*n))
        .map(|n| Difference::new(format!("config.Env.{n}"), xm.get(n), ym.get(n)))
        .collect();
    if out.is_empty() && x != y {
        out.push(Difference::new("config.Env (order)", a, b));
    }
    out
}

/// `null`, a missing field, `""`, `[]` and `{}` all mean "not set" in an image config.
fn unset_if_empty(v: &Value) -> &Value {
    match v {
        Value::String(s) if s.is_empty() => &Value::Null,
        Value::Array(a) if a.is_empty() => &Value::Null,
        Value::Object(o) if o.is_empty() => &Value::Null,
        other => other,
    }
}

/// What is compared of one rootfs entry (no mtime, see the module doc).
#[derive(Debug, PartialEq, Eq)]
enum Node {
    Dir { mode: u32, owner: (u32, u32) },
    File { mode: u32, owner: (u32, u32), sha256: String },
    Symlink { owner: (u32, u32), target: String },
    Other { kind: &'static str, mode: u32, owner: (u32, u32) },
}

/// Every path under `root` (relative, `/`-prefixed) with its node.
fn snapshot(root: &Path) -> BTreeMap<String, Node> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let meta = std::fs::symlink_metadata(&path).unwrap();
            let (mode, owner, ft) = (meta.mode() & 0o7777, (meta.uid(), meta.gid()), meta.file_type());
            let node = if ft.is_dir() {
                stack.push(path.clone());
                Node::Dir { mode, owner }
            } else if ft.is_file() {
                Node::File { mode, owner, sha256: hex::encode(Sha256::digest(std::fs::read(&path).unwrap())) }
            } else if ft.is_symlink() {
                Node::Symlink { owner, target: std::fs::read_link(&path).unwrap().display().to_string() }
            } else {
                let kind = if ft.is_fifo() { "fifo" } else if ft.is_socket() { "socket" } else { "device" };
                Node::Other { kind, mode, owner }
            };
            out.insert(format!("/{}", path.strip_prefix(root).unwrap().display()), node);
        }
    }
    out
}

/// Differences between two snapshots, one per path.
fn compare_trees(ours: &BTreeMap<String, Node>, theirs: &BTreeMap<String, Node>) -> Vec<Difference> {
    let paths: BTreeSet<&String> = ours.keys().chain(theirs.keys()).collect();
    paths
        .into_iter()
        .filter_map(|p| {
            let (a, b) = (ours.get(p), theirs.get(p));
            (a != b).then(|| Difference::new(p.as_str(), a, b))
        })
        .collect()
}

/// Runs the image's entrypoint + cmd in `rootfs` as its runtime would: in a user namespace
/// as the config's `User` (numeric `uid[:gid]`), in its `WorkingDir`, with its `Env`. The map
/// is the single id `util-linux unshare --map-user` gives (the caller becomes `User`), so the
/// process sees other owners than the image's; owners are compared above, not here.
fn run_image(rootfs: &Path, config: &Value) -> String {
    let argv: Vec<&str> = ["Entrypoint", "Cmd"]
        .iter()
        .filter_map(|f| config[f].as_array())
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    let user = config["User"].as_str().filter(|u| !u.is_empty()).unwrap_or("0");
    let (uid, gid) = user.split_once(':').unwrap_or((user, user));
    let workdir = config["WorkingDir"].as_str().filter(|w| !w.is_empty()).unwrap_or("/");
    let env = config["Env"].as_array().into_iter().flatten().filter_map(Value::as_str).filter_map(|kv| kv.split_once('='));
    let out = Command::new("unshare")
        .args([&format!("--map-user={uid}"), &format!("--map-group={gid}"), "--mount", "--pid", "--fork"])
        .arg(format!("--root={}", rootfs.display()))
        .arg(format!("--wd={workdir}"))
        .args(&argv)
        .env_clear()
        .envs(env)
        .output()
        .unwrap();
    assert!(out.status.success(), "{argv:?} as {user:?} in the image: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}
