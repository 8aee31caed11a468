//! `deploy/`: the Argo ClusterWorkflowTemplate and CronWorkflow and the Tekton Task.
//! Every file parses and has the structure a cluster needs (apiVersion, kind, the pipeline's
//! parameters, the DAG order and `depends`, uid 1000 with seccomp `Unconfined`, the
//! `docker-config` secret at `DOCKER_CONFIG`, the digest output). Then the build-push step's
//! script and environment are taken out of the template, placeholders resolved the way Argo
//! does (workflow arguments → the DAG task's arguments → `{{inputs.parameters.*}}`), and the
//! script runs as the unprivileged test user against the real registry on a test git
//! repository; skopeo checks both pushed tags and the digest output.
//! Not real here: Kubernetes itself (no cluster); the pod's mount paths (`WORKDIR`,
//! `DIGEST_FILE`, `DOCKER_CONFIG`) point at temp dirs instead.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use serde_json::Value;

use crate::build::workspace;

/// The parameters the issue fixes for every form of the pipeline.
const PARAMETERS: [&str; 9] = [
    "repo_url",
    "repo_name",
    "target_branch",
    "container_image",
    "container_tag",
    "dockerfile",
    "enable_suffix_commitid",
    "enable_test",
    "cache_repo",
];

pub(crate) const ARGO_TEMPLATE: &str = "deploy/argo/cluster-workflow-template.yaml";
const ARGO_CRON: &str = "deploy/argo/cron-cache-warm.yaml";
const TEKTON_TASK: &str = "deploy/tekton/task.yaml";

pub(crate) fn load(path: &str) -> Value {
    let text = std::fs::read_to_string(workspace().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_norway::from_str(&text).unwrap_or_else(|e| panic!("{path} does not parse: {e}"))
}

fn names(list: &Value) -> Vec<&str> {
    list.as_array().map(|a| a.iter().filter_map(|p| p["name"].as_str()).collect()).unwrap_or_default()
}

pub(crate) fn named<'a>(list: &'a Value, name: &str) -> &'a Value {
    list.as_array()
        .and_then(|a| a.iter().find(|t| t["name"] == name))
        .unwrap_or_else(|| panic!("no entry named {name} in {list}"))
}

/// A container's `env` as a map (values as written, placeholders unresolved).
fn env_of(container: &Value) -> BTreeMap<String, String> {
    container["env"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| (e["name"].as_str().unwrap().to_string(), e["value"].as_str().unwrap_or_default().to_string()))
        .collect()
}

/// Asserts the container runs as uid 1000 with seccomp and AppArmor `Unconfined`.
fn assert_rootless_security(container: &Value, what: &str) {
    let sc = &container["securityContext"];
    assert_eq!(sc["runAsUser"], 1000, "{what}: {sc}");
    assert_eq!(sc["runAsNonRoot"], true, "{what}: {sc}");
    assert_eq!(sc["allowPrivilegeEscalation"], true, "{what}: newuidmap is setuid: {sc}");
    assert_eq!(sc["seccompProfile"]["type"], "Unconfined", "{what}: {sc}");
    assert_eq!(sc["appArmorProfile"]["type"], "Unconfined", "{what}: {sc}");
}

#[rstest::rstest]
#[case(ARGO_TEMPLATE, "argoproj.io/v1alpha1", "ClusterWorkflowTemplate")]
#[case(ARGO_CRON, "argoproj.io/v1alpha1", "CronWorkflow")]
#[case(TEKTON_TASK, "tekton.dev/v1", "Task")]
fn manifests_parse_with_api_version_and_kind(#[case] path: &str, #[case] api_version: &str, #[case] kind: &str) {
    let doc = load(path);
    assert_eq!(doc["apiVersion"], api_version, "{path}");
    assert_eq!(doc["kind"], kind, "{path}");
    assert!(doc["metadata"]["name"].as_str().is_some_and(|n| !n.is_empty()), "{path}: metadata.name");
}

