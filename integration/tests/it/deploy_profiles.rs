//! The pipeline templates per pod profile (`deploy/argo/profiles/`, `deploy/tekton/profiles/`):
//! each is `rbuild-ci` with only the build-push step's pod settings changed, meets the Pod
//! Security Standards level the docs name for it (computed here from the settings, by the PSS
//! rules for the fields the templates use), and every output a step writes is on a volume, so
//! a read-only root file system works. The README's profile table names each template with
//! its level. Whether each profile builds is the pod emulator's matrix (`pods`).

use serde_json::Value;

use crate::build::workspace;
use crate::manifests::deploy_documents;

/// A pod profile: its template's name suffix, its Pod Security level, its build user, and
/// whether the pod gets its own user namespace and a read-only root.
struct Profile {
    name: &'static str,
    suffix: &'static str,
    level: Level,
    uid: u64,
    host_users: bool,
    read_only_root: bool,
}

#[derive(Debug, PartialEq, PartialOrd, Clone, Copy)]
enum Level {
    Restricted,
    Baseline,
    Privileged,
}

impl Level {
    fn word(self) -> &'static str {
        match self {
            Level::Restricted => "restricted",
            Level::Baseline => "baseline",
            Level::Privileged => "privileged",
        }
    }
}

const PROFILES: [Profile; 5] = [
    Profile {
        name: "(a) rootless",
        suffix: "",
        level: Level::Privileged,
        uid: 1000,
        host_users: true,
        read_only_root: true,
    },
    Profile {
        name: "(b) kaniko",
        suffix: "-kaniko",
        level: Level::Baseline,
        uid: 0,
        host_users: true,
        read_only_root: false,
    },
    Profile {
        name: "(c) userns",
        suffix: "-userns",
        level: Level::Privileged,
        uid: 0,
        host_users: false,
        read_only_root: true,
    },
    Profile {
        name: "(d) userns-nonroot",
        suffix: "-userns-nonroot",
        level: Level::Privileged,
        uid: 1000,
        host_users: false,
        read_only_root: true,
    },
    Profile {
        name: "(e) restricted",
        suffix: "-restricted",
        level: Level::Restricted,
        uid: 1000,
        host_users: true,
        read_only_root: true,
    },
];

fn find<'a>(docs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name} under deploy/"))
}

fn named<'a>(list: &'a Value, name: &str) -> &'a Value {
    list.as_array().and_then(|a| a.iter().find(|t| t["name"] == name)).unwrap_or_else(|| panic!("no {name} in {list}"))
}

fn documents() -> Vec<Value> {
    deploy_documents().into_iter().map(|d| d.value).collect()
}

/// The Pod Security Standards level one container meets, from the pod's and the container's
/// securityContext (the container's fields win) and whether the pod has its own user namespace.
fn level(pod: &Value, container: &Value, host_users: bool) -> Level {
    let field = |key: &str| {
        if container[key].is_null() {
            &pod[key]
        } else {
            &container[key]
        }
    };
    let unconfined = |key: &str| field(key)["type"] == "Unconfined";
    let added = container["capabilities"]["add"].as_array().map_or(0, Vec::len);
    if container["privileged"] == true || unconfined("seccompProfile") || unconfined("appArmorProfile") || added > 0 {
        return Level::Privileged;
    }
    if container["procMount"] == "Unmasked" && host_users {
        return Level::Privileged;
    }
    let restricted = field("runAsNonRoot") == true
        && field("runAsUser").as_u64() != Some(0)
        && container["allowPrivilegeEscalation"] == false
        && container["capabilities"]["drop"].as_array().is_some_and(|d| d.iter().any(|c| c == "ALL"))
        && matches!(field("seccompProfile")["type"].as_str(), Some("RuntimeDefault" | "Localhost"))
        && container["procMount"].is_null();
    if restricted {
        Level::Restricted
    } else {
        Level::Baseline
    }
}

/// `hostUsers` of an Argo template: set through `podSpecPatch` (Argo's Template has no field).
fn argo_host_users(template: &Value) -> bool {
    let patch = template["podSpecPatch"].as_str().map(|p| serde_norway::from_str::<Value>(p).unwrap());
    patch.is_none_or(|p| p["hostUsers"] != false)
}

#[test]
fn argo_profiles_differ_from_rbuild_ci_only_in_the_build_pods_settings() {
    let docs = documents();
    let strip = |doc: &Value| {
        let mut doc = doc.clone();
        doc["metadata"]["name"] = Value::Null;
        for t in doc["spec"]["templates"].as_array_mut().unwrap().iter_mut().filter(|t| t["name"] == "build-push-image")
        {
            t["securityContext"] = Value::Null;
            t["script"]["securityContext"] = Value::Null;
            t.as_object_mut().unwrap().remove("podSpecPatch");
        }
        doc
    };
    let base = strip(find(&docs, "ClusterWorkflowTemplate", "rbuild-ci"));
    for p in &PROFILES {
        let variant = strip(find(&docs, "ClusterWorkflowTemplate", &format!("rbuild-ci{}", p.suffix)));
        assert_eq!(variant, base, "{}: only the build-push-image pod settings may differ from rbuild-ci", p.name);
    }
}

