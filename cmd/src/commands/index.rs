//! `rbuild index create|append REPO:TAG… --from REF@DIGEST…`: the merge step of a
//! multi-platform build fanned out over native-architecture pods. Each pod pushed its image
//! by digest (`rbuild build --push-by-digest`); this assembles the index (the same bytes the
//! one-command build makes) and moves the tags only once every `--require`d platform is in.

use std::io::Write as _;
use std::path::PathBuf;

use anyhow::{bail, Context as _};
use clap::{Args, Subcommand};
use rbuild_builder::plan::Platform;
use rbuild_cache::index::{images_of, IndexBuilder, PlatformImage};
use rbuild_cache::reference::Reference;
use rbuild_cache::registry::{ImageToPush, RegistryClient, RegistryError};
use rbuild_cache::store::BlobStore;

use crate::registry_args::RegistryArgs;

/// `rbuild index`.
#[derive(Debug, Subcommand)]
pub enum IndexCommand {
    /// Make a new index of the given images and tag it (existing entries are dropped).
    Create(IndexArgs),
    /// Add the given images to the index the first tag names (replacing entries of the
    /// same platform, keeping the others), then tag the result.
    Append(IndexArgs),
}

/// Arguments of `rbuild index create|append`.
#[derive(Debug, Args)]
pub struct IndexArgs {
    /// Tags to point at the index, `REPO:TAG`; all in one repository.
    #[arg(value_name = "REPO:TAG", required = true)]
    pub targets: Vec<String>,
    /// An image (or index) to include: `REPO@DIGEST`, or a bare `sha256:…` in the target
    /// repository; repeatable.
    #[arg(long = "from", value_name = "REF@DIGEST")]
    pub from: Vec<String>,
    /// A file of references: a JSON list (what an Argo fan-out's aggregated output
    /// parameter holds; strings, or objects with `digest` or `image`), or one per line.
    #[arg(long, value_name = "FILE")]
    pub from_file: Vec<PathBuf>,
    /// Platforms that must be in the index before any tag moves (comma-separated).
    #[arg(long, value_name = "os/arch,…", value_delimiter = ',')]
    pub require: Vec<String>,
    /// Write the index digest to this file.
    #[arg(long, value_name = "FILE")]
    pub digest_file: Option<PathBuf>,
    /// Local state (only its blob store is opened).
    #[arg(long, value_name = "DIR", env = "RBUILD_CACHE_DIR")]
    pub cache_dir: Option<PathBuf>,
    #[command(flatten)]
    pub registry: RegistryArgs,
}

/// Run `rbuild index create|append`.
pub fn run(command: &IndexCommand) -> anyhow::Result<()> {
    let (args, append) = match command {
        IndexCommand::Create(a) => (a, false),
        IndexCommand::Append(a) => (a, true),
    };
    let targets = targets(&args.targets)?;
    let first = &targets[0];
    let required = args
        .require
        .iter()
        .map(|p| p.trim().parse::<Platform>().context("--require"))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let sources = sources(args, first)?;
    if sources.is_empty() && !append {
        bail!("rbuild index create needs at least one --from REF@DIGEST or --from-file FILE");
    }
    let client = RegistryClient::new(args.registry.to_config())?;
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    let mut index = if append { runtime.block_on(existing(&client, first))? } else { IndexBuilder::new() };
    let mut images: Vec<PlatformImage> = Vec::new();
    for source in &sources {
        images.extend(runtime.block_on(images_of(&client, source)).with_context(|| format!("reading {source}"))?);
    }
    index.upsert_all(&images)?;
    // Nothing is tagged unless every expected platform made it.
    index.require(&required)?;
    let raw = index.finish();
    let cache_dir = match &args.cache_dir {
        Some(d) => d.clone(),
        None => crate::settings::default_cache_dir()?,
    };
    let store = BlobStore::open(cache_dir.join("store"))?;
    let to_push = ImageToPush::from_manifest(raw.clone(), first)?;
    let tags: Vec<String> = targets.iter().filter_map(|t| t.tag().map(str::to_owned)).collect();
    runtime.block_on(client.push_image(&store, first, &tags, &to_push, &[]))?;
    let digest = raw.digest.to_string();
    if let Some(p) = &args.digest_file {
        std::fs::write(p, &digest).with_context(|| format!("writing {}", p.display()))?;
    }
    eprintln!("index {digest} ({}) pushed as {}", index.platforms().join(", "), args.targets.join(", "));
    writeln!(std::io::stdout(), "{digest}")?;
    Ok(())
}

