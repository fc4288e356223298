//! Raw configuration as written in the TOML file: serde structs, unknown keys refused.
//!
//! Nothing here is checked beyond TOML types; [`super::validate`] turns a [`RawConfig`]
//! into a [`super::Config`] and reports every problem with its key path.

use serde::Deserialize;
use std::collections::BTreeMap;

/// A duration as written: a number of seconds (`5`, `0.25`) or a humantime string (`"500ms"`).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum RawDuration {
    /// Seconds, possibly fractional.
    Seconds(f64),
    /// A humantime string such as `"1s"`, `"250ms"`, `"2m 30s"`.
    Text(String),
}

/// A byte size as written: a number of bytes or a string with a unit (`"16MB"`, `"1GiB"`).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum RawBytes {
    /// Plain number of bytes.
    Count(i64),
    /// A number with a unit: B, kB, MB, GB (powers of 1024, as PostgreSQL reads them).
    Text(String),
}

/// The whole file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// `[pooler]`
    #[serde(default)]
    pub pooler: RawPooler,
    /// `[databases.NAME]`
    #[serde(default)]
    pub databases: BTreeMap<String, RawDatabase>,
    /// `[users.NAME]`
    #[serde(default)]
    pub users: BTreeMap<String, RawUser>,
    /// `[cluster]`
    #[serde(default)]
    pub cluster: Option<RawCluster>,
    /// `[agent]`
    #[serde(default)]
    pub agent: RawAgent,
    /// `[metrics]`
    #[serde(default)]
    pub metrics: RawMetrics,
    /// `[control]`
    #[serde(default)]
    pub control: RawControl,
}

/// `[pooler]`: listener, limits, pool defaults, timeouts.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPooler {
    pub listen_addr: Option<String>,
    pub listen_port: Option<i64>,
    pub unix_socket_dir: Option<String>,
    pub workers: Option<i64>,
    pub max_client_conn: Option<i64>,
    pub pool_mode: Option<String>,
    /// `pin`, `error` or `ignore`.
    pub session_features: Option<String>,
    pub default_pool_size: Option<i64>,
    pub min_pool_size: Option<i64>,
    pub reserve_pool_size: Option<i64>,
    pub reserve_pool_timeout: Option<RawDuration>,
    pub max_db_connections: Option<i64>,
    pub max_user_connections: Option<i64>,
    pub auth_type: Option<String>,
    pub auth_file: Option<String>,
    pub auth_hba_file: Option<String>,
    pub max_pending_logins: Option<i64>,
    pub auth_user: Option<String>,
    pub auth_query: Option<String>,
    pub auth_dbname: Option<String>,
    pub auth_cache_ttl: Option<RawDuration>,
    pub client_tls_sslmode: Option<String>,
    pub client_tls_cert_file: Option<String>,
    pub client_tls_key_file: Option<String>,
    pub client_tls_ca_file: Option<String>,
    pub server_tls_sslmode: Option<String>,
    pub server_tls_ca_file: Option<String>,
    pub server_tls_cert_file: Option<String>,
    pub server_tls_key_file: Option<String>,
    /// Send a password in clear text to a server that asks for it over plain TCP.
    pub server_allow_cleartext_password: Option<bool>,
    pub admin_users: Option<Vec<String>>,
    pub stats_users: Option<Vec<String>>,
    /// Let `trust` (auth_type or an HBA rule) open the admin console.
    pub admin_trust: Option<bool>,
    pub server_reset_query: Option<String>,
    pub server_check_query: Option<String>,
    pub server_check_delay: Option<RawDuration>,
    pub server_connect_timeout: Option<RawDuration>,
    pub server_idle_timeout: Option<RawDuration>,
    pub server_lifetime: Option<RawDuration>,
    pub query_wait_timeout: Option<RawDuration>,
    pub query_timeout: Option<RawDuration>,
    pub client_idle_timeout: Option<RawDuration>,
    pub idle_transaction_timeout: Option<RawDuration>,
    pub client_login_timeout: Option<RawDuration>,
    pub track_extra_parameters: Option<Vec<String>>,
    pub max_packet_size: Option<RawBytes>,
    pub max_prepared_statements: Option<i64>,
    pub max_inspected_message: Option<RawBytes>,
    pub max_client_prepared_statements: Option<i64>,
    pub max_tracked_prepared_statements: Option<i64>,
    pub client_message_timeout: Option<RawDuration>,
    pub max_startup_packet_size: Option<RawBytes>,
    pub log_connections: Option<bool>,
    pub log_disconnections: Option<bool>,
    /// `text` or `json` log lines on stderr.
    pub log_format: Option<String>,
    pub stats_period: Option<RawDuration>,
    pub tcp_keepalive: Option<bool>,
    pub shutdown_timeout: Option<RawDuration>,
    pub pause_timeout: Option<RawDuration>,
    pub so_reuseport: Option<bool>,
    /// How often cluster nodes are probed (role, LSNs, health).
    pub probe_interval: Option<RawDuration>,
    /// How long a failing node is left out.
    pub ban_time: Option<RawDuration>,
    /// How long new logins and transactions wait for a usable primary (failover).
    pub primary_wait_timeout: Option<RawDuration>,
    /// Idle connections per pool kept open on each standby that may be promoted.
    pub standby_spares: Option<i64>,
}

