//! The rules Argo (workflow/validate) and Tekton (the webhook's Task validation) apply at
//! submission that a JSON schema cannot express, for the manifests under `deploy/`:
//! CronWorkflow `schedules` (a non-empty list of standard cron lines; Argo 4 has no `schedule`),
//! timezone, concurrency policy, a `value` for every workflow parameter of a CronWorkflow (it
//! runs unattended: Argo validates it as a submitted Workflow); one type per template,
//! templates and `templateRef`s that exist (across files), `depends` naming existing tasks,
//! every input without a default supplied, every `{{inputs.*}}`, `{{workflow.parameters.*}}`
//! and `{{tasks.*}}` tag declared, volume mounts naming a declared volume, `podSpecPatch`
//! parsing; for Tekton every `$(params.*)`, `$(workspaces.*)`, `$(results.*)` declared.
//! Messages follow Argo's and Tekton's wording where they have one.

use std::collections::BTreeSet;

use serde_json::Value;

/// Every rule violation of `doc`; `all` is every document under `deploy/` (templateRefs).
pub(crate) fn check(doc: &Value, all: &[Value]) -> Vec<String> {
    let mut out = Vec::new();
    match doc["kind"].as_str().unwrap_or_default() {
        "CronWorkflow" => {
            cron_rules(doc, &mut out);
            Workflow::new(&doc["spec"]["workflowSpec"], all, true).check(&mut out);
        }
        "Workflow" => Workflow::new(&doc["spec"], all, true).check(&mut out),
        "WorkflowTemplate" | "ClusterWorkflowTemplate" => Workflow::new(&doc["spec"], all, false).check(&mut out),
        "Task" => tekton_task_rules(&doc["spec"], &mut out),
        _ => {}
    }
    out
}

fn list(v: &Value) -> &[Value] {
    v.as_array().map(Vec::as_slice).unwrap_or_default()
}

fn names(v: &Value) -> BTreeSet<String> {
    list(v).iter().filter_map(|p| p["name"].as_str().map(str::to_string)).collect()
}

fn cron_rules(doc: &Value, out: &mut Vec<String>) {
    let spec = &doc["spec"];
    let name = doc["metadata"]["name"].as_str().unwrap_or_default();
    if name.len() > 52 {
        out.push(format!("cron workflow name {name:?} must not be more than 52 characters long"));
    }
    if !spec["schedule"].is_null() {
        out.push("spec.schedule: Argo 4 has no `schedule`; use `schedules`, a list (Argo ≥ 3.6)".into());
    }
    let schedules = list(&spec["schedules"]);
    if schedules.is_empty() {
        out.push("cron workflow must have at least one schedule (spec.schedules)".into());
    }
    for schedule in schedules {
        let line = schedule.as_str().unwrap_or_default();
        if let Err(why) = parse_cron(line) {
            out.push(format!("cron schedule {line} is malformed: {why}"));
        }
    }
    if let Some(tz) = spec["timezone"].as_str() {
        let known =
            !tz.is_empty() && !tz.contains("..") && std::path::Path::new("/usr/share/zoneinfo").join(tz).is_file();
        if !known {
            out.push(format!("invalid timezone {tz:?}"));
        }
    }
    if let Some(policy) = spec["concurrencyPolicy"].as_str() {
        if !["Allow", "Forbid", "Replace", ""].contains(&policy) {
            out.push(format!("'{policy}' is not a valid concurrencyPolicy"));
        }
    }
    if spec["startingDeadlineSeconds"].as_i64().is_some_and(|s| s < 0) {
        out.push("startingDeadlineSeconds must be positive".into());
    }
}

