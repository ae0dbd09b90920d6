//! `agentrace`: the one binary. It wires the collector (`serve`) and the
//! doctor (`doctor`) to the command line; all the work lives in the library
//! crates, so this file stays thin.

#![allow(clippy::print_stdout, clippy::print_stderr)]

mod doctor;
mod serve;

use clap::{Parser, Subcommand};

/// Connected, trustworthy traces for multi-agent AI systems.
#[derive(Debug, Parser)]
#[command(name = "agentrace", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the collector: OTLP receivers, embedded store, web UI and API.
    Serve(Box<serve::ServeArgs>),
    /// Diagnose traces: what broke, the repaired trace, what failed, where the time went.
    Doctor(doctor::DoctorArgs),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => serve::run(*args),
        Command::Doctor(args) => doctor::run(args),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("agentrace: {err:#}");
            std::process::ExitCode::from(1)
        }
    }
}
