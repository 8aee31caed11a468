//! What `rbuild build` reports, checked against the registry (skopeo): `--output-dir`
//! (`build.json`, `digest`), Kaniko's digest files, `--progress json` events, `--label`,
//! `--no-push` with `--tar-path`, `--push-retry`, the `--progress tty` refusal without a
//! terminal, and the Kaniko flags that shape the image: `--target`, `--platform`.

use std::path::PathBuf;

use serde_json::Value;

use crate::build::{chown_to_user, ok, Harness};

/// A directory the build user may write outputs into.
fn output_dir(h: &Harness, name: &str) -> PathBuf {
    let dir = h.shared.path().join(name);
    std::fs::create_dir(&dir).unwrap();
    chown_to_user(&dir);
    dir
}

#[tokio::test]
async fn output_dir_json_events_and_digest_files_describe_the_pushed_image() {
    let Some(h) = Harness::start().await else { return };
    let context = h.context("build/diff-multistage");
    let repo = h.image("outputs/app");
    let out_dir = output_dir(&h, "out");
    let files = output_dir(&h, "files");
    let (digest_file, names_file, tags_file) = (files.join("digest"), files.join("names"), files.join("tags"));
    let out = ok(h.build(&[
        "-c",
        context.to_str().unwrap(),
        "--build-arg",
        &h.base(),
        "--image",
        &repo,
        "--tag",
        "v1",
        "--latest",
        "--label",
        "extra=yes",
        "--progress",
        "json",
        "--output-dir",
        out_dir.to_str().unwrap(),
        "--digest-file",
        digest_file.to_str().unwrap(),
        "--image-name-with-digest-file",
        names_file.to_str().unwrap(),
        "--image-name-tag-with-digest-file",
        tags_file.to_str().unwrap(),
    ]));

    // The registry is the reference: both tags name one digest.
    let digest = h.digest(&format!("{repo}:v1"));
    assert_eq!(h.digest(&format!("{repo}:latest")), digest);
    let build: Value = serde_json::from_slice(&std::fs::read(out_dir.join("build.json")).unwrap()).unwrap();
    assert_eq!(build["digest"], digest.as_str());
    assert_eq!(std::fs::read_to_string(out_dir.join("digest")).unwrap(), digest);
    let references = [format!("{repo}:v1@{digest}"), format!("{repo}:latest@{digest}")];
    assert_eq!(build["references"], serde_json::json!(references));
    assert_eq!(std::fs::read_to_string(&digest_file).unwrap(), digest);
    assert_eq!(std::fs::read_to_string(&names_file).unwrap(), format!("{repo}@{digest}\n"));
    assert_eq!(std::fs::read_to_string(&tags_file).unwrap(), format!("{}\n{}\n", references[0], references[1]));

    // Steps: 3 stages of 4, 2 and 6 steps (FROM included); nothing cached in a fresh registry.
    let steps = build["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 12, "{build:#}");
    assert_eq!(build["steps_total"], 12);
    assert_eq!(build["cache_hits"], 0);
    assert!(
        build["bytes_uploaded"].as_u64().unwrap() > 0 && build["bytes_downloaded"].as_u64().unwrap() > 0,
        "{build:#}"
    );
    let run = steps.iter().find(|s| s["instruction"].as_str().unwrap().starts_with("RUN mkdir -p /out")).unwrap();
    assert_eq!((run["stage"].as_u64(), run["step"].as_u64(), run["cached"].as_bool()), (Some(1), Some(4), Some(false)));
    // Every layer of the final stage's steps is a layer of the pushed manifest.
    let manifest: Value = serde_json::from_slice(
        &h.ctx
            .skopeo(&["inspect".into(), "--raw".into(), "--tls-verify=false".into(), format!("docker://{repo}:v1")])
            .stdout,
    )
    .unwrap();
    let layers: Vec<&str> =
        manifest["layers"].as_array().unwrap().iter().map(|l| l["digest"].as_str().unwrap()).collect();
    let final_stage_layers: Vec<&str> =
        steps.iter().filter(|s| s["stage"] == 3).filter_map(|s| s["layer_digest"].as_str()).collect();
    assert_eq!(final_stage_layers.len(), 3, "{build:#}");
    for l in final_stage_layers {
        assert!(layers.contains(&l), "{l} not in {layers:?}");
    }
    assert_eq!(h.config(&format!("{repo}:v1"))["config"]["Labels"]["extra"], "yes");

    // --progress json: stdout is JSON lines only, ending with the summary.
    let stdout = String::from_utf8(out.stdout).unwrap();
    let events: Vec<Value> =
        stdout.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l:?}"))).collect();
    let count = |t: &str| events.iter().filter(|e| e["type"] == t).count();
    assert_eq!((count("step_started"), count("step_finished")), (12, 12));
    assert!(count("transfer_started") > 0 && count("transfer_started") == count("transfer_finished"), "{stdout}");
    assert!(events.iter().any(|e| e["type"] == "output" && e["step"] == 4), "RUN output is an event");
    let last = events.last().unwrap();
    assert_eq!((last["type"].as_str(), last["digest"].as_str()), (Some("summary"), Some(digest.as_str())));
}

#[tokio::test]
async fn no_push_with_tar_path_writes_the_tarball_and_pushes_nothing() {
    let Some(h) = Harness::start().await else { return };
    let context = h.context("build/diff-multistage");
    let image = h.image("outputs/tarball:v1");
    let dir = output_dir(&h, "tar");
    let tar = dir.join("image.tar");
    let out = ok(h.build(&[
        "-c",
        context.to_str().unwrap(),
        "--build-arg",
        &h.base(),
        "--destination",
        &image,
        "--no-push",
        "--tar-path",
        tar.to_str().unwrap(),
    ]));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("[stage 3/3] STEP 6/6: CMD") && !stderr.contains("pushed:"), "{stderr}");
    let inspected = h.ctx.skopeo(&["inspect".into(), format!("docker-archive:{}", tar.display())]);
    let json: Value = serde_json::from_slice(&inspected.stdout).unwrap();
    assert_eq!(json["Layers"].as_array().unwrap().len(), 4, "busybox + 3 COPY layers: {json}");
    let missing = std::process::Command::new("skopeo")
        .args(["inspect", "--tls-verify=false", &format!("docker://{image}")])
        .output()
        .unwrap();
    assert!(!missing.status.success(), "--no-push must not push");
}

