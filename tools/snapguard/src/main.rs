//! `snapguard`: the userspace companion of the snapguard kernel module.

use clap::{Parser, Subcommand};
use std::process::ExitCode;

mod craft;
mod pool;
mod probe;

#[derive(Parser)]
#[command(name = "snapguard", version, about)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Probe volumes for hibernation evidence.
    Probe(probe::ProbeArgs),
    /// Format, check, dump and list snapshot pool metadata.
    Pool(pool::PoolArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Probe(a) => probe::run(a),
        Cmd::Pool(a) => pool::run(a),
    }
}