/// A standard cron line as robfig/cron's `ParseStandard` (which Argo uses) accepts it: five
/// fields, or a descriptor (`@daily`, `@every 1h`, …), optionally after `CRON_TZ=`/`TZ=`.
pub(crate) fn parse_cron(line: &str) -> Result<(), String> {
    let mut line = line.trim();
    if line.starts_with("CRON_TZ=") || line.starts_with("TZ=") {
        line = line.split_once(' ').map(|(_, rest)| rest.trim()).ok_or("no schedule after the time zone")?;
    }
    if let Some(descriptor) = line.strip_prefix('@') {
        let known = ["yearly", "annually", "monthly", "weekly", "daily", "midnight", "hourly"];
        let every = descriptor.strip_prefix("every ").is_some_and(|d| !d.trim().is_empty());
        return if known.contains(&descriptor) || every {
            Ok(())
        } else {
            Err(format!("unrecognized descriptor: @{descriptor}"))
        };
    }
    let fields: Vec<&str> = line.split_whitespace().collect();
    if fields.len() != 5 {
        return Err(format!("expected exactly 5 fields, found {}: {line:?}", fields.len()));
    }
    const MONTHS: [&str; 12] = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"];
    const DAYS: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];
    let bounds: [(u32, u32, &[&str]); 5] = [(0, 59, &[]), (0, 23, &[]), (1, 31, &[]), (1, 12, &MONTHS), (0, 6, &DAYS)];
    for (field, (min, max, names)) in fields.iter().zip(bounds) {
        for part in field.split(',') {
            cron_part(part, min, max, names)?;
        }
    }
    Ok(())
}

fn cron_part(part: &str, min: u32, max: u32, names: &[&str]) -> Result<(), String> {
    let (range, step) = match part.split_once('/') {
        Some((r, s)) => (r, Some(s.parse::<u32>().map_err(|_| format!("bad step in {part:?}"))?)),
        None => (part, None),
    };
    if step == Some(0) {
        return Err(format!("step of zero in {part:?}"));
    }
    let value = |s: &str| -> Result<u32, String> {
        let lower = s.to_ascii_lowercase();
        let v = match names.iter().position(|n| *n == lower) {
            Some(i) => i as u32 + min,
            None => s.parse().map_err(|_| format!("failed to parse {s:?} in {part:?}"))?,
        };
        if (min..=max).contains(&v) {
            Ok(v)
        } else {
            Err(format!("{v} out of range [{min}, {max}] in {part:?}"))
        }
    };
    if range == "*" || range == "?" {
        return Ok(());
    }
    let (lo, hi) = match range.split_once('-') {
        Some((a, b)) => (value(a)?, value(b)?),
        None => (value(range)?, value(range)?),
    };
    if lo > hi {
        return Err(format!("beginning of range after end: {part:?}"));
    }
    Ok(())
}

/// A workflow spec under validation, with what its templates may refer to.
struct Workflow<'a> {
    spec: &'a Value,
    all: &'a [Value],
    /// Submitted as is (CronWorkflow, Workflow): every argument needs a value.
    submitted: bool,
    globals: BTreeSet<String>,
}

const TEMPLATE_TYPES: [&str; 10] =
    ["container", "containerSet", "steps", "script", "resource", "dag", "suspend", "data", "http", "plugin"];

impl<'a> Workflow<'a> {
    fn new(spec: &'a Value, all: &'a [Value], submitted: bool) -> Self {
        Self { spec, all, submitted, globals: names(&spec["arguments"]["parameters"]) }
    }

    fn check(&self, out: &mut Vec<String>) {
        if self.submitted {
            for p in list(&self.spec["arguments"]["parameters"]) {
                if p["value"].is_null() && p["valueFrom"].is_null() {
                    out.push(format!(
                        "spec.arguments.parameters.{}.value is required",
                        p["name"].as_str().unwrap_or_default()
                    ));
                }
            }
        }
        match self.spec["entrypoint"].as_str() {
            Some(entry) if self.local(entry).is_none() => {
                out.push(format!("spec.entrypoint: template name '{entry}' undefined"))
            }
            None if self.submitted => out.push("spec.entrypoint is required".into()),
            _ => {}
        }
        let mut seen = BTreeSet::new();
        for t in list(&self.spec["templates"]) {
            let name = t["name"].as_str().unwrap_or_default();
            if !seen.insert(name) {
                out.push(format!("templates.{name} is not unique"));
            }
            self.template(t, out);
        }
    }

