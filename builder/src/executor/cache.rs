//! The step loop's side of the registry cache: before any stage runs, every step's key is
//! computed ([`super::cache_keys`]) and all lookups go out at once; the loop then applies a
//! hit without running anything (config from the entry, the entry's layer descriptor, the
//! entry's history time) and writes an entry in the background after each miss.

use std::time::Duration;

use super::cache_keys::{plan_keys, StageKeys};
use super::remote::CacheMode;
use super::{BaseSet, ExecuteError, Executor};
use crate::image::{History, ImageConfig, ImageLayer};
use crate::layer::{Codec, DiffId, LayerDescriptor, LayerDigest, ManifestFormat};
use crate::plan::{Base, Plan, Stage, Step};
use rbuild_cache::key::CACHE_FORMAT_VERSION;
use rbuild_cache::oci::Digest;
use rbuild_cache::reference::Reference;
use rbuild_cache::remote_cache::{parent_tag, position_tag, CacheEntry, EntryMeta, Lookup};

/// What the cache answered for one step.
#[derive(Debug, Clone)]
pub enum StepAnswer {
    /// Reuse: the config after the step and its layer (blob possibly only in the registry).
    Hit { entry: Box<CacheEntry>, config: Box<ImageConfig>, layer: Option<ImageLayer> },
    /// Run the step; `why` is the explanation (`--explain-cache`).
    Miss { why: String },
}

/// One stage's keys and answers.
#[derive(Debug, Clone)]
pub struct StageCache {
    pub keys: StageKeys,
    pub answers: Vec<StepAnswer>,
    /// Position tag of each step (for explanations of later builds).
    pub positions: Vec<String>,
    /// Whether misses of this stage are written to the cache (`--cache-mode`).
    pub write: bool,
}

/// One line of the cache report.
#[derive(Debug, Clone)]
pub struct StepCacheReport {
    /// `position/count` among the stages that ran, as in the progress view's `[stage 1/2]`.
    pub stage: String,
    pub step: usize,
    pub text: String,
    /// The step's cache key.
    pub key: String,
    pub hit: bool,
    pub why: String,
}

/// Keys and lookups of every needed stage; nothing (no key is computed, no source hashed)
/// without a cache repository.
pub fn prepare(exec: &Executor<'_>, plan: &Plan, bases: &BaseSet) -> Result<Vec<Option<StageCache>>, ExecuteError> {
    let settings = exec.remote.and_then(|r| r.cache.as_ref().map(|c| (r, c)));
    if settings.is_none() {
        return Ok(vec![None; plan.stages.len()]);
    }
    let keys = plan_keys(exec, plan, bases)?;
    let in_image = stages_in_image(plan);
    let all: Vec<_> = keys.iter().flatten().flat_map(|k| k.keys.iter().cloned()).collect();
    let mut lookups = match settings {
        Some((remote, s)) => remote.runtime.block_on(s.cache.lookup_all(&all, s.now)),
        None => Vec::new(),
    }
    .into_iter();
    let mut out = Vec::with_capacity(keys.len());
    for (stage, stage_keys) in plan.stages.iter().zip(keys) {
        let Some(stage_keys) = stage_keys else {
            out.push(None);
            continue;
        };
        let positions: Vec<String> = (0..stage_keys.keys.len())
            .map(|i| {
                position_tag(
                    settings.map_or("", |(_, s)| s.scope.as_str()),
                    &stage.display_name(),
                    i + 1,
                    &stage.platform.to_string(),
                )
            })
            .collect();
        let mut answers = Vec::with_capacity(stage_keys.keys.len());
        for _ in &stage_keys.keys {
            let answer = match (settings, lookups.next()) {
                (Some((remote, s)), Some(Ok(Lookup::Hit(entry)))) => hit(exec, remote, s, entry),
                (_, Some(Ok(Lookup::Miss))) => StepAnswer::Miss { why: "no entry".into() },
                (_, Some(Ok(Lookup::Expired { written }))) => {
                    StepAnswer::Miss { why: format!("entry expired (written {})", crate::image::rfc3339_utc(written)) }
                }
                (_, Some(Ok(Lookup::Corrupt { reason }))) => {
                    tracing::warn!(stage = %stage.display_name(), %reason, "ignoring a corrupt cache entry; the step is rebuilt");
                    StepAnswer::Miss { why: format!("corrupt entry ignored: {reason}") }
                }
                (_, Some(Err(e))) => {
                    tracing::warn!(error = %e, "cache lookup failed; the step runs");
                    StepAnswer::Miss { why: format!("lookup failed: {e}") }
                }
                _ => StepAnswer::Miss { why: "no cache".into() },
            };
            answers.push(answer);
        }
        if let Some((remote, s)) = settings {
            miss_gone_layers(remote, s, &mut answers);
        }
        let write = settings.is_some_and(|(_, s)| s.mode == CacheMode::Max || in_image.contains(&stage.index));
        out.push(Some(StageCache { keys: stage_keys, answers, positions, write }));
    }
    if settings.is_some_and(|(_, s)| s.explain) {
        explain_misses(exec, &mut out);
    }
    Ok(out)
}

