//! The validated configuration: every value present, typed and checked.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

mod modes;
pub use modes::*;

/// The `client_tls_*` keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientTls {
    pub mode: ClientTlsMode,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    pub ca_file: Option<PathBuf>,
}

/// `server_tls_sslmode`: how the pooler talks to PostgreSQL (libpq's `sslmode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerTlsMode {
    /// Plain TCP; no SSLRequest.
    Disable,
    /// Plain TCP first; TLS only when the server refuses the plain login.
    Allow,
    /// TLS when the server offers it, plain TCP otherwise; certificate not checked.
    Prefer,
    /// TLS or no connection; certificate not checked.
    Require,
    /// TLS with a certificate signed by `server_tls_ca_file` (any host name).
    VerifyCa,
    /// `verify-ca`, and the certificate must name the host the pooler connects to.
    VerifyFull,
}

impl ServerTlsMode {
    /// Parses the configuration spelling.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "disable" => Some(Self::Disable),
            "allow" => Some(Self::Allow),
            "prefer" => Some(Self::Prefer),
            "require" => Some(Self::Require),
            "verify-ca" => Some(Self::VerifyCa),
            "verify-full" => Some(Self::VerifyFull),
            _ => None,
        }
    }

    /// Whether a plain connection is refused.
    pub fn tls_required(self) -> bool {
        matches!(self, Self::Require | Self::VerifyCa | Self::VerifyFull)
    }
}

/// The `server_tls_*` keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerTls {
    pub mode: ServerTlsMode,
    /// Roots for `verify-ca` / `verify-full`.
    pub ca_file: Option<PathBuf>,
    /// Client certificate shown to PostgreSQL (with `key_file`), if any.
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    /// `server_allow_cleartext_password`: answer a cleartext password request on a connection
    /// without TLS (default `false`: refused).
    pub allow_cleartext_password: bool,
}

/// The `auth_user`, `auth_query`, `auth_dbname` and `auth_cache_ttl` keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthQuery {
    /// Who runs the query (its password comes from `[users]` or `auth_file`).
    pub user: String,
    /// Returns `(name, verifier)` for `$1`; no row = unknown user.
    pub query: String,
    /// The `[databases]` entry to run it in; `None` = the database the client asked for.
    pub dbname: Option<String>,
    /// How long an answer (a row or no row) is used before asking again.
    pub cache_ttl: Duration,
}

/// The whole validated file.
#[derive(Debug, Clone)]
pub struct Config {
    /// Listener, limits, pool defaults, timeouts.
    pub pooler: PoolerConfig,
    /// Databases clients may connect to, by the name clients use.
    pub databases: BTreeMap<String, DatabaseConfig>,
    /// Users with credentials and overrides.
    pub users: BTreeMap<String, UserConfig>,
    /// The PostgreSQL nodes, if the file describes a cluster.
    pub cluster: Option<ClusterConfig>,
    /// The replication manager.
    pub agent: AgentConfig,
    /// The HTTP endpoint of the pooler.
    pub metrics: MetricsConfig,
    /// The control plane's shared secret.
    pub control: ControlConfig,
}

/// The name of the wildcard database entry: `[databases."*"]`.
pub const WILDCARD_DATABASE: &str = "*";

impl Config {
    /// The database a client names: its own `[databases.NAME]` entry, else the wildcard
    /// entry `[databases."*"]` made into one for `name` (the same name on the server).
    pub fn database(&self, name: &str) -> Option<std::borrow::Cow<'_, DatabaseConfig>> {
        if name.is_empty() || name == WILDCARD_DATABASE {
            return None;
        }
        if let Some(d) = self.databases.get(name) {
            return Some(std::borrow::Cow::Borrowed(d));
        }
        let mut d = self.databases.get(WILDCARD_DATABASE)?.clone();
        d.name = name.to_string();
        d.dbname = name.to_string();
        Some(std::borrow::Cow::Owned(d))
    }
}