#[test]
fn tekton_profiles_differ_from_rbuild_ci_only_in_the_build_steps_settings() {
    let docs = documents();
    let strip = |doc: &Value| {
        let mut doc = doc.clone();
        doc["metadata"]["name"] = Value::Null;
        for s in doc["spec"]["steps"].as_array_mut().unwrap().iter_mut().filter(|s| s["name"] == "build-push-image") {
            s["securityContext"] = Value::Null;
        }
        doc
    };
    let base = strip(find(&docs, "Task", "rbuild-ci"));
    for p in &PROFILES {
        let variant = strip(find(&docs, "Task", &format!("rbuild-ci{}", p.suffix)));
        assert_eq!(variant, base, "{}: only the build-push-image step's securityContext may differ", p.name);
    }
}

#[test]
fn each_profile_has_its_pod_security_level_user_and_root_file_system() {
    let docs = documents();
    for p in &PROFILES {
        let name = format!("rbuild-ci{}", p.suffix);
        let templates = &find(&docs, "ClusterWorkflowTemplate", &name)["spec"]["templates"];
        let build = named(templates, "build-push-image");
        let host_users = argo_host_users(build);
        let (pod, container) = (&build["securityContext"], &build["script"]["securityContext"]);
        assert_eq!(level(pod, container, host_users), p.level, "{name} (Argo) is not Pod Security {}", p.level.word());
        assert_eq!(container["runAsUser"].as_u64(), Some(p.uid), "{name}: build user");
        assert_eq!(pod["runAsUser"].as_u64(), Some(p.uid), "{name}: the pod's user (Argo's wait container)");
        assert_eq!(host_users, p.host_users, "{name}: hostUsers");
        assert_eq!(container["readOnlyRootFilesystem"] == true, p.read_only_root, "{name}: readOnlyRootFilesystem");
        // Clone and test need no privilege: restricted in every profile.
        for step in ["git-clone", "run-tests"] {
            let t = named(templates, step);
            assert_eq!(
                level(&t["securityContext"], &t["script"]["securityContext"], true),
                Level::Restricted,
                "{name} {step}"
            );
        }
        let task = find(&docs, "Task", &name);
        for step in task["spec"]["steps"].as_array().unwrap() {
            let expected = if step["name"] == "build-push-image" { p.level } else { Level::Restricted };
            // Tekton's pod-level settings are the TaskRun's; the Task's steps carry their own.
            let got = level(&Value::Null, &step["securityContext"], p.host_users);
            assert_eq!(got, expected, "{name} (Tekton) step {}", step["name"]);
        }
    }
}

/// Every output parameter an Argo step writes, and the digest file, is under a volume mount.
#[test]
fn every_output_is_written_to_a_volume() {
    let mut checked = 0;
    for doc in deploy_documents() {
        let spec = &doc.value["spec"];
        let templates = spec["templates"].as_array().or_else(|| spec["workflowSpec"]["templates"].as_array());
        for t in templates.into_iter().flatten() {
            let container = if t["script"].is_null() { &t["container"] } else { &t["script"] };
            let mounts: Vec<&str> = container["volumeMounts"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|m| m["mountPath"].as_str())
                .collect();
            let on_volume =
                |path: &str| mounts.iter().any(|m| path.starts_with(&format!("{}/", m.trim_end_matches('/'))));
            let outputs = t["outputs"]["parameters"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|o| o["valueFrom"]["path"].as_str());
            let digest = container["env"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|e| e["name"] == "DIGEST_FILE")
                .filter_map(|e| e["value"].as_str());
            for path in outputs.chain(digest) {
                assert!(
                    on_volume(path),
                    "{} template {}: {path} is not on a volume (mounts: {mounts:?}); write outputs to an \
                     emptyDir (the templates mount `outputs` at /outputs) so the step works with \
                     readOnlyRootFilesystem: true",
                    doc.origin,
                    t["name"]
                );
                checked += 1;
            }
        }
    }
    assert!(checked >= 2 * PROFILES.len(), "only {checked} outputs found");
}

/// The README's table names every profile's templates and Pod Security level.
#[test]
fn readme_profile_table_matches_the_templates() {
    let readme = std::fs::read_to_string(workspace().join("README.md")).unwrap();
    let docs = std::fs::read_to_string(workspace().join("docs/pipeline.md")).unwrap();
    for text in [&readme, &docs] {
        for p in &PROFILES {
            let name = format!("`rbuild-ci{}`", p.suffix);
            let row = text
                .lines()
                .find(|l| l.starts_with(&format!("| {}", p.name)))
                .unwrap_or_else(|| panic!("no table row for {} in README.md / docs/pipeline.md", p.name));
            assert!(row.contains(&name), "{} row lacks {name}: {row}", p.name);
            assert!(
                row.contains(&format!("**{}**", p.level.word())),
                "{} row lacks **{}**: {row}",
                p.name,
                p.level.word()
            );
        }
    }
}
