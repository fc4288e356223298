//! The `pgsluice` binary: parse the command line, run the chosen role, map the result to an exit code.

use clap::Parser;
use std::process::ExitCode;

// The allocator chosen at build time (jemalloc unless the features say otherwise).
#[global_allocator]
static ALLOCATOR: pgsluice::allocator::Chosen = pgsluice::allocator::CHOSEN;

fn main() -> ExitCode {
    let args = pgsluice::cli::Args::parse();
    match pgsluice::cli::run(args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("pgsluice: {e:#}");
            ExitCode::from(2)
        }
    }
}
