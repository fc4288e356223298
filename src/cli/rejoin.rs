//! `pgsluice rejoin NODE [--dry-run]`: make a node (typically a fenced old primary) a streaming
//! standby of the primary with pg_rewind, or a fresh clone when rewind is impossible; reports the
//! discarded WAL range. Exit codes: 0 done (or dry run passed), 1 refused, 2 failed.

use crate::agent::ops::OpRequest;
use std::path::Path;
use std::process::ExitCode;

/// Arguments of `rejoin`.
#[derive(Debug, clap::Args)]
pub struct RejoinArgs {
    #[command(flatten)]
    pub config: super::ConfigArg,
    /// The node to rejoin.
    pub node: String,
    /// Check and explain every step without changing anything.
    #[arg(long)]
    pub dry_run: bool,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Runs the verb.
pub fn run(a: RejoinArgs) -> anyhow::Result<ExitCode> {
    let req = OpRequest::Rejoin {
        node: a.node,
        dry_run: a.dry_run,
    };
    super::agent::op_verb(Path::new(&a.config.config), req, a.json)
}
