//! The Argo template's steps (clone → test → build-push) run in emulated pods
//! (`rbuild_integration::pod`), not on the host: each step's securityContext (pod and
//! container level), volumes and script come from deploy/argo/cluster-workflow-template.yaml
//! ([`crate::pipeline::resolve_step`]). The workflow volume `workdir` is one host directory
//! shared by the three pods, an `emptyDir` is a fresh one, the `docker-config` secret a
//! directory holding `config.json`; Argo's script is a file run with `sh`, as Argo does.
//! Not real: Kubernetes and Argo (no cluster); the step images (`git_image`, `test_image`)
//! are busybox + git; the pods share the host's network to reach the registry on 127.0.0.1.
//! An unset seccompProfile is taken as RuntimeDefault (the kubelet's `--seccomp-default`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use rbuild_integration::pod::{Container, Pod, PodImage, PodSecurity, ProcMount, Seccomp, Volume};
use serde_json::Value;

use crate::build::Harness;
use crate::pipeline::{git_repository, named, resolve_step, ResolvedStep};
use crate::support::rbuild_bin;

/// How long one step's pod may run.
const STEP_LIMIT: Duration = Duration::from_secs(240);

/// The pod settings of a step: the template's (pod-level) securityContext, then the
/// container's over it.
fn security_of(template: &Value) -> PodSecurity {
    let (pod, container) = (&template["securityContext"], &template["script"]["securityContext"]);
    let field = |name: &str| if container[name].is_null() { &pod[name] } else { &container[name] };
    PodSecurity {
        run_as_user: field("runAsUser").as_u64().map_or(0, |u| u as u32),
        allow_privilege_escalation: field("allowPrivilegeEscalation").as_bool().unwrap_or(true),
        read_only_root_fs: field("readOnlyRootFilesystem").as_bool().unwrap_or(false),
        proc_mount: if field("procMount") == "Unmasked" { ProcMount::Unmasked } else { ProcMount::Default },
        seccomp: if field("seccompProfile")["type"] == "Unconfined" {
            Seccomp::Unconfined
        } else {
            Seccomp::RuntimeDefault
        },
        capabilities_add: field("capabilities")["add"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| c.as_str())
            .map(str::to_string)
            .collect(),
        host_users: template["hostUsers"].as_bool().unwrap_or(true),
    }
}

/// The pipeline's host side: the shared `workdir` volume and per-secret directories.
struct Workflow {
    dir: tempfile::TempDir,
}

impl Workflow {
    fn new() -> Self {
        let dir = tempfile::Builder::new().prefix("rbuild-pipeline-pods-").tempdir_in("/tmp").unwrap();
        for d in ["workdir", "docker-config", "staging"] {
            std::fs::create_dir(dir.path().join(d)).unwrap();
        }
        std::fs::write(dir.path().join("docker-config/config.json"), "{\"auths\": {}}\n").unwrap();
        Self { dir }
    }

    /// The host directory of `volume` (a template volume or the workflow's `workdir`).
    fn volume(&self, template: &Value, name: &str) -> PathBuf {
        let declared = template["volumes"].as_array().into_iter().flatten().find(|v| v["name"] == name);
        match declared {
            Some(v) if !v["secret"].is_null() => self.dir.path().join(v["secret"]["secretName"].as_str().unwrap()),
            Some(v) if !v["emptyDir"].is_null() => {
                let empty = tempfile::Builder::new().prefix("empty-").tempdir_in(self.dir.path()).unwrap().keep();
                chown(&empty, 1000);
                empty
            }
            Some(v) => panic!("volume kind of {v} is not emulated"),
            None => self.dir.path().join(name),
        }
    }

    /// Runs `step` in a pod of `image`; returns the finished step (its root, volumes, stderr).
    fn run(&self, label: &str, step: &ResolvedStep, image: PodImage) -> StepRun {
        let script = self.dir.path().join("staging").join(label);
        std::fs::create_dir(&script).unwrap();
        std::fs::write(script.join("script"), &step.script).unwrap();
        let security = security_of(&step.template);
        let mut volumes: Vec<Volume> = step.template["script"]["volumeMounts"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|m| Volume {
                host: self.volume(&step.template, m["name"].as_str().unwrap()),
                mount_path: m["mountPath"].as_str().unwrap().to_string(),
                read_only: m["readOnly"].as_bool().unwrap_or(false),
            })
            .collect();
        volumes.push(Volume { host: script, mount_path: "/argo/staging".into(), read_only: true });
        let container = Container {
            security,
            args: vec!["sh".into(), "/argo/staging/script".into()],
            env: step.env.clone().into_iter().collect(),
            cwd: step.working_dir.clone().unwrap_or_else(|| "/".into()),
            volumes: volumes.clone(),
        };
        let pod = Pod::new(label, &container, image);
        let out = pod.run(STEP_LIMIT);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(
            out.status.success(),
            "step {label} failed in its pod ({:?}):\n{}\n{stderr}",
            container.security,
            String::from_utf8_lossy(&out.stdout)
        );
        StepRun { pod, volumes, stderr }
    }
}

