//! Every manifest under `deploy/` (every file, every YAML document, found by walking the
//! directory, so new templates are checked without editing this file) validated as a cluster
//! would: against the published schemas in `../shared/schemas` (Argo v4.1.2 and v3.7.9 for
//! `argoproj.io` kinds, Tekton v1 for `tekton.dev/v1`) with unknown fields rejected as
//! `kubectl apply --validate=strict` rejects them, then against the rules Argo and Tekton apply
//! at submission that a schema cannot express (`manifest_rules`). The negative cases mutate a
//! valid manifest and expect the named error, so the checks themselves are tested.
//! Not real here: a Kubernetes API server and the controllers; the schemas are theirs.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::build::workspace;
use crate::manifest_rules;

/// One YAML document of a file under `deploy/`.
pub(crate) struct Document {
    /// `deploy/…` path and the document's index in the file, for messages.
    pub(crate) origin: String,
    pub(crate) value: Value,
}

/// Every document of every `*.yaml`/`*.yml` file under `deploy/`, in path order.
pub(crate) fn deploy_documents() -> Vec<Document> {
    let mut files = Vec::new();
    collect_yaml(&workspace().join("deploy"), &mut files);
    files.sort();
    assert!(!files.is_empty(), "no manifests under deploy/");
    let mut docs = Vec::new();
    for file in files {
        let rel = file.strip_prefix(workspace()).unwrap().display().to_string();
        let text = std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{rel}: {e}"));
        for (index, de) in serde_norway::Deserializer::from_str(&text).enumerate() {
            let value = Value::deserialize(de).unwrap_or_else(|e| panic!("{rel} document {index}: {e}"));
            if !value.is_null() {
                docs.push(Document { origin: format!("{rel}#{index}"), value });
            }
        }
    }
    docs
}

fn collect_yaml(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        if path.is_dir() {
            collect_yaml(&path, out);
        } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
            out.push(path);
        }
    }
}

/// `../shared/schemas` beside the checkout (CI), `$RBUILD_SCHEMAS_DIR`, or, in a git worktree,
/// beside the main checkout. Missing schemas fail the test: they are the point of it.
fn schemas_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("RBUILD_SCHEMAS_DIR") {
        return PathBuf::from(dir);
    }
    let mut candidates = vec![workspace().join("../shared/schemas")];
    // A worktree's `.git` is a file `gitdir: <main>/.git/worktrees/<name>`.
    if let Ok(text) = std::fs::read_to_string(workspace().join(".git")) {
        if let Some(gitdir) = text.trim().strip_prefix("gitdir: ") {
            candidates.push(Path::new(gitdir).join("../../../../shared/schemas"));
        }
    }
    candidates.into_iter().find(|d| d.is_dir()).unwrap_or_else(|| {
        panic!("../shared/schemas not found beside {}; set RBUILD_SCHEMAS_DIR", workspace().display())
    })
}

fn read_schema(name: &str) -> Value {
    let path = schemas_dir().join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Closes every object definition that lists its `properties` and leaves
/// `additionalProperties` unset, as strict field validation treats Kubernetes objects: an
/// unknown field is an error. Maps (`additionalProperties: {…}`) and free-form objects (no
/// `properties`, e.g. Argo's `Item` or `Plugin`) stay open.
fn strict(definitions: &mut Map<String, Value>) {
    for schema in definitions.values_mut() {
        if let Some(obj) = schema.as_object_mut() {
            if obj.contains_key("properties") && !obj.contains_key("additionalProperties") {
                obj.insert("additionalProperties".into(), Value::Bool(false));
            }
        }
    }
}

/// The published schemas, strict, one validator per (schema, kind).
pub(crate) struct Schemas {
    argo: Vec<(&'static str, Value)>,
    tekton: Value,
}

/// The Argo releases checked: a template must work on both.
const ARGO_FILES: [(&str, &str); 2] =
    [("Argo v4.1.2", "argo-workflows-v4.1.2.schema.json"), ("Argo v3.7.9", "argo-workflows-v3.7.9.schema.json")];

impl Schemas {
    pub(crate) fn load() -> Self {
        let argo = ARGO_FILES
            .iter()
            .map(|(label, file)| {
                let mut schema = read_schema(file);
                strict(schema["definitions"].as_object_mut().unwrap());
                (*label, schema["definitions"].take())
            })
            .collect();
        Self { argo, tekton: tekton_definitions(&read_schema(ARGO_FILES[0].1)) }
    }

    /// Schema errors of `doc` (empty: valid), each prefixed with the schema that reports it.
    pub(crate) fn errors(&self, doc: &Value) -> Vec<String> {
        let api = doc["apiVersion"].as_str().unwrap_or_default();
        let kind = doc["kind"].as_str().unwrap_or_default();
        match api {
            "argoproj.io/v1alpha1" => self
                .argo
                .iter()
                .flat_map(|(label, defs)| check(label, defs, &format!("io.argoproj.workflow.v1alpha1.{kind}"), doc))
                .collect(),
            "tekton.dev/v1" => check("Tekton v1", &self.tekton, &format!("v1.{kind}"), doc),
            _ => vec![format!(
                "apiVersion {api:?} kind {kind:?}: no schema for it (argoproj.io/v1alpha1, tekton.dev/v1)"
            )],
        }
    }
}

fn check(label: &str, definitions: &Value, definition: &str, doc: &Value) -> Vec<String> {
    if definitions.get(definition).is_none() {
        return vec![format!("{label}: no definition {definition}")];
    }
    let schema = json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$ref": format!("#/definitions/{definition}"),
        "definitions": definitions,
    });
    let validator = jsonschema::validator_for(&schema).unwrap_or_else(|e| panic!("{label} schema: {e}"));
    validator.iter_errors(doc).map(|e| format!("{label}: {}: {e}", e.instance_path())).collect()
}

