//! Runs `rbuild build` inside rbuild's build user namespace when the caller has a
//! subordinate id range (see `rbuild_builder::sandbox::build_namespace`).

use std::ffi::OsString;
use std::process::ExitCode;

use anyhow::Context as _;
use rbuild_builder::sandbox::idmap::IdMapSources;
use rbuild_builder::sandbox::{run_in_build_namespace, Reexec};

/// `Some(code)` when the command already ran in the namespace (exit with it); `None` when
/// this process should do the work itself.
pub fn reexec(args: &[OsString]) -> anyhow::Result<Option<ExitCode>> {
    let program = std::path::Path::new("/proc/self/exe");
    let rest = args.get(1..).unwrap_or_default();
    match run_in_build_namespace(&IdMapSources::host(), program, rest).context("entering the build user namespace")? {
        Reexec::Finished(code) => Ok(Some(ExitCode::from(u8::try_from(code).unwrap_or(1)))),
        Reexec::InProcess => Ok(None),
    }
}
