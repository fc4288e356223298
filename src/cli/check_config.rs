//! `pgsluice check-config`: validate a configuration file and list every problem.

use crate::config;
use std::path::Path;
use std::process::ExitCode;

/// Prints "ok" and returns 0, or prints each problem and returns 1.
pub fn run(path: &Path) -> ExitCode {
    match config::load(path) {
        Ok(_) => {
            println!("ok");
            ExitCode::SUCCESS
        }
        Err(e) => {
            for line in e.lines() {
                println!("{line}");
            }
            ExitCode::from(1)
        }
    }
}