/// Tekton's swagger with the Kubernetes types it references but does not include taken from
/// Argo's schema (`v1.Container` → `io.k8s.api.core.v1.Container`, `v1.ObjectMeta` →
/// `io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta`), all strict. `v1.ParamValue` is the Go
/// struct in the swagger; its JSON form (custom unmarshalling) is a string, a list or a map.
/// Types neither schema has (status-only container states) accept anything.
fn tekton_definitions(argo: &Value) -> Value {
    let tekton = read_schema("tekton-pipeline-v1.swagger.json");
    let mut defs = argo["definitions"].as_object().unwrap().clone();
    let own = tekton["definitions"].as_object().unwrap();
    let text = serde_json::to_string(&tekton["definitions"]).unwrap();
    let mut rewritten = text.clone();
    for reference in text.split("\"$ref\":\"#/definitions/").skip(1).filter_map(|s| s.split('"').next()) {
        if own.contains_key(reference) {
            continue;
        }
        let target = match reference.strip_prefix("v1.") {
            Some(name @ ("ObjectMeta" | "ListMeta" | "Time")) => {
                format!("io.k8s.apimachinery.pkg.apis.meta.v1.{name}")
            }
            Some("Duration") => "tekton.Duration".to_string(),
            Some(name) => format!("io.k8s.api.core.v1.{name}"),
            None => "tekton.Any".to_string(),
        };
        let target =
            if defs.contains_key(&target) || target.starts_with("tekton.") { target } else { "tekton.Any".to_string() };
        rewritten =
            rewritten.replace(&format!("\"#/definitions/{reference}\""), &format!("\"#/definitions/{target}\""));
    }
    let own: Map<String, Value> = serde_json::from_str(&rewritten).unwrap();
    defs.extend(own);
    defs.insert("tekton.Duration".into(), json!({"type": "string"}));
    defs.insert("tekton.Any".into(), json!({}));
    defs.insert("v1.ParamValue".into(), json!({"type": ["string", "array", "object"]}));
    strict(&mut defs);
    Value::Object(defs)
}

/// All problems of one document: schema errors, then the semantic rules (which see every
/// document, for `templateRef`s to other files).
fn problems(schemas: &Schemas, doc: &Value, all: &[Value]) -> Vec<String> {
    let mut out = schemas.errors(doc);
    out.extend(manifest_rules::check(doc, all));
    out
}

#[test]
fn every_deploy_manifest_is_valid_for_argo_4_and_3_and_tekton_strictly() {
    let schemas = Schemas::load();
    let docs = deploy_documents();
    let all: Vec<Value> = docs.iter().map(|d| d.value.clone()).collect();
    let mut report = Vec::new();
    for doc in &docs {
        for problem in problems(&schemas, &doc.value, &all) {
            report.push(format!("{}: {problem}", doc.origin));
        }
    }
    assert!(report.is_empty(), "{} problems:\n{}", report.len(), report.join("\n"));
    let kinds: Vec<&str> = all.iter().filter_map(|d| d["kind"].as_str()).collect();
    for kind in ["ClusterWorkflowTemplate", "CronWorkflow", "Task"] {
        assert!(kinds.contains(&kind), "no {kind} under deploy/: {kinds:?}");
    }
}

type Mutation = fn(&mut Value);

