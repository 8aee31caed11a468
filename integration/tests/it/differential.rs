//! Differential test: every `testdata/build/diff-*` case (see [`case`] for its files) is
//! built by rbuild — the real binary, rootless as `rbuild-test` and as root — and by the
//! reference, Docker's BuildKit builder (a private Debian `docker.io` 20.10 engine started
//! once for the run, [`engines::Dockerd`]). Images go to the test registry, are read back
//! with skopeo, unpacked with umoci and compared ([`compare`]): config fields and every
//! rootfs entry. Where Docker 20.10's built-in frontend lacks a feature (heredocs,
//! `--parents`, `--exclude`, `--link`, `--chmod` on ADD …) the case says `oracle:
//! documented` and its `EXPECTED` file encodes what BuildKit documents and its own tests
//! (`frontend/dockerfile/dockerfile_test.go`) assert. Cases marked `buildah: yes` are also
//! built by buildah as a second opinion, with the differences of [`EXCEPTIONS`] allowed.
//!
//! Prints `differential: N passed, N failed` (one count per case; a case passes when both
//! rbuild builds match). `RBUILD_DIFF_CASES=a,b` runs only the cases whose names contain
//! one of the words. Needs root (users, dockerd, buildah); skips otherwise.

mod case;
mod compare;
mod engines;

use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use self::case::{check_expected, Case, Oracle};
use self::compare::{compare_configs, compare_trees, snapshot, Difference, Node};
use self::engines::{buildah_build, Dockerd};
use crate::build::{chown_to, workspace, Harness, USER};
use crate::copy_add::FileServer;

/// Which differences from buildah an exception allows.
enum Allowed {
    /// Any difference of this field or path.
    Any,
    /// The path exists only in the reference image.
    OnlyInReference,
}

/// A difference from buildah that is expected, and why.
struct Exception {
    what: &'static str,
    allowed: Allowed,
    reason: &'static str,
}

/// Justified differences from buildah: its behaviour differs from BuildKit's (which rbuild
/// follows) or it adds something of its own. None apply to the comparison with BuildKit.
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
                 (dockerfile2llb addEnv) does; buildah moves it behind the instruction's other variables",
    },
    // RUN under `--isolation chroot` makes mount points for /dev, /proc, /sys, /run and empty
    // files to bind /etc/hosts, /etc/hostname and /etc/resolv.conf over, and commits them.
    Exception { what: "/dev", allowed: Allowed::OnlyInReference, reason: "buildah chroot mount point" },
    Exception { what: "/proc", allowed: Allowed::OnlyInReference, reason: "buildah chroot mount point" },
    Exception { what: "/sys", allowed: Allowed::OnlyInReference, reason: "buildah chroot mount point" },
    Exception { what: "/run", allowed: Allowed::OnlyInReference, reason: "buildah chroot mount point" },
    Exception { what: "/etc/hosts", allowed: Allowed::OnlyInReference, reason: "buildah chroot bind-mount target" },
    Exception { what: "/etc/hostname", allowed: Allowed::OnlyInReference, reason: "buildah chroot bind-mount target" },
    Exception {
        what: "/etc/resolv.conf",
        allowed: Allowed::OnlyInReference,
        reason: "buildah chroot bind-mount target",
    },
];

/// Differences from Docker 20.10's builder that are its own and not BuildKit's any more.
const DOCKER_EXCEPTIONS: &[Exception] = &[
    // runc creates mount points for /dev, /proc, /sys (and files for /etc/hosts,
    // /etc/resolv.conf) when the root lacks them; BuildKit v0.8 (Docker 20.10) commits these
    // stubs, BuildKit ≥ v0.10 removes them after the RUN (executor/stubs.go,
    // MountStubsCleaner), as rbuild does. Allowed only as empty root-owned stubs.
    Exception { what: "/dev", allowed: Allowed::OnlyInReference, reason: "runc mount stub BuildKit v0.8 commits" },
    Exception { what: "/proc", allowed: Allowed::OnlyInReference, reason: "runc mount stub BuildKit v0.8 commits" },
    Exception { what: "/sys", allowed: Allowed::OnlyInReference, reason: "runc mount stub BuildKit v0.8 commits" },
    Exception {
        what: "/etc/hosts",
        allowed: Allowed::OnlyInReference,
        reason: "runc mount stub BuildKit v0.8 commits",
    },
    Exception {
        what: "/etc/resolv.conf",
        allowed: Allowed::OnlyInReference,
        reason: "runc mount stub BuildKit v0.8 commits",
    },
];

/// The Docker 20.10 exception that explains `d`: only an empty root-owned stub that the
/// reference alone has, at a path of [`DOCKER_EXCEPTIONS`] or at a `RUN --mount` target of
/// the case's Dockerfile (`mount_targets`): runc makes those mount points too.
fn docker_exception(d: &Difference, mount_targets: &[String]) -> bool {
    let stub = d.ours == "None"
        && (d.theirs.contains("Dir {") || d.theirs.contains("size: 0,"))
        && d.theirs.contains("owner: (0, 0)");
    stub && (DOCKER_EXCEPTIONS.iter().any(|e| e.what == d.what) || mount_targets.iter().any(|t| *t == d.what))
}