/// `[databases.NAME]`: a database clients may ask for, and where it lives.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDatabase {
    /// Database name on the server (default: the entry's name).
    pub dbname: Option<String>,
    /// Explicit server host; without it the database lives on `[cluster]`.
    pub host: Option<String>,
    pub port: Option<i64>,
    /// Force this server login user (and password) for every client of this database.
    pub user: Option<String>,
    pub password: Option<String>,
    pub pool_size: Option<i64>,
    pub min_pool_size: Option<i64>,
    pub reserve_pool_size: Option<i64>,
    pub pool_mode: Option<String>,
    /// `pin`, `error` or `ignore` (default: the `[pooler]` value).
    pub session_features: Option<String>,
    pub max_db_connections: Option<i64>,
    /// `primary`, `read-only` or `auto`.
    pub policy: Option<String>,
    /// `session` or `off`.
    pub read_your_writes: Option<String>,
    pub max_replica_lag: Option<RawBytes>,
    pub max_replica_lag_time: Option<RawDuration>,
    /// `least-outstanding`, `round-robin` or `weighted`.
    pub replica_choice: Option<String>,
    /// `primary` or `error`.
    pub replica_fallback: Option<String>,
}

/// `[users.NAME]`: credentials and per-user overrides.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUser {
    /// Plain password, `md5...` hash or `SCRAM-SHA-256$...` secret.
    pub password: Option<String>,
    pub pool_mode: Option<String>,
    pub pool_size: Option<i64>,
    pub max_user_connections: Option<i64>,
}

/// `[cluster]`: the PostgreSQL nodes, described once for pooler and agent.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCluster {
    pub name: Option<String>,
    /// Directory holding initdb, pg_ctl, pg_basebackup, pg_rewind.
    pub pg_bindir: Option<String>,
    /// Superuser the agent and CLI use for probes and promotion.
    pub superuser: Option<String>,
    pub superuser_password: Option<String>,
    /// Role used by standbys to stream.
    pub replication_user: Option<String>,
    pub replication_password: Option<String>,
    /// Database used for probes (default `postgres`).
    pub probe_database: Option<String>,
    #[serde(default)]
    pub nodes: Vec<RawNode>,
}

/// `[[cluster.nodes]]`
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawNode {
    pub name: Option<String>,
    pub host: Option<String>,
    pub port: Option<i64>,
    /// Data directory when the node is local (needed for stop, rewind, clone).
    pub data_dir: Option<String>,
    /// Promotion priority; 0 means never promote.
    pub priority: Option<i64>,
    /// OS user owning the data directory (default: `postgres` when run as root).
    pub os_user: Option<String>,
    /// Share of reads under `replica_choice = "weighted"`.
    pub weight: Option<i64>,
}

/// `[agent]`: the replication manager.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAgent {
    pub state_dir: Option<String>,
    pub probe_interval: Option<RawDuration>,
    /// While the primary is suspect, probe this often.
    pub suspect_probe_interval: Option<RawDuration>,
    pub probe_timeout: Option<RawDuration>,
    pub failure_threshold: Option<i64>,
    pub failure_window: Option<RawDuration>,
    pub max_failover_lag: Option<RawBytes>,
    pub auto_failover: Option<bool>,
    pub event_command: Option<String>,
    /// HTTP control endpoints of the poolers the agent pushes topology to.
    pub poolers: Option<Vec<String>>,
    pub listen: Option<String>,
    /// Synchronous mode: commits wait for ANY k standbys (0 = asynchronous).
    pub synchronous_standbys: Option<i64>,
    /// Warm failover: how often the primary's hot set is captured (0 = off).
    pub hot_set_interval: Option<RawDuration>,
    /// Warm failover: a buffer is hot at this usagecount or above.
    pub hot_set_min_usagecount: Option<i64>,
    /// Warm failover: the hot set's cap, a fraction of the candidates' shared_buffers.
    pub hot_set_budget: Option<f64>,
    /// Warm failover: MB (MiB) per second loaded on each standby.
    pub prewarm_rate: Option<f64>,
    /// Warm failover: `buffer`, `prefetch` or `read` (pg_prewarm's modes).
    pub prewarm_mode: Option<String>,
    /// Switchover waits until the target holds this share of the hot set (0 = no wait).
    pub switchover_warmth: Option<f64>,
    /// How long switchover waits for `switchover_warmth`.
    pub switchover_warmth_timeout: Option<RawDuration>,
    /// This agent's name among several (default: host name and listen port).
    pub name: Option<String>,
    /// `local` (state_dir, one agent) or `etcd` (several agents, a leader lease).
    pub state_store: Option<String>,
    /// etcd client URLs (`http://host:2379`).
    pub etcd_endpoints: Option<Vec<String>>,
    /// Prefix of every key (default `/pgsluice/<cluster.name>/`).
    pub etcd_prefix: Option<String>,
    /// etcd user and password, when etcd authentication is on.
    pub etcd_username: Option<String>,
    pub etcd_password: Option<String>,
    /// The leader lease's time to live (whole seconds, at least 2).
    pub lease_ttl: Option<RawDuration>,
    /// How long a pooler's topology stays fresh for writes without a renewal (0 = off).
    pub topology_lease: Option<RawDuration>,
    /// `text` or `json` log lines on stderr.
    pub log_format: Option<String>,
}

/// `[metrics]`: the pooler's HTTP endpoint (`/metrics`, `/health`, control).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMetrics {
    pub listen: Option<String>,
    pub enabled: Option<bool>,
}

/// `[control]`: the shared secret of the control plane (pooler `/control/*`, agent `/ops`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawControl {
    /// File holding the secret(s), one per line; the first is the one sent.
    pub secret_file: Option<String>,
    /// Whether `/metrics`, `GET /control/topology` and the agent's `/status` need it too.
    pub protect_reads: Option<bool>,
}
