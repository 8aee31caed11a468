//! The `rbuild` binary: parse flags, run the command, print errors with their causes.

mod cli;
mod commands;
mod registry_args;

use clap::Parser as _;

fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_env("RBUILD_LOG"))
        .with_writer(std::io::stderr)
        .init();
    let cli = cli::Cli::parse();
    let result = match &cli.command {
        cli::Command::Pull(args) => commands::pull::run(args),
        cli::Command::Inspect(args) => commands::inspect::run(args),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