    fn local(&self, name: &str) -> Option<&'a Value> {
        list(&self.spec["templates"]).iter().find(|t| t["name"] == name)
    }

    /// The template a `templateRef` names in another document.
    fn referenced(&self, r: &Value) -> Result<&'a Value, String> {
        let kind = if r["clusterScope"] == true { "ClusterWorkflowTemplate" } else { "WorkflowTemplate" };
        let (name, template) = (r["name"].as_str().unwrap_or_default(), r["template"].as_str().unwrap_or_default());
        self.all
            .iter()
            .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
            .and_then(|d| list(&d["spec"]["templates"]).iter().find(|t| t["name"] == template))
            .ok_or_else(|| format!("template reference {name}.{template} not found (no {kind} {name} under deploy/ with that template)"))
    }

    /// Rules for one template, run in this workflow (whose volumes it mounts).
    fn template(&self, t: &Value, out: &mut Vec<String>) {
        let name = t["name"].as_str().unwrap_or_default();
        let types = TEMPLATE_TYPES.iter().filter(|k| !t[**k].is_null()).count();
        if types != 1 {
            out.push(format!("templates.{name}: {types} template types specified; choose exactly one"));
        }
        if let Some(patch) = t["podSpecPatch"].as_str() {
            if !serde_norway::from_str::<Value>(patch).is_ok_and(|v| v.is_object()) {
                out.push(format!("templates.{name}.podSpecPatch is not a YAML/JSON object: {patch}"));
            }
        }
        let volumes: BTreeSet<String> = names(&t["volumes"])
            .into_iter()
            .chain(names(&self.spec["volumes"]))
            .chain(
                list(&self.spec["volumeClaimTemplates"])
                    .iter()
                    .filter_map(|c| c["metadata"]["name"].as_str().map(str::to_string)),
            )
            .collect();
        for container in ["container", "script"].iter().map(|k| &t[*k]).filter(|c| !c.is_null()) {
            for m in list(&container["volumeMounts"]) {
                let volume = m["name"].as_str().unwrap_or_default();
                if !volumes.contains(volume) {
                    out.push(format!(
                        "templates.{name}: volumeMount {:?} refers to volume '{volume}', which is not declared",
                        m["mountPath"]
                    ));
                }
            }
        }
        let inputs = names(&t["inputs"]["parameters"]);
        if t["dag"].is_null() {
            self.tags(&format!("templates.{name}"), t, &inputs, &[], out);
        } else {
            self.dag(name, t, &inputs, out);
        }
    }

    fn dag(&self, name: &str, t: &Value, inputs: &BTreeSet<String>, out: &mut Vec<String>) {
        let tasks = list(&t["dag"]["tasks"]);
        let mut targets: Vec<(&str, Option<&Value>)> = Vec::new();
        for task in tasks {
            let task_name = task["name"].as_str().unwrap_or_default();
            let at = format!("templates.{name}.tasks.{task_name}");
            let target = match (task["template"].as_str(), task["templateRef"].is_null()) {
                (Some(local), true) => {
                    self.local(local).ok_or_else(|| format!("{at}: template name '{local}' undefined"))
                }
                (None, false) => self.referenced(&task["templateRef"]).inspect(|referenced| {
                    // Argo runs (and validates) the referenced template with the caller's
                    // parameters and volumes.
                    self.template(referenced, out);
                }),
                _ => Err(format!("{at}: exactly one of template and templateRef is required")),
            };
            let target = target.map_err(|e| out.push(e)).ok();
            if let Some(target) = target {
                let passed = names(&task["arguments"]["parameters"]);
                for p in list(&target["inputs"]["parameters"]) {
                    let input = p["name"].as_str().unwrap_or_default();
                    if p["value"].is_null()
                        && p["default"].is_null()
                        && p["valueFrom"].is_null()
                        && !passed.contains(input)
                    {
                        out.push(format!("{at}: inputs.parameters.{input} was not supplied"));
                    }
                }
            }
            targets.push((task_name, target));
        }
        for task in tasks {
            let at = format!("templates.{name}.tasks.{}", task["name"].as_str().unwrap_or_default());
            let depends = task["depends"].as_str().unwrap_or_default();
            let named = depends
                .split(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.'))
                .filter(|w| !w.is_empty())
                .map(|w| w.split('.').next().unwrap())
                .chain(list(&task["dependencies"]).iter().filter_map(Value::as_str));
            for dep in named {
                if !targets.iter().any(|(n, _)| *n == dep) {
                    out.push(format!("{at}: dependency '{dep}' not defined"));
                }
            }
        }
        self.tags(&format!("templates.{name}"), t, inputs, &targets, out);
    }

    /// Every `{{…}}` tag in `t` resolves: inputs declared, workflow parameters declared, task
    /// outputs declared by the task's template (Argo: "failed to resolve {{…}}").
    fn tags(
        &self,
        at: &str,
        t: &Value,
        inputs: &BTreeSet<String>,
        tasks: &[(&str, Option<&Value>)],
        out: &mut Vec<String>,
    ) {
        let text = serde_json::to_string(t).unwrap();
        for tag in text.split("{{").skip(1).filter_map(|s| s.split_once("}}").map(|(tag, _)| tag.trim())) {
            let ok = if let Some(p) = tag.strip_prefix("inputs.parameters.") {
                inputs.contains(p)
            } else if let Some(p) = tag.strip_prefix("workflow.parameters.") {
                self.globals.contains(p)
            } else if let Some(rest) = tag.strip_prefix("tasks.") {
                task_tag(rest, tasks)
            } else {
                !tag.starts_with("inputs.")
            };
            if !ok {
                out.push(format!("{at}: failed to resolve {{{{{tag}}}}}"));
            }
        }
    }
}