/// A step whose pod has finished: what Argo's wait container reads its outputs from.
struct StepRun {
    pod: Pod,
    volumes: Vec<Volume>,
    stderr: String,
}

impl StepRun {
    /// The value of `step`'s output parameter `name` (`valueFrom.path`): in the volume mounted
    /// over that path when there is one, else in the pod's root.
    fn output(&self, step: &ResolvedStep, name: &str) -> String {
        let path =
            named(&step.template["outputs"]["parameters"], name)["valueFrom"]["path"].as_str().unwrap().to_string();
        let on_volume = self.volumes.iter().find_map(|v| {
            let rest = Path::new(&path).strip_prefix(&v.mount_path).ok()?;
            Some(v.host.join(rest))
        });
        let file = on_volume.unwrap_or_else(|| self.pod.rootfs().join(path.trim_start_matches('/')));
        std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("output {name} at {path} ({}): {e}", file.display()))
    }
}

fn chown(path: &Path, id: u32) {
    let status = Command::new("chown").arg("-R").arg(format!("{id}:{id}")).arg(path).status().unwrap();
    assert!(status.success());
}

#[rstest::rstest]
#[case::commit_suffix("true", true)]
#[case::plain_tag("false", false)]
#[tokio::test]
async fn argo_steps_run_in_pods_and_push_tag_and_latest(#[case] suffix: &str, #[case] expect_suffix: bool) {
    let Some(h) = Harness::start().await else { return };
    let wf = Workflow::new();
    let source = wf.dir.path().join("app.git");
    let sha = git_repository(&source);
    chown(wf.dir.path(), 1000);
    let repo = h.image(&format!("pipeline/pods-{suffix}"));
    let arguments = BTreeMap::from([
        ("repo_url", "file:///workdir/source/app.git".to_string()),
        ("repo_name", "app".to_string()),
        ("container_image", repo.clone()),
        ("container_tag", "v1.2.3".to_string()),
        ("dockerfile", "Dockerfile".to_string()),
        ("enable_suffix_commitid", suffix.to_string()),
        ("enable_test", "true".to_string()),
        ("cache_repo", format!("{repo}/cache")),
        ("extra_args", format!("--insecure-registry {} --build-arg {}", h.ctx.registry.addr(), h.base())),
        ("test_command", "test -f Dockerfile && grep -q pipeline hello.txt".to_string()),
    ]);
    // The source repository sits inside the shared volume, where the clone pod can read it.
    std::fs::create_dir(wf.dir.path().join("workdir/source")).unwrap();
    std::fs::rename(&source, wf.dir.path().join("workdir/source/app.git")).unwrap();

    let clone = resolve_step(&arguments, "clone");
    let commit = wf.run("clone", &clone, PodImage::Tools).output(&clone, "commit");
    assert!(commit.starts_with(&sha), "clone output {commit} is not {sha}");
    wf.run("test", &resolve_step(&arguments, "test"), PodImage::Tools);
    let build = resolve_step(&arguments, "build-push-image");
    let built = wf.run("build", &build, PodImage::Rbuild(&rbuild_bin()));
    // The template's pod (uid 1000, Unconfined, /proc masked) isolates RUN in a user namespace.
    assert!(built.stderr.contains("isolation: userns"), "{}", built.stderr);

    let digest = built.output(&build, "digest");
    assert!(digest.starts_with("sha256:"), "{digest}");
    let tag = if expect_suffix { format!("v1.2.3-{sha}") } else { "v1.2.3".to_string() };
    for tag in [tag.as_str(), "latest"] {
        assert_eq!(h.digest(&format!("{repo}:{tag}")), digest, "{tag}");
    }
    let tags = h.ctx.skopeo(&["list-tags".into(), "--tls-verify=false".into(), format!("docker://{repo}/cache")]);
    let tags: Value = serde_json::from_slice(&tags.stdout).unwrap();
    assert!(
        tags["Tags"].as_array().unwrap().iter().any(|t| t.as_str().unwrap().starts_with("sha256-")),
        "no cache entries: {tags}"
    );
    let rootfs = h.unpack(&format!("{repo}:latest"));
    assert_eq!(std::fs::read_to_string(rootfs.join("app/run.txt")).unwrap(), "built by the pipeline\n");
    assert_eq!(std::fs::read_to_string(rootfs.join("app/hello.txt")).unwrap(), "hello from the pipeline repository\n");
}
