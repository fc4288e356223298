//! `pgsluice clone --from NODE --name NEW [--dry-run]`: a new standby of NODE with
//! pg_basebackup into NEW's configured data_dir, started and registered in the topology.
//! Exit codes: 0 done (or dry run passed), 1 refused, 2 failed.

use crate::agent::ops::OpRequest;
use std::path::Path;
use std::process::ExitCode;

/// Arguments of `clone`.
#[derive(Debug, clap::Args)]
pub struct CloneArgs {
    #[command(flatten)]
    pub config: super::ConfigArg,
    /// The node to copy (the primary or a standby).
    #[arg(long)]
    pub from: String,
    /// The new node: must be in [[cluster.nodes]] with a data_dir that is missing or empty.
    #[arg(long)]
    pub name: String,
    /// Check and explain every step without changing anything.
    #[arg(long)]
    pub dry_run: bool,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Runs the verb.
pub fn run(a: CloneArgs) -> anyhow::Result<ExitCode> {
    let req = OpRequest::Clone {
        from: a.from,
        name: a.name,
        dry_run: a.dry_run,
    };
    super::agent::op_verb(Path::new(&a.config.config), req, a.json)
}