/// A hit whose recorded config is readable; otherwise a miss.
fn hit(exec: &Executor<'_>, remote: &super::Remote, s: &super::CacheSettings, entry: Box<CacheEntry>) -> StepAnswer {
    let config: ImageConfig = match serde_json::from_value(entry.meta.image_config.clone()) {
        Ok(c) => c,
        Err(e) => return StepAnswer::Miss { why: format!("corrupt entry ignored: image config: {e}") },
    };
    let layer = match (&entry.layer, &entry.meta.diff_id) {
        (Some(d), Some(diff_id)) => {
            let (Some(codec), Ok(diff_id)) = (Codec::from_media_type(d.media_type()), diff_id.parse()) else {
                return StepAnswer::Miss {
                    why: format!("corrupt entry ignored: layer {} {}", d.media_type(), diff_id),
                };
            };
            remote.add_origin(d.digest(), s.cache.repository());
            let descriptor = LayerDescriptor {
                digest: LayerDigest::new(d.digest().clone()),
                diff_id: DiffId::new(diff_id),
                size: d.size(),
                uncompressed_size: entry.meta.uncompressed_size,
                codec,
                media_type: codec.media_type(exec.layer.format),
            };
            Some(ImageLayer { blob: exec.store.path(d.digest()), descriptor })
        }
        _ => None,
    };
    StepAnswer::Hit { entry, config: Box::new(config), layer }
}

/// Hits before a stage's last miss are unpacked for it, so their layers must be somewhere:
/// a local index entry trusted for a layer pushed before ([`CacheEntry::layer_seen`] false)
/// is checked in the cache repository, and one whose blob is gone (registry retention and
/// garbage collection) becomes a miss — rebuilt and its entry rewritten — not a failed fetch.
fn miss_gone_layers(remote: &super::Remote, s: &super::CacheSettings, answers: &mut [StepAnswer]) {
    let Some(last_miss) = answers.iter().rposition(|a| matches!(a, StepAnswer::Miss { .. })) else { return };
    let unseen: Vec<(usize, Reference, Digest)> = answers
        .iter()
        .take(last_miss)
        .enumerate()
        .filter_map(|(i, a)| match a {
            StepAnswer::Hit { entry, .. } if !entry.layer_seen => entry
                .layer
                .as_ref()
                .map(|l| (i, s.cache.repository().with_digest(entry.manifest.clone()), l.digest().clone())),
            _ => None,
        })
        .collect();
    let client = s.cache.client();
    let found = remote
        .runtime
        .block_on(futures_util::future::join_all(unseen.iter().map(|(_, r, d)| client.blob_exists(r, d))));
    for ((i, _, digest), found) in unseen.into_iter().zip(found) {
        let why = match found {
            Ok(true) => continue,
            Ok(false) => format!("layer blob {digest} is gone from the cache repository; rebuilt"),
            Err(e) => format!("layer blob {digest} cannot be checked ({e}); rebuilt"),
        };
        tracing::warn!(%why, "a locally indexed cache entry is unusable");
        if let Some(answer) = answers.get_mut(i) {
            *answer = StepAnswer::Miss { why };
        }
    }
}

/// For each miss whose lookup found nothing, compares the key with the closest earlier
/// entry — the latest written on the same previous state (parent tag), else the latest for
/// the same step position — and says which components changed.
fn explain_misses(exec: &Executor<'_>, stages: &mut [Option<StageCache>]) {
    let Some(remote) = exec.remote else { return };
    let Some(s) = &remote.cache else { return };
    let wanted: Vec<(usize, usize, Vec<String>)> = stages
        .iter()
        .enumerate()
        .filter_map(|(si, c)| c.as_ref().map(|c| (si, c)))
        .flat_map(|(si, c)| {
            c.answers.iter().enumerate().filter_map(move |(i, a)| match a {
                StepAnswer::Miss { why } if why == "no entry" => {
                    let parent = c.keys.steps.get(i).map(|s| parent_tag(&s.parent));
                    Some((si, i, parent.into_iter().chain(c.positions.get(i).cloned()).collect()))
                }
                _ => None,
            })
        })
        .collect();
    let latest =
        remote.runtime.block_on(futures_util::future::join_all(wanted.iter().map(|(_, _, p)| s.cache.latest_at(p))));
    for ((si, i, _), earlier) in wanted.into_iter().zip(latest) {
        let Some(Some(c)) = stages.get_mut(si) else { continue };
        let Some(ours) = c.keys.steps.get(i) else { continue };
        let why = match earlier {
            None => "no earlier entry for this step".to_string(),
            Some(meta) => {
                let changes: Vec<String> =
                    ours.changes_from(&meta.components).iter().map(ToString::to_string).collect();
                if changes.is_empty() {
                    "entry missing".to_string()
                } else {
                    format!("changed: {}", changes.join(", "))
                }
            }
        };
        if let Some(StepAnswer::Miss { why: w }) = c.answers.get_mut(i) {
            *w = why;
        }
    }
}

