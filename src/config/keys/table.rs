//! The table of every configuration key, one entry each (data: see the module doc of
//! [`super`] for how to add one).

use super::Change::{Reload, Restart, Set};
use super::Kind::*;
use super::Unset::{Absent, Derived, Inherit, Required, Value};
use super::{k, Key, Kind};
use std::path::PathBuf;

/// Server connections of one pool.
const POOL_SIZE: Kind = Count {
    min: 1,
    max: 100_000,
};
/// Connections kept open, or in reserve.
const POOL_EXTRA: Kind = Count {
    min: 0,
    max: 100_000,
};
/// A connection cap; 0 = none.
const CAP: Kind = Count {
    min: 0,
    max: 1_000_000,
};
const POOL_MODES: Kind = Choice {
    what: "pool mode",
    of: &["session", "transaction", "statement"],
};
const SESSION_FEATURES: Kind = Choice {
    what: "session_features value",
    of: &["pin", "error", "ignore"],
};
const LOG_FORMATS: Kind = Choice {
    what: "log format",
    of: &["text", "json"],
};

/// PgBouncer's default `auth_query`: `pg_shadow` needs a superuser, or a `SECURITY DEFINER`
/// function.
pub const DEFAULT_AUTH_QUERY: &str = "SELECT usename, passwd FROM pg_shadow WHERE usename=$1";

fn secs(d: std::time::Duration) -> String {
    format!("{}", d.as_secs_f64())
}

fn flag(b: bool) -> String {
    u8::from(b).to_string()
}

/// A model enum's configuration spelling from its variant name: `VerifyCa` -> `verify-ca`.
fn spelled(v: impl std::fmt::Debug) -> String {
    let mut out = String::new();
    for (i, ch) in format!("{v:?}").chars().enumerate() {
        if ch.is_ascii_uppercase() && i > 0 {
            out.push('-');
        }
        out.push(ch.to_ascii_lowercase());
    }
    out
}

fn path(p: &Option<PathBuf>) -> String {
    p.as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_default()
}