/// The `target=` of every `RUN --mount` in `dockerfile` (absolute paths as written).
fn mount_targets(dockerfile: &str) -> Vec<String> {
    dockerfile
        .split("target=")
        .skip(1)
        .filter_map(|rest| rest.split([',', ' ', '\t', '\n']).next())
        .map(|t| t.trim_end_matches('/').to_string())
        .collect()
}

fn buildah_exception(d: &Difference) -> Option<&'static Exception> {
    EXCEPTIONS.iter().find(|e| e.what == d.what && (matches!(e.allowed, Allowed::Any) || d.ours == "None"))
}

/// Files served over HTTP for `ADD <url>` cases (`${SERVER}` in a case's build args).
const SERVED: &str = "testdata/diff-served";

#[tokio::test]
async fn rbuild_builds_what_buildkit_builds() {
    let Some(h) = Harness::start().await else {
        return;
    };
    let docker = Dockerd::start(h.ctx.registry.addr());
    let server = FileServer::start(&workspace().join(SERVED));
    let root_cache = h.shared.path().join("cache-root");
    std::fs::create_dir(&root_cache).unwrap();
    chown_to("root", &root_cache);
    let filter: Vec<String> =
        std::env::var("RBUILD_DIFF_CASES").map(|v| v.split(',').map(str::to_string).collect()).unwrap_or_default();
    let cases: Vec<Case> = discover()
        .into_iter()
        .filter(|c| filter.is_empty() || filter.iter().any(|f| c.name.contains(f.as_str())))
        .collect();
    let run = Run { h: &h, docker: &docker, server: &server.url, root_cache: &root_cache };
    let mut failed = Vec::new();
    for case in &cases {
        let result =
            std::panic::catch_unwind(AssertUnwindSafe(|| run.case(case))).unwrap_or_else(|p| Err(panic_text(&p)));
        match result {
            Ok(()) => eprintln!("differential ok: {}", case.name),
            Err(e) => {
                eprintln!("differential FAILED: {}\n{e}", case.name);
                failed.push(case.name.clone());
            }
        }
    }
    println!("differential: {} passed, {} failed", cases.len() - failed.len(), failed.len());
    eprintln!("differential: {} passed, {} failed", cases.len() - failed.len(), failed.len());
    assert!(failed.is_empty(), "cases differing from BuildKit: {failed:?}");
    assert!(!filter.is_empty() || cases.len() >= 80, "only {} differential cases", cases.len());
}

fn panic_text(p: &Box<dyn std::any::Any + Send>) -> String {
    p.downcast_ref::<String>().cloned().or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string())).unwrap_or_default()
}

/// Every `testdata/build/diff-*` directory with a Dockerfile, by name.
fn discover() -> Vec<Case> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(workspace().join("testdata/build"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with("diff-") && p.join("Dockerfile").is_file())
        .collect();
    dirs.sort();
    dirs.iter().map(|d| Case::load(d)).collect()
}

/// What every case shares.
struct Run<'a> {
    h: &'a Harness,
    docker: &'a Dockerd,
    server: &'a str,
    root_cache: &'a Path,
}

/// One built image, unpacked.
struct Built {
    config: Value,
    tree: std::collections::BTreeMap<String, Node>,
    rootfs: PathBuf,
}

