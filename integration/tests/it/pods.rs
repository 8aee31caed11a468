//! rbuild in emulated Kubernetes pods (`rbuild_integration::pod`: runc with a runtime spec
//! made from the pod's securityContext as containerd makes it, in a root built like rbuild's
//! image). One table, [`PROFILES`], gives each pod profile of issue 14 and its expected
//! outcome; docs/rootless.md's table must say the same (checked here, without root). Each
//! build pushes to the real test registry (the pods share the host's network namespace to
//! reach 127.0.0.1: not real, a pod network cannot be had here) and the image's owners are
//! read back with skopeo + umoci. Needs root (runc); skips locally, fails under CI.

use std::io::Write as _;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::time::Duration;

use rbuild_integration::pod::{Container, Pod, PodImage, PodSecurity, ProcMount, Seccomp, Volume};

use crate::build::{workspace, Harness};
use crate::support::rbuild_bin;

/// What a profile must do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// The Dockerfile with RUN builds and pushes, RUN isolated by this `isolation:` name.
    Builds(&'static str),
    /// A Dockerfile without RUN builds; one with RUN is refused naming this setting.
    RunRefused(&'static str),
}

/// One pod profile of the matrix.
struct Profile {
    /// Letter and name, as in docs/rootless.md.
    name: &'static str,
    security: fn() -> PodSecurity,
    expect: Expect,
}

/// BuildKit's documented rootless pod: uid 1000, seccomp (and AppArmor) Unconfined, /proc masked.
fn buildkit_rootless() -> PodSecurity {
    PodSecurity { run_as_user: 1000, seccomp: Seccomp::Unconfined, ..PodSecurity::default() }
}

/// A `hostUsers: false` pod (Kubernetes ≥ 1.30 allows `procMount: Unmasked` only there).
fn user_namespaced(uid: u32) -> PodSecurity {
    PodSecurity {
        run_as_user: uid,
        host_users: false,
        proc_mount: ProcMount::Unmasked,
        seccomp: Seccomp::Unconfined,
        ..PodSecurity::default()
    }
}

/// The profiles of issue 14, item 2.
const PROFILES: [Profile; 6] = [
    Profile {
        name: "(a) BuildKit rootless pod",
        security: buildkit_rootless,
        expect: Expect::Builds("userns, no process sandbox"),
    },
    Profile { name: "(b) Kaniko pod", security: PodSecurity::default, expect: Expect::Builds("container") },
    Profile { name: "(c) hostUsers: false, root", security: || user_namespaced(0), expect: Expect::Builds("userns") },
    Profile {
        name: "(d) hostUsers: false, uid 1000",
        security: || user_namespaced(1000),
        expect: Expect::RunRefused("hostUsers: false with runAsUser: 0"),
    },
    Profile {
        name: "(e) PSS restricted",
        security: || PodSecurity { run_as_user: 1000, allow_privilege_escalation: false, ..PodSecurity::default() },
        expect: Expect::RunRefused("seccompProfile: Unconfined"),
    },
    Profile {
        name: "(f) read-only root filesystem",
        security: || PodSecurity { read_only_root_fs: true, ..buildkit_rootless() },
        expect: Expect::Builds("userns, no process sandbox"),
    },
];

/// How long one emulated pod may run.
const POD_LIMIT: Duration = Duration::from_secs(240);

/// A pod running `rbuild build` of `testdata/build/<case>` with a workspace emptyDir (context,
/// `--cache-dir`, digest file) and the `docker-config` secret at `DOCKER_CONFIG`.
struct BuildPod {
    pod: Pod,
    workspace: tempfile::TempDir,
}

impl BuildPod {
    fn new(h: &Harness, label: &str, security: PodSecurity, case: &str, image: &str) -> Self {
        Self::with_flags(h, label, security, case, image, &[])
    }

    /// As [`BuildPod::new`], with more `rbuild build` flags.
    fn with_flags(h: &Harness, label: &str, security: PodSecurity, case: &str, image: &str, flags: &[&str]) -> Self {
        let workspace_dir = tempfile::Builder::new().prefix("rbuild-pod-workspace-").tempdir_in("/tmp").unwrap();
        let ws = workspace_dir.path();
        crate::build::copy_tree(&workspace().join("testdata/build").join(case), &ws.join("ctx"));
        std::fs::create_dir_all(ws.join("docker")).unwrap();
        std::fs::write(ws.join("docker/config.json"), "{\"auths\": {}}\n").unwrap();
        rbuild_integration::pod::rootfs::shift_owners(ws, security.id_shift());
        // An emptyDir is world-writable; the context belongs to the pod's user.
        let owner = security.id_shift() + security.run_as_user;
        std::fs::set_permissions(ws, std::fs::Permissions::from_mode(0o777)).unwrap();
        std::process::Command::new("chown")
            .arg("-R")
            .arg(format!("{owner}:{owner}"))
            .arg(ws.join("ctx"))
            .status()
            .unwrap();
        let args = [
            "rbuild",
            "build",
            "--context",
            "/workspace/ctx",
            "--cache-dir",
            "/workspace/cache",
            "--insecure-registry",
            h.ctx.registry.addr(),
            "--build-arg",
            &h.base(),
            "--destination",
            image,
            "--digest-file",
            "/workspace/digest",
        ];
        let container = Container {
            security,
            args: args.iter().chain(flags).map(|a| a.to_string()).collect(),
            env: vec![("DOCKER_CONFIG".into(), "/home/rbuild/.docker".into()), ("HOME".into(), "/home/rbuild".into())],
            cwd: "/workspace".into(),
            volumes: vec![
                Volume { host: ws.to_path_buf(), mount_path: "/workspace".into(), read_only: false },
                Volume { host: ws.join("docker"), mount_path: "/home/rbuild/.docker".into(), read_only: true },
            ],
        };
        let id = label.chars().filter(char::is_ascii_alphanumeric).collect::<String>().to_lowercase();
        Self { pod: Pod::new(&id, &container, PodImage::Rbuild(&rbuild_bin())), workspace: workspace_dir }
    }
}

/// The `isolation: NAME (` line of rbuild's stderr.
fn isolation_name(stderr: &str) -> Option<&str> {
    stderr.lines().find_map(|l| l.strip_prefix("isolation: ")).and_then(|rest| rest.split(" (").next())
}

/// Checks the pushed image: the digest file matches the registry, owners are as the RUNs left them.
fn check_image(h: &Harness, image: &str, workspace: &Path, with_run: bool) -> Result<(), String> {
    let digest = std::fs::read_to_string(workspace.join("digest")).map_err(|e| format!("digest file: {e}"))?;
    if h.digest(image) != digest {
        return Err(format!("digest file {digest} is not the registry's {}", h.digest(image)));
    }
    let rootfs = h.unpack(image);
    let owner = |p: &str| std::fs::symlink_metadata(rootfs.join(p)).map(|m| m.uid()).map_err(|e| format!("{p}: {e}"));
    let mut want = vec![("app/hello.txt", 0), ("data/by-user", 1000)];
    if with_run {
        want.extend([("data", 1000), ("data/by-root", 0), ("data/uid", 1000)]);
        let uid = std::fs::read_to_string(rootfs.join("data/uid")).unwrap_or_default();
        if uid != "1000\n" {
            return Err(format!("RUN as USER 1000 wrote id -u = {uid:?}"));
        }
    }
    for (path, uid) in want {
        if owner(path)? != uid {
            return Err(format!("{path} is owned by {} instead of {uid}", owner(path)?));
        }
    }
    Ok(())
}

/// Runs one profile; `Ok` with a summary when it gave its expected outcome.
fn run_profile(h: &Harness, profile: &Profile) -> Result<String, String> {
    let label = &profile.name[1..2];
    let image = h.image(&format!("pods/{label}:v1"));
    let built = BuildPod::new(h, profile.name, (profile.security)(), "pods", &image);
    let out = built.pod.run(POD_LIMIT);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let isolation = isolation_name(&stderr).unwrap_or("none").to_string();
    match profile.expect {
        Expect::Builds(want) => {
            if !out.status.success() {
                return Err(format!("build failed (isolation {isolation}):\n{stderr}"));
            }
            if isolation != want {
                return Err(format!("isolation {isolation}, expected {want}:\n{stderr}"));
            }
            check_image(h, &image, built.workspace.path(), true)?;
            Ok(format!("built and pushed, isolation {isolation}, owners correct"))
        }
        Expect::RunRefused(setting) => {
            if out.status.success() || !stderr.contains(setting) || !stderr.contains("step ") {
                return Err(format!(
                    "expected a refusal naming the step and `{setting}`, got {}:\n{stderr}",
                    out.status
                ));
            }
            let no_run_image = h.image(&format!("pods/{label}-no-run:v1"));
            let no_run = BuildPod::new(h, profile.name, (profile.security)(), "pods-no-run", &no_run_image);
            let out = no_run.pod.run(POD_LIMIT);
            if !out.status.success() {
                return Err(format!("the Dockerfile without RUN failed:\n{}", String::from_utf8_lossy(&out.stderr)));
            }
            check_image(h, &no_run_image, no_run.workspace.path(), false)?;
            let refusal = stderr.lines().find(|l| l.contains(setting)).unwrap_or_default().trim().to_string();
            Ok(format!("RUN refused ({refusal}); without RUN built and pushed"))
        }
    }
}

#[tokio::test]
async fn pod_profiles_give_their_expected_outcomes() {
    let Some(h) = Harness::start().await else { return };
    // Written to the stderr descriptor, not `eprintln!`: the summary shows in CI logs even
    // when the test passes (libtest captures only the print macros).
    let say = |line: String| {
        let _ = writeln!(std::io::stderr(), "{line}");
    };
    let mut failed = Vec::new();
    for profile in &PROFILES {
        match run_profile(&h, profile) {
            Ok(summary) => say(format!("pod profile {}: ok: {summary}", profile.name)),
            Err(why) => {
                say(format!("pod profile {}: FAILED: {why}", profile.name));
                failed.push(profile.name);
            }
        }
    }
    say(format!("pod profiles: {} passed, {} failed", PROFILES.len() - failed.len(), failed.len()));
    assert!(failed.is_empty(), "profiles with unexpected outcomes: {failed:?}");
}

/// In BuildKit's rootless pod (/proc masked) an explicit `--isolation userns` fails at the
/// fresh `/proc`, naming both ways out; with `--no-process-sandbox` it builds.
#[tokio::test]
async fn explicit_userns_in_a_masked_proc_pod_needs_no_process_sandbox() {
    let Some(h) = Harness::start().await else { return };
    let image = h.image("pods/explicit:v1");
    let refused =
        BuildPod::with_flags(&h, "explicit-refused", buildkit_rootless(), "pods", &image, &["--isolation", "userns"]);
    let out = refused.pod.run(POD_LIMIT);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    for want in ["isolation: userns (requested)", "MountProc failed", "procMount: Unmasked", "--no-process-sandbox"] {
        assert!(stderr.contains(want), "{want}: {stderr}");
    }
    let flagged = BuildPod::with_flags(
        &h,
        "explicit-flag",
        buildkit_rootless(),
        "pods",
        &image,
        &["--isolation", "userns", "--no-process-sandbox"],
    );
    let out = flagged.pod.run(POD_LIMIT);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(isolation_name(&stderr), Some("userns, no process sandbox"), "{stderr}");
    check_image(&h, &image, flagged.workspace.path(), true).unwrap();
}

/// Why rbuild's image ships the id-map helpers with file capabilities: Debian's setuid-root
/// `newuidmap` runs with euid 0, which does not own the RUN's user namespace (uid 1000 made
/// it), and a pod has no CAP_SYS_ADMIN, so the kernel refuses the map.
#[tokio::test]
async fn setuid_helpers_cannot_map_in_buildkits_rootless_pod() {
    let Some(h) = Harness::start().await else { return };
    let built = BuildPod::new(&h, "setuid-helpers", buildkit_rootless(), "pods", &h.image("pods/setuid:v1"));
    for tool in ["newuidmap", "newgidmap"] {
        let path = built.pod.rootfs().join("usr/bin").join(tool);
        let status = std::process::Command::new("setcap").arg("-r").arg(&path).status().unwrap();
        assert!(status.success());
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o4755)).unwrap();
    }
    let out = built.pod.run(POD_LIMIT);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("write to uid_map failed") && stderr.contains("step WriteIdMap"), "{stderr}");
}

/// docs/rootless.md's "Pod profiles" table says what [`PROFILES`] expects, row for row.
#[test]
fn rootless_doc_table_matches_the_matrix() {
    let doc = std::fs::read_to_string(workspace().join("docs/rootless.md")).unwrap();
    let table = doc.split("<!-- pod-matrix -->").nth(1).expect("docs/rootless.md has a <!-- pod-matrix --> table");
    let rows: Vec<Vec<String>> = table
        .lines()
        .filter(|l| l.starts_with("| (")) // profile rows only
        .map(|l| l.trim_matches('|').split('|').map(|c| c.trim().replace('`', "")).collect())
        .collect();
    assert_eq!(rows.len(), PROFILES.len(), "{rows:?}");
    for (row, profile) in rows.iter().zip(&PROFILES) {
        assert_eq!(row[0], profile.name);
        let (isolation, outcome) = match profile.expect {
            Expect::Builds(name) => (name.to_string(), "builds and pushes".to_string()),
            Expect::RunRefused(setting) => ("none".to_string(), format!("without RUN builds; RUN refused: {setting}")),
        };
        assert_eq!((&row[2], &row[3]), (&isolation, &outcome), "row {}", profile.name);
    }
}
