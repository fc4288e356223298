//! The `pgsluice` binary: parse the command line, run the chosen role, map the result to an exit code.

use clap::Parser;
use std::process::ExitCode;

// The allocator, chosen at build time by measurement (docs/benchmarks.md, "Allocator (session
// 4)"): jemalloc by default, glibc's malloc with `--no-default-features`, mimalloc with
// `--no-default-features --features mimalloc`. src/daemon/trim.rs returns free memory through
// the same one.
#[cfg(all(feature = "jemalloc", feature = "mimalloc"))]
compile_error!(
    "features `jemalloc` (the default) and `mimalloc` both choose the global allocator: \
     build mimalloc with `--no-default-features --features mimalloc`"
);

#[cfg(feature = "jemalloc")]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[cfg(all(feature = "mimalloc", not(feature = "jemalloc")))]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
