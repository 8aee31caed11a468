//! Issue 18: failures that say what to do. Through the real binary against real registries:
//! TLS/HTTP mismatches and unknown CAs fail at once with the flag that fixes them; a wrong
//! or missing password fails before any step, naming where the credentials came from; a
//! failed RUN shows its last output lines in every progress mode (tty through a pty from
//! `script`); SIGINT/SIGTERM exit 130/143; `--cache-only` into a new cache repository fills
//! it from a warm local state; `--commit-suffix auto` refuses a dirty tree.

use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use rbuild_integration::registry::{PASSWORD, USER as REGISTRY_USER};
use rbuild_integration::Variant;

use crate::build::{chown_to_user, Harness, USER};
use crate::support::{rbuild_bin, TestContext};

/// A context with `dockerfile`, in a fresh directory under `root`.
fn context(root: &Path, name: &str, dockerfile: &str) -> std::path::PathBuf {
    let dir = root.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("Dockerfile"), dockerfile).unwrap();
    std::fs::write(dir.join("f.txt"), "one\n").unwrap();
    dir
}

/// `rbuild build` as the current user (root here), no colour variable, stderr a pipe.
fn rbuild_build(ctx: &TestContext, context: &Path, args: &[&str], docker_config: &Path) -> Output {
    Command::new(rbuild_bin())
        .arg("build")
        .arg("-c")
        .arg(context)
        .arg("--cache-dir")
        .arg(ctx.dir.path().join("state"))
        .args(["--progress", "plain"])
        .args(args)
        .env("DOCKER_CONFIG", docker_config)
        .env_remove("RBUILD_LOG")
        .env_remove("NO_COLOR")
        .output()
        .unwrap()
}

#[rstest::rstest]
#[case::plain_http_registry(Variant::Http, "TLS/HTTP mismatch", "--insecure-registry")]
#[case::unknown_ca(Variant::Tls, "unknown certificate authority", "--registry-certificate")]
#[tokio::test]
async fn issue_18_tls_mismatch_and_unknown_ca_fail_within_a_second_with_the_fixing_flag(
    #[case] variant: Variant,
    #[case] kind: &str,
    #[case] flag: &str,
) {
    let Some(ctx) = TestContext::start(variant).await else { return };
    let addr = ctx.registry.addr().to_string();
    let dir = context(ctx.dir.path(), "ctx", &format!("FROM {addr}/busybox:latest\nRUN echo step-ran\n"));
    // No --insecure-registry, no --registry-certificate: the mistakes being diagnosed.
    let started = Instant::now();
    let out = rbuild_build(&ctx, &dir, &["--destination", &format!("{addr}/app:v1")], ctx.dir.path());
    let elapsed = started.elapsed();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "registry error exit code: {stderr}");
    assert!(stderr.contains(kind) && stderr.contains(&format!("{flag} {addr}")), "{stderr}");
    assert!(stderr.contains("after 1 attempt(s)"), "not retried: {stderr}");
    assert!(!stderr.contains("step-ran"), "{stderr}");
    assert!(!stderr.contains('\u{1b}'), "no ANSI escapes when stderr is not a terminal: {stderr:?}");
    assert!(elapsed < Duration::from_secs(1), "took {elapsed:?}: {stderr}");
}

#[rstest::rstest]
#[case::wrong_password(Some("wrong-password"), &["HTTP 401", "from the auths entry in", "rejected them", "docker login"])]
#[case::no_credentials(None, &["HTTP 401", "credentials: none (", "has no entry for this registry", "docker login"])]
#[tokio::test]
async fn issue_18_bad_credentials_fail_before_any_step_naming_their_source(
    #[case] password: Option<&str>,
    #[case] wanted: &[&str],
) {
    let Some(ctx) = TestContext::start(Variant::Htpasswd).await else { return };
    let addr = ctx.registry.addr().to_string();
    let docker_config = ctx.dir.path().join("docker");
    std::fs::create_dir_all(&docker_config).unwrap();
    let auths = match password {
        Some(p) => {
            serde_json::json!({ &addr: { "auth": base64::engine::general_purpose::STANDARD.encode(format!("{REGISTRY_USER}:{p}")) } })
        }
        None => serde_json::json!({}),
    };
    let config_json = docker_config.join("config.json");
    std::fs::write(&config_json, serde_json::json!({ "auths": auths }).to_string()).unwrap();
    assert_ne!(password, Some(PASSWORD));
    let dir = context(ctx.dir.path(), "ctx", &format!("FROM {addr}/busybox:latest\nRUN echo step-ran\n"));
    let ca = ctx.registry.ca_cert().unwrap();
    let started = Instant::now();
    let out = rbuild_build(
        &ctx,
        &dir,
        &["--registry-certificate", ca.to_str().unwrap(), "--destination", &format!("{addr}/team/app:v1")],
        &docker_config,
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "{stderr}");
    assert!(stderr.contains(&format!("push access to {addr}/team/app denied")), "{stderr}");
    assert!(stderr.contains(&config_json.display().to_string()), "names the config file: {stderr}");
    for want in wanted {
        assert!(stderr.contains(want), "lacks {want:?}: {stderr}");
    }
    assert!(!stderr.contains("step-ran") && !stderr.contains("STEP 2/"), "a step ran: {stderr}");
    assert!(started.elapsed() < Duration::from_secs(10), "took {:?}", started.elapsed());
}

