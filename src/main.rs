//! The `berth` binary: parse arguments, run the subcommand, map the result to an exit code.

use std::process::ExitCode;

use clap::Parser;

/// mimalloc rather than glibc's allocator: a daemon's passes allocate and free the whole
/// plan each time, and glibc kept the peak of a pass mapped (about 100 MiB above the live
/// heap with 10,000 tenants); mimalloc gives freed pages back (docs/benchmarks.md, P6).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let args = berth::cli::Args::parse_from(berth::cli::normalize_args(std::env::args_os()));
    // Structured logs (tenant, host, step fields) on stderr when `BERTH_LOG` names a level.
    // The daemon sets up its own (in its `--log-format`, at `BERTH_LOG`'s level).
    if let Ok(level) = std::env::var("BERTH_LOG")
        && !args.logs_itself()
    {
        let level = level.parse().unwrap_or(tracing::Level::INFO);
        let _ = tracing_subscriber::fmt()
            .with_max_level(level)
            .with_writer(std::io::stderr)
            .with_ansi(false)
            .try_init();
    }
    berth::cli::run(args)
}
