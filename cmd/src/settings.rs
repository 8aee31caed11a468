//! Resolves command-line values into the libraries' own option types.

use crate::cli::DockerfileArgs;
use anyhow::{bail, Context, Result};
use rbuild_builder::plan::{Platform, PlanRequest};
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
