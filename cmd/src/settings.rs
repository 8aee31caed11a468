//! Resolves command-line values into the libraries' own option types.

use crate::cli::{BuildArgs, DockerfileArgs};
use anyhow::{bail, Context, Result};
use rbuild_builder::executor::Identity;
use rbuild_builder::image::rfc3339_utc;
use rbuild_builder::layer::{LayerOptions, ManifestFormat, MtimePolicy};
use rbuild_builder::plan::{Platform, PlanRequest};
use rbuild_cache::reference::Reference;
use std::collections::BTreeMap;
use std::path::PathBuf;

/// Where the context and the Dockerfile are.
pub struct Sources {
    pub context: PathBuf,
    pub dockerfile: PathBuf,
}

/// Context directory and Dockerfile path from the flags.
pub fn sources(args: &DockerfileArgs) -> Sources {
    let context = args.context.clone().unwrap_or_else(|| args.context_pos.clone());
    let dockerfile = match &args.dockerfile {
        None => context.join("Dockerfile"),
        Some(p) if p.is_absolute() || p.exists() => p.clone(),
        Some(p) => context.join(p),
    };
    Sources { context, dockerfile }
}

/// The plan request: build args, target and platforms.
pub fn plan_request(args: &DockerfileArgs) -> Result<PlanRequest> {
    let mut request = PlanRequest::host();
    request.build_args = build_args(&args.build_args)?;
    request.target = args.target.clone();
    if let Some(p) = &args.platform {
        request.platform = p.parse::<Platform>().context("--platform")?;
    }
    Ok(request)
}

/// `KEY=VALUE` pairs; a bare `KEY` takes its value from the environment and is skipped when unset
/// (Docker's behaviour).
fn build_args(raw: &[String]) -> Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for arg in raw {
        match arg.split_once('=') {
            Some(("", _)) => bail!("--build-arg {arg:?}: the name is empty"),
            Some((k, v)) => {
                out.insert(k.to_string(), v.to_string());
            }
            None => {
                if let Ok(v) = std::env::var(arg) {
                    out.insert(arg.clone(), v);
                }
            }
        }
    }
    Ok(out)
}

/// `rbuild build`'s resolved options (everything but the plan request and registry config).
pub struct BuildSettings {
    pub context: PathBuf,
    pub dockerfile: PathBuf,
    pub cache_dir: PathBuf,
    /// Repository → tags pushed there (one manifest, every tag).
    pub destinations: Vec<(Reference, Vec<String>)>,
    pub no_push: bool,
    pub digest_file: Option<PathBuf>,
    pub image_name_with_digest_file: Option<PathBuf>,
    pub image_name_tag_with_digest_file: Option<PathBuf>,
    pub tar_path: Option<PathBuf>,
    pub oci_layout_path: Option<PathBuf>,
    pub layer: LayerOptions,
    pub labels: BTreeMap<String, String>,
    pub created: String,
    pub identity: Identity,
}

impl BuildSettings {
    /// `REPO:TAG` names of every destination (for tarball and layout outputs).
    pub fn tag_names(&self) -> Vec<String> {
        self.destinations
            .iter()
            .flat_map(|(r, tags)| tags.iter().map(move |t| format!("{}/{}:{t}", r.registry(), r.repository())))
            .collect()
    }
}

