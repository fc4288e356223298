//! The table of PgBouncer's `[pgbouncer]` settings (1.2x) and what each becomes in pgsluice.
//! A declarative table: one row per setting.

/// How a value is converted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A whole number.
    Int,
    /// `0/1`, `yes/no`, `on/off`, `true/false`.
    Bool,
    /// Seconds, possibly fractional (PgBouncer's time settings).
    Secs,
    /// Text as written.
    Text,
    /// A comma-separated list.
    List,
}

/// What a setting becomes.
#[derive(Debug, Clone, Copy)]
pub enum Rule {
    /// `[pooler] <key>` with the same meaning.
    Same(&'static str, Kind),
    /// Handled by its own code in `mapping.rs`.
    Special,
    /// Not supported: why, and what to do.
    No(&'static str, &'static str),
}

const NO_FILE_LOG: &str = "pgsluice logs to stderr (the journal under systemd)";
const USE_JOURNAL: &str = "read the log with journalctl -u pgsluice-pooler, or redirect stderr";
const SYSTEMD_DOES: &str = "remove it: the systemd unit runs pgsluice as user pgsluice";
const TLS_DEFAULTS: &str =
    "pgsluice uses rustls with its safe defaults (TLS 1.2 and 1.3, modern ciphers)";
const NOTHING: &str = "nothing to do";
const KEEPALIVE: &str = "pgsluice sets SO_KEEPALIVE (tcp_keepalive) with the kernel's timings";
const TUNE_KERNEL: &str = "tune net.ipv4.tcp_keepalive_* with sysctl if needed";

/// Every `[pgbouncer]` setting the importer knows, by lower-case name.
pub const KEYS: &[(&str, Rule)] = &[
    ("logfile", Rule::No(NO_FILE_LOG, USE_JOURNAL)),
    ("pidfile", Rule::No("pgsluice runs in the foreground under a supervisor and writes no pid file", "let systemd track the process (systemd/pgsluice-pooler.service)")),
    ("listen_addr", Rule::Special),
    ("listen_port", Rule::Same("listen_port", Kind::Int)),
    ("unix_socket_dir", Rule::Special),
    ("unix_socket_mode", Rule::No("the socket file's mode is not configurable", "restrict the directory's mode instead (RuntimeDirectoryMode= in the unit)")),
    ("unix_socket_group", Rule::No("the socket file's group is not configurable", "set the directory's group instead")),
    ("user", Rule::No("pgsluice does not change its user", SYSTEMD_DOES)),
    ("pool_mode", Rule::Special),
    ("max_client_conn", Rule::Same("max_client_conn", Kind::Int)),
    ("default_pool_size", Rule::Same("default_pool_size", Kind::Int)),
    ("min_pool_size", Rule::Same("min_pool_size", Kind::Int)),
    ("reserve_pool_size", Rule::Same("reserve_pool_size", Kind::Int)),
    ("reserve_pool_timeout", Rule::Same("reserve_pool_timeout", Kind::Secs)),
    ("max_db_connections", Rule::Same("max_db_connections", Kind::Int)),
    ("max_user_connections", Rule::Same("max_user_connections", Kind::Int)),
    ("max_db_client_connections", Rule::No("no cap of client connections per database", "max_client_conn caps all clients")),
    ("max_user_client_connections", Rule::No("no cap of client connections per user", "max_client_conn caps all clients")),
    ("server_round_robin", Rule::No("the order in which idle server connections are reused is not configurable", NOTHING)),
    ("track_extra_parameters", Rule::Same("track_extra_parameters", Kind::List)),
    ("ignore_startup_parameters", Rule::No("not needed: pgsluice accepts every startup parameter and replays it on whichever server connection serves the client", NOTHING)),
    ("peer_id", Rule::No("no peering between poolers: a cancel request must reach the pooler that serves the client", "run one pooler per address; restart with the SIGUSR2 hand-over")),
    ("disable_pqexec", Rule::No("simple-protocol queries with several statements cannot be refused", "refuse them in the application")),
    ("application_name_add_host", Rule::No("the client's address is not added to application_name", "SHOW CLIENTS lists every client's address")),
    ("conffile", Rule::No("the file path is given with -c", NOTHING)),
    ("service_name", Rule::No("Windows only", NOTHING)),
    ("job_name", Rule::No("Windows only", NOTHING)),
    ("stats_period", Rule::Same("stats_period", Kind::Secs)),
    ("max_prepared_statements", Rule::Same("max_prepared_statements", Kind::Int)),
    ("scram_iterations", Rule::No("the iteration count of SCRAM secrets pgsluice computes is fixed", "store SCRAM secrets from PostgreSQL (pg_authid) in auth_file")),
    ("auth_type", Rule::Special),
    ("auth_hba_file", Rule::Same("auth_hba_file", Kind::Text)),
    ("auth_ident_file", Rule::No("no ident maps (peer authentication is not supported)", "use md5 or scram-sha-256 rules in auth_hba_file")),
    ("auth_file", Rule::Special),
    ("auth_user", Rule::Same("auth_user", Kind::Text)),
    ("auth_query", Rule::Same("auth_query", Kind::Text)),
    ("auth_dbname", Rule::Same("auth_dbname", Kind::Text)),
    ("syslog", Rule::No(NO_FILE_LOG, USE_JOURNAL)),
    ("syslog_ident", Rule::No(NO_FILE_LOG, USE_JOURNAL)),
    ("syslog_facility", Rule::No(NO_FILE_LOG, USE_JOURNAL)),
    ("log_connections", Rule::Same("log_connections", Kind::Bool)),
    ("log_disconnections", Rule::Same("log_disconnections", Kind::Bool)),
    ("log_pooler_errors", Rule::No("errors are counted in pgsluice_errors_total; failed logins are logged at debug level", "RUST_LOG=pgsluice=debug to log them")),
    ("log_stats", Rule::Special),
    ("verbose", Rule::No("the log level comes from RUST_LOG", "Environment=RUST_LOG=debug in the unit (verbose=1), RUST_LOG=trace (verbose=2)")),
    ("admin_users", Rule::Same("admin_users", Kind::List)),
    ("stats_users", Rule::Same("stats_users", Kind::List)),
    ("server_reset_query", Rule::Same("server_reset_query", Kind::Text)),
    ("server_reset_query_always", Rule::No("not needed: in transaction mode each client's session state is followed and replayed, and session mode resets on every exit", NOTHING)),
    ("server_check_delay", Rule::Same("server_check_delay", Kind::Secs)),
    ("server_check_query", Rule::Same("server_check_query", Kind::Text)),
    ("server_fast_close", Rule::No("after RECONNECT or a reload, session-mode connections close when their client leaves", "RECONNECT, or KILL_CLIENT for the clients that must move now")),
    ("server_lifetime", Rule::Special),
    ("server_idle_timeout", Rule::Same("server_idle_timeout", Kind::Secs)),
    ("server_connect_timeout", Rule::Same("server_connect_timeout", Kind::Secs)),
    ("server_login_retry", Rule::No("the wait after a failed server login is not configurable", "see server_connect_timeout and ban_time")),
    ("client_login_timeout", Rule::Same("client_login_timeout", Kind::Secs)),
    ("autodb_idle_timeout", Rule::No("no automatic databases yet (the \"*\" entry)", NOTHING)),
    ("dns_max_ttl", Rule::No("host names are resolved at each server connect by the system resolver", NOTHING)),
    ("dns_nxdomain_ttl", Rule::No("host names are resolved at each server connect by the system resolver", NOTHING)),
    ("dns_zone_check_period", Rule::No("host names are resolved at each server connect by the system resolver", NOTHING)),
    ("resolv_conf", Rule::No("the system resolver is used", "edit /etc/resolv.conf")),
    ("query_timeout", Rule::Same("query_timeout", Kind::Secs)),
    ("query_wait_timeout", Rule::Same("query_wait_timeout", Kind::Secs)),
    ("query_wait_notify", Rule::No("no NOTICE is sent to waiting clients", "watch pgsluice_clients{state=\"waiting\"} (monitoring/alerts.yml)")),
    ("cancel_wait_timeout", Rule::No("a cancel request is forwarded at once and not queued", NOTHING)),
    ("client_idle_timeout", Rule::Same("client_idle_timeout", Kind::Secs)),
    ("idle_transaction_timeout", Rule::Same("idle_transaction_timeout", Kind::Secs)),
    ("transaction_timeout", Rule::No("no cap on a whole transaction's duration", "use query_timeout and idle_transaction_timeout, or PostgreSQL's transaction_timeout (17+)")),
    ("suspend_timeout", Rule::No("the online restart hands the listening socket over (SIGUSR2) instead of SUSPEND", "see shutdown_timeout and docs/operations.md")),
    ("pkt_buf", Rule::No("buffers are sized by the pooler", NOTHING)),
    ("max_packet_size", Rule::Same("max_packet_size", Kind::Int)),
    ("listen_backlog", Rule::No("the listen backlog is the kernel's (somaxconn)", "raise net.core.somaxconn")),
    ("sbuf_loopcnt", Rule::No("fairness between clients comes from the runtime's scheduler", NOTHING)),
    ("so_reuseport", Rule::Same("so_reuseport", Kind::Bool)),
    ("tcp_defer_accept", Rule::No("TCP_DEFER_ACCEPT is not set", NOTHING)),
    ("tcp_socket_buffer", Rule::No("socket buffers are the kernel's", "tune net.core.rmem_default / wmem_default")),
    ("tcp_keepalive", Rule::Same("tcp_keepalive", Kind::Bool)),
    ("tcp_keepcnt", Rule::No(KEEPALIVE, TUNE_KERNEL)),
    ("tcp_keepidle", Rule::No(KEEPALIVE, TUNE_KERNEL)),
    ("tcp_keepintvl", Rule::No(KEEPALIVE, TUNE_KERNEL)),
    ("tcp_user_timeout", Rule::No("TCP_USER_TIMEOUT is not set", "rely on tcp_keepalive and query_timeout")),
    ("client_tls_sslmode", Rule::Special),
    ("client_tls_key_file", Rule::Same("client_tls_key_file", Kind::Text)),
    ("client_tls_cert_file", Rule::Same("client_tls_cert_file", Kind::Text)),
    ("client_tls_ca_file", Rule::Same("client_tls_ca_file", Kind::Text)),
    ("client_tls_protocols", Rule::No(TLS_DEFAULTS, NOTHING)),
    ("client_tls_ciphers", Rule::No(TLS_DEFAULTS, NOTHING)),
    ("client_tls13_ciphers", Rule::No(TLS_DEFAULTS, NOTHING)),
    ("client_tls_ecdhcurve", Rule::No(TLS_DEFAULTS, NOTHING)),
    ("client_tls_dheparams", Rule::No("no DHE key exchange (rustls uses ECDHE)", NOTHING)),
    ("server_tls_sslmode", Rule::Same("server_tls_sslmode", Kind::Text)),
    ("server_tls_ca_file", Rule::Same("server_tls_ca_file", Kind::Text)),
    ("server_tls_key_file", Rule::Same("server_tls_key_file", Kind::Text)),
    ("server_tls_cert_file", Rule::Same("server_tls_cert_file", Kind::Text)),
    ("server_tls_protocols", Rule::No(TLS_DEFAULTS, NOTHING)),
    ("server_tls_ciphers", Rule::No(TLS_DEFAULTS, NOTHING)),
    ("server_tls13_ciphers", Rule::No(TLS_DEFAULTS, NOTHING)),
];

/// Settings whose PgBouncer default differs from pgsluice's: `(key, PgBouncer's default,
/// pgsluice's default, written when the source leaves it unset)`. `None` keeps pgsluice's
/// default (said in the report).
pub const DEFAULTS: &[(&str, &str, &str, Option<&str>)] = &[
    ("pool_mode", "session", "transaction", Some("session")),
    ("max_client_conn", "100", "10000", Some("100")),
    ("auth_type", "md5", "scram-sha-256", Some("md5")),
    (
        "unix_socket_dir",
        "/tmp",
        "none (no Unix socket)",
        Some("/tmp"),
    ),
    ("server_tls_sslmode", "prefer", "disable", Some("prefer")),
    ("listen_addr", "none (Unix socket only)", "127.0.0.1", None),
    (
        "track_extra_parameters",
        "IntervalStyle",
        "search_path",
        None,
    ),
    ("max_packet_size", "2147483647", "1GB", None),
];

/// The rule for `key`, if the importer knows it.
pub fn rule(key: &str) -> Option<Rule> {
    KEYS.iter().find(|(k, _)| *k == key).map(|(_, r)| *r)
}
