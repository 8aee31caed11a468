//! `seccompProfile: RuntimeDefault`: Docker's profile format turned into an OCI
//! `linux.seccomp` the way Docker and containerd do it for one container: a rule is kept only
//! if all its `includes` hold (capabilities in the bounding set, the architecture, the kernel
//! version) and none of its `excludes` does; `archMap` becomes `architectures`. Given
//! unconverted, runc would ignore `includes` and allow what needs CAP_SYS_ADMIN.

use serde_json::{json, Map, Value};

/// The Go architecture name Docker's profile uses for this machine.
pub fn native_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        other => other,
    }
}

/// Docker's `SCMP_ARCH_*` name of a Go architecture.
fn scmp_arch(go_arch: &str) -> &'static str {
    match go_arch {
        "amd64" => "SCMP_ARCH_X86_64",
        "arm64" => "SCMP_ARCH_AARCH64",
        "386" => "SCMP_ARCH_X86",
        "ppc64le" => "SCMP_ARCH_PPC64LE",
        "s390x" => "SCMP_ARCH_S390X",
        "riscv64" => "SCMP_ARCH_RISCV64",
        _ => "SCMP_ARCH_NATIVE",
    }
}

/// `(major, minor)` of a version like `6.1.0-18-amd64`.
fn kernel_version(text: &str) -> (u32, u32) {
    let mut parts = text.split(|c: char| !c.is_ascii_digit()).filter_map(|p| p.parse().ok());
    (parts.next().unwrap_or(0), parts.next().unwrap_or(0))
}

/// Converts Docker's `profile` for a container whose bounding set is `caps` (`CAP_*` names)
/// on `arch` (Go name) with kernel `kernel` (`uname -r`).
pub fn convert(profile: &Value, caps: &[String], arch: &str, kernel: &str) -> Value {
    let native = scmp_arch(arch);
    let architectures: Vec<Value> = profile["archMap"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|a| a["architecture"] == native)
        .flat_map(|a| {
            std::iter::once(a["architecture"].clone())
                .chain(a["subArchitectures"].as_array().cloned().unwrap_or_default())
        })
        .collect();
    let holds_caps =
        |list: &Value| list.as_array().into_iter().flatten().all(|c| caps.iter().any(|have| c == have.as_str()));
    let any_cap =
        |list: &Value| list.as_array().into_iter().flatten().any(|c| caps.iter().any(|have| c == have.as_str()));
    let has_arch = |list: &Value| list.as_array().into_iter().flatten().any(|a| a == arch);
    let running = kernel_version(kernel);
    let syscalls: Vec<Value> = profile["syscalls"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|rule| {
            let (inc, exc) = (&rule["includes"], &rule["excludes"]);
            let min_kernel_ok = inc["minKernel"].as_str().is_none_or(|k| running >= kernel_version(k));
            let arch_ok = inc["arches"].as_array().is_none_or(|_| has_arch(&inc["arches"]));
            let arch_excluded = exc["arches"].as_array().is_some() && has_arch(&exc["arches"]);
            min_kernel_ok && holds_caps(&inc["caps"]) && arch_ok && !any_cap(&exc["caps"]) && !arch_excluded
        })
        .map(|rule| {
            let mut out = Map::new();
            for key in ["names", "action", "args", "errnoRet"] {
                if let Some(v) = rule.get(key).filter(|v| !v.is_null()) {
                    out.insert(key.to_string(), v.clone());
                }
            }
            Value::Object(out)
        })
        .collect();
    json!({
        "defaultAction": profile["defaultAction"],
        "defaultErrnoRet": profile["defaultErrnoRet"],
        "architectures": architectures,
        "syscalls": syscalls,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allowed(profile: &Value, name: &str) -> bool {
        profile["syscalls"].as_array().unwrap().iter().any(|r| {
            r["action"] == "SCMP_ACT_ALLOW"
                && r["names"].as_array().unwrap().iter().any(|n| n == name)
                && r.get("args").is_none_or(|a| a.is_null() || a.as_array().is_some_and(Vec::is_empty))
        })
    }

    #[test]
    fn rules_follow_the_pods_capabilities_and_architecture() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../testdata/pod-profiles/seccomp-runtime-default.json");
        let Ok(text) = std::fs::read_to_string(path) else { panic!("{path} missing") };
        let docker: Value = serde_json::from_str(&text).unwrap();
        let default_caps: Vec<String> = crate::pod::DEFAULT_CAPABILITIES.iter().map(|c| format!("CAP_{c}")).collect();
        let pod = convert(&docker, &default_caps, "amd64", "6.1.0");
        assert_eq!(pod["architectures"], json!(["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]));
        assert!(
            !allowed(&pod, "unshare")
                && !allowed(&pod, "mount")
                && allowed(&pod, "arch_prctl")
                && !allowed(&pod, "sync_file_range2")
        );
        assert!(pod["syscalls"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r.get("includes").is_none() && r.get("excludes").is_none()));
        let mut admin = default_caps.clone();
        admin.push("CAP_SYS_ADMIN".into());
        let privileged = convert(&docker, &admin, "amd64", "6.1.0");
        assert!(allowed(&privileged, "unshare") && allowed(&privileged, "mount") && allowed(&privileged, "clone"));
    }
}
