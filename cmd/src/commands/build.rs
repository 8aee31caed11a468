//! `rbuild build`: context + Dockerfile → image → registry (and/or tar, OCI layout).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context as _;
use rbuild_builder::executor::{
    resolve_bases, BaseSet, BuildContext, CacheSettings, ExecuteError, Executor, Remote, SandboxChoice, StageRoots,
    StepCacheReport,
};
use rbuild_builder::frontend::load_plan;
use rbuild_builder::image::assemble;
use rbuild_builder::plan::UnresolvedBases;
use rbuild_builder::sandbox::{cancel_on_signals, CancelToken, Sandbox};
use rbuild_cache::push_record::PushRecord;
use rbuild_cache::reference::Reference;
use rbuild_cache::registry::manifest::ManifestKind;
use rbuild_cache::registry::{ImageToPush, RawManifest, RegistryClient};
use rbuild_cache::remote_cache::RemoteCache;
use rbuild_cache::state::{sweep_dead, sweep_dead_secrets, ProcessLock};
use rbuild_cache::store::BlobStore;

use crate::cli::BuildArgs;
use crate::exit;
use crate::isolation_args::describe;
use crate::outputs::write_outputs;
use crate::progress::{self, BuildSummary, Failure, StepLog, TransferTally};
use crate::settings;

/// What one `rbuild build` run shares between its platform builds: the display, the step
/// log (which remembers a failed step) and the token SIGINT/SIGTERM cancel.
pub struct Session {
    pub display: Arc<dyn progress::Display>,
    pub log: StepLog,
    pub cancel: CancelToken,
    /// This process's claim on its work files in the cache directory, taken by the first
    /// platform build.
    owner: std::sync::Mutex<Option<ProcessLock>>,
}

impl Session {
    /// Locks `<cache_dir>/owners/<pid>` once for the whole run (a second lock of the same file
    /// from this process, on another descriptor, would wait for the first: parallel platform
    /// builds would run one after the other), then removes what killed builds left there
    /// (work directories, half-written store files) and their in-memory secrets.
    fn claim(&self, cache_dir: &std::path::Path, store_dir: &std::path::Path) -> anyhow::Result<()> {
        let mut owner = self.owner.lock().unwrap_or_else(|e| e.into_inner());
        if owner.is_none() {
            *owner = Some(ProcessLock::acquire(cache_dir)?);
            sweep_dead(cache_dir, store_dir);
            sweep_dead_secrets(std::path::Path::new("/dev/shm"));
        }
        Ok(())
    }
}

/// Run `rbuild build`: one platform (a plain manifest), or several (an index; see
/// [`super::build_multi`]). SIGINT and SIGTERM cancel it (checked between phases and steps,
/// and in every registry request in flight); a failure is shown by the display (a failed step
/// with its last output lines; the `error` event of `--progress json`) before `main` prints
/// the error chain.
pub fn run(args: &BuildArgs) -> anyhow::Result<()> {
    let cancel = cancel_on_signals().context("installing signal handlers")?;
    let display = progress::display(args.progress).map_err(exit::usage)?;
    let session = Session { log: StepLog::new(display.clone()), display, cancel, owner: Default::default() };
    let platforms = settings::platforms(&args.dockerfile).map_err(exit::usage)?;
    let result = if platforms.len() > 1 {
        super::build_multi::run(args, &platforms, &session)
    } else {
        build(args, None, &session).map(|_| ())
    };
    if let Err(err) = &result {
        session.display.failed(&Failure::new(
            err,
            session.log.failed_step(),
            &settings::sources(&args.dockerfile).dockerfile,
        ));
    }
    result
}

/// Stops between phases once a signal cancelled the build.
fn check(cancel: &CancelToken) -> anyhow::Result<()> {
    if cancel.is_cancelled() {
        return Err(ExecuteError::Cancelled.into());
    }
    Ok(())
}

/// One platform's image, built and pushed by digest, for a multi-platform build's index.
pub struct PlatformBuild {
    pub image: rbuild_builder::image::AssembledImage,
    pub summary: BuildSummary,
}