impl Run<'_> {
    /// Builds `case` with rbuild (rootless, root) and the reference, and compares.
    fn case(&self, case: &Case) -> Result<(), String> {
        let context = self.h.context(&format!("build/{}", case.name));
        for f in ["CASE", "EXPECTED"] {
            let _ = std::fs::remove_file(context.join(f));
        }
        let mut args = vec!["--build-arg".to_string(), self.h.base()];
        for a in &case.build_args {
            args.extend(["--build-arg".to_string(), a.replace("${SERVER}", self.server)]);
        }
        if let Some(t) = &case.target {
            args.extend(["--target".to_string(), t.clone()]);
        }
        let rootless = self.rbuild(case, &context, USER, &self.h.shared.path().join("cache"), &args)?;
        let root = self.rbuild(case, &context, "root", self.root_cache, &args)?;
        let mut report = String::new();
        match &case.oracle {
            Oracle::Docker => {
                let stubs = mount_targets(&std::fs::read_to_string(context.join("Dockerfile")).unwrap_or_default());
                let image = self.h.image(&format!("diff/docker-{}:v1", case.name));
                self.docker.build(&context, &image, &args)?;
                let reference = self.fetch(&image);
                for (mode, ours) in [("rootless", &rootless), ("root", &root)] {
                    let mut d = compare_configs(&ours.config, &reference.config);
                    d.extend(compare_trees(&ours.tree, &reference.tree));
                    d.retain(|d| !docker_exception(d, &stubs));
                    report += &describe(mode, "Docker's BuildKit", &d);
                    report += &contents(&d, ours, &reference);
                }
                cleanup(&reference);
            }
            Oracle::Documented(_) => {
                for (mode, ours) in [("rootless", &rootless), ("root", &root)] {
                    report += &describe(mode, "EXPECTED", &check_expected(&case.expected, &ours.tree, &ours.config));
                }
                let d = compare_trees(&rootless.tree, &root.tree);
                report += &describe("rootless", "root", &d);
            }
        }
        if case.buildah {
            report += &self.buildah(case, &context, &args, &rootless);
        }
        if let Some(want) = &case.output {
            let got = run_image(&rootless.rootfs, &rootless.config["config"]);
            if &got != want {
                report += &format!("  the image's command printed {got:?}, expected {want:?}\n");
            }
        }
        cleanup(&rootless);
        cleanup(&root);
        let _ = std::fs::remove_dir_all(&context);
        if report.is_empty() {
            Ok(())
        } else {
            Err(report)
        }
    }

    fn rbuild(&self, case: &Case, context: &Path, user: &str, cache: &Path, args: &[String]) -> Result<Built, String> {
        let image = self.h.image(&format!("diff/rbuild-{user}-{}:v1", case.name));
        let mut all: Vec<&str> = vec!["--context", context.to_str().unwrap(), "--destination", &image];
        all.extend(args.iter().map(String::as_str));
        let out = self.h.build_as(user, cache, &all);
        if !out.status.success() {
            return Err(format!("rbuild as {user} failed:\n{}", String::from_utf8_lossy(&out.stderr)));
        }
        Ok(self.fetch(&image))
    }

    fn fetch(&self, image: &str) -> Built {
        let rootfs = self.h.unpack(image);
        Built { config: self.h.config(image), tree: snapshot(&rootfs), rootfs }
    }

    /// buildah's image against rbuild's rootless one, buildah's own ways allowed.
    fn buildah(&self, case: &Case, context: &Path, args: &[String], ours: &Built) -> String {
        let image = self.h.image(&format!("diff/buildah-{}:v1", case.name));
        if let Err(e) = buildah_build(context, &image, args) {
            return format!("  {e}\n");
        }
        let theirs = self.fetch(&image);
        let mut d = compare_configs(&ours.config, &theirs.config);
        d.extend(compare_trees(&ours.tree, &theirs.tree));
        cleanup(&theirs);
        d.retain(|d| match buildah_exception(d) {
            Some(e) => {
                eprintln!("  tolerated from buildah: {d}\n    because {}", e.reason);
                false
            }
            None => true,
        });
        describe("rootless", "buildah", &d)
    }
}

/// Both versions of the small text files that differ, to read the difference.
fn contents(differences: &[Difference], ours: &Built, theirs: &Built) -> String {
    let text = |b: &Built, p: &str| match b.tree.get(p) {
        Some(Node::File { size, .. }) if *size <= 4096 => std::fs::read_to_string(b.rootfs.join(&p[1..])).ok(),
        _ => None,
    };
    differences
        .iter()
        .filter_map(|d| Some((d.what.as_str(), text(ours, &d.what)?, text(theirs, &d.what)?)))
        .map(|(p, a, b)| format!("    {p} from rbuild:\n{a}\n    {p} from the reference:\n{b}\n"))
        .collect()
}

fn describe(mode: &str, reference: &str, differences: &[Difference]) -> String {
    differences.iter().map(|d| format!("  rbuild ({mode}) vs {reference}: {d}\n")).collect()
}

/// Removes an unpacked image (`<dir>/bundle/rootfs`) and its layout.
fn cleanup(built: &Built) {
    if let Some(dir) = built.rootfs.parent().and_then(Path::parent) {
        let _ = std::fs::remove_dir_all(dir);
    }
}

/// Runs the image's entrypoint + cmd in `rootfs` as its runtime would: in a user namespace
/// as the config's `User` (numeric `uid[:gid]`), in its `WorkingDir`, with its `Env`.
fn run_image(rootfs: &Path, config: &Value) -> String {
    let argv: Vec<&str> =
        ["Entrypoint", "Cmd"].iter().filter_map(|f| config[f].as_array()).flatten().filter_map(Value::as_str).collect();
    let user = config["User"].as_str().filter(|u| !u.is_empty()).unwrap_or("0");
    let (uid, gid) = user.split_once(':').unwrap_or((user, user));
    let workdir = config["WorkingDir"].as_str().filter(|w| !w.is_empty()).unwrap_or("/");
    let env =
        config["Env"].as_array().into_iter().flatten().filter_map(Value::as_str).filter_map(|kv| kv.split_once('='));
    let out = Command::new("timeout")
        .args([
            "60",
            "unshare",
            &format!("--map-user={uid}"),
            &format!("--map-group={gid}"),
            "--mount",
            "--pid",
            "--fork",
        ])
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
