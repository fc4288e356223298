//! pgsluice: a PostgreSQL connection pooler and replication manager in one crate.
//!
//! Module map, in layering order (a module uses only those above it):
//!
//! | module | job |
//! |---|---|
//! | [`config`] | the TOML file: raw serde structs, then a validated [`config::Config`] |
//! | [`topology`] | the epoch-versioned cluster topology shared by agent and pooler |
//! | [`cluster`] | throwaway local PostgreSQL clusters (primary + streaming standbys) for tests and the sandbox |
//! | [`agent`] | the replication manager: probes, failover state machine, actions, state store |
//! | [`cli`] | the command line: daemons and DBA verbs |
//!
//! See `docs/architecture.md` for the query and failure flows.

pub mod agent;
pub mod auth;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod proto;
pub mod topology;
