//! `rbuild build`: context + Dockerfile → image → registry (and/or tar, OCI layout).

use std::sync::Arc;
use std::time::Instant;

use anyhow::Context as _;
use rbuild_builder::executor::{pull_bases, BuildContext, Executor};
use rbuild_builder::frontend::load_plan;
use rbuild_builder::image::assemble;
use rbuild_builder::plan::UnresolvedBases;
use rbuild_builder::sandbox::{cancel_on_signals, Sandbox};
use rbuild_cache::registry::manifest::ManifestKind;
use rbuild_cache::registry::{ImageToPush, RawManifest, RegistryClient};
use rbuild_cache::store::BlobStore;

use crate::cli::BuildArgs;
use crate::outputs::write_outputs;
use crate::progress::{self, BuildSummary, StepLog, TransferTally};
use crate::settings;

/// Run `rbuild build`.
pub fn run(args: &BuildArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    let s = settings::build_settings(args)?;
    let display = progress::display(args.progress)?;
    let request = settings::plan_request(&args.dockerfile)?;
    let first = load_plan(&s.dockerfile, &request, &UnresolvedBases)?;
    let tally = Arc::new(TransferTally::new(display.clone()));
    let mut client = RegistryClient::new(args.registry.to_config())?;
    client.set_progress(tally.clone());
    let store = BlobStore::open(s.cache_dir.join("store"))?;
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    display.phase("resolving base images");
    let bases = runtime.block_on(pull_bases(&client, &store, &first))?;
    let plan = load_plan(&s.dockerfile, &request, &bases)?;
    for w in &plan.warnings {
        display.warning(&format!("line {}: {}", w.line, w.message));
    }
    let context = BuildContext::open(&s.context, &s.dockerfile)?;
    let work = tempfile::Builder::new().prefix("build-").tempdir_in(&s.cache_dir).context("creating the work directory")?;
    let mut sandbox = Sandbox::new();
    sandbox.isolation(s.isolation);
    let log = StepLog::new(display.clone());
    let executor = Executor {
        context: &context,
        store: &store,
        work_dir: work.path().to_path_buf(),
        layer: s.layer.clone(),
        sandbox,
        identity: s.identity,
        created: s.created.clone(),
        progress: &log,
        cancel: cancel_on_signals().context("installing signal handlers")?,
    };
    let mut built = executor.execute(&plan, &bases)?;
    built.config.config.labels.extend(s.labels.clone());
    let image = assemble(&built.config, built.layers, s.layer.format)?;
    std::fs::remove_dir_all(work.path()).ok();
    store.put_bytes(&image.config_json)?;
    let digest = image.manifest.digest().to_string();
    let mut references = Vec::new();
    if !s.no_push {
        let kind = ManifestKind::from_media_type(image.manifest.media_type().as_ref()).context("manifest media type")?;
        let raw = RawManifest::new(image.manifest_json.clone(), kind);
        for (repo, tags) in &s.destinations {
            display.phase(&format!("pushing {}/{} ({})", repo.registry(), repo.repository(), tags.join(", ")));
            let to_push = ImageToPush::from_manifest(raw.clone(), repo)?;
            // Base layers already in the same registry are mounted, not uploaded again.
            let mount_from: Vec<String> = bases
                .repositories()
                .into_iter()
                .filter(|(registry, _)| registry == repo.registry())
                .map(|(_, repository)| repository)
                .collect();
            runtime.block_on(client.push_image(&store, repo, tags, &to_push, &mount_from))?;
            references.extend(tags.iter().map(|t| format!("{}/{}:{t}@{digest}", repo.registry(), repo.repository())));
        }
    }
    let steps = log.steps();
    let summary = BuildSummary {
        digest,
        references,
        elapsed_seconds: started.elapsed().as_secs_f64(),
        steps_total: steps.len(),
        cache_hits: steps.iter().filter(|s| s.cached).count(),
        bytes_uploaded: tally.uploaded(),
        bytes_downloaded: tally.downloaded(),
        steps,
    };
    write_outputs(&s, &image, &summary)?;
    display.summary(&summary);
    Ok(())
}
