//! The `rbuild` binary: parses flags, installs logging, runs one subcommand.

mod cli;
mod commands;
mod git;
mod isolation_args;
mod registry_args;
mod settings;

use clap::Parser;
use cli::{Cli, Command};
use std::process::ExitCode;

fn main() -> ExitCode {
    // A RUN step's sandbox re-executes this binary; that path must run before anything else
    // (no threads, no logging) and never returns.
    if std::env::args().nth(1).as_deref() == Some(rbuild_builder::sandbox::INIT_ARG) {
        rbuild_builder::sandbox::sandbox_init_main();
    }
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&cli.log_level));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
    let result = match &cli.command {
        Command::Plan(args) => commands::plan::run(args),
        Command::Pull(args) => commands::pull::run(args),
        Command::Inspect(args) => commands::inspect::run(args),
        Command::Build(args) => commands::build::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err}");
            for cause in err.chain().skip(1) {
                eprintln!("  caused by: {cause}");
            }
            ExitCode::FAILURE
        }
    }
}