#[tokio::test]
async fn progress_tty_without_a_terminal_is_refused_before_building() {
    let Some(h) = Harness::start().await else { return };
    let context = h.context("build/diff-multistage");
    let out = h.build(&["-c", context.to_str().unwrap(), "--build-arg", &h.base(), "--no-push", "--progress", "tty"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--progress tty needs stderr to be a terminal") && !stderr.contains("STEP"), "{stderr}");
}

#[rstest::rstest]
#[case::no_retry("0", 1)]
#[case::two_retries("2", 3)]
#[tokio::test]
async fn push_retry_bounds_the_attempts_on_an_unreachable_registry(#[case] retries: &str, #[case] attempts: u32) {
    let Some(h) = Harness::start().await else { return };
    let context = h.context("build/scratch");
    // A port nobody listens on: bind, note it, close.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().to_string();
    let image = format!("{dead}/nowhere/app:v1");
    let out = h.build(&[
        "-c",
        context.to_str().unwrap(),
        "--insecure-registry",
        &dead,
        "--push-retry",
        retries,
        "--destination",
        &image,
    ]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    let expected = format!("{dead}/nowhere/app failed after {attempts} attempt(s): cannot reach registry");
    assert!(stderr.contains(&expected), "missing {expected:?} in:\n{stderr}");
}

#[tokio::test]
async fn target_builds_only_the_stages_it_needs_with_kaniko_template_flags() {
    let Some(h) = Harness::start().await else { return };
    let context = h.context("build/diff-multistage");
    let image = h.image("outputs/target:v1");
    // The Kaniko flags a template passes for behaviour rbuild always has are accepted.
    let kaniko = [
        "--skip-unused-stages=true",
        "--cleanup",
        "--snapshot-mode=redo",
        "--use-new-run",
        "--compressed-caching=false",
        "--verbosity=info",
    ];
    let base = h.base();
    let mut args =
        vec!["-c", context.to_str().unwrap(), "--build-arg", &base, "--target", "build", "--destination", &image];
    args.extend(kaniko);
    let out = ok(h.build(&args));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("[stage 1/1] STEP 4/4: RUN") && !stderr.contains("COPY --from"), "{stderr}");
    let rootfs = h.unpack(&image);
    assert_eq!(std::fs::read_to_string(rootfs.join("out/combined.txt")).unwrap(), "part1\npart2\n");
    assert!(!rootfs.join("srv").exists() && !rootfs.join("out/test-result").exists());
}

#[tokio::test]
async fn platform_picks_the_base_from_an_index_and_sets_the_config() {
    let Some(h) = Harness::start().await else { return };
    let context = h.context("build/platform");
    let image = h.image("outputs/platform:arm64");
    let base = format!("BASE={}/multiarch:latest", h.ctx.registry.addr());
    ok(h.build(&[
        "-c",
        context.to_str().unwrap(),
        "--build-arg",
        &base,
        "--platform",
        "linux/arm64",
        "--destination",
        &image,
    ]));
    let config = h.config(&image);
    assert_eq!((config["os"].as_str(), config["architecture"].as_str()), (Some("linux"), Some("arm64")), "{config}");
    assert_eq!(config["config"]["Labels"]["built.for"], "linux/arm64");
    let rootfs = h.unpack(&image);
    assert_eq!(std::fs::read_to_string(rootfs.join("platform")).unwrap(), "linux/arm64/v8\n");
}