/// `[pooler]`, defaults applied.
#[derive(Debug, Clone)]
pub struct PoolerConfig {
    pub listen: SocketAddr,
    /// Also listen on `DIR/.s.PGSQL.<port>`.
    pub unix_socket_dir: Option<PathBuf>,
    /// Runtime worker threads (0 in the file = one per core).
    pub workers: usize,
    pub max_client_conn: usize,
    pub pool_mode: PoolMode,
    /// Session-scoped state in transaction and statement modes.
    pub session_features: SessionFeatures,
    pub default_pool_size: usize,
    pub min_pool_size: usize,
    pub reserve_pool_size: usize,
    pub reserve_pool_timeout: Duration,
    /// 0 = unlimited.
    pub max_db_connections: usize,
    /// 0 = unlimited.
    pub max_user_connections: usize,
    pub auth_type: AuthType,
    pub auth_file: Option<PathBuf>,
    /// `pg_hba.conf`-syntax rules checked at login; none = every client may try `auth_type`.
    pub auth_hba_file: Option<PathBuf>,
    /// Logins (startup and authentication) in progress at once; more wait for a slot.
    pub max_pending_logins: usize,
    /// TLS towards clients.
    pub client_tls: ClientTls,
    /// TLS towards PostgreSQL.
    pub server_tls: ServerTls,
    /// Verifiers of users known to neither the file nor `auth_file` (`auth_user` set).
    pub auth_query: Option<AuthQuery>,
    pub admin_users: Vec<String>,
    pub stats_users: Vec<String>,
    /// `trust` may open the admin console (default `false`: the console always asks a password).
    pub admin_trust: bool,
    /// Empty = none.
    pub server_reset_query: String,
    /// Empty = no check.
    pub server_check_query: String,
    pub server_check_delay: Duration,
    pub server_connect_timeout: Duration,
    /// Zero = never.
    pub server_idle_timeout: Duration,
    /// Zero = never.
    pub server_lifetime: Duration,
    /// Zero = wait forever.
    pub query_wait_timeout: Duration,
    /// Zero = off.
    pub client_idle_timeout: Duration,
    pub client_login_timeout: Duration,
    /// Zero = off: cancel a query running this long, close after twice as long.
    pub query_timeout: Duration,
    /// Zero = off: close a client idle inside a transaction this long.
    pub idle_transaction_timeout: Duration,
    pub track_extra_parameters: Vec<String>,
    pub max_packet_size: usize,
    /// Named statements kept prepared per server connection (transaction and statement
    /// modes); 0 = named prepared statements are passed through untouched.
    pub max_prepared_statements: usize,
    /// Largest client message read whole to be inspected (prepared statements); larger ones
    /// stream where that is correct and are refused otherwise.
    pub max_inspected_message: usize,
    /// Named prepared statements one client may hold (transaction and statement modes).
    pub max_client_prepared_statements: usize,
    /// Distinct prepared statements tracked over all clients.
    pub max_tracked_prepared_statements: usize,
    /// Zero = off: close a client that holds a server and sent part of a message, without
    /// sending more for this long.
    pub client_message_timeout: Duration,
    pub max_startup_packet_size: usize,
    pub log_connections: bool,
    pub log_disconnections: bool,
    /// How log lines are written (read at start; a reload does not change it).
    pub log_format: LogFormat,
    /// Zero = no periodic stats line.
    pub stats_period: Duration,
    pub tcp_keepalive: bool,
    /// How long SIGTERM / SIGINT / `SHUTDOWN WAIT_FOR_*` wait before closing what is left.
    pub shutdown_timeout: Duration,
    /// How long `PAUSE` waits for running transactions before reporting a timeout.
    pub pause_timeout: Duration,
    /// SO_REUSEPORT on the listener: several poolers may share the port.
    pub so_reuseport: bool,
    /// How often the pooler probes cluster nodes (role, LSNs, health).
    pub probe_interval: Duration,
    /// How long a node that failed a probe or a connection is left out.
    pub ban_time: Duration,
    /// How long new logins and transactions wait for a usable primary (fenced, unreachable,
    /// lease run out, mid-failover) before they fail; zero = they fail at once.
    pub primary_wait_timeout: Duration,
    /// Idle connections per (database, user) kept open on each standby that may be promoted
    /// (unfenced, priority > 0), handed to the writer pool when it is; 0 = none.
    pub standby_spares: usize,
}

/// Where a database's server connections go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Backend {
    /// A single server given by host and port.
    Host { host: String, port: u16 },
    /// The nodes of `[cluster]` (the primary, for now).
    Cluster,
}

