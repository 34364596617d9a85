//! The `berth` binary: parse arguments, run the subcommand, map the result to an exit code.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let args = berth::cli::Args::parse_from(berth::cli::normalize_args(std::env::args_os()));
    berth::cli::run(args)
}
