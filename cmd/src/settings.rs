//! Resolves command-line values into the libraries' own option types.

use crate::cli::{BuildArgs, CacheFlags, CacheModeArg, DockerfileArgs};
use anyhow::{bail, Context, Result};
use rbuild_builder::executor::CacheMode;
use rbuild_builder::executor::{Identity, SecretSpec, Secrets};
use rbuild_builder::image::rfc3339_utc;
use rbuild_builder::layer::{GzipOptions, LayerOptions, ManifestFormat, MtimePolicy};
use rbuild_builder::plan::{PlanRequest, Platform};
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

/// The plan request: build args, target and platform (the first of a `--platform` list;
/// a multi-platform build sets each in turn).
pub fn plan_request(args: &DockerfileArgs) -> Result<PlanRequest> {
    let mut request = PlanRequest::host();
    request.build_args = build_args(&args.build_args)?;
    request.target = args.target.clone();
    if let Some(p) = platforms(args)?.into_iter().next() {
        request.platform = p;
    }
    Ok(request)
}

/// `--platform a,b,…` (BuildKit's list syntax), normalised, duplicates dropped; empty for
/// the host's platform.
pub fn platforms(args: &DockerfileArgs) -> Result<Vec<Platform>> {
    let mut out: Vec<Platform> = Vec::new();
    for item in args.platform.iter().flat_map(|p| p.split(',')).map(str::trim).filter(|p| !p.is_empty()) {
        let platform = item.parse::<Platform>().context("--platform")?;
        if !out.contains(&platform) {
            out.push(platform);
        }
    }
    Ok(out)
}

/// Where foreign-platform RUNs look for emulators: `RBUILD_BINFMT_MISC` (the host's
/// `binfmt_misc` directory) and `RBUILD_QEMU_PATH` (colon-separated directories of static
/// qemu-user interpreters; empty: none), else the usual places.
pub fn emulator_search() -> rbuild_builder::sandbox::emulation::EmulatorSearch {
    let mut search = rbuild_builder::sandbox::emulation::EmulatorSearch::default();
    if let Some(dir) = std::env::var_os("RBUILD_BINFMT_MISC") {
        search.binfmt_dir = PathBuf::from(dir);
    }
    if let Ok(path) = std::env::var("RBUILD_QEMU_PATH") {
        search.interpreter_dirs = path.split(':').filter(|d| !d.is_empty()).map(PathBuf::from).collect();
    }
    search
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
    pub output_dir: Option<PathBuf>,
    pub layer: LayerOptions,
    pub labels: BTreeMap<String, String>,
    pub created: String,
    pub identity: Identity,
    /// The registry layer cache, when enabled.
    pub cache: Option<CacheRequest>,
    /// `--cache-only`: fill the cache, push no image.
    pub cache_only: bool,
    /// `--secret` values for `RUN --mount=type=secret`.
    pub secrets: Secrets,
}

/// The layer cache flags, resolved.
pub struct CacheRequest {
    pub repository: Reference,
    pub ttl: std::time::Duration,
    pub mode: CacheMode,
    pub explain: bool,
}

/// `--cache-repo`, else (with `--cache`) `<first destination repository>/cache`, as Kaniko
/// derives it; `--cache=false` turns the cache off even with `--cache-repo`.
pub fn cache_request(flags: &CacheFlags, destinations: &[(Reference, Vec<String>)]) -> Result<Option<CacheRequest>> {
    if flags.cache == Some(false) || (flags.cache.is_none() && flags.cache_repo.is_none()) {
        return Ok(None);
    }
    let repository = match &flags.cache_repo {
        Some(repo) => repo.parse::<Reference>().with_context(|| format!("invalid --cache-repo {repo:?}"))?,
        None => {
            let (dest, _) = destinations
                .first()
                .context("--cache needs --cache-repo or a destination to derive <repo>/cache from")?;
            dest.with_repository(format!("{}/cache", dest.repository()))
        }
    };
    let mode = match flags.cache_mode {
        CacheModeArg::Min => CacheMode::Min,
        CacheModeArg::Max => CacheMode::Max,
    };
    Ok(Some(CacheRequest { repository, ttl: flags.cache_ttl, mode, explain: flags.explain_cache }))
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
    let cache = cache_request(&args.cache, &destinations)?;
    if args.cache.cache_only && cache.is_none() {
        bail!("--cache-only needs a cache: give --cache-repo REPO (or --cache with a destination)");
    }
    if destinations.is_empty() && !args.no_push && !args.cache.cache_only {
        bail!("nothing to push to: give --destination REPO:TAG or --image REPO --tag TAG, --no-push or --cache-only");
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
        // Output bytes do not depend on the thread count, so digests stay reproducible.
        gzip: GzipOptions {
            workers: std::thread::available_parallelism().map_or(1, usize::from),
            ..GzipOptions::default()
        },
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
        output_dir: args.output_dir.clone(),
        layer,
        labels: key_values(&args.labels, "--label")?,
        created,
        identity,
        cache,
        cache_only: args.cache.cache_only,
        secrets: secrets(&args.secrets)?,
    })
}

