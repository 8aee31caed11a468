//! Multi-platform images (issue 20), as the unprivileged `rbuild-test` user against the real
//! registry: `--platform linux/amd64,linux/arm64` with RUN steps (amd64 native, arm64 under
//! qemu-user registered in the RUN's own user namespace), one index under both tags read back
//! with skopeo (`--raw`, `--override-arch arm64`) and umoci; a rebuild from empty local state
//! hits the cache for both platforms with the same index digest; the Argo fan-out
//! (`deploy/argo/multi-platform-workflow-template.yaml`: two per-architecture build scripts in
//! parallel, then the merge script) gives the same index digest; and an arm64 RUN with no
//! handler and no interpreter fails with the fix named.
//! Not real here: Kubernetes (the template's scripts run on the host, as pipeline.rs does) and
//! an arm64 node (the arm64 "pod" is emulated). The base is `busybox-multi:latest` (amd64 +
//! arm64 busybox, integration/scripts/foreign-busybox.sh).

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output};

use rbuild_integration::registry::registry_required;
use serde_json::Value;

use crate::build::{chown_to_user, make_readable, ok, workspace, Harness, USER};

const TEMPLATE: &str = "deploy/argo/multi-platform-workflow-template.yaml";
const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";

/// The harness, when the two-platform base and qemu-user are here (skip locally, fail in CI).
async fn start() -> Option<Harness> {
    let h = Harness::start().await?;
    let qemu = Path::new("/usr/libexec/qemu-binfmt/aarch64-binfmt-P").exists()
        || Path::new("/usr/bin/qemu-aarch64-static").exists();
    if h.ctx.base.busybox_multi.is_none() || !qemu {
        assert!(!registry_required(), "multi-platform tests need qemu-user-static and the arm64 busybox: run integration/scripts/foreign-busybox.sh as root");
        eprintln!("skipping multi-platform tests: no arm64 busybox or qemu-user-static (integration/scripts/foreign-busybox.sh)");
        return None;
    }
    Some(h)
}

fn base(h: &Harness) -> String {
    format!("BASE={}/busybox-multi:latest", h.ctx.registry.addr())
}

/// A cache directory of its own (an empty pod).
fn fresh_state(h: &Harness, name: &str) -> std::path::PathBuf {
    let dir = h.shared.path().join(name);
    std::fs::create_dir(&dir).unwrap();
    chown_to_user(&dir);
    dir
}

/// The raw manifest `image` names, parsed.
fn raw(h: &Harness, image: &str) -> Value {
    let out =
        h.ctx.skopeo(&["inspect".into(), "--raw".into(), "--tls-verify=false".into(), format!("docker://{image}")]);
    serde_json::from_slice(&out.stdout).unwrap()
}

/// `(architecture, digest)` of each index entry, in index order.
fn entries(index: &Value) -> Vec<(String, String)> {
    index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["platform"]["architecture"].as_str().unwrap().to_owned(), m["digest"].as_str().unwrap().to_owned()))
        .collect()
}