#[test]
fn argo_template_runs_clone_test_build_in_order_as_uid_1000() {
    let doc = load(ARGO_TEMPLATE);
    let spec = &doc["spec"];
    let declared = names(&spec["arguments"]["parameters"]);
    for p in PARAMETERS {
        assert!(declared.contains(&p), "workflow parameter {p} missing: {declared:?}");
    }
    for tag in placeholders(&serde_json::to_string(spec).unwrap()) {
        if let Some(name) = tag.strip_prefix("workflow.parameters.") {
            assert!(declared.contains(&name), "{{{{{tag}}}}} used but not declared");
        }
    }
    let templates = &spec["templates"];
    let entry = named(templates, spec["entrypoint"].as_str().unwrap());
    let tasks = &entry["dag"]["tasks"];
    assert_eq!(names(tasks), ["clone", "test", "build-push-image"]);
    assert!(named(tasks, "clone")["depends"].is_null());
    assert_eq!(named(tasks, "test")["depends"], "clone");
    assert_eq!(named(tasks, "test")["when"], "'{{workflow.parameters.enable_test}}' == 'true'");
    // A skipped test step (enable_test=false) must not block the build.
    assert_eq!(named(tasks, "build-push-image")["depends"], "clone && (test.Succeeded || test.Skipped)");
    for task in tasks.as_array().unwrap() {
        named(templates, task["template"].as_str().unwrap());
    }
    assert_eq!(
        named(&entry["outputs"]["parameters"], "image-digest")["valueFrom"]["parameter"],
        "{{tasks.build-push-image.outputs.parameters.digest}}"
    );

    let build = named(templates, "build-push-image");
    assert_eq!(build["securityContext"]["runAsUser"], 1000);
    let script = &build["script"];
    assert_rootless_security(script, "build-push-image");
    let env = env_of(script);
    let docker_config = env.get("DOCKER_CONFIG").expect("DOCKER_CONFIG env");
    let mount = named(&script["volumeMounts"], "docker-config");
    assert_eq!(mount["mountPath"].as_str(), Some(docker_config.as_str()));
    assert_eq!(mount["readOnly"], true);
    let secret = &named(&build["volumes"], "docker-config")["secret"];
    assert_eq!(secret["secretName"], "docker-config");
    assert_eq!(secret["items"][0], serde_json::json!({"key": ".dockerconfigjson", "path": "config.json"}));
    let digest = named(&build["outputs"]["parameters"], "digest");
    assert_eq!(digest["valueFrom"]["path"].as_str(), env.get("DIGEST_FILE").map(String::as_str));
    // Every input the script's environment uses is declared, and every declared input is passed.
    let inputs = names(&build["inputs"]["parameters"]);
    for value in env.values() {
        for tag in placeholders(value) {
            let name = tag.strip_prefix("inputs.parameters.").unwrap_or_else(|| panic!("{tag}: not an input"));
            assert!(inputs.contains(&name), "{name} used but not declared");
        }
    }
    let passed = names(&named(tasks, "build-push-image")["arguments"]["parameters"]);
    assert_eq!(passed, inputs, "the DAG task passes exactly the template's inputs");
}

#[test]
fn cron_workflow_warms_the_main_branch_cache() {
    let doc = load(ARGO_CRON);
    let spec = &doc["spec"];
    assert!(spec["schedules"][0].as_str().is_some_and(|s| s.split_whitespace().count() == 5), "{}", spec["schedules"]);
    assert_eq!(spec["concurrencyPolicy"], "Forbid");
    let wf = &spec["workflowSpec"];
    let params = &wf["arguments"]["parameters"];
    assert_eq!(named(params, "target_branch")["value"], "main");
    assert!(names(params).contains(&"cache_repo"));
    let tasks = &named(&wf["templates"], wf["entrypoint"].as_str().unwrap())["dag"]["tasks"];
    assert_eq!(names(tasks), ["clone", "warm-cache"]);
    assert_eq!(named(tasks, "warm-cache")["depends"], "clone");
    // The clone step is the ClusterWorkflowTemplate's own.
    let template_ref = &named(tasks, "clone")["templateRef"];
    let argo = load(ARGO_TEMPLATE);
    assert_eq!(template_ref["name"], argo["metadata"]["name"]);
    assert_eq!(template_ref["clusterScope"], true);
    named(&argo["spec"]["templates"], template_ref["template"].as_str().unwrap());
    // Every workflow parameter the borrowed clone template and the warm step use is declared.
    let used = serde_json::to_string(&named(&argo["spec"]["templates"], "git-clone")).unwrap()
        + &serde_json::to_string(wf).unwrap();
    for tag in placeholders(&used) {
        if let Some(name) = tag.strip_prefix("workflow.parameters.") {
            assert!(names(params).contains(&name), "cron workflow lacks parameter {name}");
        }
    }
    let warm = &named(&wf["templates"], "warm-cache")["script"];
    assert_rootless_security(warm, "warm-cache");
    assert!(warm["source"].as_str().unwrap().contains("rbuild build --cache-only --cache-repo \"$CACHE_REPO\""));
}

