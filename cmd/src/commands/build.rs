//! `rbuild build`: context + Dockerfile → image → registry (and/or tar, OCI layout).

use std::io::Write as _;
use std::time::Instant;

use anyhow::Context as _;
use rbuild_builder::executor::{pull_bases, BuildContext, Executor, Progress, StepEvent, StepReport};
use rbuild_builder::frontend::load_plan;
use rbuild_builder::image::archive::write_docker_archive_file;
use rbuild_builder::image::{assemble, write_oci_layout};
use rbuild_builder::plan::UnresolvedBases;
use rbuild_builder::sandbox::{cancel_on_signals, Sandbox};
use rbuild_cache::registry::{ImageToPush, RawManifest, RegistryClient};
use rbuild_cache::registry::manifest::ManifestKind;
use rbuild_cache::store::BlobStore;

use crate::cli::BuildArgs;
use crate::settings::{self, BuildSettings};

/// Run `rbuild build`.
pub fn run(args: &BuildArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    let s = settings::build_settings(args)?;
    let isolation = args.isolation.resolve()?;
    let request = settings::plan_request(&args.dockerfile)?;
    let first = load_plan(&s.dockerfile, &request, &UnresolvedBases)?;
    let client = RegistryClient::new(args.registry.to_config())?;
    let store = BlobStore::open(s.cache_dir.join("store"))?;
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    let bases = runtime.block_on(pull_bases(&client, &store, &first))?;
    let plan = load_plan(&s.dockerfile, &request, &bases)?;
    for w in &plan.warnings {
        eprintln!("warning: line {}: {}", w.line, w.message);
    }
    let context = BuildContext::open(&s.context, &s.dockerfile)?;
    let work = tempfile::Builder::new().prefix("build-").tempdir_in(&s.cache_dir).context("creating the work directory")?;
    let mut sandbox = Sandbox::new();
    sandbox.isolation(isolation.mode);
    // Under container isolation the build replaces `/`; what it must keep: its own state,
    // the context and the registry credentials (mounts, /proc, /sys, /dev are spared anyway).
    let docker_config = args.registry.to_config().auth.docker_config_dir;
    let keep: Vec<std::path::PathBuf> = [Some(s.cache_dir.clone()), Some(s.context.clone()), docker_config].into_iter().flatten().collect();
    let roots = crate::isolation_args::stage_roots(isolation.mode, &keep)?;
    let executor = Executor {
        context: &context,
        store: &store,
        work_dir: work.path().to_path_buf(),
        layer: s.layer.clone(),
        sandbox,
        identity: s.identity,
        created: s.created.clone(),
        progress: &PlainProgress,
        cancel: cancel_on_signals().context("installing signal handlers")?,
        roots,
    };
    let mut built = executor.execute(&plan, &bases)?;
    built.config.config.labels.extend(s.labels.clone());
    let image = assemble(&built.config, built.layers, s.layer.format)?;
    std::fs::remove_dir_all(work.path()).ok();
    store.put_bytes(&image.config_json)?;
    let digest = image.manifest.digest().to_string();
    let mut pushed = Vec::new();
    if !s.no_push {
        let kind = ManifestKind::from_media_type(image.manifest.media_type().as_ref()).context("manifest media type")?;
        let raw = RawManifest::new(image.manifest_json.clone(), kind);
        for (repo, tags) in &s.destinations {
            let to_push = ImageToPush::from_manifest(raw.clone(), repo)?;
            // Base layers already in the same registry are mounted, not uploaded again.
            let mount_from: Vec<String> = bases
                .repositories()
                .into_iter()
                .filter(|(registry, _)| registry == repo.registry())
                .map(|(_, repository)| repository)
                .collect();
            let report = runtime.block_on(client.push_image(&store, repo, tags, &to_push, &mount_from))?;
            eprintln!("uploaded {} bytes to {}/{}", report.uploaded_bytes(), repo.registry(), repo.repository());
            pushed.extend(tags.iter().map(|t| format!("{}/{}:{t}", repo.registry(), repo.repository())));
        }
    }
    write_outputs(&s, &image, &digest, &pushed)?;
    eprintln!("digest: {digest}");
    for r in &pushed {
        eprintln!("pushed: {r}@{digest}");
    }
    eprintln!("built in {:.1}s", started.elapsed().as_secs_f64());
    println!("{digest}");
    Ok(())
}

fn write_outputs(s: &BuildSettings, image: &rbuild_builder::image::AssembledImage, digest: &str, pushed: &[String]) -> anyhow::Result<()> {
    let write = |path: &std::path::Path, text: String| std::fs::write(path, text).with_context(|| format!("writing {}", path.display()));
    if let Some(p) = &s.digest_file {
        write(p, digest.to_string())?;
    }
    let repos: Vec<String> = s.destinations.iter().map(|(r, _)| format!("{}/{}", r.registry(), r.repository())).collect();
    if let Some(p) = &s.image_name_with_digest_file {
        write(p, repos.iter().map(|r| format!("{r}@{digest}\n")).collect())?;
    }
    if let Some(p) = &s.image_name_tag_with_digest_file {
        write(p, pushed.iter().map(|r| format!("{r}@{digest}\n")).collect())?;
    }
    if let Some(p) = &s.tar_path {
        write_docker_archive_file(p, image, &s.tag_names())?;
    }
    if let Some(p) = &s.oci_layout_path {
        write_oci_layout(p, image, s.tag_names().first().map(String::as_str))?;
    }
    Ok(())
}

/// One line per step on stderr, RUN output prefixed with the step.
struct PlainProgress;

impl Progress for PlainProgress {
    fn step_started(&self, e: &StepEvent<'_>) {
        eprintln!("[stage {}/{}] STEP {}/{}: {}", e.stage, e.stages, e.step, e.steps, e.text);
    }

    fn output(&self, e: &StepEvent<'_>, chunk: &[u8]) {
        let mut err = std::io::stderr().lock();
        for line in String::from_utf8_lossy(chunk).lines() {
            let _ = writeln!(err, "[stage {}/{}] STEP {}: {line}", e.stage, e.stages, e.step);
        }
    }

    fn step_finished(&self, e: &StepEvent<'_>, r: &StepReport) {
        let layer = r.layer_size.map(|n| format!(", layer {n} bytes")).unwrap_or_default();
        let how = if r.cached { "cached" } else { "done" };
        eprintln!("[stage {}/{}] STEP {}/{}: {how} in {:.2}s{layer}", e.stage, e.stages, e.step, e.steps, r.elapsed.as_secs_f64());
    }
}
