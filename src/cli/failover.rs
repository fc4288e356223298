//! `pgsluice failover [--to NODE] [--dry-run]`: promote a standby by hand while the primary is
//! gone. Exit codes: 0 done (or dry run passed), 1 refused, 2 failed.

use crate::agent::ops::OpRequest;
use std::path::Path;
use std::process::ExitCode;

/// Arguments of `failover`.
#[derive(Debug, clap::Args)]
pub struct FailoverArgs {
    #[command(flatten)]
    pub config: super::ConfigArg,
    /// The standby to promote (default: the best candidate by LSN, priority, warmth).
    #[arg(long)]
    pub to: Option<String>,
    /// Check and explain every step without changing anything.
    #[arg(long)]
    pub dry_run: bool,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Runs the verb.
pub fn run(a: FailoverArgs) -> anyhow::Result<ExitCode> {
    let req = OpRequest::Failover {
        to: a.to,
        dry_run: a.dry_run,
    };
    super::agent::op_verb(Path::new(&a.config.config), req, a.json)
}
