//! `pgsluice pooler -c FILE`: run the pooler daemon in the foreground.

use crate::daemon;
use std::path::Path;
use std::process::ExitCode;

/// Runs until a shutdown signal.
pub fn run(config: &Path) -> anyhow::Result<ExitCode> {
    super::init_logging();
    daemon::run_pooler(config, crate::session::starter)?;
    Ok(ExitCode::SUCCESS)
}
