//! `snapguard`: the userspace companion of the snapguard kernel module.

use clap::{Parser, Subcommand};
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "snapguard", version, about)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.cmd {}
}
