//! `[pooler]`: the listener, limits, pool defaults, timeouts, authentication and TLS keys.

use super::check::Checker;
use crate::config::model::*;
use crate::config::raw::RawPooler;
use std::net::SocketAddr;

/// Validates `[pooler]`.
pub(super) fn pooler(c: &mut Checker, p: &RawPooler) -> PoolerConfig {
    let ip = c.address("pooler.listen_addr", &p.listen_addr);
    let port = c.port("pooler.listen_port", p.listen_port);
    let min = c.count("pooler.min_pool_size", p.min_pool_size);
    let size = c.count("pooler.default_pool_size", p.default_pool_size);
    if min > size {
        c.bad(
            "pooler.min_pool_size",
            format!("{min} is above default_pool_size {size}"),
            "",
        );
    }
    let mode = c.choice("pooler.pool_mode", &p.pool_mode);
    let max_packet = c.bytes("pooler.max_packet_size", &p.max_packet_size);
    let auth = c.choice("pooler.auth_type", &p.auth_type);
    PoolerConfig {
        listen: SocketAddr::new(ip, port),
        unix_socket_dir: c.path("pooler.unix_socket_dir", &p.unix_socket_dir),
        workers: c.count("pooler.workers", p.workers),
        max_client_conn: c.count("pooler.max_client_conn", p.max_client_conn),
        pool_mode: PoolMode::parse(mode).unwrap_or(PoolMode::Transaction),
        session_features: SessionFeatures::parse(
            c.choice("pooler.session_features", &p.session_features),
        )
        .unwrap_or(SessionFeatures::Pin),
        default_pool_size: size,
        min_pool_size: min,
        reserve_pool_size: c.count("pooler.reserve_pool_size", p.reserve_pool_size),
        reserve_pool_timeout: c.duration("pooler.reserve_pool_timeout", &p.reserve_pool_timeout),
        max_db_connections: c.count("pooler.max_db_connections", p.max_db_connections),
        max_user_connections: c.count("pooler.max_user_connections", p.max_user_connections),
        auth_type: AuthType::parse(auth).unwrap_or(AuthType::ScramSha256),
        auth_file: c.path("pooler.auth_file", &p.auth_file),
        auth_hba_file: c.path("pooler.auth_hba_file", &p.auth_hba_file),
        client_tls: client_tls(c, p),
        server_tls: server_tls(c, p),
        auth_query: auth_query(c, p),
        max_pending_logins: c.count("pooler.max_pending_logins", p.max_pending_logins),
        admin_users: c.list("pooler.admin_users", &p.admin_users),
        stats_users: c.list("pooler.stats_users", &p.stats_users),
        admin_trust: c.flag("pooler.admin_trust", p.admin_trust),
        server_reset_query: c.text("pooler.server_reset_query", &p.server_reset_query),
        server_check_query: c.text("pooler.server_check_query", &p.server_check_query),
        server_check_delay: c.duration("pooler.server_check_delay", &p.server_check_delay),
        server_connect_timeout: c
            .duration("pooler.server_connect_timeout", &p.server_connect_timeout),
        server_idle_timeout: c.duration("pooler.server_idle_timeout", &p.server_idle_timeout),
        server_lifetime: c.duration("pooler.server_lifetime", &p.server_lifetime),
        query_wait_timeout: c.duration("pooler.query_wait_timeout", &p.query_wait_timeout),
        primary_wait_timeout: c.duration("pooler.primary_wait_timeout", &p.primary_wait_timeout),
        standby_spares: c.count("pooler.standby_spares", p.standby_spares),
        client_idle_timeout: c.duration("pooler.client_idle_timeout", &p.client_idle_timeout),
        query_timeout: c.duration("pooler.query_timeout", &p.query_timeout),
        idle_transaction_timeout: c.duration(
            "pooler.idle_transaction_timeout",
            &p.idle_transaction_timeout,
        ),
        client_login_timeout: c.duration("pooler.client_login_timeout", &p.client_login_timeout),
        track_extra_parameters: c.list("pooler.track_extra_parameters", &p.track_extra_parameters),
        max_packet_size: max_packet as usize,
        max_inspected_message: c
            .bytes("pooler.max_inspected_message", &p.max_inspected_message)
            .min(max_packet) as usize,
        max_client_prepared_statements: c.count(
            "pooler.max_client_prepared_statements",
            p.max_client_prepared_statements,
        ),
        max_tracked_prepared_statements: c.count(
            "pooler.max_tracked_prepared_statements",
            p.max_tracked_prepared_statements,
        ),
        client_message_timeout: c
            .duration("pooler.client_message_timeout", &p.client_message_timeout),
        max_prepared_statements: c
            .count("pooler.max_prepared_statements", p.max_prepared_statements),
        max_startup_packet_size: c
            .bytes("pooler.max_startup_packet_size", &p.max_startup_packet_size)
            as usize,
        log_connections: c.flag("pooler.log_connections", p.log_connections),
        log_disconnections: c.flag("pooler.log_disconnections", p.log_disconnections),
        log_format: log_format(c, "pooler.log_format", &p.log_format),
        stats_period: c.duration("pooler.stats_period", &p.stats_period),
        tcp_keepalive: c.flag("pooler.tcp_keepalive", p.tcp_keepalive),
        shutdown_timeout: c.duration("pooler.shutdown_timeout", &p.shutdown_timeout),
        pause_timeout: c.duration("pooler.pause_timeout", &p.pause_timeout),
        so_reuseport: c.flag("pooler.so_reuseport", p.so_reuseport),
        probe_interval: c.duration("pooler.probe_interval", &p.probe_interval),
        ban_time: c.duration("pooler.ban_time", &p.ban_time),
    }
}

