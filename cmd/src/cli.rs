//! Command-line structure (clap structs only).

use crate::commands::inspect::InspectArgs;
use crate::commands::pull::PullArgs;

/// rbuild: rootless, daemonless container image builder.
#[derive(Debug, clap::Parser)]
#[command(name = "rbuild", version)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Download an image into an OCI layout directory.
    Pull(PullArgs),
    /// Print an image's manifest and config as JSON.
    Inspect(InspectArgs),
}