/// `[databases.NAME]`, defaults applied.
#[derive(Debug, Clone)]
pub struct DatabaseConfig {
    pub name: String,
    pub dbname: String,
    pub backend: Backend,
    pub user: Option<String>,
    pub password: Option<String>,
    pub pool_size: usize,
    pub min_pool_size: usize,
    pub reserve_pool_size: usize,
    pub pool_mode: PoolMode,
    /// Session-scoped state in transaction and statement modes.
    pub session_features: SessionFeatures,
    /// 0 = unlimited.
    pub max_db_connections: usize,
    /// Where transactions go (cluster databases only; see docs/routing.md).
    pub routing: Routing,
}

/// `databases.NAME.policy`: which transactions may run on standbys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RoutePolicy {
    /// Everything on the primary.
    #[default]
    Primary,
    /// Transactions that declare themselves read-only go to standbys.
    ReadOnly,
    /// Also autocommit statements the classifier finds read-only.
    Auto,
}

/// `databases.NAME.replica_choice`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ReplicaChoice {
    #[default]
    LeastOutstanding,
    RoundRobin,
    /// In proportion to `[[cluster.nodes]] weight`.
    Weighted,
}

/// The routing settings of one database.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Routing {
    pub policy: RoutePolicy,
    /// Per-session read-your-writes (`read_your_writes = "session"`), or off.
    pub read_your_writes: bool,
    /// Skip standbys further behind than this many bytes of WAL (0 = no limit).
    pub max_replica_lag: u64,
    /// Skip standbys further behind than this (zero = no limit).
    pub max_replica_lag_time: Duration,
    pub replica_choice: ReplicaChoice,
    /// With no usable standby: run reads on the primary (true) or fail them.
    pub replica_fallback: bool,
}

/// `[users.NAME]`.
#[derive(Debug, Clone)]
pub struct UserConfig {
    pub name: String,
    /// Plain text, `md5...` or `SCRAM-SHA-256$...`.
    pub password: Option<String>,
    pub pool_mode: Option<PoolMode>,
    pub pool_size: Option<usize>,
    /// 0 = unlimited.
    pub max_user_connections: usize,
}

/// `[cluster]`.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    pub name: String,
    pub pg_bindir: Option<PathBuf>,
    pub superuser: String,
    pub superuser_password: Option<String>,
    pub replication_user: String,
    pub replication_password: Option<String>,
    pub probe_database: String,
    pub nodes: Vec<NodeConfig>,
}

impl ClusterConfig {
    /// The node with this name.
    pub fn node(&self, name: &str) -> Option<&NodeConfig> {
        self.nodes.iter().find(|n| n.name == name)
    }
}

/// `[[cluster.nodes]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeConfig {
    pub name: String,
    pub host: String,
    pub port: u16,
    pub data_dir: Option<PathBuf>,
    pub priority: u32,
    pub os_user: Option<String>,
    /// Share of reads under `replica_choice = "weighted"` (0 = no reads).
    pub weight: u32,
}

/// `[agent]`.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    pub state_dir: PathBuf,
    pub probe_interval: Duration,
    /// While the primary is suspect (a probe of it failed), rounds come this often; zero =
    /// every `probe_interval`.
    pub suspect_probe_interval: Duration,
    pub probe_timeout: Duration,
    pub failure_threshold: u32,
    pub failure_window: Duration,
    pub max_failover_lag: u64,
    pub auto_failover: bool,
    pub event_command: Option<String>,
    pub poolers: Vec<String>,
    pub listen: SocketAddr,
    /// k in `synchronous_standby_names = 'ANY k (...)'`; 0 = asynchronous.
    pub synchronous_standbys: u32,
    /// Warm failover.
    pub warm: WarmConfig,
    /// This agent's name (events, leader key, `status`).
    pub name: String,
    /// Where the state lives.
    pub state_store: StateStoreConfig,
    /// The write lease of the poolers: a pooler under an agent sends writes only while its
    /// topology was renewed (push or etcd) within it; zero = off.
    pub topology_lease: Duration,
    /// How log lines are written.
    pub log_format: LogFormat,
}