/// `--destination` references and the pipeline form's tags, grouped by repository.
fn destinations(args: &BuildArgs, context: &std::path::Path) -> Result<Vec<(Reference, Vec<String>)>> {
    let mut out: Vec<(Reference, Vec<String>)> = Vec::new();
    let mut add = |reference: Reference, what: &str| -> Result<()> {
        let tag = reference.tag().map(str::to_string).with_context(|| format!("{what} {reference} has no tag"))?;
        match out
            .iter_mut()
            .find(|(r, _)| r.registry() == reference.registry() && r.repository() == reference.repository())
        {
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
            tags.push(match args.commit_suffix.as_deref() {
                None => tag.clone(),
                Some("auto") => format!("{tag}-{}", auto_suffix(context, args.allow_dirty)?),
                Some(sha) => format!("{tag}-{}", crate::git::short(sha)),
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

/// `--commit-suffix auto`: HEAD's short sha for a clean context; a context with uncommitted
/// changes is refused (its image is not that commit's), or with `--allow-dirty` gets
/// `<sha>-dirty`, never the clean sha's tag.
fn auto_suffix(context: &std::path::Path, allow_dirty: bool) -> Result<String> {
    let sha = crate::git::head_commit(context).context("--commit-suffix auto")?;
    let short = crate::git::short(&sha);
    let dirty = match crate::git::has_changes(context) {
        Ok(dirty) => dirty,
        Err(e) if allow_dirty => {
            tracing::warn!(error = %format!("{e:#}"), "--allow-dirty: tagging as dirty");
            true
        }
        Err(e) => return Err(e.context("--commit-suffix auto: install git, pass --allow-dirty (tag <sha>-dirty) or give the sha with --commit-suffix SHA")),
    };
    match (dirty, allow_dirty) {
        (false, _) => Ok(short.to_string()),
        (true, true) => Ok(format!("{short}-dirty")),
        (true, false) => bail!(
            "--commit-suffix auto: {} has uncommitted changes, so the image would not be commit {short}; commit them, or pass --allow-dirty to tag it {short}-dirty",
            context.display()
        ),
    }
}

/// `--secret` values, read now (a missing file or variable fails before the build).
fn secrets(raw: &[String]) -> Result<Secrets> {
    let specs = raw.iter().map(|s| SecretSpec::parse(s)).collect::<Result<Vec<_>, _>>()?;
    Ok(Secrets::load(&specs, |var| std::env::var(var).ok())?)
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
        Ok(v) if !v.is_empty() => {
            Ok(Some(v.parse().with_context(|| format!("SOURCE_DATE_EPOCH={v:?} is not an integer"))?))
        }
        _ => Ok(None),
    }
}

/// Seconds since the epoch.
pub fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// `$XDG_CACHE_HOME/rbuild`, else `$HOME/.cache/rbuild`.
pub fn default_cache_dir() -> Result<PathBuf> {
    if let Some(x) = std::env::var_os("XDG_CACHE_HOME").filter(|v| !v.is_empty()) {
        return Ok(PathBuf::from(x).join("rbuild"));
    }
    let home = std::env::var_os("HOME").context("neither XDG_CACHE_HOME nor HOME is set; pass --cache-dir")?;
    Ok(PathBuf::from(home).join(".cache").join("rbuild"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flags(cache: Option<bool>, repo: Option<&str>) -> CacheFlags {
        CacheFlags {
            cache,
            cache_repo: repo.map(str::to_string),
            cache_ttl: std::time::Duration::from_secs(336 * 3600),
            cache_mode: CacheModeArg::Max,
            explain_cache: false,
            cache_only: false,
        }
    }

    /// Which cache repository the flags select (Kaniko: `--cache=true` alone derives
    /// `<destination>/cache`; `--cache-repo` alone enables the cache here).
    #[rstest::rstest]
    #[case(None, None, None)]
    #[case(Some(true), None, Some("reg.io/team/app/cache"))]
    #[case(None, Some("reg.io/c/cache"), Some("reg.io/c/cache"))]
    #[case(Some(true), Some("reg.io/c/cache"), Some("reg.io/c/cache"))]
    #[case(Some(false), Some("reg.io/c/cache"), None)]
    fn cache_repository(#[case] cache: Option<bool>, #[case] repo: Option<&str>, #[case] want: Option<&str>) {
        let dest: Reference = "reg.io/team/app:v1".parse().unwrap();
        let request = cache_request(&flags(cache, repo), &[(dest, vec!["v1".into()])]).unwrap();
        let got = request.map(|r| format!("{}/{}", r.repository.registry(), r.repository.repository()));
        assert_eq!(got.as_deref(), want);
    }

    /// `--platform` lists: normalised, duplicates dropped, order kept; empty = the host.
    #[rstest::rstest]
    #[case(None, &[])]
    #[case(Some("linux/amd64"), &["linux/amd64"])]
    #[case(Some("linux/amd64, linux/aarch64,linux/arm64/v8"), &["linux/amd64", "linux/arm64"])]
    #[case(Some("linux/arm64,linux/amd64,"), &["linux/arm64", "linux/amd64"])]
    fn platform_lists(#[case] flag: Option<&str>, #[case] want: &[&str]) {
        let args = DockerfileArgs {
            context_pos: ".".into(),
            context: None,
            dockerfile: None,
            build_args: vec![],
            target: None,
            platform: flag.map(str::to_owned),
        };
        let got: Vec<String> = platforms(&args).unwrap().iter().map(ToString::to_string).collect();
        assert_eq!(got, want);
    }

    #[test]
    fn cache_without_destination_or_repo_is_an_error() {
        let err = cache_request(&flags(Some(true), None), &[]).err().unwrap();
        assert!(err.to_string().contains("--cache-repo"), "{err}");
    }
}