/// The target stage and the stages it is built `FROM` (their layers are in the image).
pub(super) fn stages_in_image(plan: &Plan) -> Vec<usize> {
    let mut out = vec![plan.target];
    let mut current = plan.stages.get(plan.target);
    while let Some(Stage { base: Base::Stage { index }, .. }) = current {
        out.push(*index);
        current = plan.stages.get(*index);
    }
    out
}

/// Applies a hit: the recorded config (this build's history and times kept), the layer, and
/// a history entry with the entry's `created`. Returns the layer size.
pub(super) fn apply_hit(
    step: &Step,
    entry: &CacheEntry,
    cached: &ImageConfig,
    layer: Option<&ImageLayer>,
    config: &mut ImageConfig,
    layers: &mut Vec<ImageLayer>,
) -> Option<u64> {
    let mut next = cached.clone();
    next.history = std::mem::take(&mut config.history);
    next.rootfs = std::mem::take(&mut config.rootfs);
    next.created = config.created.take();
    *config = next;
    config.history.push(History {
        created: entry.meta.history_created.clone(),
        created_by: Some(format!("{} # rbuild", step.original.trim())),
        empty_layer: layer.is_none(),
        ..History::default()
    });
    layers.extend(layer.cloned());
    layer.map(|l| l.descriptor.size)
}

/// Writes the entry of a step that ran (in the background), if this stage is written.
pub(super) fn record_miss(
    exec: &Executor<'_>,
    cache: &StageCache,
    i: usize,
    config: &ImageConfig,
    layer: Option<&ImageLayer>,
) {
    let Some(remote) = exec.remote else { return };
    let Some(s) = &remote.cache else { return };
    let (Some(key), Some(components)) = (cache.keys.keys.get(i), cache.keys.steps.get(i)) else { return };
    if !cache.write {
        return;
    }
    let mut recorded = config.clone();
    recorded.history.clear();
    recorded.rootfs = Default::default();
    recorded.created = None;
    let meta = EntryMeta {
        format: CACHE_FORMAT_VERSION,
        key: key.clone(),
        written: s.now,
        write_id: write_id(),
        history_created: config.history.last().and_then(|h| h.created.clone()),
        // Invariant: the config holds only strings, numbers and maps of them.
        image_config: serde_json::to_value(&recorded).expect("image config serialises"),
        diff_id: layer.map(|l| l.descriptor.diff_id.digest().to_string()),
        uncompressed_size: layer.map_or(0, |l| l.descriptor.uncompressed_size),
        components: components.clone(),
    };
    let descriptor = layer.map(|l| l.descriptor.descriptor(ManifestFormat::Oci));
    let tags = cache.positions.get(i).cloned().into_iter().chain([parent_tag(&components.parent)]).collect();
    remote.spawn_write(exec.store, meta, descriptor, tags);
}

/// The TTL default: two weeks (Kaniko's `--cache-ttl`).
pub const DEFAULT_TTL: Duration = Duration::from_secs(336 * 3600);

/// Hit or miss of every step of the stages that ran, in plan order. Stages are numbered as
/// the progress view numbers them: `position/count` among the stages that ran.
pub fn report(plan: &Plan, caches: &[Option<StageCache>]) -> Vec<StepCacheReport> {
    let count = caches.iter().filter(|c| c.is_some()).count();
    plan.stages
        .iter()
        .zip(caches)
        .filter_map(|(stage, c)| c.as_ref().map(|c| (stage, c)))
        .enumerate()
        .flat_map(|(position, (stage, c))| {
            stage.steps.iter().zip(&c.answers).enumerate().map(move |(i, (step, answer))| StepCacheReport {
                stage: format!("{}/{count}", position + 1),
                step: i + 2,
                text: step.original.trim().to_string(),
                key: c.keys.keys.get(i).map(ToString::to_string).unwrap_or_default(),
                hit: matches!(answer, StepAnswer::Hit { .. }),
                why: match answer {
                    StepAnswer::Hit { entry, .. } => format!("entry {}", entry.manifest),
                    StepAnswer::Miss { why } => why.clone(),
                },
            })
        })
        .collect()
}

/// [`EntryMeta::write_id`]: nanoseconds since the epoch and this process's id.
fn write_id() -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    format!("{nanos}-{}", std::process::id())
}
