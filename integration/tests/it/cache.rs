//! The registry layer cache end to end: the real binary as the unprivileged user, a real
//! registry (its own access log proves what was downloaded), every build from an empty local
//! state (a fresh `--cache-dir`, like a new pod) unless a test says otherwise. Hits and misses
//! are read from `--explain-cache`, images are checked by running them.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::build::{chown_to_user, ok, run_in, Harness};
use crate::support::rbuild_bin;

/// One line of `--explain-cache`.
#[derive(Debug, Clone)]
struct Explained {
    stage: String,
    step: usize,
    hit: bool,
    key: String,
    line: String,
}

fn explained(out: &Output) -> Vec<Explained> {
    String::from_utf8_lossy(&out.stderr)
        .lines()
        .filter_map(|l| {
            let rest = l.strip_prefix("cache: stage ")?;
            let (stage, rest) = rest.split_once(" step ")?;
            let (step, rest) = rest.split_once(": ")?;
            let (outcome, rest) = rest.split_once(" key ")?;
            let key = rest.split_whitespace().next()?.to_string();
            Some(Explained {
                stage: stage.into(),
                step: step.parse().ok()?,
                hit: outcome == "hit",
                key,
                line: l.into(),
            })
        })
        .collect()
}

fn hits(out: &Output) -> Vec<bool> {
    explained(out).iter().map(|e| e.hit).collect()
}

/// The cache-steps case: a registry with base images, its context, a cache repository.
struct Case {
    h: Harness,
    context: PathBuf,
    cache_repo: String,
    fresh: std::sync::atomic::AtomicUsize,
}

impl Case {
    async fn start(case: &str) -> Option<Self> {
        let h = Harness::start().await?;
        let context = h.context(case);
        let cache_repo = h.image("team/app/cache");
        Some(Self { h, context, cache_repo, fresh: std::sync::atomic::AtomicUsize::new(0) })
    }

    /// An empty local state directory owned by the build user.
    fn fresh_dir(&self) -> PathBuf {
        let n = self.fresh.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        let dir = self.h.shared.path().join(format!("state-{n}"));
        std::fs::create_dir(&dir).unwrap();
        chown_to_user(&dir);
        dir
    }

    /// Builds with the cache, from an empty local state; `extra` flags appended.
    fn build(&self, image: &str, extra: &[&str]) -> Output {
        self.build_context(&self.context, image, extra)
    }

    fn build_context(&self, context: &Path, image: &str, extra: &[&str]) -> Output {
        self.build_with(context, &self.fresh_dir(), image, extra)
    }

    /// Builds with the cache from the local state `state` (kept across builds).
    fn build_in_state(&self, state: &Path, image: &str) -> Output {
        self.build_with(&self.context, state, image, &[])
    }

    fn build_with(&self, context: &Path, state: &Path, image: &str, extra: &[&str]) -> Output {
        let base = self.h.base();
        let mut args = vec![
            "--context",
            context.to_str().unwrap(),
            "--build-arg",
            &base,
            "--cache-repo",
            &self.cache_repo,
            "--explain-cache",
        ];
        let image = self.h.image(image);
        args.extend(["--destination", &image]);
        args.extend(extra);
        ok(self.h.build_in(state, &args))
    }

    fn edit(&self, path: &str, content: &str) {
        std::fs::write(self.context.join(path), content).unwrap();
    }