/// `pooler.log_format` / `agent.log_format`.
pub(super) fn log_format(c: &mut Checker, key: &str, v: &Option<String>) -> LogFormat {
    LogFormat::parse(c.choice(key, v)).unwrap_or_default()
}

fn client_tls(c: &mut Checker, p: &RawPooler) -> ClientTls {
    let mode = match c.choice("pooler.client_tls_sslmode", &p.client_tls_sslmode) {
        "allow" => ClientTlsMode::Allow,
        "prefer" => ClientTlsMode::Prefer,
        "require" => ClientTlsMode::Require,
        "verify-ca" => ClientTlsMode::VerifyCa,
        _ => ClientTlsMode::Disable,
    };
    let tls = ClientTls {
        mode,
        cert_file: c.path("pooler.client_tls_cert_file", &p.client_tls_cert_file),
        key_file: c.path("pooler.client_tls_key_file", &p.client_tls_key_file),
        ca_file: c.path("pooler.client_tls_ca_file", &p.client_tls_ca_file),
    };
    if mode != ClientTlsMode::Disable && (tls.cert_file.is_none() || tls.key_file.is_none()) {
        c.bad(
            "pooler.client_tls_sslmode",
            "TLS needs client_tls_cert_file and client_tls_key_file",
            "",
        );
    }
    if mode == ClientTlsMode::VerifyCa && tls.ca_file.is_none() {
        c.bad(
            "pooler.client_tls_ca_file",
            "verify-ca needs the CA that signs client certificates",
            "",
        );
    }
    tls
}

fn server_tls(c: &mut Checker, p: &RawPooler) -> ServerTls {
    let spelled = c.choice("pooler.server_tls_sslmode", &p.server_tls_sslmode);
    let mode = ServerTlsMode::parse(spelled).unwrap_or(ServerTlsMode::Disable);
    let tls = ServerTls {
        mode,
        ca_file: c.path("pooler.server_tls_ca_file", &p.server_tls_ca_file),
        cert_file: c.path("pooler.server_tls_cert_file", &p.server_tls_cert_file),
        key_file: c.path("pooler.server_tls_key_file", &p.server_tls_key_file),
        allow_cleartext_password: c.flag(
            "pooler.server_allow_cleartext_password",
            p.server_allow_cleartext_password,
        ),
    };
    if matches!(mode, ServerTlsMode::VerifyCa | ServerTlsMode::VerifyFull) && tls.ca_file.is_none()
    {
        c.bad(
            "pooler.server_tls_ca_file",
            "verify-ca and verify-full need the CA that signs the servers' certificates",
            "",
        );
    }
    if tls.cert_file.is_some() != tls.key_file.is_some() {
        c.bad(
            "pooler.server_tls_cert_file",
            "a client certificate needs both server_tls_cert_file and server_tls_key_file",
            "",
        );
    }
    tls
}

/// The `auth_user`, `auth_query`, `auth_dbname` and `auth_cache_ttl` keys.
fn auth_query(c: &mut Checker, p: &RawPooler) -> Option<AuthQuery> {
    let user = p.auth_user.as_ref().filter(|s| !s.is_empty());
    let Some(user) = user else {
        for (key, set) in [
            ("pooler.auth_query", p.auth_query.is_some()),
            ("pooler.auth_dbname", p.auth_dbname.is_some()),
            ("pooler.auth_cache_ttl", p.auth_cache_ttl.is_some()),
        ] {
            if set {
                c.bad(
                    key,
                    "has no effect without auth_user",
                    "set pooler.auth_user",
                );
            }
        }
        return None;
    };
    let query = c.text("pooler.auth_query", &p.auth_query);
    if !query.contains("$1") {
        let example = crate::config::keys::table::DEFAULT_AUTH_QUERY;
        c.bad(
            "pooler.auth_query",
            "must use $1 for the user name",
            example,
        );
    }
    Some(AuthQuery {
        user: user.clone(),
        query,
        dbname: p.auth_dbname.clone().filter(|s| !s.is_empty()),
        cache_ttl: c.duration("pooler.auth_cache_ttl", &p.auth_cache_ttl),
    })
}