/// One platform's rootfs, chosen by skopeo's `--override-arch`, unpacked by umoci.
fn unpack_arch(h: &Harness, image: &str, arch: &str) -> std::path::PathBuf {
    let dir = h.ctx.dir.path().join(format!("unpack-{arch}"));
    std::fs::create_dir_all(&dir).unwrap();
    let layout = format!("{}:img", dir.join("oci").display());
    h.ctx.skopeo(&[
        "copy".into(),
        "-q".into(),
        "--src-tls-verify=false".into(),
        "--override-arch".into(),
        arch.into(),
        format!("docker://{image}"),
        format!("oci:{layout}"),
    ]);
    let out = Command::new("umoci").args(["unpack", "--image", &layout]).arg(dir.join("bundle")).output().unwrap();
    assert!(out.status.success(), "umoci: {}", String::from_utf8_lossy(&out.stderr));
    dir.join("bundle/rootfs")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The cache key of the build-platform stage's RUN in each platform's `--explain-cache` lines.
fn tools_keys(out: &Output) -> Vec<String> {
    stderr(out)
        .lines()
        .filter(|l| l.contains("uname -m > /build-arch") && l.starts_with("cache: "))
        .filter_map(|l| l.split(" key ").nth(1)?.split_whitespace().next().map(str::to_owned))
        .collect()
}

#[tokio::test]
async fn issue_20_two_platform_index_under_both_tags_and_fresh_rebuild_hits_the_cache() {
    let Some(h) = start().await else { return };
    let ctx = h.context("multiplatform");
    let repo = h.image("multi/app");
    let cache_repo = h.image("multi/app/cache");
    let out_dir = fresh_state(&h, "out");
    let build = |state: &Path, explain: bool| {
        let (c, o) = (ctx.to_str().unwrap(), out_dir.join(state.file_name().unwrap()));
        let mut args = vec![
            "-c",
            c,
            "--build-arg",
            &base(&h),
            "--insecure",
            "--platform",
            "linux/amd64,linux/arm64",
            "--image",
            &repo,
            "--tag",
            "v1",
            "--commit-suffix",
            COMMIT,
            "--latest",
            "--cache-repo",
            &cache_repo,
            "--reproducible",
            "--progress",
            "plain",
            "--output-dir",
            o.to_str().unwrap(),
        ]
        .into_iter()
        .map(str::to_owned)
        .collect::<Vec<_>>();
        if explain {
            args.push("--explain-cache".into());
            args.push("--oci-layout-path".into());
            args.push(out_dir.join("layout").to_string_lossy().into_owned());
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = ok(h.build_in(state, &args));
        let summary: Value = serde_json::from_str(&std::fs::read_to_string(o.join("build.json")).unwrap()).unwrap();
        (out, summary)
    };
    let (first_out, first) = build(&fresh_state(&h, "pod1"), false);
    let digest = first["digest"].as_str().unwrap().to_owned();
    let index = raw(&h, &format!("{repo}:latest"));
    assert_eq!(index["mediaType"], "application/vnd.docker.distribution.manifest.list.v2+json", "{index}");
    let arches: Vec<String> = entries(&index).into_iter().map(|(a, _)| a).collect();
    assert_eq!(arches, ["amd64", "arm64"], "entries sorted by platform");
    for tag in ["latest", "v1-0123456"] {
        assert_eq!(h.digest(&format!("{repo}:{tag}")), digest, "{tag} names the index");
    }
    // Each tag names the index, never a single-platform image; each entry's config agrees.
    let arm = h.ctx.skopeo(&[
        "inspect".into(),
        "--tls-verify=false".into(),
        "--override-arch".into(),
        "arm64".into(),
        "--config".into(),
        format!("docker://{repo}:latest"),
    ]);
    let arm: Value = serde_json::from_slice(&arm.stdout).unwrap();
    assert_eq!(arm["architecture"], "arm64");
    let rootfs = unpack_arch(&h, &format!("{repo}:latest"), "arm64");
    assert_eq!(std::fs::read_to_string(rootfs.join("arch")).unwrap(), "linux/arm64 aarch64\n", "the RUN ran emulated");
    assert_eq!(
        std::fs::read_to_string(rootfs.join("build-arch")).unwrap(),
        "x86_64\n",
        "the BUILDPLATFORM stage ran natively"
    );
    let rootfs = unpack_arch(&h, &format!("{repo}:latest"), "amd64");
    assert_eq!(std::fs::read_to_string(rootfs.join("arch")).unwrap(), "linux/amd64 x86_64\n");
    assert!(stderr(&first_out).contains("linux/arm64 aarch64"), "{}", stderr(&first_out));
    // A fresh pod: empty local state, everything from the registry cache, same index.
    let (again_out, again) = build(&fresh_state(&h, "pod2"), true);
    assert_eq!(again["digest"], digest.as_str());
    let run_steps =
        again["steps"].as_array().unwrap().iter().filter(|s| !s["instruction"].as_str().unwrap().starts_with("FROM"));
    assert!(run_steps.clone().count() >= 6 && run_steps.clone().all(|s| s["cached"] == true), "{again}");
    let platforms: Vec<&str> =
        again["platforms"].as_array().unwrap().iter().map(|p| p["platform"].as_str().unwrap()).collect();
    assert_eq!(platforms, ["linux/amd64", "linux/arm64"]);
    // The OCI layout holds both platforms behind one index.
    let layout = format!("oci:{}", out_dir.join("layout").display());
    for arch in ["amd64", "arm64"] {
        let out =
            h.ctx.skopeo(&["inspect".into(), "--override-arch".into(), arch.into(), "--config".into(), layout.clone()]);
        let config: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(config["architecture"], arch, "{layout}");
    }
    // `FROM --platform=$BUILDPLATFORM` is one stage for both targets: one cache key.
    let keys = tools_keys(&again_out);
    assert_eq!(keys.len(), 2, "{}", stderr(&again_out));
    assert_eq!(keys[0], keys[1], "the build-platform stage has the same key for both targets");
}

/// Argo's substitution for the template's own parameters (`{{workflow.parameters.*}}`,
/// `{{inputs.parameters.*}}`); anything unresolved is an error.
fn substitute(text: &str, scope: &BTreeMap<String, String>) -> String {
    let mut out = text.to_owned();
    for (k, v) in scope {
        out = out.replace(&format!("{{{{{k}}}}}"), v);
    }
    assert!(!out.contains("{{"), "unresolved placeholder in {out}");
    out
}

/// The script and env of template `name`, resolved with `scope`.
fn script_of(doc: &Value, name: &str, scope: &BTreeMap<String, String>) -> (String, BTreeMap<String, String>) {
    let t = doc["spec"]["templates"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == name)
        .unwrap_or_else(|| panic!("no template {name}"));
    let env = t["script"]["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["name"].as_str().unwrap().to_owned(), substitute(e["value"].as_str().unwrap(), scope)))
        .collect();
    (substitute(t["script"]["source"].as_str().unwrap(), scope), env)
}

/// Runs a template script as the test user (Argo's `command: [sh]` + source file).
fn run_script(h: &Harness, name: &str, script: &str, env: &BTreeMap<String, String>) -> Command {
    let file = h.shared.path().join(format!("{name}.sh"));
    std::fs::write(&file, script).unwrap();
    make_readable(&file);
    let mut cmd = Command::new("setpriv");
    cmd.args(["--reuid", USER, "--regid", USER, "--init-groups", "sh"]).arg(&file).env_clear().envs(env);
    cmd
}

#[tokio::test]
async fn issue_20_argo_fan_out_and_merge_give_the_one_command_index() {
    let Some(h) = start().await else { return };
    let ctx = h.context("multiplatform");
    let repo = h.image("fan/app");
    let cache_repo = h.image("fan/app/cache");
    // The one-command build, for the reference digest.
    let out_dir = fresh_state(&h, "out");
    let digest_file = out_dir.join("one-command");
    let c = ctx.to_str().unwrap();
    ok(h.build_in(
        &fresh_state(&h, "one"),
        &[
            "-c",
            c,
            "--build-arg",
            &base(&h),
            "--insecure",
            "--platform",
            "linux/arm64,linux/amd64",
            "--image",
            &repo,
            "--tag",
            "one",
            "--cache-repo",
            &cache_repo,
            "--reproducible",
            "--digest-file",
            digest_file.to_str().unwrap(),
        ],
    ));
    let one_command = std::fs::read_to_string(&digest_file).unwrap();
    let doc: Value = serde_norway::from_str(&std::fs::read_to_string(workspace().join(TEMPLATE)).unwrap()).unwrap();
    let mut scope: BTreeMap<String, String> = [
        ("container_image", repo.clone()),
        ("container_tag", "v2".into()),
        ("dockerfile", "Dockerfile".into()),
        ("cache_repo", cache_repo.clone()),
        ("enable_suffix_commitid", "true".into()),
        ("required_platforms", "linux/amd64,linux/arm64".into()),
        (
            "extra_args",
            format!("--insecure-registry {} --build-arg {} --reproducible", h.ctx.registry.addr(), base(&h)),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (format!("workflow.parameters.{k}"), v))
    .collect();
    let path = format!("{}:/usr/bin:/bin", h.shared.path().display());
    // Two pods at once, each with empty local state; arm64 is emulated here.
    let children: Vec<_> = ["amd64", "arm64"]
        .iter()
        .map(|arch| {
            scope.insert("inputs.parameters.arch".into(), (*arch).into());
            let (script, mut env) = script_of(&doc, "build-arch", &scope);
            let state = fresh_state(&h, &format!("pod-{arch}"));
            env.insert("WORKDIR".into(), c.into());
            env.insert("IMAGE_FILE".into(), out_dir.join(format!("image-{arch}")).to_string_lossy().into_owned());
            env.insert("DOCKER_CONFIG".into(), state.join("docker").to_string_lossy().into_owned());
            env.insert("RBUILD_CACHE_DIR".into(), state.to_string_lossy().into_owned());
            env.insert("HOME".into(), state.to_string_lossy().into_owned());
            env.insert("PATH".into(), path.clone());
            run_script(&h, &format!("build-{arch}"), &script, &env).spawn().unwrap()
        })
        .collect();
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "build-arch script failed:\n{}", stderr(&out));
    }
    let images: Vec<String> = ["amd64", "arm64"]
        .iter()
        .map(|a| std::fs::read_to_string(out_dir.join(format!("image-{a}"))).unwrap())
        .collect();
    // The merge refuses to tag an index that lacks a platform.
    let mut merge = |images: &[String], name: &str| {
        scope.insert("inputs.parameters.images".into(), serde_json::to_string(images).unwrap());
        scope.insert("inputs.parameters.commit".into(), COMMIT.into());
        let (script, mut env) = script_of(&doc, "merge-index", &scope);
        let state = fresh_state(&h, name);
        env.insert("DIGEST_FILE".into(), out_dir.join(name).to_string_lossy().into_owned());
        env.insert("DOCKER_CONFIG".into(), state.join("docker").to_string_lossy().into_owned());
        env.insert("RBUILD_CACHE_DIR".into(), state.to_string_lossy().into_owned());
        env.insert("PATH".into(), path.clone());
        run_script(&h, name, &script, &env).output().unwrap()
    };
    let partial = merge(&images[..1], "merge-partial");
    assert!(!partial.status.success(), "merged without arm64");
    assert!(stderr(&partial).contains("lacks platform(s) linux/arm64"), "{}", stderr(&partial));
    let missing = Command::new("skopeo")
        .args(["inspect", "--raw", "--tls-verify=false", &format!("docker://{repo}:latest")])
        .output()
        .unwrap();
    assert!(!missing.status.success(), "a tag moved before every platform was in");
    let out = merge(&images, "merge");
    assert!(out.status.success(), "merge-index script failed:\n{}", stderr(&out));
    let merged = std::fs::read_to_string(out_dir.join("merge")).unwrap();
    assert_eq!(merged, one_command, "fan-out + merge gives the one-command index");
    for tag in ["latest", "v2-0123456"] {
        assert_eq!(h.digest(&format!("{repo}:{tag}")), merged, "{tag}");
    }
    let arches: Vec<String> = entries(&raw(&h, &format!("{repo}:latest"))).into_iter().map(|(a, _)| a).collect();
    assert_eq!(arches, ["amd64", "arm64"]);
}

/// No host handler (this test points rbuild at an empty binfmt_misc directory; the host here
/// has none registered anyway) and no interpreter (`RBUILD_QEMU_PATH` empty): the arm64 RUN
/// is not attempted (so no `Exec format error`) and the error names the platform, what is
/// missing and the fixes. The host's binfmt_misc state is never touched.
#[tokio::test]
async fn issue_20_foreign_run_without_a_handler_names_the_fix() {
    let Some(h) = start().await else { return };
    let ctx = h.context("multiplatform");
    let no_binfmt = h.shared.path().join("no-binfmt");
    std::fs::create_dir(&no_binfmt).unwrap();
    let repo = h.image("noemu/app");
    let state = fresh_state(&h, "noemu");
    let c = ctx.to_str().unwrap();
    let mut cmd = h.build_command(
        USER,
        &state,
        &[
            "-c",
            c,
            "--build-arg",
            &base(&h),
            "--insecure",
            "--platform",
            "linux/amd64,linux/arm64",
            "--destination",
            &format!("{repo}:latest"),
        ],
    );
    let out = cmd.env("RBUILD_QEMU_PATH", "").env("RBUILD_BINFMT_MISC", &no_binfmt).output().unwrap();
    let err = stderr(&out);
    assert!(!out.status.success(), "{err}");
    for needle in [
        "linux/arm64",
        "no binfmt_misc handler for aarch64",
        "qemu-aarch64-static",
        "apt-get install qemu-user-static",
        "native linux/arm64 node",
        "line 10",
    ] {
        assert!(err.contains(needle), "missing {needle:?} in:\n{err}");
    }
    assert!(!err.contains("Exec format error"), "{err}");
    let tag = Command::new("skopeo")
        .args(["inspect", "--raw", "--tls-verify=false", &format!("docker://{repo}:latest")])
        .output()
        .unwrap();
    assert!(!tag.status.success(), "a failed multi-platform build moved the tag");
}
