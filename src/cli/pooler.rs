//! `pgsluice pooler -c FILE`: run the pooler daemon in the foreground.

use crate::{config, daemon};
use std::path::Path;
use std::process::ExitCode;

/// Runs until a shutdown signal.
pub fn run(config: &Path) -> anyhow::Result<ExitCode> {
    // The daemon loads (and reports problems in) the file itself; here only the log format.
    let format = config::load(config)
        .map(|c| c.pooler.log_format)
        .unwrap_or_default();
    super::logging::init(format);
    daemon::run_pooler(config, crate::session::starter)?;
    Ok(ExitCode::SUCCESS)
}
