//! Configuration keys of [pooler]: listener, limits, authentication, TLS and console.

use super::*;

pub(super) static POOLER_FRONT: &[Key] = &[
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
        Value("1"),
        Restart,
        "worker threads, one event loop each; 0 = one per core",
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
];