#[test]
fn tekton_task_has_the_same_parameters_and_runs_the_argo_script() {
    let doc = load(TEKTON_TASK);
    let spec = &doc["spec"];
    let declared = names(&spec["params"]);
    for p in PARAMETERS {
        assert!(declared.contains(&p), "param {p} missing: {declared:?}");
    }
    let steps = &spec["steps"];
    assert_eq!(names(steps), ["clone", "test", "build-push-image"]);
    let build = named(steps, "build-push-image");
    assert_rootless_security(build, "tekton build-push-image");
    let argo = load(ARGO_TEMPLATE);
    let argo_build = &named(&argo["spec"]["templates"], "build-push-image")["script"];
    assert_eq!(build["script"], argo_build["source"], "one build-push script for Argo and Tekton");
    let env = env_of(build);
    let argo_env = env_of(argo_build);
    assert!(env.keys().eq(argo_env.keys()), "the script sees the same variables: {env:?} {argo_env:?}");
    assert_eq!(env["DIGEST_FILE"], "$(results.IMAGE_DIGEST.path)");
    assert_eq!(names(&spec["results"]), ["IMAGE_DIGEST"]);
    let config = named(&spec["workspaces"], "docker-config");
    assert_eq!(config["mountPath"].as_str(), Some(env["DOCKER_CONFIG"].as_str()));
}

/// The `{{...}}` tags in `text`, trimmed as Argo trims them.
fn placeholders(text: &str) -> Vec<&str> {
    text.split("{{").skip(1).filter_map(|s| s.split_once("}}").map(|(tag, _)| tag.trim())).collect()
}

/// Argo's simple template substitution: `{{ tag }}` from `scope`; an unresolved
/// `inputs.`/`workflow.parameters.` tag is an error, as in Argo.
fn substitute(text: &str, scope: &BTreeMap<String, String>) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        let (before, after) = rest.split_at(start);
        out.push_str(before);
        let end = after.find("}}").unwrap_or_else(|| panic!("unterminated tag in {text}"));
        let tag = after[2..end].trim();
        match scope.get(tag) {
            Some(value) => out.push_str(value),
            None if tag.starts_with("inputs.") || tag.starts_with("workflow.parameters.") => {
                panic!("failed to resolve {{{{{tag}}}}}")
            }
            None => out.push_str(&after[..end + 2]),
        }
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    out
}

/// One step of the Argo template resolved as Argo would for `arguments` (workflow
/// parameters): its template (for securityContext, volumes, outputs) and its script,
/// environment and working directory with every `{{...}}` substituted.
pub(crate) struct ResolvedStep {
    pub(crate) template: Value,
    pub(crate) script: String,
    pub(crate) env: BTreeMap<String, String>,
    pub(crate) working_dir: Option<String>,
}

