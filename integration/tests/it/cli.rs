//! The `rbuild` binary, run as a subprocess (its environment set with `Command::env` only).

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};

use rbuild_cache::oci::sha256_digest;
use rbuild_integration::registry::{PASSWORD, USER};
use rbuild_integration::{TestRegistry, Variant};

use crate::support::{rbuild_bin, TestContext};

fn encode_basic(user: &str, password: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
}

/// `rbuild` with the registry's TLS/insecure flags and an isolated `DOCKER_CONFIG`.
fn rbuild(registry: &TestRegistry, docker_config: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(rbuild_bin());
    cmd.args(args);
    match registry.ca_cert() {
        Some(ca) => cmd.arg("--registry-certificate").arg(ca),
        None => cmd.arg("--insecure-registry").arg(registry.addr()),
    };
    cmd.env("DOCKER_CONFIG", docker_config).env_remove("RBUILD_LOG");
    cmd
}

fn ok(out: Output) -> Output {
    assert!(out.status.success(), "rbuild failed: {}", String::from_utf8_lossy(&out.stderr));
    out
}

#[tokio::test]
async fn pull_writes_an_oci_layout_skopeo_reads() {
    let Some(ctx) = TestContext::start(Variant::Http).await else {
        return;
    };
    let layout = ctx.dir.path().join("layout");
    let image = format!("{}/multiarch:latest", ctx.registry.addr());
    let out = ok(rbuild(&ctx.registry, ctx.dir.path(), &["pull", &image, "--platform", "linux/arm64"])
        .arg("--oci-layout")
        .arg(&layout)
        .output()
        .unwrap());
    let arm64 = ctx.base.multiarch_children[1].to_string();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), arm64);
    let inspect = ctx.skopeo(&["inspect".into(), format!("oci:{}:latest", layout.display())]);
    let json: serde_json::Value = serde_json::from_slice(&inspect.stdout).unwrap();
    assert_eq!(json["Digest"], arm64);
    assert_eq!(json["Architecture"], "arm64");
}

#[tokio::test]
async fn inspect_prints_manifest_config_and_digest() {
    let Some(ctx) = TestContext::start(Variant::Http).await else {
        return;
    };
    let image = format!("{}/busybox", ctx.registry.addr());
    let out = ok(rbuild(&ctx.registry, ctx.dir.path(), &["inspect", &image]).output().unwrap());
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["digest"], ctx.base.busybox.to_string());
    assert_eq!(json["config"]["os"], "linux");
    assert_eq!(json["manifest"]["layers"].as_array().unwrap().len(), 1);
    let raw = ok(rbuild(&ctx.registry, ctx.dir.path(), &["inspect", "--raw", &image]).output().unwrap());
    assert_eq!(sha256_digest(&raw.stdout), ctx.base.busybox);
}

fn write_helper(dir: &Path) {
    let script = format!(
        "#!/bin/sh\n[ \"$1\" = get ] || exit 2\nread server\nprintf '{{\"ServerURL\":\"%s\",\"Username\":\"{USER}\",\"Secret\":\"{PASSWORD}\"}}' \"$server\"\n"
    );
    let path = dir.join("docker-credential-test");
    std::fs::write(&path, script).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

#[tokio::test]
async fn credentials_from_config_json_and_a_helper() {
    let Some(ctx) = TestContext::start(Variant::Htpasswd).await else {
        return;
    };
    let addr = ctx.registry.addr();
    let image = format!("{addr}/busybox");
    let cases = [
        ("none", serde_json::json!({}), false),
        ("auths", serde_json::json!({"auths": {addr: {"auth": encode_basic(USER, PASSWORD)}}}), true),
        ("wrong", serde_json::json!({"auths": {addr: {"auth": encode_basic(USER, "wrong-pw")}}}), false),
        ("helper", serde_json::json!({"credHelpers": {addr: "test"}}), true),
    ];
    let helpers = ctx.dir.path().join("helpers");
    std::fs::create_dir_all(&helpers).unwrap();
    write_helper(&helpers);
    let path = format!("{}:{}", helpers.display(), std::env::var("PATH").unwrap_or_default());
    for (name, config, succeeds) in cases {
        let dir = ctx.dir.path().join(format!("docker-{name}"));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
        let out = rbuild(&ctx.registry, &dir, &["inspect", "--raw", &image]).env("PATH", &path).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.success(), succeeds, "{name}: {stderr}");
        if !succeeds {
            for part in [addr, "busybox", "401", "UNAUTHORIZED"] {
                assert!(stderr.contains(part), "{name}: {part:?} missing from {stderr}");
            }
            assert!(!stderr.contains("wrong-pw") && !stderr.contains(PASSWORD), "{stderr}");
        }
    }
}