impl Config {
    /// The write lease a pooler reading this file holds its topology under: `Some` when
    /// `agent.topology_lease` is not zero and the agent pushes to the poolers (`agent.poolers`
    /// listed; etcd reads renew too); `None` = no lease (discovery, or etcd alone: the epoch
    /// still fences).
    pub fn write_lease(&self) -> Option<Duration> {
        let managed = !self.agent.poolers.is_empty();
        (managed && !self.agent.topology_lease.is_zero()).then_some(self.agent.topology_lease)
    }
}

/// How a daemon writes its log lines on stderr (`[pooler] log_format`, `[agent] log_format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// One human-readable line per event; coloured only when stderr is a terminal.
    #[default]
    Text,
    /// One JSON object per line, for log shippers.
    Json,
}

impl LogFormat {
    /// Parses the configuration spelling.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "text" => Some(Self::Text),
            "json" => Some(Self::Json),
            _ => None,
        }
    }
}

/// `[agent] state_store`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StateStoreConfig {
    /// `agent.state_dir`, one agent.
    Local,
    /// etcd: several agents, one leader.
    Etcd(EtcdConfig),
}

/// The etcd keys of `[agent]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdConfig {
    /// `http://host:port` client URLs.
    pub endpoints: Vec<String>,
    /// Prefix of every key, ending with `/`.
    pub prefix: String,
    /// User and password (authentication on).
    pub auth: Option<(String, String)>,
    /// The leader lease's time to live.
    pub lease_ttl: Duration,
}

impl EtcdConfig {
    /// The key holding the topology (and the agent's action in flight); poolers watch it.
    pub fn topology_key(&self) -> String {
        format!("{}topology", self.prefix)
    }

    /// The client settings: each request bounded by a third of the lease (at most 2 s).
    pub fn settings(&self) -> crate::etcd::EtcdSettings {
        crate::etcd::EtcdSettings {
            endpoints: self.endpoints.clone(),
            auth: self.auth.clone(),
            timeout: (self.lease_ttl / 3).min(Duration::from_secs(2)),
        }
    }
}

/// How pg_prewarm loads a block (`[agent] prewarm_mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PrewarmMode {
    /// Into shared_buffers (and the OS cache).
    Buffer,
    /// Asynchronous OS read-ahead (`posix_fadvise(WILLNEED)`).
    Prefetch,
    /// Synchronous read into the OS cache only.
    Read,
}

impl PrewarmMode {
    /// Parses the configuration spelling.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "buffer" => Some(Self::Buffer),
            "prefetch" => Some(Self::Prefetch),
            "read" => Some(Self::Read),
            _ => None,
        }
    }

    /// The spelling pg_prewarm and the configuration use.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Buffer => "buffer",
            Self::Prefetch => "prefetch",
            Self::Read => "read",
        }
    }
}

/// Warm failover settings, part of `[agent]`.
#[derive(Debug, Clone, PartialEq)]
pub struct WarmConfig {
    /// How often the hot set is captured and the candidates warmed; zero = warm failover off.
    pub hot_set_interval: Duration,
    /// Minimum usagecount of a hot buffer (1..=5).
    pub min_usagecount: u8,
    /// Cap of the hot set, a fraction (0, 1] of the smallest candidate's shared_buffers.
    pub budget: f64,
    /// Bytes per second loaded on each standby.
    pub rate_bytes: u64,
    /// pg_prewarm mode on standbys (the catch-up on a new primary always uses `buffer`).
    pub mode: PrewarmMode,
    /// Warmth a switchover target must reach first (0 = do not wait).
    pub switchover_warmth: f64,
    /// The longest a switchover waits for it.
    pub switchover_timeout: Duration,
}

impl WarmConfig {
    /// Whether warm failover is on.
    pub fn enabled(&self) -> bool {
        !self.hot_set_interval.is_zero()
    }
}

/// `[metrics]`.
#[derive(Debug, Clone)]
pub struct MetricsConfig {
    pub enabled: bool,
    pub listen: SocketAddr,
}

/// `[control]`: who may call the mutating HTTP endpoints of pooler and agent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ControlConfig {
    /// The secret file; `None` = every mutating endpoint is refused.
    pub secret_file: Option<PathBuf>,
    /// `/metrics`, `GET /control/topology` and the agent's `/status` need the secret too.
    pub protect_reads: bool,
}