/// Resolves the DAG task `task` of the template's entrypoint: workflow arguments → the task's
/// arguments → `{{inputs.parameters.*}}`.
pub(crate) fn resolve_step(arguments: &BTreeMap<&str, String>, task: &str) -> ResolvedStep {
    let doc = load(ARGO_TEMPLATE);
    let spec = &doc["spec"];
    let mut workflow = BTreeMap::new();
    for p in spec["arguments"]["parameters"].as_array().unwrap() {
        let name = p["name"].as_str().unwrap();
        let value = arguments.get(name).cloned().or_else(|| p["value"].as_str().map(str::to_string));
        workflow
            .insert(format!("workflow.parameters.{name}"), value.unwrap_or_else(|| panic!("argument {name} missing")));
    }
    let templates = &spec["templates"];
    let task = named(&named(templates, spec["entrypoint"].as_str().unwrap())["dag"]["tasks"], task);
    let template = named(templates, task["template"].as_str().unwrap());
    let mut inputs = BTreeMap::new();
    for p in template["inputs"]["parameters"].as_array().into_iter().flatten() {
        let name = p["name"].as_str().unwrap();
        let passed = task["arguments"]["parameters"].as_array().into_iter().flatten().find(|a| a["name"] == name);
        let value = match passed {
            Some(a) => substitute(a["value"].as_str().unwrap(), &workflow),
            None => p["value"].as_str().unwrap_or_else(|| panic!("input {name} has no value")).to_string(),
        };
        inputs.insert(format!("inputs.parameters.{name}"), value);
    }
    inputs.extend(workflow);
    let script = substitute(template["script"]["source"].as_str().unwrap(), &inputs);
    let env = env_of(&template["script"]).into_iter().map(|(k, v)| (k, substitute(&v, &inputs))).collect();
    let working_dir = template["script"]["workingDir"].as_str().map(|w| substitute(w, &inputs));
    ResolvedStep { template: template.clone(), script, env, working_dir }
}

/// A git repository holding `testdata/pipeline/app`, with one commit; returns its short sha.
pub(crate) fn git_repository(dir: &Path) -> String {
    crate::build::copy_tree(&workspace().join("testdata/pipeline/app"), dir);
    let git = |args: &[&str]| {
        let out = Command::new("git").arg("-C").arg(dir).args(args).output().unwrap();
        assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    };
    git(&["init", "-q", "-b", "main"]);
    git(&["add", "."]);
    git(&["-c", "user.name=t", "-c", "user.email=t@e", "commit", "-q", "-m", "app"]);
    git(&["rev-parse", "--short=7", "HEAD"]).trim().to_string()
}

/// The project's own `Dockerfile` is one rbuild plans (the full self-build, a Rust release
/// build inside RUN, is too slow for CI: `integration/scripts/self-build.sh`, docs/decisions.md).
#[test]
fn own_dockerfile_plans_as_builder_plus_rootless_runtime() {
    let out = Command::new(crate::support::rbuild_bin())
        .args([
            "plan",
            "--build-arg",
            "RUST_IMAGE=registry.example/rust:1",
            "--build-arg",
            "RUNTIME_IMAGE=registry.example/debian:12",
        ])
        .arg(workspace())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let plan: Value = serde_json::from_slice(&out.stdout).unwrap();
    let stages = plan["stages"].as_array().unwrap();
    let bases: Vec<&str> = stages.iter().map(|s| s["base"]["reference"].as_str().unwrap()).collect();
    assert_eq!(bases, ["registry.example/rust:1", "registry.example/debian:12"]);
    let runtime: Vec<&str> =
        stages[1]["steps"].as_array().unwrap().iter().map(|s| s["original"].as_str().unwrap()).collect();
    let has = |prefix: &str| runtime.iter().any(|s| s.starts_with(prefix));
    for want in [
        "ENV DOCKER_CONFIG=/home/rbuild/.docker",
        "USER 1000",
        "ENTRYPOINT [\"rbuild\"]",
        "COPY --from=builder --chown=1000:1000 /out/home/rbuild /home/rbuild",
    ] {
        assert!(has(want), "{want} missing: {runtime:#?}");
    }
    let script = runtime.join("\n");
    for want in [
        "uidmap ca-certificates",
        "chmod u-s /usr/bin/newuidmap /usr/bin/newgidmap",
        "setcap cap_setuid+ep /usr/bin/newuidmap",
        "setcap cap_setgid+ep /usr/bin/newgidmap",
        "rbuild:100000:65536' > /etc/subuid",
        "/etc/rbuild/own-image",
    ] {
        assert!(script.contains(want), "{want} missing: {script}");
    }
}