/// `(mode, how the output is read)`: the failed RUN's last 10 lines in the error box.
#[rstest::rstest]
#[case::plain("plain")]
#[case::json("json")]
#[case::tty("tty")]
#[tokio::test]
async fn issue_18_a_failed_run_shows_its_last_output_lines_in_every_mode(#[case] mode: &str) {
    let Some(h) = Harness::start().await else { return };
    let context = h.context("build/fail-tail");
    let args = ["-c", context.to_str().unwrap(), "--build-arg", &h.base(), "--no-push", "--progress", mode];
    let mut cmd = h.build_command(USER, &h.shared.path().join("cache"), &args);
    let (code, text) = if mode == "tty" {
        in_a_pty(&cmd)
    } else {
        let out = cmd.output().unwrap();
        let text = if mode == "json" {
            String::from_utf8_lossy(&out.stdout).into_owned()
        } else {
            String::from_utf8_lossy(&out.stderr).into_owned()
        };
        (out.status.code(), text)
    };
    assert_eq!(code, Some(3), "a failed RUN exits 3: {text}");
    let tail: Vec<String> = (7..=15).map(|i| format!("out-{i}")).chain(["cc: error: broken".to_string()]).collect();
    if mode == "json" {
        let last: serde_json::Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
        assert_eq!(last["type"], "error", "{text}");
        assert_eq!(last["step"]["line"], 4);
        assert_eq!(last["step"]["output"], serde_json::json!(tail));
        assert!(last["step"]["error"].as_str().unwrap().contains("exit code 2"), "{last}");
        assert!(last["message"].as_str().unwrap().contains("RUN (line 4) failed"), "{last}");
        return;
    }
    let boxed: Vec<&str> = text
        .lines()
        .map(|l| l.trim_end_matches('\r'))
        .skip_while(|l| !l.starts_with(" > [stage 1/1] STEP 2/2: RUN exec 2>&1; for i in"))
        .skip(1)
        .take_while(|l| *l != "------")
        .collect();
    let want: Vec<String> = tail.iter().map(|l| format!("   {l}")).collect();
    assert_eq!(boxed, want, "{text}");
    assert!(text.contains("Dockerfile:4: RUN exec 2>&1; for i in") && text.contains("exit code 2"), "{text}");
}

/// Runs `cmd` with a pseudo-terminal as its stdin, stdout and stderr (`script`), returning
/// its exit code and everything it drew.
fn in_a_pty(cmd: &Command) -> (Option<i32>, String) {
    let quote = |s: &std::ffi::OsStr| format!("'{}'", s.to_string_lossy().replace('\'', r"'\''"));
    let line: Vec<String> = std::iter::once(quote(cmd.get_program())).chain(cmd.get_args().map(quote)).collect();
    let mut script = Command::new("script");
    script.args(["-q", "-e", "-c", &line.join(" "), "/dev/null"]).stdin(Stdio::null());
    for (k, v) in cmd.get_envs() {
        match v {
            Some(v) => script.env(k, v),
            None => script.env_remove(k),
        };
    }
    let out = script.output().expect("run script (bsdutils)");
    (out.status.code(), String::from_utf8_lossy(&out.stdout).into_owned())
}

