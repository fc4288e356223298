//! `pgsluice switchover --to NODE [--dry-run]`: swap roles with the poolers paused, so that
//! clients see a pause and no error. Exit codes: 0 done (or dry run passed), 1 refused, 2 failed.

use crate::agent::ops::OpRequest;
use std::path::Path;
use std::process::ExitCode;

/// Arguments of `switchover`.
#[derive(Debug, clap::Args)]
pub struct SwitchoverArgs {
    #[command(flatten)]
    pub config: super::ConfigArg,
    /// The standby to promote.
    #[arg(long)]
    pub to: String,
    /// Check and explain every step without changing anything.
    #[arg(long)]
    pub dry_run: bool,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Runs the verb.
pub fn run(a: SwitchoverArgs) -> anyhow::Result<ExitCode> {
    let req = OpRequest::Switchover {
        to: a.to,
        dry_run: a.dry_run,
    };
    super::agent::op_verb(Path::new(&a.config.config), req, a.json)
}
