//! The `berth` binary: parse arguments, run the subcommand, map the result to an exit code.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let args = berth::cli::Args::parse();
    berth::cli::run(args)
}
