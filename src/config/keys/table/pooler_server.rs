//! Configuration keys of [pooler]: server connections, timeouts, protocol, logs and process.

use super::*;

pub(super) static POOLER_SERVER: &[Key] = &[
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
];