/// A valid document of `deploy/` with `kind`, mutated, must be rejected with `expected`.
#[rstest::rstest]
#[case::unknown_container_field("ClusterWorkflowTemplate", |d: &mut Value| d["spec"]["templates"][1]["script"]["securityContext"]["hostUsers"] = json!(false), "hostUsers")]
#[case::unknown_spec_field("ClusterWorkflowTemplate", |d: &mut Value| d["spec"]["entryPoint"] = json!("ci"), "entryPoint")]
#[case::wrong_type("ClusterWorkflowTemplate", |d: &mut Value| d["spec"]["templates"][1]["securityContext"]["runAsUser"] = json!("1000"), "runAsUser")]
#[case::cron_schedule_string_argo4("CronWorkflow", |d: &mut Value| { d["spec"]["schedule"] = json!("0 2 * * *"); d["spec"].as_object_mut().unwrap().remove("schedules"); }, "Argo v4.1.2")]
#[case::cron_no_schedules("CronWorkflow", |d: &mut Value| { d["spec"].as_object_mut().unwrap().remove("schedules"); }, "schedules")]
#[case::cron_bad_schedule("CronWorkflow", |d: &mut Value| d["spec"]["schedules"] = json!(["0 25 * * *"]), "0 25 * * *")]
#[case::cron_parameter_without_value("CronWorkflow", |d: &mut Value| { d["spec"]["workflowSpec"]["arguments"]["parameters"][0].as_object_mut().unwrap().remove("value"); }, ".value is required")]
#[case::cron_concurrency("CronWorkflow", |d: &mut Value| d["spec"]["concurrencyPolicy"] = json!("Never"), "concurrencyPolicy")]
#[case::undeclared_input("ClusterWorkflowTemplate", |d: &mut Value| d["spec"]["templates"][0]["dag"]["tasks"][2]["arguments"]["parameters"][0]["value"] = json!("{{inputs.parameters.nope}}"), "{{inputs.parameters.nope}}")]
#[case::undeclared_workflow_parameter("ClusterWorkflowTemplate", |d: &mut Value| d["spec"]["templates"][1]["script"]["image"] = json!("{{workflow.parameters.nope}}"), "{{workflow.parameters.nope}}")]
#[case::missing_template("ClusterWorkflowTemplate", |d: &mut Value| d["spec"]["templates"][0]["dag"]["tasks"][0]["template"] = json!("nope"), "template name 'nope' undefined")]
#[case::missing_template_ref("CronWorkflow", |d: &mut Value| d["spec"]["workflowSpec"]["templates"][0]["dag"]["tasks"][0]["templateRef"]["template"] = json!("nope"), "rbuild-ci.nope not found")]
#[case::missing_dependency("ClusterWorkflowTemplate", |d: &mut Value| d["spec"]["templates"][0]["dag"]["tasks"][1]["depends"] = json!("clone && nope.Succeeded"), "'nope'")]
#[case::input_not_supplied("ClusterWorkflowTemplate", |d: &mut Value| { d["spec"]["templates"][0]["dag"]["tasks"][2]["arguments"]["parameters"].as_array_mut().unwrap().remove(0); }, "was not supplied")]
#[case::unknown_task_output("ClusterWorkflowTemplate", |d: &mut Value| d["spec"]["templates"][0]["outputs"]["parameters"][0]["valueFrom"]["parameter"] = json!("{{tasks.build-push-image.outputs.parameters.nope}}"), "outputs.parameters.nope")]
#[case::undeclared_volume("ClusterWorkflowTemplate", |d: &mut Value| d["spec"]["templates"][3]["script"]["volumeMounts"][0]["name"] = json!("nope"), "volume 'nope'")]
#[case::tekton_unknown_field("Task", |d: &mut Value| d["spec"]["steps"][0]["hostUsers"] = json!(false), "hostUsers")]
#[case::tekton_undeclared_param("Task", |d: &mut Value| d["spec"]["steps"][0]["image"] = json!("$(params.nope)"), "$(params.nope)")]
#[case::tekton_undeclared_result("Task", |d: &mut Value| d["spec"]["steps"][2]["env"][0]["value"] = json!("$(results.NOPE.path)"), "$(results.NOPE.path)")]
#[case::tekton_undeclared_volume("Task", |d: &mut Value| d["spec"]["steps"][2]["volumeMounts"][0]["name"] = json!("nope"), "volume 'nope'")]
fn invalid_manifests_are_rejected(#[case] kind: &str, #[case] mutate: Mutation, #[case] expected: &str) {
    let schemas = Schemas::load();
    let all: Vec<Value> = deploy_documents().into_iter().map(|d| d.value).collect();
    // The CronWorkflow, or the `rbuild-ci` ClusterWorkflowTemplate / Task.
    let sample = |d: &&Value| d["kind"] == kind && (kind == "CronWorkflow" || d["metadata"]["name"] == "rbuild-ci");
    let mut doc = all.iter().find(sample).cloned().unwrap_or_else(|| panic!("no {kind} rbuild-ci"));
    assert!(problems(&schemas, &doc, &all).is_empty(), "the unmutated {kind} must be valid");
    mutate(&mut doc);
    let found = problems(&schemas, &doc, &all);
    assert!(found.iter().any(|p| p.contains(expected)), "expected an error naming {expected:?}, got {found:#?}");
}