#[rstest::rstest]
#[case::sigint("INT", 130)]
#[case::sigterm("TERM", 143)]
#[tokio::test]
async fn issue_18_signals_exit_130_and_143(#[case] signal: &str, #[case] code: i32) {
    let Some(h) = Harness::start().await else { return };
    let context = h.context("build/sleep");
    let args = ["-c", context.to_str().unwrap(), "--build-arg", &h.base(), "--no-push", "--progress", "plain"];
    let mut child =
        h.build_command(USER, &h.shared.path().join("cache"), &args).stderr(Stdio::piped()).spawn().unwrap();
    let stderr = BufReader::new(child.stderr.take().unwrap());
    let (tx, rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut seen = String::new();
        for line in stderr.lines().map_while(Result::ok) {
            if line.contains("started-sleeping") {
                let _ = tx.send(());
            }
            seen.push_str(&line);
            seen.push('\n');
        }
        seen
    });
    rx.recv_timeout(Duration::from_secs(60)).expect("the RUN started");
    // setpriv executes rbuild in its own process: the pid is rbuild's.
    assert!(Command::new("kill").args([&format!("-{signal}"), &child.id().to_string()]).status().unwrap().success());
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "still running 30 s after SIG{signal}");
        std::thread::sleep(Duration::from_millis(50));
    };
    let seen = reader.join().unwrap();
    assert_eq!(status.code(), Some(code), "{seen}");
}

#[tokio::test]
async fn issue_18_cache_only_into_a_new_cache_repository_writes_every_entry() {
    let Some(h) = Harness::start().await else { return };
    let context = h.context("app");
    let state = h.shared.path().join("warm-state");
    std::fs::create_dir(&state).unwrap();
    chown_to_user(&state);
    let tags = |repo: &str| -> Vec<String> {
        let out =
            h.ctx.skopeo(&["list-tags".into(), "--tls-verify=false".into(), format!("docker://{}", h.image(repo))]);
        let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let mut t: Vec<String> = json["Tags"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|t| t.as_str())
            .filter(|t| t.starts_with("sha256-"))
            .map(String::from)
            .collect();
        t.sort();
        t
    };
    let warm = |repo: &str| {
        let out = h.build_in(
            &state,
            &[
                "-c",
                context.to_str().unwrap(),
                "--build-arg",
                &h.base(),
                "--cache-only",
                "--cache-repo",
                &h.image(repo),
            ],
        );
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    warm("nightly/cache-a");
    let first = tags("nightly/cache-a");
    assert!(!first.is_empty());
    // The same warm local state, a cache repository it has never written.
    let log = warm("nightly/cache-b");
    assert_eq!(tags("nightly/cache-b"), first, "{log}");
    assert!(log.contains(&format!("{} entries written", first.len())), "{log}");
}

#[tokio::test]
async fn issue_18_commit_suffix_auto_refuses_a_dirty_tree_and_allow_dirty_tags_it_dirty() {
    let Some(ctx) = TestContext::start(Variant::Http).await else { return };
    let addr = ctx.registry.addr().to_string();
    let dir = context(ctx.dir.path(), "repo", &format!("FROM {addr}/busybox:latest\nCOPY f.txt /f.txt\n"));
    let git = |args: &[&str]| {
        let out = Command::new("git").arg("-C").arg(&dir).args(args).output().unwrap();
        assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    };
    git(&["init", "-q"]);
    git(&["add", "-A"]);
    git(&["-c", "user.name=t", "-c", "user.email=t@e", "commit", "-q", "-m", "x"]);
    let sha = git(&["rev-parse", "--short=7", "HEAD"]).trim().to_string();
    std::fs::write(dir.join("f.txt"), "changed, not committed\n").unwrap();
    let image = format!("{addr}/team/app");
    let pipeline = |extra: &[&str]| {
        let mut args = vec![
            "--insecure-registry",
            addr.as_str(),
            "--image",
            image.as_str(),
            "--tag",
            "v1",
            "--commit-suffix",
            "auto",
        ];
        args.extend(extra);
        let out = rbuild_build(&ctx, &dir, &args, ctx.dir.path());
        (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
    };
    let (code, stderr) = pipeline(&[]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("has uncommitted changes") && stderr.contains("--allow-dirty"), "{stderr}");
    let (code, stderr) = pipeline(&["--allow-dirty"]);
    assert_eq!(code, Some(0), "{stderr}");
    let out = ctx.skopeo(&["list-tags".into(), "--tls-verify=false".into(), format!("docker://{addr}/team/app")]);
    let tags: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(tags["Tags"], serde_json::json!([format!("v1-{sha}-dirty")]), "never the clean sha's tag");
}