/// Resolves and validates `rbuild build`'s flags; every tag is checked before anything runs.
pub fn build_settings(args: &BuildArgs) -> Result<BuildSettings> {
    let Sources { context, dockerfile } = sources(&args.dockerfile);
    let destinations = destinations(args, &context)?;
    if destinations.is_empty() && !args.no_push {
        bail!("nothing to push to: give --destination REPO:TAG or --image REPO --tag TAG, or --no-push");
    }
    let epoch = source_date_epoch()?;
    let mtime = match (args.reproducible, epoch) {
        (_, Some(e)) => MtimePolicy::Clamp(e),
        (true, None) => MtimePolicy::Clamp(0),
        (false, None) => MtimePolicy::Keep,
    };
    let created = match mtime {
        MtimePolicy::Clamp(e) => rfc3339_utc(e),
        MtimePolicy::Keep => rfc3339_utc(now_secs()),
    };
    let identity = Identity::current();
    let layer = LayerOptions {
        mtime,
        format: if args.oci_mediatypes { ManifestFormat::Oci } else { ManifestFormat::Docker },
        ids: identity.id_maps(),
        ..LayerOptions::default()
    };
    let cache_dir = match &args.cache_dir {
        Some(d) => d.clone(),
        None => default_cache_dir()?,
    };
    std::fs::create_dir_all(&cache_dir).with_context(|| format!("creating {}", cache_dir.display()))?;
    Ok(BuildSettings {
        context,
        dockerfile,
        cache_dir,
        destinations,
        no_push: args.no_push,
        digest_file: args.digest_file.clone(),
        image_name_with_digest_file: args.image_name_with_digest_file.clone(),
        image_name_tag_with_digest_file: args.image_name_tag_with_digest_file.clone(),
        tar_path: args.tar_path.clone(),
        oci_layout_path: args.oci_layout_path.clone(),
        layer,
        labels: key_values(&args.labels, "--label")?,
        created,
        identity,
    })
}

/// `--destination` references and the pipeline form's tags, grouped by repository.
fn destinations(args: &BuildArgs, context: &std::path::Path) -> Result<Vec<(Reference, Vec<String>)>> {
    let mut out: Vec<(Reference, Vec<String>)> = Vec::new();
    let mut add = |reference: Reference, what: &str| -> Result<()> {
        let tag = reference.tag().map(str::to_string).with_context(|| format!("{what} {reference} has no tag"))?;
        match out.iter_mut().find(|(r, _)| r.registry() == reference.registry() && r.repository() == reference.repository()) {
            Some((_, tags)) if tags.contains(&tag) => {}
            Some((_, tags)) => tags.push(tag),
            None => out.push((reference, vec![tag])),
        }
        Ok(())
    };
    for d in &args.destinations {
        let reference: Reference = d.parse().context("invalid --destination")?;
        add(reference, "--destination")?;
    }
    if let Some(image) = &args.image {
        let mut tags = Vec::new();
        if let Some(tag) = &args.tag {
            let suffix = match args.commit_suffix.as_deref() {
                None => None,
                Some("auto") => Some(crate::git::head_commit(context).context("--commit-suffix auto")?),
                Some(sha) => Some(sha.to_string()),
            };
            tags.push(match suffix {
                Some(sha) => format!("{tag}-{}", crate::git::short(&sha)),
                None => tag.clone(),
            });
        }
        if args.latest {
            tags.push("latest".into());
        }
        if tags.is_empty() {
            bail!("--image {image} needs --tag or --latest");
        }
        for tag in tags {
            let text = format!("{image}:{tag}");
            let reference: Reference = text.parse().context("invalid --image or --tag")?;
            add(reference, "--image")?;
        }
    }
    Ok(out)
}

fn key_values(raw: &[String], flag: &str) -> Result<BTreeMap<String, String>> {
    raw.iter()
        .map(|kv| match kv.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
            _ => bail!("{flag} {kv:?}: expected KEY=VALUE"),
        })
        .collect()
}

fn source_date_epoch() -> Result<Option<i64>> {
    match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(v) if !v.is_empty() => Ok(Some(v.parse().with_context(|| format!("SOURCE_DATE_EPOCH={v:?} is not an integer"))?)),
        _ => Ok(None),
    }
}

fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// `$XDG_CACHE_HOME/rbuild`, else `$HOME/.cache/rbuild`.
fn default_cache_dir() -> Result<PathBuf> {
    if let Some(x) = std::env::var_os("XDG_CACHE_HOME").filter(|v| !v.is_empty()) {
        return Ok(PathBuf::from(x).join("rbuild"));
    }
    let home = std::env::var_os("HOME").context("neither XDG_CACHE_HOME nor HOME is set; pass --cache-dir")?;
    Ok(PathBuf::from(home).join(".cache").join("rbuild"))
}
