//! The `rbuild` binary: parses flags, installs logging, runs one subcommand.

mod cli;
mod commands;
mod duration;
mod exit;
mod git;
mod isolation_args;
mod outputs;
mod progress;
mod registry_args;
mod settings;
mod size;

use clap::Parser;
use cli::{Cli, Command};
use std::process::ExitCode;

fn main() -> ExitCode {
    // A RUN step's sandbox re-executes this binary; that path must run before anything else
    // (no threads, no logging) and never returns. So must entering the build namespace.
    let mut args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let first = args.get(1).and_then(|a| a.to_str()).unwrap_or_default().to_owned();
    if first == rbuild_builder::sandbox::INIT_ARG {
        rbuild_builder::sandbox::sandbox_init_main();
    }
    if first == rbuild_builder::sandbox::BUILD_NS_ARG {
        // On failure the parent logs why and builds in-process.
        if rbuild_builder::sandbox::enter_build_namespace().is_err() {
            return ExitCode::from(125);
        }
        args.remove(1);
    }
    let cli = Cli::parse_from(&args);
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&cli.log_level));
    tracing_subscriber::fmt().with_env_filter(filter).with_ansi(colour_on_stderr()).with_writer(std::io::stderr).init();
    let mut signals = None;
    let result = match &cli.command {
        Command::Plan(args) => commands::plan::run(args),
        Command::Pull(args) => commands::pull::run(args),
        Command::Inspect(args) => commands::inspect::run(args),
        Command::Build(build) => match commands::unshare::reexec(&args) {
            Ok(Some(code)) => return code,
            // Recorded from here on (the build's cancel token stops the work).
            Ok(None) => match exit::Signals::watch() {
                Ok(s) => {
                    signals = Some(s);
                    commands::build::run(build)
                }
                Err(e) => Err(anyhow::Error::new(e).context("installing signal handlers")),
            },
            Err(err) => Err(err),
        },
        Command::Warm(args) => commands::warm::run(args),
        Command::Cache(command) => commands::cache::run(command),
        Command::Index(command) => commands::index::run(command),
    };
    if let Err(err) = &result {
        eprintln!("error: {err}");
        for cause in err.chain().skip(1) {
            eprintln!("  caused by: {cause}");
        }
    }
    exit::exit_code(&result, signals.as_ref())
}

/// ANSI colour in logs only on a terminal, and never with `NO_COLOR` set (no-color.org).
fn colour_on_stderr() -> bool {
    use std::io::IsTerminal as _;
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}