/// Every key, by section.
pub static KEYS: &[Key] = &[
    // [pooler]: listener and limits
    k(
        "pooler.listen_addr",
        Address,
        Value("127.0.0.1"),
        Restart,
        "IP address to listen on; \"*\" = all IPv4",
    )
    .shown(|c| c.pooler.listen.ip().to_string()),
    k(
        "pooler.listen_port",
        Port,
        Value("6432"),
        Restart,
        "TCP port clients connect to",
    )
    .shown(|c| c.pooler.listen.port().to_string()),
    k(
        "pooler.unix_socket_dir",
        Path,
        Absent,
        Restart,
        "also listen on DIR/.s.PGSQL.<listen_port>",
    )
    .shown(|c| path(&c.pooler.unix_socket_dir)),
    k(
        "pooler.workers",
        Count { min: 0, max: 1024 },
        Value("0"),
        Restart,
        "runtime worker threads; 0 = one per core",
    )
    .shown(|c| c.pooler.workers.to_string()),
    k(
        "pooler.max_client_conn",
        Count {
            min: 1,
            max: 1_000_000,
        },
        Value("10000"),
        Set,
        "clients at once; more get 53300",
    )
    .shown(|c| c.pooler.max_client_conn.to_string()),
    k(
        "pooler.pool_mode",
        POOL_MODES,
        Value("transaction"),
        Reload,
        "how long a client keeps a server connection",
    )
    .shown(|c| c.pooler.pool_mode.as_str().into()),
    k(
        "pooler.session_features",
        SESSION_FEATURES,
        Value("pin"),
        Reload,
        "session-scoped state in transaction mode: pin the client, error, or ignore",
    )
    .shown(|c| c.pooler.session_features.as_str().into()),
    k(
        "pooler.default_pool_size",
        POOL_SIZE,
        Value("20"),
        Reload,
        "server connections per (database, user)",
    )
    .shown(|c| c.pooler.default_pool_size.to_string()),
    k(
        "pooler.min_pool_size",
        POOL_EXTRA,
        Value("0"),
        Reload,
        "connections the janitor keeps open per pool",
    )
    .shown(|c| c.pooler.min_pool_size.to_string()),
    k(
        "pooler.reserve_pool_size",
        POOL_EXTRA,
        Value("0"),
        Reload,
        "extra connections for clients that waited reserve_pool_timeout",
    )
    .shown(|c| c.pooler.reserve_pool_size.to_string()),
    k(
        "pooler.reserve_pool_timeout",
        Duration,
        Value("5s"),
        Set,
        "wait before the reserve is used",
    )
    .shown(|c| secs(c.pooler.reserve_pool_timeout)),
    k(
        "pooler.max_db_connections",
        CAP,
        Value("0"),
        Reload,
        "cap per database over all users; 0 = none",
    )
    .shown(|c| c.pooler.max_db_connections.to_string()),
    k(
        "pooler.max_user_connections",
        CAP,
        Value("0"),
        Reload,
        "cap per user over all databases; 0 = none",
    )
    .shown(|c| c.pooler.max_user_connections.to_string()),
    // [pooler]: authentication
    k(
        "pooler.auth_type",
        Choice {
            what: "auth type",
            of: &["trust", "md5", "scram-sha-256"],
        },
        Value("scram-sha-256"),
        Reload,
        "how clients prove who they are",
    )
    .shown(|c| c.pooler.auth_type.as_str().into()),
    k(
        "pooler.auth_file",
        Path,
        Absent,
        Reload,
        "PgBouncer-format userlist of secrets",
    )
    .shown(|c| path(&c.pooler.auth_file)),
    k(
        "pooler.auth_hba_file",
        Path,
        Absent,
        Reload,
        "pg_hba.conf-syntax rules checked at login",
    )
    .shown(|c| path(&c.pooler.auth_hba_file)),
    k(
        "pooler.max_pending_logins",
        Count {
            min: 1,
            max: 1_000_000,
        },
        Value("1000"),
        Reload,
        "logins in progress at once; beyond it the oldest is closed",
    )
    .shown(|c| c.pooler.max_pending_logins.to_string()),
    k(
        "pooler.auth_user",
        Text,
        Absent,
        Reload,
        "role that looks up unknown users' verifiers with auth_query",
    )
    .shown(|c| {
        c.pooler
            .auth_query
            .as_ref()
            .map(|a| a.user.clone())
            .unwrap_or_default()
    }),
    k(
        "pooler.auth_query",
        Text,
        Value(DEFAULT_AUTH_QUERY),
        Reload,
        "query run as auth_user; $1 = the user name",
    )
    .shown(|c| {
        c.pooler
            .auth_query
            .as_ref()
            .map(|a| a.query.clone())
            .unwrap_or_default()
    }),
    k(
        "pooler.auth_dbname",
        Text,
        Derived("the client's database"),
        Reload,
        "[databases] entry whose server runs auth_query",
    )
    .shown(|c| {
        let a = c.pooler.auth_query.as_ref();
        a.and_then(|a| a.dbname.clone()).unwrap_or_default()
    }),
    k(
        "pooler.auth_cache_ttl",
        Duration,
        Value("60s"),
        Reload,
        "how long an auth_query answer is used",
    )
    .shown(|c| {
        c.pooler
            .auth_query
            .as_ref()
            .map(|a| secs(a.cache_ttl))
            .unwrap_or_default()
    }),
    // [pooler]: TLS
    k(
        "pooler.client_tls_sslmode",
        Choice {
            what: "client TLS mode",
            of: &["disable", "allow", "prefer", "require", "verify-ca"],
        },
        Value("disable"),
        Reload,
        "TLS towards clients",
    )
    .shown(|c| spelled(c.pooler.client_tls.mode)),
    k(
        "pooler.client_tls_cert_file",
        Path,
        Absent,
        Reload,
        "PEM certificate chain shown to clients",
    )
    .shown(|c| path(&c.pooler.client_tls.cert_file)),
    k(
        "pooler.client_tls_key_file",
        Path,
        Absent,
        Reload,
        "PEM private key of that certificate",
    )
    .shown(|c| path(&c.pooler.client_tls.key_file)),
    k(
        "pooler.client_tls_ca_file",
        Path,
        Absent,
        Reload,
        "PEM CA(s) that sign client certificates (verify-ca)",
    )
    .shown(|c| path(&c.pooler.client_tls.ca_file)),
    k(
        "pooler.server_tls_sslmode",
        Choice {
            what: "server TLS mode",
            of: &[
                "disable",
                "allow",
                "prefer",
                "require",
                "verify-ca",
                "verify-full",
            ],
        },
        Value("prefer"),
        Reload,
        "TLS towards PostgreSQL, as libpq's sslmode",
    )
    .shown(|c| spelled(c.pooler.server_tls.mode)),
    k(
        "pooler.server_tls_ca_file",
        Path,
        Absent,
        Reload,
        "PEM CA(s) that sign the servers' certificates",
    )
    .shown(|c| path(&c.pooler.server_tls.ca_file)),
    k(
        "pooler.server_tls_cert_file",
        Path,
        Absent,
        Reload,
        "PEM client certificate shown to PostgreSQL",
    )
    .shown(|c| path(&c.pooler.server_tls.cert_file)),
    k(
        "pooler.server_tls_key_file",
        Path,
        Absent,
        Reload,
        "PEM key of that certificate",
    )
    .shown(|c| path(&c.pooler.server_tls.key_file)),
    k(
        "pooler.server_allow_cleartext_password",
        Bool,
        Value("false"),
        Reload,
        "answer a server's cleartext password request over a connection without TLS",
    )
    .shown(|c| flag(c.pooler.server_tls.allow_cleartext_password)),
    // [pooler]: console
    k(
        "pooler.admin_trust",
        Bool,
        Value("false"),
        Reload,
        "let trust logins (auth_type or HBA) reach the admin console",
    )
    .shown(|c| flag(c.pooler.admin_trust)),
    k(
        "pooler.admin_users",
        List,
        Value(""),
        Reload,
        "users who may use the admin console",
    )
    .shown(|c| c.pooler.admin_users.join(",")),
    k(
        "pooler.stats_users",
        List,
        Value(""),
        Reload,
        "users who may use SHOW commands only",
    )
    .shown(|c| c.pooler.stats_users.join(",")),
    // [pooler]: server connections and timeouts
    k(
        "pooler.server_reset_query",
        Text,
        Value("DISCARD ALL"),
        Set,
        "run when a session-mode client leaves; empty = none",
    )
    .shown(|c| c.pooler.server_reset_query.clone()),
    k(
        "pooler.server_check_query",
        Text,
        Value("select 1"),
        Set,
        "run on a connection idle longer than server_check_delay; empty = never",
    )
    .shown(|c| c.pooler.server_check_query.clone()),
    k(
        "pooler.server_check_delay",
        Duration,
        Value("30s"),
        Set,
        "idle time after which server_check_query runs",
    )
    .shown(|c| secs(c.pooler.server_check_delay)),
    k(
        "pooler.server_connect_timeout",
        Duration,
        Value("15s"),
        Set,
        "connect and log in to a server",
    )
    .shown(|c| secs(c.pooler.server_connect_timeout)),
    k(
        "pooler.server_idle_timeout",
        Duration,
        Value("10m"),
        Set,
        "close server connections idle this long; 0 = never",
    )
    .shown(|c| secs(c.pooler.server_idle_timeout)),
    k(
        "pooler.server_lifetime",
        Duration,
        Value("1h"),
        Set,
        "close server connections this old when idle; 0 = never",
    )
    .shown(|c| secs(c.pooler.server_lifetime)),
    k(
        "pooler.query_wait_timeout",
        Duration,
        Value("2m"),
        Set,
        "longest wait for a server connection; 0 = forever",
    )
    .shown(|c| secs(c.pooler.query_wait_timeout)),
    k(
        "pooler.primary_wait_timeout",
        Duration,
        Value("15s"),
        Reload,
        "how long new logins and transactions wait for a usable primary (failover); 0 = fail at once",
    )
    .shown(|c| secs(c.pooler.primary_wait_timeout)),
    k(
        "pooler.standby_spares",
        POOL_EXTRA,
        Value("2"),
        Reload,
        "idle connections per pool kept open on each standby that may be promoted, used for writes at its promotion; 0 = off",
    )
    .shown(|c| c.pooler.standby_spares.to_string()),
    k(
        "pooler.query_timeout",
        Duration,
        Value("0"),
        Reload,
        "cancel a query running this long; 0 = off",
    )
    .shown(|c| secs(c.pooler.query_timeout)),
    k(
        "pooler.idle_transaction_timeout",
        Duration,
        Value("0"),
        Reload,
        "close a client idle inside a transaction this long; 0 = off",
    )
    .shown(|c| secs(c.pooler.idle_transaction_timeout)),
    k(
        "pooler.client_idle_timeout",
        Duration,
        Value("0"),
        Set,
        "close clients idle outside a transaction this long; 0 = never",
    )
    .shown(|c| secs(c.pooler.client_idle_timeout)),
    k(
        "pooler.client_login_timeout",
        Duration,
        Value("60s"),
        Set,
        "a client must finish its login within this",
    )
    .shown(|c| secs(c.pooler.client_login_timeout)),
    k(
        "pooler.client_message_timeout",
        Duration,
        Value("30s"),
        Reload,
        "a client holding a server that stalls mid-message this long is closed; 0 = never",
    )
    .shown(|c| secs(c.pooler.client_message_timeout)),
    // [pooler]: protocol
    k(
        "pooler.track_extra_parameters",
        List,
        Value("search_path"),
        Reload,
        "reported settings followed per client besides the standard ones",
    )
    .shown(|c| c.pooler.track_extra_parameters.join(",")),
    k(
        "pooler.max_packet_size",
        Size { min: 1024 },
        Value("1GB"),
        Reload,
        "largest protocol message accepted",
    )
    .shown(|c| c.pooler.max_packet_size.to_string()),
    k(
        "pooler.max_prepared_statements",
        POOL_EXTRA,
        Value("200"),
        Reload,
        "named prepared statements kept per server connection; 0 = pass through",
    )
    .shown(|c| c.pooler.max_prepared_statements.to_string()),
    k(
        "pooler.max_inspected_message",
        Size { min: 1024 },
        Value("1MB"),
        Reload,
        "largest client message read whole for inspection; larger ones stream or are refused",
    )
    .shown(|c| c.pooler.max_inspected_message.to_string()),
    k(
        "pooler.max_client_prepared_statements",
        Count {
            min: 1,
            max: 10_000_000,
        },
        Value("10000"),
        Reload,
        "named prepared statements one client may hold (transaction and statement modes)",
    )
    .shown(|c| c.pooler.max_client_prepared_statements.to_string()),
    k(
        "pooler.max_tracked_prepared_statements",
        Count {
            min: 1,
            max: 100_000_000,
        },
        Value("100000"),
        Reload,
        "named prepared statements tracked over all clients",
    )
    .shown(|c| c.pooler.max_tracked_prepared_statements.to_string()),
    k(
        "pooler.max_startup_packet_size",
        Size { min: 64 },
        Value("10000"),
        Reload,
        "largest startup packet accepted",
    )
    .shown(|c| c.pooler.max_startup_packet_size.to_string()),
    // [pooler]: logs and process
    k(
        "pooler.log_connections",
        Bool,
        Value("true"),
        Set,
        "one log line per login",
    )
    .shown(|c| flag(c.pooler.log_connections)),
    k(
        "pooler.log_disconnections",
        Bool,
        Value("true"),
        Set,
        "one log line per logout",
    )
    .shown(|c| flag(c.pooler.log_disconnections)),
    k(
        "pooler.log_format",
        LOG_FORMATS,
        Value("text"),
        Restart,
        "log lines as text or json",
    )
    .shown(|c| spelled(c.pooler.log_format)),
    k(
        "pooler.stats_period",
        Duration,
        Value("60s"),
        Set,
        "period of the stats log line; 0 = none",
    )
    .shown(|c| secs(c.pooler.stats_period)),
    k(
        "pooler.tcp_keepalive",
        Bool,
        Value("true"),
        Restart,
        "SO_KEEPALIVE on client and server sockets",
    )
    .shown(|c| flag(c.pooler.tcp_keepalive)),
    k(
        "pooler.shutdown_timeout",
        Duration,
        Value("30s"),
        Set,
        "bound of a graceful shutdown and of a hand-over's drain",
    )
    .shown(|c| secs(c.pooler.shutdown_timeout)),
    k(
        "pooler.pause_timeout",
        Duration,
        Value("60s"),
        Set,
        "how long PAUSE and WAIT_CLOSE wait",
    )
    .shown(|c| secs(c.pooler.pause_timeout)),
    k(
        "pooler.so_reuseport",
        Bool,
        Value("false"),
        Restart,
        "bind the listener with SO_REUSEPORT",
    )
    .shown(|c| flag(c.pooler.so_reuseport)),
    k(
        "pooler.probe_interval",
        Duration,
        Value("500ms"),
        Reload,
        "how often the pooler probes every [cluster] node",
    )
    .shown(|c| secs(c.pooler.probe_interval)),
    k(
        "pooler.ban_time",
        Duration,
        Value("10s"),
        Reload,
        "how long a failing node gets no reads",
    )
    .shown(|c| secs(c.pooler.ban_time)),
    // [databases.NAME]
    k(
        "databases.*.dbname",
        NonEmpty,
        Derived("`NAME`"),
        Reload,
        "database on the server",
    ),
    k(
        "databases.*.host",
        Text,
        Absent,
        Reload,
        "an explicit server; without it the database lives on [cluster]",
    ),
    k(
        "databases.*.port",
        Port,
        Value("5432"),
        Reload,
        "port of host",
    ),
    k(
        "databases.*.user",
        Text,
        Absent,
        Reload,
        "log in to the server as this user",
    ),
    k(
        "databases.*.password",
        Secret,
        Absent,
        Reload,
        "that user's password",
    ),
    k(
        "databases.*.pool_size",
        POOL_SIZE,
        Inherit("pooler.default_pool_size"),
        Reload,
        "server connections per user",
    ),
    k(
        "databases.*.min_pool_size",
        POOL_EXTRA,
        Inherit("pooler.min_pool_size"),
        Reload,
        "connections kept open per user",
    ),
    k(
        "databases.*.reserve_pool_size",
        POOL_EXTRA,
        Inherit("pooler.reserve_pool_size"),
        Reload,
        "extra connections after reserve_pool_timeout",
    ),
    k(
        "databases.*.pool_mode",
        POOL_MODES,
        Inherit("pooler.pool_mode"),
        Reload,
        "pool mode of this database",
    ),
    k(
        "databases.*.session_features",
        SESSION_FEATURES,
        Inherit("pooler.session_features"),
        Reload,
        "session-scoped state of this database's clients in transaction mode",
    ),
    k(
        "databases.*.max_db_connections",
        CAP,
        Inherit("pooler.max_db_connections"),
        Reload,
        "cap over all users; 0 = none",
    ),
    k(
        "databases.*.policy",
        Choice {
            what: "routing policy",
            of: &["primary", "read-only", "auto"],
        },
        Value("primary"),
        Reload,
        "which transactions may run on standbys",
    ),
    k(
        "databases.*.read_your_writes",
        Choice {
            what: "read-your-writes mode",
            of: &["session", "off"],
        },
        Value("session"),
        Reload,
        "a client's reads see its own commits",
    ),
    k(
        "databases.*.max_replica_lag",
        Size { min: 0 },
        Value("0"),
        Reload,
        "standbys further behind in bytes get no reads; 0 = no limit",
    ),
    k(
        "databases.*.max_replica_lag_time",
        Duration,
        Value("0"),
        Reload,
        "standbys further behind in time get no reads; 0 = no limit",
    ),
    k(
        "databases.*.replica_choice",
        Choice {
            what: "replica choice",
            of: &["least-outstanding", "round-robin", "weighted"],
        },
        Value("least-outstanding"),
        Reload,
        "how a standby is chosen among usable ones",
    ),
    k(
        "databases.*.replica_fallback",
        Choice {
            what: "fallback",
            of: &["primary", "error"],
        },
        Value("primary"),
        Reload,
        "a read with no usable standby runs on the primary or fails",
    ),
    // [users.NAME]
    k(
        "users.*.password",
        Secret,
        Absent,
        Reload,
        "plain password, md5 hash or SCRAM-SHA-256 secret",
    ),
    k(
        "users.*.pool_mode",
        POOL_MODES,
        Derived("the database's"),
        Reload,
        "pool mode of this user",
    ),
    k(
        "users.*.pool_size",
        POOL_SIZE,
        Derived("the database's"),
        Reload,
        "server connections per database for this user",
    ),
    k(
        "users.*.max_user_connections",
        CAP,
        Value("0"),
        Reload,
        "cap over all databases; 0 = pooler.max_user_connections",
    ),
    // [cluster]
    k(
        "cluster.name",
        NonEmpty,
        Value("main"),
        Reload,
        "cluster name",
    ),
    k(
        "cluster.pg_bindir",
        Path,
        Derived("`pg_config --bindir`, then `/usr/lib/postgresql/*/bin`"),
        Reload,
        "directory of initdb, pg_ctl, pg_basebackup, pg_rewind",
    ),
    k(
        "cluster.superuser",
        NonEmpty,
        Value("postgres"),
        Reload,
        "role for probes and promotion",
    ),
    k(
        "cluster.superuser_password",
        Secret,
        Absent,
        Reload,
        "its password",
    ),
    k(
        "cluster.replication_user",
        NonEmpty,
        Value("replicator"),
        Reload,
        "role standbys stream with",
    ),
    k(
        "cluster.replication_password",
        Secret,
        Absent,
        Reload,
        "its password",
    ),
    k(
        "cluster.probe_database",
        NonEmpty,
        Value("postgres"),
        Reload,
        "database probes connect to",
    ),
    // [[cluster.nodes]]
    k(
        "cluster.nodes[].name",
        NonEmpty,
        Required,
        Reload,
        "unique: letters, digits, '-' and '_'",
    ),
    k(
        "cluster.nodes[].host",
        NonEmpty,
        Value("127.0.0.1"),
        Reload,
        "host of the node",
    ),
    k(
        "cluster.nodes[].port",
        Port,
        Value("5432"),
        Reload,
        "port of the node",
    ),
    k(
        "cluster.nodes[].data_dir",
        Path,
        Absent,
        Reload,
        "data directory when local (stop, rewind, clone)",
    ),
    k(
        "cluster.nodes[].priority",
        Count {
            min: 0,
            max: u32::MAX as i64,
        },
        Value("100"),
        Reload,
        "promotion priority; 0 = never promote",
    ),
    k(
        "cluster.nodes[].os_user",
        Text,
        Derived("`postgres` when root"),
        Reload,
        "owner of the data directory",
    ),
    k(
        "cluster.nodes[].weight",
        Count {
            min: 0,
            max: 1_000_000,
        },
        Value("100"),
        Reload,
        "share of reads under replica_choice = \"weighted\"; 0 = no reads",
    ),
    // [agent]
    k(
        "agent.state_dir",
        Path,
        Value("/var/lib/pgsluice"),
        Restart,
        "where a local agent keeps its state",
    ),
    k(
        "agent.probe_interval",
        Duration,
        Value("1s"),
        Restart,
        "how often nodes are probed",
    ),
    k(
        "agent.suspect_probe_interval",
        Duration,
        Value("0"),
        Restart,
        "while the primary is suspect (a probe failed), probe this often; 0 = every probe_interval",
    ),
    k(
        "agent.probe_timeout",
        Duration,
        Value("1s"),
        Restart,
        "bound of one probe",
    ),
    k(
        "agent.failure_threshold",
        Count { min: 1, max: 1000 },
        Value("3"),
        Restart,
        "failed probes before the primary is suspected",
    ),
    k(
        "agent.failure_window",
        Duration,
        Value("10s"),
        Restart,
        "window the failed probes must fall in",
    ),
    k(
        "agent.max_failover_lag",
        Size { min: 0 },
        Value("16MB"),
        Restart,
        "a standby further behind is not promoted automatically",
    ),
    k(
        "agent.auto_failover",
        Bool,
        Value("true"),
        Restart,
        "fail over without a DBA",
    ),
    k(
        "agent.event_command",
        Text,
        Absent,
        Restart,
        "command run on every event",
    ),
    k(
        "agent.poolers",
        Urls {
            example: "http://127.0.0.1:9930",
        },
        Value(""),
        Restart,
        "HTTP control endpoints of the poolers topology is pushed to",
    ),
    k(
        "agent.topology_lease",
        Duration,
        Value("3s"),
        Restart,
        "poolers send writes only while their topology was renewed within this; 0 = off",
    ),
    k(
        "agent.listen",
        Socket,
        Value("127.0.0.1:9931"),
        Restart,
        "the agent's HTTP endpoint",
    ),
    k(
        "agent.synchronous_standbys",
        Count { min: 0, max: 100 },
        Value("0"),
        Restart,
        "commits wait for ANY k standbys; 0 = asynchronous",
    ),
    k(
        "agent.hot_set_interval",
        Duration,
        Value("10s"),
        Restart,
        "how often the primary's hot set is captured; 0 = warm failover off",
    ),
    k(
        "agent.hot_set_min_usagecount",
        Count { min: 1, max: 5 },
        Value("2"),
        Restart,
        "a buffer is hot at this usagecount or above",
    ),
    k(
        "agent.hot_set_budget",
        Fraction { zero_ok: false },
        Value("0.75"),
        Restart,
        "cap of the hot set, a fraction of the candidates' shared_buffers",
    ),
    k(
        "agent.prewarm_rate",
        Rate,
        Value("64"),
        Restart,
        "MB (MiB) per second loaded on each standby",
    ),
    k(
        "agent.prewarm_mode",
        Choice {
            what: "pg_prewarm mode",
            of: &["buffer", "prefetch", "read"],
        },
        Value("buffer"),
        Restart,
        "pg_prewarm's mode on standbys",
    ),
    k(
        "agent.switchover_warmth",
        Fraction { zero_ok: true },
        Value("0.9"),
        Restart,
        "switchover waits until the target holds this share of the hot set; 0 = no wait",
    ),
    k(
        "agent.switchover_warmth_timeout",
        Duration,
        Value("30s"),
        Restart,
        "how long switchover waits for switchover_warmth",
    ),
    k(
        "agent.name",
        Text,
        Derived("`<host name>-<listen port>`"),
        Restart,
        "this agent's name: leader key, events, status",
    ),
    k(
        "agent.state_store",
        Choice {
            what: "state store",
            of: &["local", "etcd"],
        },
        Value("local"),
        Restart,
        "local (state_dir, one agent) or etcd (several agents, one leader)",
    ),
    k(
        "agent.etcd_endpoints",
        Urls {
            example: "http://127.0.0.1:2379",
        },
        Derived("none (required for etcd)"),
        Restart,
        "etcd client URLs (http:// only), tried in turn",
    ),
    k(
        "agent.etcd_prefix",
        Text,
        Derived("`\"/pgsluice/<cluster.name>/\"`"),
        Restart,
        "prefix of every etcd key",
    ),
    k(
        "agent.etcd_username",
        Text,
        Absent,
        Restart,
        "etcd user, with etcd_password",
    ),
    k(
        "agent.etcd_password",
        Secret,
        Absent,
        Restart,
        "etcd password, with etcd_username",
    ),
    k(
        "agent.lease_ttl",
        Duration,
        Value("10s"),
        Restart,
        "the leader lease; whole seconds, at least 2",
    ),
    k(
        "agent.log_format",
        LOG_FORMATS,
        Value("text"),
        Restart,
        "log lines as text or json",
    ),
    // [metrics]
    k(
        "metrics.enabled",
        Bool,
        Value("true"),
        Restart,
        "serve HTTP",
    ),
    k(
        "metrics.listen",
        Socket,
        Value("127.0.0.1:9930"),
        Restart,
        "address of /metrics, /health and the control endpoints",
    ),
    // [control]
    k(
        "control.secret_file",
        Path,
        Absent,
        Reload,
        "file of control-plane secrets, one per line (re-read on every call); none = control refused",
    ),
    k(
        "control.protect_reads",
        Bool,
        Value("false"),
        Reload,
        "also require the secret for /metrics, GET /control/topology and the agent's /status",
    ),
];
