//! `rbuild plan`: print the resolved plan as JSON.

use crate::cli::PlanArgs;
use crate::settings;
use anyhow::Result;
use rbuild_builder::frontend;
use rbuild_builder::plan::UnresolvedBases;
use std::io::Write;

pub fn run(args: &PlanArgs) -> Result<()> {
    let sources = settings::sources(&args.dockerfile);
    if !sources.context.is_dir() {
        anyhow::bail!("the build context {} is not a directory", sources.context.display());
    }
    let request = settings::plan_request(&args.dockerfile)?;
    let plan = frontend::load_plan(&sources.dockerfile, &request, &UnresolvedBases)?;
    for w in &plan.warnings {
        match w.line {
            0 => eprintln!("warning: {}", w.message),
            line => eprintln!("warning: {}:{line}: {}", sources.dockerfile.display(), w.message),
        }
    }
    // One write: stdout is line-buffered, and a plan can be megabytes.
    let mut json = serde_json::to_vec_pretty(&plan)?;
    json.push(b'\n');
    std::io::stdout().lock().write_all(&json)?;
    Ok(())
}