    fn digest_of(out: &Output) -> String {
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    fn run(&self, image: &str) -> String {
        let rootfs = self.h.unpack(&self.h.image(image));
        run_in(&rootfs, &["cat", "/src/app.txt", "/dep-copy.txt", "/commit.txt"])
    }

    /// The registry's file for blob `digest` (`sha256:…`).
    fn blob_file(&self, digest: &str) -> PathBuf {
        let hex = digest.trim_start_matches("sha256:");
        self.h.ctx.registry.dir().join("storage/docker/registry/v2/blobs/sha256").join(&hex[..2]).join(hex).join("data")
    }

    /// The entry manifest stored under a key.
    fn entry(&self, key: &str) -> serde_json::Value {
        let out = self.h.ctx.skopeo(&[
            "inspect".into(),
            "--tls-verify=false".into(),
            "--raw".into(),
            format!("docker://{}:{}", self.cache_repo, key.replacen(':', "-", 1)),
        ]);
        serde_json::from_slice(&out.stdout).unwrap()
    }

    /// Replaces the manifest under a cache repository tag.
    fn put_entry(&self, tag: &str, manifest: &serde_json::Value) {
        let (addr, repo) = self.cache_repo.split_once('/').unwrap();
        let mut child = Command::new("curl")
            .args([
                "-sSf",
                "-X",
                "PUT",
                "-H",
                "Content-Type: application/vnd.oci.image.manifest.v1+json",
                "--data-binary",
                "@-",
            ])
            .arg(format!("http://{addr}/v2/{repo}/manifests/{tag}"))
            .stdin(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        std::io::Write::write_all(&mut child.stdin.take().unwrap(), &serde_json::to_vec(manifest).unwrap()).unwrap();
        assert!(child.wait().unwrap().success(), "PUT {tag}");
    }

    fn tags(&self) -> Vec<String> {
        let out = self.h.ctx.skopeo(&[
            "list-tags".into(),
            "--tls-verify=false".into(),
            format!("docker://{}", self.cache_repo),
        ]);
        let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        json["Tags"].as_array().unwrap().iter().map(|t| t.as_str().unwrap().to_string()).collect()
    }
}

const ALL_HIT: [bool; 7] = [true; 7];
const ALL_MISS: [bool; 7] = [false; 7];

#[tokio::test]
async fn fully_cached_rebuild_hits_every_step_downloads_no_layer_and_keeps_the_digest() {
    let Some(c) = Case::start("build/cache-steps").await else { return };
    let first = c.build("cache/app:v1", &[]);
    assert_eq!(hits(&first), ALL_MISS, "{}", String::from_utf8_lossy(&first.stderr));
    let log_before = c.h.ctx.registry.log().len();
    let second = c.build("cache/app:v2", &[]);
    assert_eq!(hits(&second), ALL_HIT, "{}", String::from_utf8_lossy(&second.stderr));
    assert_eq!(Case::digest_of(&first), Case::digest_of(&second), "a fully cached rebuild must give the same image");
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(stderr.contains("0 layer bytes downloaded"), "{stderr}");
    // The registry's own log: the first build fetched the base layer (it ran RUN), the second
    // fetched no layer of the image at all.
    let manifest = c.h.ctx.skopeo(&[
        "inspect".into(),
        "--tls-verify=false".into(),
        "--raw".into(),
        format!("docker://{}", c.h.image("cache/app:v2")),
    ]);
    let manifest: serde_json::Value = serde_json::from_slice(&manifest.stdout).unwrap();
    let layers: Vec<String> =
        manifest["layers"].as_array().unwrap().iter().map(|l| l["digest"].as_str().unwrap().to_string()).collect();
    assert_eq!(layers.len(), 6, "base + 5 filesystem steps: {manifest}");
    let log = c.h.ctx.registry.log();
    let blob_gets = |text: &str, digest: &str| {
        text.lines().filter(|l| l.contains("GET /v2/") && l.contains(&format!("/blobs/{digest}"))).count()
    };
    assert!(blob_gets(&log[..log_before], &layers[0]) >= 1, "the log must show the first build's base layer download");
    for layer in &layers {
        assert_eq!(blob_gets(&log[log_before..], layer), 0, "layer {layer} downloaded by the cached rebuild");
    }
    assert_eq!(c.run("cache/app:v2"), "app v1\ndependency v1\ncommit none\n");
}

/// One input change and the hits it must give (steps 2–8), applied in order.
struct Change {
    name: &'static str,
    edit: fn(&Case),
    args: &'static [&'static str],
    hits: [bool; 7],
    /// A step whose explanation must contain this text.
    why: Option<(usize, &'static str)>,
}

const CHANGES: [Change; 6] = [
    Change {
        name: "ignored file changed",
        edit: |c| c.edit("src/noise.log", "other noise\n"),
        args: &[],
        hits: ALL_HIT,
        why: None,
    },
    Change { name: "undeclared build arg", edit: |_| {}, args: &["--build-arg", "OTHER=1"], hits: ALL_HIT, why: None },
    Change {
        name: "build arg used late",
        edit: |_| {},
        args: &["--build-arg", "COMMIT_SHA=abc"],
        hits: [true, true, true, false, false, false, false],
        why: Some((5, "build args COMMIT_SHA)")),
    },
    Change { name: "build arg back to default", edit: |_| {}, args: &[], hits: ALL_HIT, why: None },
    Change {
        name: "copied source changed",
        edit: |c| c.edit("src/app.txt", "app v2\n"),
        args: &[],
        hits: [true, true, true, true, false, false, false],
        why: Some((6, "(changed: source files)")),
    },
    Change {
        name: "early dependency changed",
        edit: |c| c.edit("dep.txt", "dependency v2\n"),
        args: &[],
        hits: [true, false, false, false, false, false, false],
        why: Some((3, "(changed: source files)")),
    },
];

/// Which inputs change which steps' keys (steps 2–8 of `cache-steps`), each from an empty
/// local state against the cache the first build filled.
#[tokio::test]
async fn changed_inputs_miss_from_the_changed_step_on_and_hit_before() {
    let Some(c) = Case::start("build/cache-steps").await else { return };
    assert_eq!(hits(&c.build("cache/app:base", &[])), ALL_MISS);
    for (i, change) in CHANGES.iter().enumerate() {
        (change.edit)(&c);
        let image = format!("cache/app:case{i}");
        let out = c.build(&image, change.args);
        assert_eq!(hits(&out), change.hits, "{}:\n{}", change.name, String::from_utf8_lossy(&out.stderr));
        if let Some((step, text)) = change.why {
            let e = explained(&out).into_iter().find(|e| e.step == step).unwrap();
            assert!(e.line.contains(text), "{}: step {step} should explain {text:?}: {}", change.name, e.line);
        }
    }
    assert_eq!(c.run("cache/app:case5"), "app v2\ndependency v2\ncommit none\n");
}

#[tokio::test]
async fn new_base_digest_misses_everything_and_expired_entries_miss() {
    let Some(c) = Case::start("build/cache-steps").await else { return };
    let addr = c.h.ctx.registry.addr().to_string();
    let copy = |from: &str| {
        c.h.ctx.skopeo(&[
            "copy".into(),
            "-q".into(),
            "--src-tls-verify=false".into(),
            "--dest-tls-verify=false".into(),
            format!("docker://{addr}/{from}:latest"),
            format!("docker://{addr}/movingbase:latest"),
        ]);
        c.h.digest(&format!("{addr}/movingbase:latest"))
    };
    let before = copy("busybox");
    let base = format!("BASE={addr}/movingbase:latest");
    // --cache-only fills the cache without pushing an image.
    let warm = c.build_context(&c.context, "unused:v1", &["--build-arg", &base, "--cache-only"]);
    assert_eq!(hits(&warm), ALL_MISS);
    let pushed = Command::new("skopeo")
        .args(["inspect", "--tls-verify=false", &format!("docker://{}", c.h.image("unused:v1"))])
        .output()
        .unwrap();
    assert!(!pushed.status.success(), "--cache-only must not push");
    assert_eq!(hits(&c.build("cache/moving:v1", &["--build-arg", &base])), ALL_HIT);
    let after = copy("busybox-docker");
    assert_ne!(before, after, "the base tag must name a new digest");
    let out = c.build("cache/moving:v2", &["--build-arg", &base]);
    assert_eq!(hits(&out), ALL_MISS);
    let first = explained(&out).into_iter().next().unwrap();
    assert!(first.line.contains("previous step or base image"), "{}", first.line);
    std::thread::sleep(std::time::Duration::from_secs(2));
    let out = c.build("cache/moving:v3", &["--build-arg", &base, "--cache-ttl", "1s"]);
    assert_eq!(hits(&out), ALL_MISS);
    assert!(explained(&out).iter().all(|e| e.line.contains("expired")), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(hits(&c.build("cache/moving:v4", &["--build-arg", &base])), ALL_HIT, "a long TTL hits again");
}

/// What a test does to one step's entry in the registry.
#[derive(Debug, Clone, Copy)]
enum Tamper {
    /// The entry as an older rbuild wrote it: no config embedded in the manifest (readers
    /// fetch the config blob).
    OldFormat,
    /// Its layer blob disappears (a half-written or collected entry).
    LayerGone,
    /// An older-format entry whose config blob is garbage (digest mismatch).
    OldFormatBadConfig,
    /// The embedded config is not the blob its digest names.
    DataMismatch,
}

/// Steps 2–8 of `cache-steps` by index: what is done to the entry, whether it still hits.
const TAMPERED: [(usize, Tamper, bool); 4] = [
    (0, Tamper::OldFormat, true),
    (1, Tamper::LayerGone, false),
    (4, Tamper::OldFormatBadConfig, false),
    (5, Tamper::DataMismatch, false),
];

#[tokio::test]
async fn corrupt_entries_are_ignored_rebuilt_and_never_used() {
    let Some(c) = Case::start("build/cache-steps").await else { return };
    let first = c.build("cache/app:v1", &[]);
    let steps = explained(&first);
    let mut want = ALL_HIT;
    for (i, tamper, hit) in TAMPERED {
        want[i] = hit;
        let tag = steps[i].key.replacen(':', "-", 1);
        let mut entry = c.entry(&steps[i].key);
        assert!(entry["config"]["data"].is_string(), "entries embed their config: {entry}");
        match tamper {
            Tamper::OldFormat => {
                entry["config"].as_object_mut().unwrap().remove("data");
                c.put_entry(&tag, &entry);
            }
            Tamper::LayerGone => {
                std::fs::remove_file(c.blob_file(entry["layers"][0]["digest"].as_str().unwrap())).unwrap()
            }
            Tamper::OldFormatBadConfig => {
                std::fs::write(c.blob_file(entry["config"]["digest"].as_str().unwrap()), b"{not json").unwrap();
                entry["config"].as_object_mut().unwrap().remove("data");
                c.put_entry(&tag, &entry);
            }
            Tamper::DataMismatch => {
                // Base64 of `{"other":1}`: valid JSON, not the blob the digest names.
                entry["config"]["data"] = "eyJvdGhlciI6MX0=".into();
                c.put_entry(&tag, &entry);
            }
        }
    }
    let second = c.build("cache/app:v2", &[]);
    assert_eq!(hits(&second), want, "{}", String::from_utf8_lossy(&second.stderr));
    let lines = explained(&second);
    for (i, tamper, hit) in TAMPERED {
        assert_eq!(lines[i].line.contains("corrupt"), !hit, "{tamper:?}: {}", lines[i].line);
    }
    assert_eq!(c.run("cache/app:v2"), "app v1\ndependency v1\ncommit none\n");
    let third = c.build("cache/app:v3", &[]);
    assert_eq!(
        hits(&third),
        ALL_HIT,
        "rebuilt entries replace the corrupt ones; second build:\n{}\nthird build:\n{}",
        String::from_utf8_lossy(&second.stderr),
        String::from_utf8_lossy(&third.stderr)
    );
    assert_eq!(c.run("cache/app:v3"), "app v1\ndependency v1\ncommit none\n");
}

/// Access-log lines of requests to the cache repository in `log`.
fn cache_repo_requests<'a>(c: &Case, log: &'a str) -> Vec<&'a str> {
    let path = format!(" /v2/{}/", c.cache_repo.split_once('/').unwrap().1);
    log.lines().filter(|l| l.contains(&path) && l.contains(" HTTP/1.1\"")).collect()
}

#[tokio::test]
async fn warm_rebuild_answers_from_the_local_entry_index_while_its_layers_are_local() {
    let Some(c) = Case::start("build/cache-steps").await else { return };
    let state = c.fresh_dir();
    let build = |image: &str| c.build_in_state(&state, image);
    let first = build("cache/warm:v1");
    assert_eq!(hits(&first), ALL_MISS);
    // One index per cache repository (issue 18): `entries/<registry>/<repository>/`.
    let index = state.join("entries").join(&c.cache_repo);
    assert_eq!(std::fs::read_dir(&index).unwrap().count(), 7, "every written entry is kept locally");
    // A request after the first build's last one: everything before it is in the log.
    c.tags();
    let mark = c.h.ctx.registry.log().len();
    let second = build("cache/warm:v2");
    assert_eq!(hits(&second), ALL_HIT, "{}", String::from_utf8_lossy(&second.stderr));
    assert_eq!(Case::digest_of(&first), Case::digest_of(&second));
    let log = c.h.ctx.registry.log();
    assert_eq!(
        cache_repo_requests(&c, &log[mark..]),
        Vec::<&str>::new(),
        "a warm rebuild asks the cache repository nothing"
    );
    // Step 3's layer leaves the local store: its entry is looked up in the registry again
    // (and only it); the image, pushed to a new repository, is still complete.
    let steps = explained(&first);
    let layer = c.entry(&steps[1].key)["layers"][0]["digest"].as_str().unwrap().to_string();
    std::fs::remove_file(state.join("store/blobs/sha256").join(layer.trim_start_matches("sha256:"))).unwrap();
    c.tags();
    let mark = c.h.ctx.registry.log().len();
    let third = build("cache/warm-elsewhere:v3");
    assert_eq!(hits(&third), ALL_HIT, "{}", String::from_utf8_lossy(&third.stderr));
    let log = c.h.ctx.registry.log();
    let asked = cache_repo_requests(&c, &log[mark..]);
    let tag = steps[1].key.replacen(':', "-", 1);
    assert!(
        !asked.is_empty() && asked.iter().all(|l| l.contains(&tag) || l.contains(&layer)),
        "only step 3 goes to the registry: {asked:#?}"
    );
    assert_eq!(Case::digest_of(&first), Case::digest_of(&third));
    assert_eq!(c.run("cache/warm-elsewhere:v3"), "app v1\ndependency v1\ncommit none\n");
}

/// A warm rebuild pushing to the repository it pushed to before asks nothing about the blobs
/// it recorded there; when the registry has lost one, the manifest `PUT` says so and the
/// push checks them all, uploads what is gone and still completes.
#[tokio::test]
async fn a_push_trusts_its_record_of_pushed_blobs_until_the_registry_lost_one() {
    let Some(c) = Case::start("build/cache-steps").await else { return };
    let state = c.fresh_dir();
    let build = |image: &str| c.build_in_state(&state, image);
    let heads = |log: &str| log.lines().filter(|l| l.contains("\"HEAD /v2/cache/rec/blobs/")).count();
    let first = build("cache/rec:v1");
    c.tags();
    let mark = c.h.ctx.registry.log().len();
    build("cache/rec:v2");
    assert_eq!(heads(&c.h.ctx.registry.log()[mark..]), 0, "recorded blobs are not checked again");
    let layer = c.entry(&explained(&first)[1].key)["layers"][0]["digest"].as_str().unwrap().to_string();
    std::fs::remove_file(c.blob_file(&layer)).unwrap();
    c.tags();
    let mark = c.h.ctx.registry.log().len();
    let third = build("cache/rec:v3");
    assert_eq!(hits(&third), ALL_HIT, "{}", String::from_utf8_lossy(&third.stderr));
    let log = c.h.ctx.registry.log();
    assert!(heads(&log[mark..]) > 0, "after the refused manifest every recorded blob is checked");
    assert!(
        log[mark..].lines().any(
            |l| l.contains("\"PUT /v2/cache/rec/blobs/uploads/") && l.contains(layer.trim_start_matches("sha256:"))
        ),
        "the lost layer is uploaded again: {}",
        &log[mark..]
    );
    assert_eq!(c.run("cache/rec:v3"), "app v1\ndependency v1\ncommit none\n");
}

/// Issue 16: the local index trusts an entry whose layer it pushed before; when the registry
/// lost that blob (retention and GC) and the local store no longer has it, a later build that
/// must unpack it (a later step misses) rebuilds that step and rewrites its entry instead of
/// failing to fetch it.
#[tokio::test]
async fn an_indexed_entry_whose_layer_the_registry_lost_is_a_miss_and_is_rewritten() {
    let Some(c) = Case::start("build/cache-steps").await else { return };
    let state = c.fresh_dir();
    let first = c.build_in_state(&state, "cache/gc:v1");
    assert_eq!(hits(&first), ALL_MISS);
    let key = explained(&first)[0].key.clone();
    let layer = c.entry(&key)["layers"][0]["digest"].as_str().unwrap().to_string();
    std::fs::remove_file(c.blob_file(&layer)).unwrap();
    std::fs::remove_file(state.join("store/blobs/sha256").join(layer.trim_start_matches("sha256:"))).unwrap();
    c.edit("src/app.txt", "app v2\n");
    let second = c.build_in_state(&state, "cache/gc:v2");
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert_eq!(hits(&second), [false, true, true, true, false, false, false], "{stderr}");
    assert!(explained(&second)[0].line.contains("is gone from the cache repository"), "{stderr}");
    let rewritten = c.entry(&key)["layers"][0]["digest"].as_str().unwrap().to_string();
    assert!(c.blob_file(&rewritten).is_file(), "the entry is rewritten with a layer the registry holds");
    let rootfs = c.h.unpack(&c.h.image("cache/gc:v2"));
    let files = ["cat", "/first.txt", "/src/app.txt", "/dep-copy.txt", "/commit.txt"];
    assert_eq!(run_in(&rootfs, &files), "first\napp v2\ndependency v1\ncommit none\n");
}

#[tokio::test]
async fn eight_concurrent_builds_of_two_dockerfiles_share_one_cache_repo() {
    let Some(c) = Case::start("build/cache-steps").await else { return };
    let other = c.h.context("build/cache-other");
    let outputs: Vec<Output> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..8)
            .map(|i| {
                let (c, other) = (&c, &other);
                s.spawn(move || {
                    let context = if i % 2 == 0 { &c.context } else { other };
                    c.build_context(context, &format!("cache/concurrent:b{i}"), &[])
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(outputs.len(), 8);
    for i in 0..8 {
        let rootfs = c.h.unpack(&c.h.image(&format!("cache/concurrent:b{i}")));
        let out = if i % 2 == 0 {
            run_in(&rootfs, &["cat", "/src/app.txt", "/dep-copy.txt"])
        } else {
            run_in(&rootfs, &["cat", "/artifact.txt"])
        };
        assert_eq!(out, if i % 2 == 0 { "app v1\ndependency v1\n" } else { "built\n" }, "build {i}");
    }
    // Whatever raced, the cache now answers every step of both Dockerfiles.
    assert_eq!(hits(&c.build("cache/concurrent:after", &[])), ALL_HIT);
    assert!(hits(&c.build_context(&other, "cache/concurrent:after-other", &[])).iter().all(|h| *h));
}

#[tokio::test]
async fn cache_mode_min_skips_stages_outside_the_image() {
    let Some(c) = Case::start("build/cache-other").await else { return };
    let first = c.build("cache/min:v1", &["--cache-mode", "min"]);
    assert!(hits(&first).iter().all(|h| !h));
    let second = c.build("cache/min:v2", &["--cache-mode", "min"]);
    let by_stage: Vec<(String, bool)> = explained(&second).into_iter().map(|e| (e.stage, e.hit)).collect();
    // Numbered as the progress view numbers them (issue 18): position/count of the stages that ran.
    assert_eq!(
        by_stage,
        [("1/2".to_string(), false), ("2/2".into(), true), ("2/2".into(), true), ("2/2".into(), true)]
    );
    let rootfs = c.h.unpack(&c.h.image("cache/min:v2"));
    assert_eq!(run_in(&rootfs, &["cat", "/artifact.txt"]), "built\n");
}

#[tokio::test]
async fn prune_deletes_old_entries_only() {
    let Some(c) = Case::start("build/cache-steps").await else { return };
    let old = explained(&c.build("cache/app:old", &[]));
    std::thread::sleep(std::time::Duration::from_secs(1));
    let mid = now();
    std::thread::sleep(std::time::Duration::from_secs(2));
    c.edit("src/app.txt", "app v3\n");
    let new = explained(&c.build("cache/app:new", &[]));
    let tag = |e: &Explained| e.key.replacen(':', "-", 1);
    let prune = |older_than: String| {
        let out = Command::new(rbuild_bin())
            .args([
                "cache",
                "prune",
                "--cache-repo",
                &c.cache_repo,
                "--older-than",
                &older_than,
                "--insecure-registry",
                c.h.ctx.registry.addr(),
            ])
            .output()
            .unwrap();
        assert!(out.status.success(), "prune: {}", String::from_utf8_lossy(&out.stderr));
    };
    prune("1000h".into());
    let tags = c.tags();
    assert!(old.iter().chain(&new).all(|e| tags.contains(&tag(e))), "nothing is that old: {tags:?}");
    prune(format!("{}s", now() - mid));
    let tags = c.tags();
    // The new build's hits (steps 2–6) wrote nothing, so those entries are old and go; its
    // own misses (steps 7–8) stay.
    for e in &old {
        assert!(!tags.contains(&tag(e)), "old entry {} kept: {tags:?}", e.key);
    }
    for e in new.iter().filter(|e| !e.hit) {
        assert!(tags.contains(&tag(e)), "new entry {} deleted: {tags:?}", e.key);
    }
}

#[tokio::test]
async fn warm_prefetches_base_images_into_a_local_dir() {
    let Some(c) = Case::start("build/cache-steps").await else { return };
    let dir = c.fresh_dir();
    let image = c.h.image("busybox:latest");
    let warm = |dir: &Path| {
        let out = Command::new(rbuild_bin())
            .args(["warm", "--image", &image, "--insecure-registry", c.h.ctx.registry.addr(), "--cache-dir"])
            .arg(dir)
            .output()
            .unwrap();
        assert!(out.status.success(), "warm: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    assert!(warm(&dir).contains("0 layer(s) already present, 1 fetched"));
    assert!(warm(&dir).contains("1 layer(s) already present, 0 fetched"));
    let manifest =
        c.h.ctx.skopeo(&["inspect".into(), "--tls-verify=false".into(), "--raw".into(), format!("docker://{image}")]);
    let manifest: serde_json::Value = serde_json::from_slice(&manifest.stdout).unwrap();
    let layer = manifest["layers"][0]["digest"].as_str().unwrap().trim_start_matches("sha256:").to_string();
    assert!(dir.join("store/blobs/sha256").join(layer).is_file());
}

fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64
}
