//! `rbuild build --platform a,b,…`: every platform built (two at once on two or more
//! cores), each image pushed by digest, then one index (see [`rbuild_cache::index`]) pushed
//! under every tag. No tag ever names a single-platform image of such a build.

use std::path::Path;

use anyhow::{bail, Context as _};
use rbuild_builder::image::write_oci_layout_index;
use rbuild_builder::plan::Platform;
use rbuild_cache::index::{EntryPlatform, IndexBuilder, PlatformImage};
use rbuild_cache::registry::{ImageToPush, RawManifest, RegistryClient};
use rbuild_cache::store::BlobStore;
use serde_json::json;

use super::build::{build, PlatformBuild, Session};
use crate::cli::BuildArgs;
use crate::outputs::{BUILD_JSON, DIGEST};
use crate::progress::BuildSummary;
use crate::settings::{self, BuildSettings};

/// Run a multi-platform build.
pub fn run(args: &BuildArgs, platforms: &[Platform], session: &Session) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    let s = settings::build_settings(args)?;
    if s.tar_path.is_some() {
        bail!(
            "--tar-path holds one platform's image; a multi-platform build ({}) writes --oci-layout-path instead",
            list(platforms)
        );
    }
    let display = &session.display;
    let builds = build_all(args, platforms, session)?;
    let images = builds.iter().map(platform_image).collect::<anyhow::Result<Vec<_>>>()?;
    let mut index = IndexBuilder::new();
    index.upsert_all(&images)?;
    let raw = index.finish();
    let digest = raw.digest.to_string();
    let mut references = Vec::new();
    if !s.no_push && !s.cache_only {
        let client = RegistryClient::new(args.registry.to_config())?;
        let store = BlobStore::open(s.cache_dir.join("store"))?;
        let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
        for (repo, tags) in &s.destinations {
            let tags: &[String] = if args.push_by_digest { &[] } else { tags };
            display.phase(&format!(
                "pushing the index of {} to {}/{} ({})",
                list(platforms),
                repo.registry(),
                repo.repository(),
                tags.join(", ")
            ));
            let to_push = ImageToPush::from_manifest(raw.clone(), repo)?;
            runtime.block_on(client.push_image(&store, repo, tags, &to_push, &[]))?;
            let name = format!("{}/{}", repo.registry(), repo.repository());
            if tags.is_empty() {
                references.push(format!("{name}@{digest}"));
            }
            references.extend(tags.iter().map(|t| format!("{name}:{t}@{digest}")));
        }
    }
    let summary = merged_summary(&builds, digest, references, started.elapsed().as_secs_f64());
    write_index_outputs(&s, &raw, &builds, &images, &summary)?;
    display.summary(&summary);
    Ok(())
}

/// Build every platform, `parallel` at a time; the first failure is returned once the
/// builds under way have finished.
fn build_all(args: &BuildArgs, platforms: &[Platform], session: &Session) -> anyhow::Result<Vec<PlatformBuild>> {
    // Two cores run a native and an emulated build side by side; more builds at once only
    // compete for the same cores.
    let parallel = std::thread::available_parallelism().map_or(1, usize::from).clamp(1, 2);
    let mut out = Vec::new();
    for chunk in platforms.chunks(parallel) {
        let results: Vec<anyhow::Result<PlatformBuild>> = std::thread::scope(|scope| {
            let handles: Vec<_> = chunk
                .iter()
                .map(|p| {
                    scope.spawn(move || build(args, Some(p), session).with_context(|| format!("building platform {p}")))
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or_else(|_| Err(anyhow::anyhow!("a platform build panicked"))))
                .collect()
        });
        for result in results {
            out.push(result?);
        }
    }
    Ok(out)
}

/// The index entry of one build: its manifest, with the platform fields of its config.
fn platform_image(b: &PlatformBuild) -> anyhow::Result<PlatformImage> {
    let digest = b.image.manifest.digest().clone();
    let platform = EntryPlatform::from_config(&b.image.config_json, &digest)?;
    Ok(PlatformImage {
        size: b.image.manifest.size(),
        media_type: b.image.manifest.media_type().to_string(),
        platform,
        digest,
    })
}

/// One summary for the whole build: the index digest, the tags, every platform's steps.
fn merged_summary(
    builds: &[PlatformBuild],
    digest: String,
    references: Vec<String>,
    elapsed_seconds: f64,
) -> BuildSummary {
    let parts = builds.iter().map(|b| &b.summary);
    BuildSummary {
        digest,
        references,
        elapsed_seconds,
        steps_total: parts.clone().map(|p| p.steps_total).sum(),
        cache_hits: parts.clone().map(|p| p.cache_hits).sum(),
        bytes_uploaded: parts.clone().map(|p| p.bytes_uploaded).sum(),
        bytes_downloaded: parts.clone().map(|p| p.bytes_downloaded).sum(),
        steps: parts.flat_map(|p| p.steps.iter().cloned()).collect(),
    }
}

/// The output files, describing the index; `build.json` also lists each platform's image.
fn write_index_outputs(
    s: &BuildSettings,
    raw: &RawManifest,
    builds: &[PlatformBuild],
    images: &[PlatformImage],
    summary: &BuildSummary,
) -> anyhow::Result<()> {
    let write =
        |path: &Path, text: &str| std::fs::write(path, text).with_context(|| format!("writing {}", path.display()));
    let digest = &summary.digest;
    if let Some(p) = &s.digest_file {
        write(p, digest)?;
    }
    if let Some(p) = &s.image_name_with_digest_file {
        write(
            p,
            &s.destinations
                .iter()
                .map(|(r, _)| format!("{}/{}@{digest}\n", r.registry(), r.repository()))
                .collect::<String>(),
        )?;
    }
    if let Some(p) = &s.image_name_tag_with_digest_file {
        write(p, &summary.references.iter().map(|r| format!("{r}\n")).collect::<String>())?;
    }
    if let Some(p) = &s.oci_layout_path {
        let parts: Vec<_> = builds.iter().zip(images).map(|(b, i)| (&b.image, i.platform.clone())).collect();
        write_oci_layout_index(p, &parts, s.tag_names().first().map(String::as_str))?;
    }
    if let Some(dir) = &s.output_dir {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let mut json = serde_json::to_value(summary).context("serialising the build summary")?;
        json["mediaType"] = json!(raw.kind.media_type());
        json["platforms"] = images
            .iter()
            .zip(builds)
            .map(|(i, b)| json!({"platform": i.platform.target().to_string(), "digest": i.digest.to_string(), "steps_total": b.summary.steps_total, "cache_hits": b.summary.cache_hits}))
            .collect();
        let text = serde_json::to_string_pretty(&json).context("serialising the build summary")?;
        write(&dir.join(BUILD_JSON), &format!("{text}\n"))?;
        write(&dir.join(DIGEST), digest)?;
    }
    Ok(())
}

fn list(platforms: &[Platform]) -> String {
    platforms.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
}