/// The tags, checked to name one repository.
fn targets(raw: &[String]) -> anyhow::Result<Vec<Reference>> {
    let refs = raw
        .iter()
        .map(|t| t.parse::<Reference>().with_context(|| format!("invalid target {t:?}")))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let first = refs.first().context("give the index's REPO:TAG")?;
    for r in &refs {
        if r.tag().is_none() {
            bail!("target {r} has no tag: give REPO:TAG");
        }
        if (r.registry(), r.repository()) != (first.registry(), first.repository()) {
            bail!("targets {first} and {r} are in different repositories: the index and its images live in one repository");
        }
    }
    Ok(refs)
}

/// Every `--from` and `--from-file` reference, each in the target repository.
fn sources(args: &IndexArgs, target: &Reference) -> anyhow::Result<Vec<Reference>> {
    let mut texts: Vec<String> = args.from.clone();
    for file in &args.from_file {
        let text = std::fs::read_to_string(file).with_context(|| format!("reading --from-file {}", file.display()))?;
        texts.extend(parse_list(&text).with_context(|| format!("--from-file {}", file.display()))?);
    }
    texts
        .iter()
        .map(|t| {
            let reference: Reference = if t.starts_with("sha256:") {
                target.with_digest(t.parse().with_context(|| format!("invalid digest {t:?}"))?)
            } else {
                t.parse().with_context(|| format!("invalid --from {t:?}"))?
            };
            if reference.digest().is_none() {
                bail!("--from {t}: name the image by digest (REPO@sha256:…), so that a tag moving meanwhile cannot change what is merged");
            }
            if (reference.registry(), reference.repository()) != (target.registry(), target.repository()) {
                bail!("--from {t} is not in {}/{}: push every platform's image to the index's repository (rbuild build --push-by-digest)", target.registry(), target.repository());
            }
            Ok(reference)
        })
        .collect()
}

/// A JSON list (strings; objects with `digest` or `image`; lists of those, as Argo nests
/// them), else one reference per non-empty line.
fn parse_list(text: &str) -> anyhow::Result<Vec<String>> {
    fn walk(v: &serde_json::Value, out: &mut Vec<String>) -> anyhow::Result<()> {
        match v {
            serde_json::Value::String(s) if s.trim_start().starts_with('[') || s.trim_start().starts_with('{') => {
                walk(&serde_json::from_str(s)?, out)?
            }
            serde_json::Value::String(s) => out.push(s.trim().to_owned()),
            serde_json::Value::Array(items) => items.iter().try_for_each(|i| walk(i, out))?,
            serde_json::Value::Object(map) => match map.get("image").or_else(|| map.get("digest")) {
                Some(v) => walk(v, out)?,
                None => bail!("an entry has neither \"image\" nor \"digest\": {v}"),
            },
            other => bail!("unexpected entry {other}"),
        }
        Ok(())
    }
    let mut out = Vec::new();
    match serde_json::from_str::<serde_json::Value>(text) {
        Ok(v) => walk(&v, &mut out)?,
        Err(_) => out.extend(text.lines().map(str::trim).filter(|l| !l.is_empty()).map(str::to_owned)),
    }
    Ok(out)
}

/// The index `target` names now; a missing tag starts an empty one, a single image becomes
/// its one entry.
async fn existing(client: &RegistryClient, target: &Reference) -> anyhow::Result<IndexBuilder> {
    let mut index = IndexBuilder::new();
    match client.get_raw_manifest(target).await {
        Err(RegistryError::Status { status: 404, .. }) => {
            tracing::info!(%target, "no index yet; starting an empty one");
            return Ok(index);
        }
        Err(e) => return Err(e.into()),
        Ok(raw) if raw.kind.is_index() => return Ok(IndexBuilder::from_existing(&raw.bytes)?),
        Ok(_) => {}
    }
    index.upsert_all(&images_of(client, target).await?)?;
    Ok(index)
}

#[cfg(test)]
mod tests {
    use super::parse_list;

    /// What an Argo fan-out hands the merge task: its aggregated output parameter.
    #[rstest::rstest]
    #[case(r#"["r/a@sha256:1", "r/a@sha256:2"]"#, &["r/a@sha256:1", "r/a@sha256:2"])]
    #[case(r#"[{"digest":"sha256:1"},{"image":"r/a@sha256:2"}]"#, &["sha256:1", "r/a@sha256:2"])]
    #[case(r#"["[\"sha256:1\"]", "sha256:2"]"#, &["sha256:1", "sha256:2"])]
    #[case("r/a@sha256:1\n\n  r/a@sha256:2 \n", &["r/a@sha256:1", "r/a@sha256:2"])]
    fn lists(#[case] text: &str, #[case] want: &[&str]) {
        assert_eq!(parse_list(text).unwrap(), want);
    }

    #[test]
    fn objects_without_a_reference_are_an_error() {
        assert!(parse_list(r#"[{"name":"x"}]"#).is_err());
    }
}
