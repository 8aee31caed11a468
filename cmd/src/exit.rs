//! rbuild's exit codes, so a pipeline can tell a broken Dockerfile from a failing RUN, a
//! registry problem or a cancelled build (Argo's `retryStrategy.expression` can match them):
//!
//! | code | meaning |
//! |---|---|
//! | 0 | success |
//! | 1 | any other failure (local I/O, local state, an internal error) |
//! | 2 | usage error: invalid flags or flag values, or an invalid Dockerfile (clap uses 2 too) |
//! | 3 | a RUN step's command failed (exited non-zero or was killed) |
//! | 4 | registry error: unreachable, TLS, credentials, access denied, an error status |
//! | 130 | interrupted (SIGINT) |
//! | 143 | terminated (SIGTERM) |

use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use rbuild_builder::executor::instructions::InstructionError;
use rbuild_builder::frontend::DockerfileError;
use rbuild_cache::registry::RegistryError;

/// Any other failure.
pub const FAILURE: u8 = 1;
/// Invalid flags or Dockerfile.
pub const USAGE: u8 = 2;
/// A RUN step's command failed.
pub const RUN_FAILED: u8 = 3;
/// A registry could not be used.
pub const REGISTRY: u8 = 4;

/// A usage error (wrong flags, conflicting values): exit code [`USAGE`].
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Usage(pub String);

/// Marks `err` as a usage error, keeping its whole message on one line.
pub fn usage(err: anyhow::Error) -> anyhow::Error {
    anyhow::Error::new(Usage(format!("{err:#}")))
}

/// The exit code for a failed command: the innermost recognised cause decides, so a
/// registry error inside a step failure is still a registry error.
pub fn code_for(err: &anyhow::Error) -> u8 {
    let mut code = FAILURE;
    for cause in err.chain() {
        if cause.is::<Usage>() || cause.is::<DockerfileError>() {
            code = USAGE;
        } else if matches!(cause.downcast_ref::<InstructionError>(), Some(InstructionError::RunFailed { .. })) {
            code = RUN_FAILED;
        } else if cause.is::<RegistryError>() {
            code = REGISTRY;
        }
    }
    code
}

/// Which terminating signal arrived (0: none); set by [`Signals::watch`].
#[derive(Debug, Clone, Default)]
pub struct Signals(Arc<AtomicUsize>);

impl Signals {
    /// Records SIGINT as 130 and SIGTERM as 143 (128 + signal number). Only records: the
    /// build's cancel token (installed next to it) stops the work.
    pub fn watch() -> std::io::Result<Self> {
        use signal_hook::consts::{SIGINT, SIGTERM};
        let signals = Self::default();
        for sig in [SIGINT, SIGTERM] {
            let code = usize::try_from(128 + sig).unwrap_or(usize::from(FAILURE));
            signal_hook::flag::register_usize(sig, Arc::clone(&signals.0), code)?;
        }
        Ok(signals)
    }

    /// The exit code of the last signal received, if any.
    pub fn code(&self) -> Option<u8> {
        u8::try_from(self.0.load(Ordering::SeqCst)).ok().filter(|c| *c != 0)
    }
}

/// The process exit code for a command's result.
pub fn exit_code(result: &anyhow::Result<()>, signals: Option<&Signals>) -> ExitCode {
    if let Some(code) = signals.and_then(Signals::code) {
        return ExitCode::from(code);
    }
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => ExitCode::from(code_for(err)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run_failed() -> anyhow::Error {
        anyhow::Error::new(InstructionError::RunFailed { command: "false".into(), code: 1, hint: None })
            .context("RUN (line 2) failed")
    }

    #[rstest::rstest]
    #[case::other(anyhow::anyhow!("disk full"), FAILURE)]
    #[case::usage(usage(anyhow::anyhow!("--tag needs --image")), USAGE)]
    #[case::run(run_failed(), RUN_FAILED)]
    #[case::registry(anyhow::Error::new(RegistryError::InvalidResponse { registry: "r".into(), repository: "a".into(), operation: rbuild_cache::registry::Operation::Ping, reason: "x" }).context("resolving bases"), REGISTRY)]
    fn codes(#[case] err: anyhow::Error, #[case] want: u8) {
        assert_eq!(code_for(&err), want);
    }
}
