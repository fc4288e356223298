//! pgsluice: a PostgreSQL connection pooler and replication manager in one crate.
//!
//! Module map, in layering order (a module uses only those above it):
//!
//! | module | job |
//! |---|---|
//! | [`config`] | the TOML file: raw serde structs, then a validated [`config::Config`]; every key declared once in [`config::keys`] |
//! | [`topology`] | the epoch-versioned cluster topology shared by agent and pooler |
//! | [`error_text`] | an error and its causes on one line, for logs and status fields |
//! | [`lsn`] | `Lsn`, a WAL position: parsed from and printed as PostgreSQL's `X/Y` |
//! | [`quote`] | quoting for SQL (through `postgres_protocol::escape`), conninfo strings and postgresql.conf |
//! | [`proto`] | sans-IO wire codec: frame headers, startup packets, builders, lazy views |
//! | [`auth`] | sans-IO MD5 and SCRAM-SHA-256 (both sides), secrets, `auth_file` parsing |
//! | [`net`] | accept loop, socket options, whole-frame reads for slow paths, the I/O the client and server stream enums share (`net::transport`) |
//! | [`tls`] | the front door's HBA rules and TLS configurations, reloadable |
//! | [`etcd`] | etcd v3 through the `etcd-client` crate: kv, transactions, leases, watch, endpoint failover |
//! | [`server`] | a server connection: connect, authenticate, parameter sync, control queries |
//! | [`probe`] | probing nodes for the agent and discovery: role and WAL positions, kept connections, concurrent rounds |
//! | [`pool`] | pools per (database, user): FIFO check-out, reserve, caps, janitor |
//! | [`router`] | sans-IO routing: classify a transaction's first frames, choose primary or standby |
//! | [`backend`] | what all sessions share: config snapshot, cluster truth and its one `apply`, pools by (database, user, target), clients, gate |
//! | [`session`] | one task per client: login, transactions, forwarding fast path, cancel |
//! | [`admin`] | the admin console (`pgsluice`/`pgbouncer` database): SHOW, PAUSE, RELOAD, ... (uses `backend`, never `session`) |
//! | [`daemon`] | the pooler daemon: wiring, discovery, HTTP endpoint, signals, metrics (uses `backend`; sessions start through a `SessionStarter` the CLI hands it) |
//! | [`cluster`] | throwaway local PostgreSQL clusters (primary + streaming standbys) for tests and the sandbox |
//! | [`sandbox`] | `pgsluice sandbox`: a persistent local cluster, its config and the daemons, recorded in a state file |
//! | [`agent`] | the replication manager: probes, failover state machine, actions, state store |
//! | [`cli`] | the command line: daemons and DBA verbs |
//! | [`allocator`] | the global allocator chosen at build time (jemalloc by default), for the binary and the trim test |
//!
//! See `docs/architecture.md` for the query and failure flows.

pub mod admin;
pub mod agent;
pub mod allocator;
pub mod auth;
pub mod backend;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod daemon;
pub mod error_text;
pub mod etcd;
pub mod lsn;
pub mod net;
pub mod pool;
pub mod probe;
pub mod proto;
pub mod quote;
pub mod router;
pub mod sandbox;
pub mod server;
pub mod session;
pub mod tls;
pub mod topology;