/// Build one platform. `part` names the platform of a multi-platform build: its image is
/// pushed by digest only and the output files are left to the index.
pub fn build(
    args: &BuildArgs,
    part: Option<&rbuild_builder::plan::Platform>,
    session: &Session,
) -> anyhow::Result<PlatformBuild> {
    let Session { display, log, cancel, .. } = session;
    let started = Instant::now();
    let s = settings::build_settings(args).map_err(exit::usage)?;
    // With a cache, the `auto` probe (a trial sandbox, tens of ms) runs on its own thread: it
    // overlaps base resolution and cache lookups, and a fully cached build never waits for
    // it. Otherwise it runs here: an explicit mode (which probes nothing) or container
    // isolation in reach (which decides where stage roots live). Under `auto` a choice that
    // fails is reported by the first RUN, so a Dockerfile without RUN still builds where no
    // isolation works (a Pod Security "restricted" pod); an explicit mode that cannot work
    // fails before any network work. The `isolation:` line is printed after the steps.
    let isolation_line = Arc::new(std::sync::OnceLock::new());
    let isolation = if args.isolation.deferrable() && s.cache.is_some() {
        let (isolation_args, line, state_dir) = (args.isolation.clone(), isolation_line.clone(), s.cache_dir.clone());
        Isolation::Probing(std::thread::spawn(move || {
            let chosen = isolation_args.resolve(&state_dir).map_err(|e| format!("{e:#}"))?;
            let _ = line.set(describe(&chosen));
            Ok(sandbox_for(&chosen))
        }))
    } else {
        match args.isolation.resolve(&s.cache_dir) {
            Ok(chosen) => {
                let _ = isolation_line.set(describe(&chosen));
                Isolation::Chosen(chosen)
            }
            Err(e) if args.isolation.failure_deferrable() => Isolation::Failed(format!("{e:#}")),
            Err(e) => return Err(e),
        }
    };
    let mut request = settings::plan_request(&args.dockerfile)?;
    if let Some(platform) = part {
        request.platform = platform.clone();
    }
    let first = load_plan(&s.dockerfile, &request, &UnresolvedBases)?;
    let tally = Arc::new(TransferTally::new(display.clone()));
    let mut client = RegistryClient::new(args.registry.to_config())?;
    client.set_progress(tally.clone());
    let client = Arc::new(client);
    // SIGINT/SIGTERM cancel RUNs and every registry request in flight.
    cancel.on_cancel({
        let client = client.clone();
        move || client.cancel()
    });
    let store = BlobStore::open(s.cache_dir.join("store"))?;
    session.claim(&s.cache_dir, store.root())?;
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    display.phase("resolving base images");
    // Push access to every repository this build writes is checked while the bases resolve:
    // wrong credentials fail here, before any step runs, not at the push.
    let access = runtime.spawn(check_push_access(client.clone(), write_targets(&s)));
    // Base tags are re-resolved on every build; their layers are fetched only if a step misses.
    let bases = runtime.block_on(resolve_bases(&client, &store, &first));
    runtime.block_on(access).context("the push access check stopped")??;
    let bases = bases?;
    check(cancel)?;
    let plan = load_plan(&s.dockerfile, &request, &bases)?;
    for w in &plan.warnings {
        // Line 0: about the whole build (an unused --build-arg), not a Dockerfile line.
        match w.line {
            0 => display.warning(&w.message),
            line => display.warning(&format!("{}:{line}: {}", s.dockerfile.display(), w.message)),
        }
    }
    let context = BuildContext::open(&s.context, &s.dockerfile)?;
    let pushed = PushRecord::new(s.cache_dir.join("pushed"));
    let pushing = !s.no_push && !s.cache_only;
    // What this state pushed to each destination before (read once: the cache's local
    // entries and the push both use it).
    let recorded: Vec<BTreeSet<String>> =
        if pushing { s.destinations.iter().map(|(repo, _)| pushed.known(repo)).collect() } else { Vec::new() };
    let work = tempfile::Builder::new()
        .prefix(&ProcessLock::build_dir_prefix())
        .tempdir_in(&s.cache_dir)
        .context("creating the work directory")?;
    let cache = s.cache.as_ref().map(|c| CacheSettings {
        cache: RemoteCache::new(client.clone(), c.repository.clone(), c.ttl).with_local_entries(
            s.cache_dir.join("entries"),
            store.clone(),
            in_every(&recorded),
        ),
        mode: c.mode,
        explain: c.explain,
        scope: cache_scope(&s),
        read_only: false,
        now: settings::now_secs(),
    });
    let targets = if pushing { s.destinations.iter().map(|(repo, _)| repo.clone()).collect() } else { Vec::new() };
    let remote = Remote::new(runtime.handle().clone(), client.clone(), cache).with_push_targets(targets);
    // Under container isolation the build replaces `/`; what it must keep: its own state,
    // the context and the registry credentials (mounts, /proc, /sys, /dev are spared anyway).
    let (sandbox, roots) = match isolation {
        Isolation::Probing(probe) => (SandboxChoice::deferred(probe), StageRoots::Fresh),
        Isolation::Failed(why) => (SandboxChoice::deferred(std::thread::spawn(move || Err(why))), StageRoots::Fresh),
        Isolation::Chosen(chosen) => {
            let docker_config = args.registry.to_config().auth.docker_config_dir;
            let keep: Vec<std::path::PathBuf> =
                [Some(s.cache_dir.clone()), Some(s.context.clone()), docker_config].into_iter().flatten().collect();
            (SandboxChoice::ready(sandbox_for(&chosen)), crate::isolation_args::stage_roots(chosen.mode, &keep)?)
        }
    };
    let executor = Executor {
        context: &context,
        store: &store,
        work_dir: work.path().to_path_buf(),
        layer: s.layer.clone(),
        sandbox,
        identity: s.identity,
        created: s.created.clone(),
        progress: log,
        cancel: cancel.clone(),
        remote: Some(&remote),
        cache_mounts: s.cache_dir.join("mounts"),
        secrets: s.secrets.clone(),
        roots,
    };
    let built = executor.execute(&plan, &bases);
    // The probe (if any) is joined here: the isolation line always comes after the steps.
    drop(executor);
    if let Some(line) = isolation_line.get() {
        display.phase(line);
    }
    let mut built = built?;
    check(cancel)?;
    if s.cache.as_ref().is_some_and(|c| c.explain) {
        explain(&built.cache);
    }
    built.config.config.labels.extend(s.labels.clone());
    let image = assemble(&built.config, built.layers, s.layer.format)?;
    // Removing a large work dir takes seconds (bigtree: 20,000 files); do it while pushing.
    let work_path = work.keep();
    let cleanup = Cleanup(Some(std::thread::spawn(move || std::fs::remove_dir_all(&work_path))));
    store.put_bytes(&image.config_json)?;
    let digest = image.manifest.digest().to_string();
    if s.tar_path.is_some() || s.oci_layout_path.is_some() {
        remote.fetch(&store, &image.layers, |_| false)?;
    }
    let mut references = Vec::new();
    for failure in remote.wait_for_uploads() {
        tracing::debug!(%failure, "early layer upload failed; the push retries it");
    }
    // A part of a multi-platform build, or `--push-by-digest`: no tag moves.
    let by_digest = part.is_some() || args.push_by_digest;
    if pushing {
        let kind =
            ManifestKind::from_media_type(image.manifest.media_type().as_ref()).context("manifest media type")?;
        let raw = RawManifest::new(image.manifest_json.clone(), kind);
        for ((repo, tags), recorded) in s.destinations.iter().zip(&recorded) {
            check(cancel)?;
            let shown = if by_digest {
                format!("by digest{}", part.map(|p| format!(", {p}")).unwrap_or_default())
            } else {
                tags.join(", ")
            };
            display.phase(&format!("pushing {}/{} ({shown})", repo.registry(), repo.repository()));
            let mut to_push = ImageToPush::from_manifest(raw.clone(), repo)?;
            let image_blobs = to_push.blobs.clone();
            // Blobs this state put there (earlier pushes, layers uploaded while the build ran)
            // are not asked about again; a registry that lost one makes the push check all.
            for (digest, _) in &image_blobs {
                if recorded.contains(&digest.to_string()) || remote.uploaded(repo, digest) {
                    to_push.assume_present(digest);
                }
            }
            // Each layer's known origin (base or cache repository) is mounted from first.
            for layer in &image.layers {
                let digest = layer.descriptor.digest.digest();
                if let Some(origin) = remote.origin(digest).filter(|o| o.registry() == repo.registry()) {
                    to_push.add_source(digest, origin.repository());
                }
            }
            let mount_from = mount_sources(&bases, &s, repo);
            remote.fetch(&store, &image.layers, |origin| origin.registry() == repo.registry())?;
            let push_tags: &[String] = if by_digest { &[] } else { tags };
            runtime.block_on(client.push_image(&store, repo, push_tags, &to_push, &mount_from))?;
            pushed.add(repo, image_blobs.iter().map(|(digest, _)| digest));
            if by_digest {
                references.push(format!("{}/{}@{digest}", repo.registry(), repo.repository()));
            }
            references
                .extend(push_tags.iter().map(|t| format!("{}/{}:{t}@{digest}", repo.registry(), repo.repository())));
        }
    }
    if s.cache.is_some() {
        let writes = remote.wait_for_writes();
        let hits = built.cache.iter().filter(|r| r.hit).count();
        display.phase(&format!(
            "cache: {hits} hit(s), {} miss(es), {} layer bytes downloaded, {} entries written ({} bytes uploaded)",
            built.cache.len() - hits,
            remote.downloaded_bytes(),
            writes.entries,
            writes.uploaded_bytes
        ));
        for failure in &writes.failures {
            display.warning(&format!("cache entry not written: {failure}"));
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
    if part.is_none() {
        write_outputs(&s, &image, &summary)?;
    }
    if let Err(e) = cleanup.finish() {
        display.warning(&format!("cannot remove the work directory: {e}"));
    }
    if part.is_none() {
        display.summary(&summary);
    }
    Ok(PlatformBuild { image, summary })
}

/// The repositories whose push access is checked: the destinations (unless the build pushes
/// no image) and the cache repository when no destination is on its registry. Credentials
/// are per registry, so a destination there covers them; a cache write refused later is a
/// warning, not a failed build, and a warm rebuild then asks the cache repository nothing.
fn write_targets(s: &settings::BuildSettings) -> Vec<Reference> {
    let mut targets: Vec<Reference> = if s.no_push || s.cache_only {
        Vec::new()
    } else {
        s.destinations.iter().map(|(repo, _)| repo.clone()).collect()
    };
    let cache =
        s.cache.iter().map(|c| c.repository.clone()).filter(|c| targets.iter().all(|t| t.registry() != c.registry()));
    targets.extend(cache.collect::<Vec<_>>());
    targets
}

/// Kaniko's push-permission check for each of `targets`, one after the other.
async fn check_push_access(
    client: Arc<RegistryClient>,
    targets: Vec<Reference>,
) -> Result<(), rbuild_cache::registry::RegistryError> {
    for target in &targets {
        client.check_push_access(target).await?;
    }
    Ok(())
}

/// The digests in every one of `sets` (none when there are none): blobs this state pushed
/// to every destination of the build, so a cached layer among them needs nothing of the
/// cache repository.
fn in_every(sets: &[BTreeSet<String>]) -> BTreeSet<String> {
    let Some((first, rest)) = sets.split_first() else { return BTreeSet::new() };
    first.iter().filter(|d| rest.iter().all(|set| set.contains(*d))).cloned().collect()
}

/// Repositories of `repo`'s registry that may hold the image's blobs: base and cached layers
/// there are mounted, not uploaded again (nor downloaded: a fully cached build pushes
/// without fetching a layer).
fn mount_sources(bases: &BaseSet, s: &settings::BuildSettings, repo: &Reference) -> Vec<String> {
    let mut mount_from: Vec<String> = bases
        .repositories()
        .into_iter()
        .chain(s.cache.iter().map(|c| (c.repository.registry().to_string(), c.repository.repository().to_string())))
        .filter(|(registry, _)| registry == repo.registry())
        .map(|(_, repository)| repository)
        .collect();
    mount_from.dedup();
    mount_from
}

/// The RUN isolation: still being probed, or chosen.
enum Isolation {
    Probing(std::thread::JoinHandle<Result<Sandbox, String>>),
    Chosen(rbuild_builder::executor::isolation::Chosen),
    /// No isolation works; the first RUN reports why.
    Failed(String),
}

fn sandbox_for(chosen: &rbuild_builder::executor::isolation::Chosen) -> Sandbox {
    let mut sandbox = Sandbox::new();
    sandbox.isolation(chosen.mode).process_sandbox(chosen.process_sandbox).emulators(settings::emulator_search());
    sandbox
}

/// What tells this Dockerfile's steps apart from another's in the same cache repository.
fn cache_scope(s: &settings::BuildSettings) -> String {
    s.dockerfile.strip_prefix(&s.context).unwrap_or(&s.dockerfile).to_string_lossy().into_owned()
}

/// `--explain-cache`: one line per step.
fn explain(report: &[StepCacheReport]) {
    for r in report {
        let outcome = if r.hit { "hit" } else { "miss" };
        eprintln!("cache: stage {} step {}: {outcome} key {} ({}): {}", r.stage, r.step, r.key, r.why, r.text);
    }
}

/// The work directory's removal, running in the background during the push; waited for on
/// every exit path (an error return included), so no half-removed directory stays behind.
struct Cleanup(Option<std::thread::JoinHandle<std::io::Result<()>>>);

impl Cleanup {
    fn finish(mut self) -> std::io::Result<()> {
        self.0
            .take()
            .map_or(Ok(()), |h| h.join().unwrap_or_else(|_| Err(std::io::Error::other("cleanup thread panicked"))))
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        if let Some(h) = self.0.take() {
            let _ = h.join();
        }
    }
}
