//! The command line: one clap tree for the daemons (`pooler`, `agent`) and the DBA verbs.
//!
//! Each verb lives in its own file and returns an [`ExitCode`]; errors are `anyhow` here only.

mod agent;
mod check_config;
mod clone;
mod events;
mod failover;
mod import_pgbouncer;
mod logging;
mod pooler;
mod rejoin;
mod sandbox;
mod status;
mod switchover;

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

/// Default configuration path, also read from `PGSLUICE_CONFIG`.
pub const DEFAULT_CONFIG: &str = "/etc/pgsluice/pgsluice.toml";

/// pgsluice: PostgreSQL connection pooler and replication manager.
#[derive(Debug, Parser)]
#[command(name = "pgsluice", version, about)]
pub struct Args {
    #[command(subcommand)]
    pub command: Command,
}

/// The configuration file option shared by most verbs.
#[derive(Debug, clap::Args)]
pub struct ConfigArg {
    /// Configuration file.
    #[arg(short = 'c', long = "config", env = "PGSLUICE_CONFIG", default_value = DEFAULT_CONFIG)]
    pub config: PathBuf,
}

/// Every verb.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check a configuration file: prints every problem, or "ok".
    CheckConfig(ConfigArg),
    /// Convert a PgBouncer configuration (pgbouncer.ini, userlist.txt) to pgsluice TOML and
    /// report what became of every key.
    ImportPgbouncer(import_pgbouncer::ImportArgs),
    /// Run the connection pooler daemon in the foreground.
    Pooler(ConfigArg),
    /// A local cluster with the pgsluice daemons: `up`, `status`, `down [--purge]`.
    Sandbox(sandbox::SandboxArgs),
    /// Run the replication manager (probes, automatic failover) in the foreground.
    Agent(ConfigArg),
    /// Table of nodes: role, state, upstream, timeline, LSN, lag, priority, epoch.
    Status(status::StatusArgs),
    /// The agent's event log.
    Events(events::EventsArgs),
    /// Promote a standby by hand while the primary is gone.
    Failover(failover::FailoverArgs),
    /// Swap the primary with a standby, clients paused rather than broken.
    Switchover(switchover::SwitchoverArgs),
    /// Make a node (an old primary) a streaming standby again: pg_rewind or clone.
    Rejoin(rejoin::RejoinArgs),
    /// Create a new standby with pg_basebackup and register it.
    Clone(clone::CloneArgs),
}

/// Runs one command line.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    match args.command {
        Command::CheckConfig(c) => Ok(check_config::run(&c.config)),
        Command::ImportPgbouncer(a) => import_pgbouncer::run(a),
        Command::Pooler(c) => pooler::run(&c.config),
        Command::Sandbox(a) => sandbox::run(a),
        Command::Agent(c) => agent::run(&c.config),
        Command::Status(a) => status::run(a),
        Command::Events(a) => events::run(a),
        Command::Failover(a) => failover::run(a),
        Command::Switchover(a) => switchover::run(a),
        Command::Rejoin(a) => rejoin::run(a),
        Command::Clone(a) => clone::run(a),
    }
}