/// `tasks.<name>.…` names a task of this DAG; `….outputs.parameters.<p>` an output its template declares.
fn task_tag(rest: &str, tasks: &[(&str, Option<&Value>)]) -> bool {
    let Some((_, target)) = tasks.iter().find(|(n, _)| rest.starts_with(&format!("{n}.")) || rest == *n) else {
        return false;
    };
    let Some(output) = rest.split_once(".outputs.parameters.").map(|(_, p)| p) else {
        return true;
    };
    target.is_none_or(|t| names(&t["outputs"]["parameters"]).contains(output))
}

/// Tekton's variable rules for a Task: `$(params.x)`, `$(workspaces.x.…)`, `$(results.x.path)`
/// declared; unique step names; step volume mounts naming a declared volume.
fn tekton_task_rules(spec: &Value, out: &mut Vec<String>) {
    let params = names(&spec["params"]);
    let workspaces = names(&spec["workspaces"]);
    let results = names(&spec["results"]);
    let volumes = names(&spec["volumes"]);
    let text = serde_json::to_string(&spec["steps"]).unwrap() + &serde_json::to_string(&spec["sidecars"]).unwrap();
    for var in text.split("$(").skip(1).filter_map(|s| s.split_once(')').map(|(v, _)| v)) {
        let declared = |prefix: &str, set: &BTreeSet<String>| {
            var.strip_prefix(prefix).map(|rest| set.contains(rest.split(['.', '[']).next().unwrap_or_default()))
        };
        let ok = declared("params.", &params)
            .or_else(|| declared("workspaces.", &workspaces))
            .or_else(|| declared("results.", &results))
            .unwrap_or(true);
        if !ok {
            out.push(format!("non-existent variable in steps: \"$({var})\""));
        }
    }
    let mut seen = BTreeSet::new();
    for step in list(&spec["steps"]) {
        let name = step["name"].as_str().unwrap_or_default();
        if !seen.insert(name) {
            out.push(format!("steps.{name}: step name is not unique"));
        }
        for m in list(&step["volumeMounts"]) {
            let volume = m["name"].as_str().unwrap_or_default();
            if !volumes.contains(volume) {
                out.push(format!(
                    "steps.{name}: volumeMount {:?} refers to volume '{volume}', which is not declared",
                    m["mountPath"]
                ));
            }
        }
    }
}

#[rstest::rstest]
#[case("0 2 * * *", true)]
#[case("*/15 0-6,22 1 jan-mar MON-FRI", true)]
#[case("@daily", true)]
#[case("@every 1h30m", true)]
#[case("CRON_TZ=Etc/UTC 0 2 * * *", true)]
#[case("0 2 * *", false)]
#[case("60 2 * * *", false)]
#[case("0 2 * * 7", false)]
#[case("0 2 0 * *", false)]
#[case("*/0 * * * *", false)]
#[case("5-1 * * * *", false)]
#[case("@fortnightly", false)]
fn cron_lines_parse_as_argo_parses_them(#[case] line: &str, #[case] valid: bool) {
    assert_eq!(parse_cron(line).is_ok(), valid, "{line}: {:?}", parse_cron(line));
}
