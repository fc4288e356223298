//! Second stage of loading: [`RawConfig`] -> [`Config`], collecting every problem with its key.

use super::model::*;
use super::raw::*;
use super::Problem;
use std::collections::{BTreeMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

/// Collects problems while converting values; each conversion falls back to a default so that
/// validation goes on and reports everything at once.
#[derive(Default)]
struct Checker {
    problems: Vec<Problem>,
}

impl Checker {
    fn bad(&mut self, key: impl Into<String>, message: impl Into<String>, hint: &str) {
        self.problems.push(Problem {
            key: key.into(),
            message: message.into(),
            hint: (!hint.is_empty()).then(|| hint.to_string()),
        });
    }

    fn duration(&mut self, key: &str, v: &Option<RawDuration>, default: Duration) -> Duration {
        match v {
            None => default,
            Some(RawDuration::Seconds(s)) if s.is_finite() && *s >= 0.0 => {
                Duration::from_secs_f64(*s)
            }
            Some(RawDuration::Seconds(s)) => {
                self.bad(
                    key,
                    format!("{s} is not a duration"),
                    "use seconds >= 0 or \"250ms\"",
                );
                default
            }
            Some(RawDuration::Text(t)) => match parse_duration(t) {
                Some(d) => d,
                None => {
                    self.bad(
                        key,
                        format!("{t:?} is not a duration"),
                        "write \"5s\", \"250ms\" or a number of seconds",
                    );
                    default
                }
            },
        }
    }

    fn bytes(&mut self, key: &str, v: &Option<RawBytes>, default: u64) -> u64 {
        match v {
            None => default,
            Some(RawBytes::Count(n)) if *n >= 0 => *n as u64,
            Some(RawBytes::Count(n)) => {
                self.bad(key, format!("{n} is not a size"), "sizes are >= 0");
                default
            }
            Some(RawBytes::Text(t)) => match parse_bytes(t) {
                Some(n) => n,
                None => {
                    self.bad(
                        key,
                        format!("{t:?} is not a size"),
                        "write a number of bytes or \"16MB\", \"1GB\"",
                    );
                    default
                }
            },
        }
    }

    fn count(&mut self, key: &str, v: Option<i64>, default: usize, min: i64, max: i64) -> usize {
        match v {
            None => default,
            Some(n) if (min..=max).contains(&n) => n as usize,
            Some(n) => {
                self.bad(
                    key,
                    format!("{n} is out of range"),
                    &format!("use {min}..={max}"),
                );
                default
            }
        }
    }

    fn port(&mut self, key: &str, v: Option<i64>, default: u16) -> u16 {
        match v {
            None => default,
            Some(n) if (1..=65535).contains(&n) => n as u16,
            Some(n) => {
                self.bad(key, format!("{n} is not a port"), "ports are 1..=65535");
                default
            }
        }
    }

    fn pool_mode(&mut self, key: &str, v: &Option<String>) -> Option<PoolMode> {
        let s = v.as_deref()?;
        let mode = PoolMode::parse(s);
        if mode.is_none() {
            self.bad(
                key,
                format!("{s:?} is not a pool mode"),
                "one of session, transaction, statement",
            );
        }
        mode
    }

    fn socket(&mut self, key: &str, v: &Option<String>, default: &str) -> SocketAddr {
        let text = v.as_deref().unwrap_or(default);
        match text.parse::<SocketAddr>() {
            Ok(a) => a,
            Err(_) => {
                self.bad(
                    key,
                    format!("{text:?} is not an address:port"),
                    "for example \"127.0.0.1:9930\"",
                );
                default
                    .parse()
                    .unwrap_or(SocketAddr::from(([127, 0, 0, 1], 0)))
            }
        }
    }

    fn nonempty(&mut self, key: &str, v: &Option<String>, default: &str) -> String {
        match v.as_deref() {
            Some("") => {
                self.bad(key, "must not be empty", "");
                default.to_string()
            }
            Some(s) => s.to_string(),
            None => default.to_string(),
        }
    }
}

/// Parses `"5s"`, `"250ms"`, `"1m 30s"` and a bare `"0"`.
pub fn parse_duration(text: &str) -> Option<Duration> {
    let t = text.trim();
    if let Ok(secs) = t.parse::<f64>() {
        return (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs));
    }
    humantime::parse_duration(t).ok()
}

/// Parses `"16MB"`, `"1GiB"`, `"8kB"`, `"512"` (units are powers of 1024, as in PostgreSQL).
pub fn parse_bytes(text: &str) -> Option<u64> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num.parse().ok()?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" | "kib" | "k" => 1 << 10,
        "mb" | "mib" | "m" => 1 << 20,
        "gb" | "gib" | "g" => 1 << 30,
        "tb" | "tib" | "t" => 1 << 40,
        _ => return None,
    };
    n.checked_mul(mult)
}

/// Validates the whole file.
pub fn validate(raw: &RawConfig) -> Result<Config, Vec<Problem>> {
    let mut c = Checker::default();
    let pooler = pooler(&mut c, &raw.pooler);
    let cluster = raw.cluster.as_ref().map(|rc| cluster(&mut c, rc));
    let databases = databases(&mut c, &raw.databases, &pooler, cluster.as_ref());
    let users = users(&mut c, &raw.users);
    let agent = agent(&mut c, &raw.agent, cluster.as_ref());
    if let Some(db) = pooler.auth_query.as_ref().and_then(|a| a.dbname.as_ref()) {
        if !databases.contains_key(db) {
            c.bad(
                "pooler.auth_dbname",
                format!("no database {db:?}"),
                "name a [databases] entry",
            );
        }
    }
    let metrics = MetricsConfig {
        enabled: raw.metrics.enabled.unwrap_or(true),
        listen: c.socket("metrics.listen", &raw.metrics.listen, "127.0.0.1:9930"),
    };
    if metrics.enabled && metrics.listen == pooler.listen {
        c.bad(
            "metrics.listen",
            format!("{} is also pooler's listen address", metrics.listen),
            "use another port",
        );
    }
    if c.problems.is_empty() {
        Ok(Config {
            pooler,
            databases,
            users,
            cluster,
            agent,
            metrics,
        })
    } else {
        Err(c.problems)
    }
}

fn client_tls(c: &mut Checker, p: &RawPooler) -> ClientTls {
    let path = |s: &Option<String>| s.as_ref().filter(|s| !s.is_empty()).map(PathBuf::from);
    let mode = match p.client_tls_sslmode.as_deref().unwrap_or("disable") {
        "disable" => ClientTlsMode::Disable,
        "allow" => ClientTlsMode::Allow,
        "prefer" => ClientTlsMode::Prefer,
        "require" => ClientTlsMode::Require,
        "verify-ca" => ClientTlsMode::VerifyCa,
        other => {
            c.bad(
                "pooler.client_tls_sslmode",
                format!("{other:?} is not supported"),
                "one of disable, allow, prefer, require, verify-ca",
            );
            ClientTlsMode::Disable
        }
    };
    let tls = ClientTls {
        mode,
        cert_file: path(&p.client_tls_cert_file),
        key_file: path(&p.client_tls_key_file),
        ca_file: path(&p.client_tls_ca_file),
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
    let path = |s: &Option<String>| s.as_ref().filter(|s| !s.is_empty()).map(PathBuf::from);
    let spelled = p.server_tls_sslmode.as_deref().unwrap_or("disable");
    let mode = ServerTlsMode::parse(spelled).unwrap_or_else(|| {
        c.bad(
            "pooler.server_tls_sslmode",
            format!("{spelled:?} is not supported"),
            "one of disable, allow, prefer, require, verify-ca, verify-full",
        );
        ServerTlsMode::Disable
    });
    let tls = ServerTls {
        mode,
        ca_file: path(&p.server_tls_ca_file),
        cert_file: path(&p.server_tls_cert_file),
        key_file: path(&p.server_tls_key_file),
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

/// PgBouncer's default: `pg_shadow` needs a superuser, or a `SECURITY DEFINER` function.
pub const DEFAULT_AUTH_QUERY: &str = "SELECT usename, passwd FROM pg_shadow WHERE usename=$1";

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
    let query = p
        .auth_query
        .clone()
        .unwrap_or_else(|| DEFAULT_AUTH_QUERY.into());
    if !query.contains("$1") {
        c.bad(
            "pooler.auth_query",
            "must use $1 for the user name",
            DEFAULT_AUTH_QUERY,
        );
    }
    Some(AuthQuery {
        user: user.clone(),
        query,
        dbname: p.auth_dbname.clone().filter(|s| !s.is_empty()),
        cache_ttl: c.duration(
            "pooler.auth_cache_ttl",
            &p.auth_cache_ttl,
            Duration::from_secs(60),
        ),
    })
}

fn pooler(c: &mut Checker, p: &RawPooler) -> PoolerConfig {
    let addr_text = p.listen_addr.as_deref().unwrap_or("127.0.0.1");
    let ip = match addr_text {
        "*" => IpAddr::from([0, 0, 0, 0]),
        t => t.parse::<IpAddr>().unwrap_or_else(|_| {
            c.bad(
                "pooler.listen_addr",
                format!("{t:?} is not an IP address"),
                "for example \"127.0.0.1\", \"::1\" or \"*\"",
            );
            IpAddr::from([127, 0, 0, 1])
        }),
    };
    let port = c.port("pooler.listen_port", p.listen_port, 6432);
    let auth_type = match p.auth_type.as_deref() {
        None => AuthType::ScramSha256,
        Some(s) => AuthType::parse(s).unwrap_or_else(|| {
            c.bad(
                "pooler.auth_type",
                format!("{s:?} is not an auth type"),
                "one of trust, md5, scram-sha-256",
            );
            AuthType::ScramSha256
        }),
    };
    let max_startup = c.bytes(
        "pooler.max_startup_packet_size",
        &p.max_startup_packet_size,
        10_000,
    );
    let max_packet = c.bytes("pooler.max_packet_size", &p.max_packet_size, 1 << 30);
    if max_startup < 64 {
        c.bad(
            "pooler.max_startup_packet_size",
            format!("{max_startup} is too small"),
            "at least 64 bytes",
        );
    }
    if max_packet < 1024 {
        c.bad(
            "pooler.max_packet_size",
            format!("{max_packet} is too small"),
            "at least 1024 bytes",
        );
    }
    let min = c.count("pooler.min_pool_size", p.min_pool_size, 0, 0, 100_000);
    let size = c.count(
        "pooler.default_pool_size",
        p.default_pool_size,
        20,
        1,
        100_000,
    );
    if min > size {
        c.bad(
            "pooler.min_pool_size",
            format!("{min} is above default_pool_size {size}"),
            "",
        );
    }
    PoolerConfig {
        listen: SocketAddr::new(ip, port),
        unix_socket_dir: p
            .unix_socket_dir
            .as_ref()
            .filter(|s| !s.is_empty())
            .map(PathBuf::from),
        workers: c.count("pooler.workers", p.workers, 0, 0, 1024),
        max_client_conn: c.count(
            "pooler.max_client_conn",
            p.max_client_conn,
            10_000,
            1,
            1_000_000,
        ),
        pool_mode: c
            .pool_mode("pooler.pool_mode", &p.pool_mode)
            .unwrap_or(PoolMode::Transaction),
        default_pool_size: size,
        min_pool_size: min,
        reserve_pool_size: c.count(
            "pooler.reserve_pool_size",
            p.reserve_pool_size,
            0,
            0,
            100_000,
        ),
        reserve_pool_timeout: c.duration(
            "pooler.reserve_pool_timeout",
            &p.reserve_pool_timeout,
            Duration::from_secs(5),
        ),
        max_db_connections: c.count(
            "pooler.max_db_connections",
            p.max_db_connections,
            0,
            0,
            1_000_000,
        ),
        max_user_connections: c.count(
            "pooler.max_user_connections",
            p.max_user_connections,
            0,
            0,
            1_000_000,
        ),
        auth_type,
        auth_file: p
            .auth_file
            .as_ref()
            .filter(|s| !s.is_empty())
            .map(PathBuf::from),
        auth_hba_file: p
            .auth_hba_file
            .as_ref()
            .filter(|s| !s.is_empty())
            .map(PathBuf::from),
        client_tls: client_tls(c, p),
        server_tls: server_tls(c, p),
        auth_query: auth_query(c, p),
        max_pending_logins: c.count(
            "pooler.max_pending_logins",
            p.max_pending_logins,
            1_000,
            1,
            1_000_000,
        ),
        admin_users: p.admin_users.clone().unwrap_or_default(),
        stats_users: p.stats_users.clone().unwrap_or_default(),
        server_reset_query: p
            .server_reset_query
            .clone()
            .unwrap_or_else(|| "DISCARD ALL".into()),
        server_check_query: p
            .server_check_query
            .clone()
            .unwrap_or_else(|| "select 1".into()),
        server_check_delay: c.duration(
            "pooler.server_check_delay",
            &p.server_check_delay,
            Duration::from_secs(30),
        ),
        server_connect_timeout: c.duration(
            "pooler.server_connect_timeout",
            &p.server_connect_timeout,
            Duration::from_secs(15),
        ),
        server_idle_timeout: c.duration(
            "pooler.server_idle_timeout",
            &p.server_idle_timeout,
            Duration::from_secs(600),
        ),
        server_lifetime: c.duration(
            "pooler.server_lifetime",
            &p.server_lifetime,
            Duration::from_secs(3600),
        ),
        query_wait_timeout: c.duration(
            "pooler.query_wait_timeout",
            &p.query_wait_timeout,
            Duration::from_secs(120),
        ),
        client_idle_timeout: c.duration(
            "pooler.client_idle_timeout",
            &p.client_idle_timeout,
            Duration::ZERO,
        ),
        query_timeout: c.duration("pooler.query_timeout", &p.query_timeout, Duration::ZERO),
        idle_transaction_timeout: c.duration(
            "pooler.idle_transaction_timeout",
            &p.idle_transaction_timeout,
            Duration::ZERO,
        ),
        client_login_timeout: c.duration(
            "pooler.client_login_timeout",
            &p.client_login_timeout,
            Duration::from_secs(60),
        ),
        track_extra_parameters: p
            .track_extra_parameters
            .clone()
            .unwrap_or_else(|| vec!["search_path".into()]),
        max_packet_size: max_packet as usize,
        max_prepared_statements: c.count(
            "pooler.max_prepared_statements",
            p.max_prepared_statements,
            200,
            0,
            100_000,
        ),
        max_startup_packet_size: max_startup as usize,
        log_connections: p.log_connections.unwrap_or(true),
        log_disconnections: p.log_disconnections.unwrap_or(true),
        log_format: log_format(c, "pooler.log_format", p.log_format.as_deref()),
        stats_period: c.duration(
            "pooler.stats_period",
            &p.stats_period,
            Duration::from_secs(60),
        ),
        tcp_keepalive: p.tcp_keepalive.unwrap_or(true),
        shutdown_timeout: c.duration(
            "pooler.shutdown_timeout",
            &p.shutdown_timeout,
            Duration::from_secs(30),
        ),
        pause_timeout: c.duration(
            "pooler.pause_timeout",
            &p.pause_timeout,
            Duration::from_secs(60),
        ),
        so_reuseport: p.so_reuseport.unwrap_or(false),
        probe_interval: c.duration(
            "pooler.probe_interval",
            &p.probe_interval,
            Duration::from_millis(500),
        ),
        ban_time: c.duration("pooler.ban_time", &p.ban_time, Duration::from_secs(10)),
        primary_wait_timeout: c.duration(
            "pooler.primary_wait_timeout",
            &p.primary_wait_timeout,
            Duration::from_secs(15),
        ),
    }
}

fn databases(
    c: &mut Checker,
    raw: &BTreeMap<String, RawDatabase>,
    pooler: &PoolerConfig,
    cluster: Option<&ClusterConfig>,
) -> BTreeMap<String, DatabaseConfig> {
    let mut out = BTreeMap::new();
    for (name, d) in raw {
        let key = format!("databases.{name}");
        if matches!(name.as_str(), "pgsluice" | "pgbouncer") {
            c.bad(
                &key,
                format!("{name:?} is reserved for the admin console"),
                "choose another name",
            );
        }
        let backend = match (&d.host, d.port) {
            (Some(h), port) if !h.is_empty() => Backend::Host {
                host: h.clone(),
                port: c.port(&format!("{key}.port"), port, 5432),
            },
            (Some(_), _) => {
                c.bad(
                    format!("{key}.host"),
                    "must not be empty",
                    "omit it to use [cluster]",
                );
                Backend::Cluster
            }
            (None, Some(_)) => {
                c.bad(
                    format!("{key}.port"),
                    "port without host",
                    "set host too, or omit both to use [cluster]",
                );
                Backend::Cluster
            }
            (None, None) => {
                if cluster.is_none_or(|cl| cl.nodes.is_empty()) {
                    c.bad(
                        &key,
                        "has no host and there is no [cluster] with nodes",
                        "set host/port or describe [[cluster.nodes]]",
                    );
                }
                Backend::Cluster
            }
        };
        let pool_size = c.count(
            &format!("{key}.pool_size"),
            d.pool_size,
            pooler.default_pool_size,
            1,
            100_000,
        );
        let routing = routing(c, &key, d, &backend);
        out.insert(
            name.clone(),
            DatabaseConfig {
                name: name.clone(),
                dbname: c.nonempty(&format!("{key}.dbname"), &d.dbname, name),
                backend,
                user: d.user.clone(),
                password: d.password.clone(),
                pool_size,
                min_pool_size: c.count(
                    &format!("{key}.min_pool_size"),
                    d.min_pool_size,
                    pooler.min_pool_size.min(pool_size),
                    0,
                    100_000,
                ),
                reserve_pool_size: c.count(
                    &format!("{key}.reserve_pool_size"),
                    d.reserve_pool_size,
                    pooler.reserve_pool_size,
                    0,
                    100_000,
                ),
                pool_mode: c
                    .pool_mode(&format!("{key}.pool_mode"), &d.pool_mode)
                    .unwrap_or(pooler.pool_mode),
                max_db_connections: c.count(
                    &format!("{key}.max_db_connections"),
                    d.max_db_connections,
                    pooler.max_db_connections,
                    0,
                    1_000_000,
                ),
                routing,
            },
        );
    }
    out
}

/// The routing keys of `[databases.NAME]`.
fn routing(c: &mut Checker, key: &str, d: &RawDatabase, backend: &Backend) -> Routing {
    let mut pick = |field: &str, v: &Option<String>, choices: &[&str]| -> usize {
        let Some(s) = v.as_deref() else { return 0 };
        choices.iter().position(|x| *x == s).unwrap_or_else(|| {
            c.bad(
                format!("{key}.{field}"),
                format!("{s:?} is not allowed"),
                &format!("one of {}", choices.join(", ")),
            );
            0
        })
    };
    let policy = match pick("policy", &d.policy, &["primary", "read-only", "auto"]) {
        1 => RoutePolicy::ReadOnly,
        2 => RoutePolicy::Auto,
        _ => RoutePolicy::Primary,
    };
    let ryw = pick("read_your_writes", &d.read_your_writes, &["session", "off"]) == 0;
    let choice = match pick(
        "replica_choice",
        &d.replica_choice,
        &["least-outstanding", "round-robin", "weighted"],
    ) {
        1 => ReplicaChoice::RoundRobin,
        2 => ReplicaChoice::Weighted,
        _ => ReplicaChoice::LeastOutstanding,
    };
    let fallback = pick(
        "replica_fallback",
        &d.replica_fallback,
        &["primary", "error"],
    ) == 0;
    if policy != RoutePolicy::Primary && matches!(backend, Backend::Host { .. }) {
        c.bad(
            format!("{key}.policy"),
            "routes reads to standbys, but this database has an explicit host",
            "omit host and port to use [cluster], or drop policy",
        );
    }
    Routing {
        policy,
        read_your_writes: ryw,
        max_replica_lag: c.bytes(&format!("{key}.max_replica_lag"), &d.max_replica_lag, 0),
        max_replica_lag_time: c.duration(
            &format!("{key}.max_replica_lag_time"),
            &d.max_replica_lag_time,
            Duration::ZERO,
        ),
        replica_choice: choice,
        replica_fallback: fallback,
    }
}

fn users(c: &mut Checker, raw: &BTreeMap<String, RawUser>) -> BTreeMap<String, UserConfig> {
    raw.iter()
        .map(|(name, u)| {
            let key = format!("users.{name}");
            let user = UserConfig {
                name: name.clone(),
                password: u.password.clone(),
                pool_mode: c.pool_mode(&format!("{key}.pool_mode"), &u.pool_mode),
                pool_size: u
                    .pool_size
                    .map(|n| c.count(&format!("{key}.pool_size"), Some(n), 1, 1, 100_000)),
                max_user_connections: c.count(
                    &format!("{key}.max_user_connections"),
                    u.max_user_connections,
                    0,
                    0,
                    1_000_000,
                ),
            };
            (name.clone(), user)
        })
        .collect()
}

fn cluster(c: &mut Checker, rc: &RawCluster) -> ClusterConfig {
    let mut names = HashSet::new();
    let mut endpoints = HashSet::new();
    let nodes = rc
        .nodes
        .iter()
        .enumerate()
        .map(|(i, n)| {
            let key = format!("cluster.nodes[{i}]");
            let name = match n.name.as_deref() {
                Some(s)
                    if !s.is_empty()
                        && s.chars()
                            .all(|ch| ch.is_ascii_alphanumeric() || ch == '_' || ch == '-') =>
                {
                    s.to_string()
                }
                Some(s) => {
                    c.bad(
                        format!("{key}.name"),
                        format!("{s:?} is not a node name"),
                        "letters, digits, '-' and '_'",
                    );
                    format!("node{i}")
                }
                None => {
                    c.bad(
                        format!("{key}.name"),
                        "is missing",
                        "every node needs a unique name",
                    );
                    format!("node{i}")
                }
            };
            if !names.insert(name.clone()) {
                c.bad(
                    format!("{key}.name"),
                    format!("{name:?} is used by another node"),
                    "node names are unique",
                );
            }
            let host = c.nonempty(&format!("{key}.host"), &n.host, "127.0.0.1");
            let port = c.port(&format!("{key}.port"), n.port, 5432);
            if !endpoints.insert((host.clone(), port)) {
                c.bad(
                    format!("{key}.port"),
                    format!("{host}:{port} is used by another node"),
                    "",
                );
            }
            let priority = c.count(
                &format!("{key}.priority"),
                n.priority,
                100,
                0,
                u32::MAX as i64,
            ) as u32;
            NodeConfig {
                name,
                host,
                port,
                data_dir: n
                    .data_dir
                    .as_ref()
                    .filter(|s| !s.is_empty())
                    .map(PathBuf::from),
                priority,
                os_user: n.os_user.clone(),
                weight: c.count(&format!("{key}.weight"), n.weight, 100, 0, 1_000_000) as u32,
            }
        })
        .collect::<Vec<_>>();
    if rc.nodes.is_empty() {
        c.bad(
            "cluster.nodes",
            "is empty",
            "add at least one [[cluster.nodes]]",
        );
    }
    ClusterConfig {
        name: c.nonempty("cluster.name", &rc.name, "main"),
        pg_bindir: rc
            .pg_bindir
            .as_ref()
            .filter(|s| !s.is_empty())
            .map(PathBuf::from),
        superuser: c.nonempty("cluster.superuser", &rc.superuser, "postgres"),
        superuser_password: rc.superuser_password.clone(),
        replication_user: c.nonempty(
            "cluster.replication_user",
            &rc.replication_user,
            "replicator",
        ),
        replication_password: rc.replication_password.clone(),
        probe_database: c.nonempty("cluster.probe_database", &rc.probe_database, "postgres"),
        nodes,
    }
}

fn agent(c: &mut Checker, a: &RawAgent, cluster: Option<&ClusterConfig>) -> AgentConfig {
    let probe_interval = c.duration(
        "agent.probe_interval",
        &a.probe_interval,
        Duration::from_secs(1),
    );
    if probe_interval.is_zero() {
        c.bad(
            "agent.probe_interval",
            "must be above zero",
            "for example \"1s\"",
        );
    }
    let probe_timeout = c.duration(
        "agent.probe_timeout",
        &a.probe_timeout,
        Duration::from_secs(1),
    );
    let failure_threshold =
        c.count("agent.failure_threshold", a.failure_threshold, 3, 1, 1000) as u32;
    let failure_window = c.duration(
        "agent.failure_window",
        &a.failure_window,
        Duration::from_secs(10),
    );
    if failure_window < probe_interval * failure_threshold.saturating_sub(1) {
        c.bad(
            "agent.failure_window",
            format!("{failure_window:?} cannot hold {failure_threshold} probes {probe_interval:?} apart"),
            "make it at least probe_interval x (failure_threshold - 1)",
        );
    }
    let poolers = a.poolers.clone().unwrap_or_default();
    for (i, p) in poolers.iter().enumerate() {
        if !p.starts_with("http://") {
            c.bad(
                format!("agent.poolers[{i}]"),
                format!("{p:?} is not an http:// URL"),
                "for example \"http://127.0.0.1:9930\"",
            );
        }
    }
    let synchronous_standbys = c.count(
        "agent.synchronous_standbys",
        a.synchronous_standbys,
        0,
        0,
        100,
    ) as u32;
    let standbys = cluster.map_or(0, |cl| cl.nodes.len().saturating_sub(1));
    if synchronous_standbys as usize > standbys {
        c.bad(
            "agent.synchronous_standbys",
            format!("{synchronous_standbys} is more than the {standbys} standby(s) of [cluster]"),
            "at most the number of nodes minus one",
        );
    }
    if a.state_dir.is_some() && cluster.is_none() {
        c.bad(
            "agent.state_dir",
            "an agent needs a [cluster] to manage",
            "describe [[cluster.nodes]]",
        );
    }
    let listen = c.socket("agent.listen", &a.listen, "127.0.0.1:9931");
    let topology_lease = c.duration(
        "agent.topology_lease",
        &a.topology_lease,
        Duration::from_secs(3),
    );
    if !topology_lease.is_zero() && topology_lease < Duration::from_millis(300) {
        c.bad(
            "agent.topology_lease",
            format!("{topology_lease:?} is too short to renew three times over HTTP"),
            "at least \"300ms\", or 0 to turn the lease off",
        );
    }
    AgentConfig {
        state_dir: PathBuf::from(a.state_dir.as_deref().unwrap_or("/var/lib/pgsluice")),
        probe_interval,
        probe_timeout,
        failure_threshold,
        failure_window,
        max_failover_lag: c.bytes("agent.max_failover_lag", &a.max_failover_lag, 16 << 20),
        auto_failover: a.auto_failover.unwrap_or(true),
        event_command: a.event_command.clone().filter(|s| !s.is_empty()),
        poolers,
        listen,
        synchronous_standbys,
        warm: warm(c, a),
        name: agent_name(a, listen),
        state_store: state_store(c, a, cluster),
        topology_lease,
        log_format: log_format(c, "agent.log_format", a.log_format.as_deref()),
    }
}

/// `pooler.log_format` / `agent.log_format`, `text` by default.
fn log_format(c: &mut Checker, key: &str, raw: Option<&str>) -> LogFormat {
    let text = raw.unwrap_or("text");
    LogFormat::parse(text).unwrap_or_else(|| {
        c.bad(key, format!("{text:?} is not a log format"), "text or json");
        LogFormat::Text
    })
}

/// `agent.name`, by default `<host name>-<listen port>`.
fn agent_name(a: &RawAgent, listen: SocketAddr) -> String {
    a.name.clone().filter(|n| !n.is_empty()).unwrap_or_else(|| {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
        format!("{}-{}", host.trim(), listen.port())
    })
}

/// `agent.state_store` and the etcd keys.
fn state_store(c: &mut Checker, a: &RawAgent, cluster: Option<&ClusterConfig>) -> StateStoreConfig {
    let etcd_keys = a.etcd_endpoints.is_some() || a.etcd_prefix.is_some() || a.lease_ttl.is_some();
    match a.state_store.as_deref().unwrap_or("local") {
        "local" => {
            if etcd_keys || a.etcd_username.is_some() {
                c.bad(
                    "agent.state_store",
                    "etcd keys are set but state_store is local",
                    "set state_store = \"etcd\"",
                );
            }
            return StateStoreConfig::Local;
        }
        "etcd" => {}
        other => {
            c.bad(
                "agent.state_store",
                format!("{other:?} is not a state store"),
                "local or etcd",
            );
            return StateStoreConfig::Local;
        }
    }
    let endpoints = a.etcd_endpoints.clone().unwrap_or_default();
    if endpoints.is_empty() {
        c.bad(
            "agent.etcd_endpoints",
            "state_store = \"etcd\" needs endpoints",
            "for example [\"http://127.0.0.1:2379\"]",
        );
    }
    for (i, e) in endpoints.iter().enumerate() {
        if !e.starts_with("http://") {
            c.bad(
                format!("agent.etcd_endpoints[{i}]"),
                format!("{e:?} is not an http:// URL"),
                "for example \"http://127.0.0.1:2379\"",
            );
        }
    }
    let name = cluster.map_or("default", |c| c.name.as_str());
    let mut prefix = a
        .etcd_prefix
        .clone()
        .unwrap_or_else(|| format!("/pgsluice/{name}/"));
    if !prefix.ends_with('/') {
        prefix.push('/');
    }
    let lease_ttl = c.duration("agent.lease_ttl", &a.lease_ttl, Duration::from_secs(10));
    if lease_ttl < Duration::from_secs(2) || lease_ttl.subsec_nanos() != 0 {
        c.bad(
            "agent.lease_ttl",
            format!("{lease_ttl:?} is not whole seconds >= 2"),
            "etcd leases count whole seconds; for example \"10s\"",
        );
    }
    let auth = match (&a.etcd_username, &a.etcd_password) {
        (Some(u), Some(p)) => Some((u.clone(), p.clone())),
        (None, None) => None,
        _ => {
            c.bad(
                "agent.etcd_username",
                "etcd_username and etcd_password go together",
                "",
            );
            None
        }
    };
    StateStoreConfig::Etcd(EtcdConfig {
        endpoints,
        prefix,
        auth,
        lease_ttl,
    })
}

/// The warm-failover keys of `[agent]`.
fn warm(c: &mut Checker, a: &RawAgent) -> WarmConfig {
    let mut fraction = |key: &str, v: Option<f64>, default: f64, zero_ok: bool| match v {
        None => default,
        Some(x) if x <= 1.0 && (x > 0.0 || (zero_ok && x == 0.0)) => x,
        Some(x) => {
            let range = if zero_ok {
                "0..=1"
            } else {
                "above 0, at most 1"
            };
            c.bad(
                key,
                format!("{x} is out of range"),
                &format!("a fraction {range}"),
            );
            default
        }
    };
    let budget = fraction("agent.hot_set_budget", a.hot_set_budget, 0.75, false);
    let switchover_warmth = fraction("agent.switchover_warmth", a.switchover_warmth, 0.9, true);
    let rate = a.prewarm_rate.unwrap_or(64.0);
    if !(rate.is_finite() && rate > 0.0) {
        c.bad(
            "agent.prewarm_rate",
            format!("{rate} is not a rate"),
            "MB per second above 0, for example 64",
        );
    }
    let mode_text = a.prewarm_mode.as_deref().unwrap_or("buffer");
    let mode = PrewarmMode::parse(mode_text).unwrap_or_else(|| {
        c.bad(
            "agent.prewarm_mode",
            format!("{mode_text:?} is not a pg_prewarm mode"),
            "one of buffer, prefetch, read",
        );
        PrewarmMode::Buffer
    });
    WarmConfig {
        hot_set_interval: c.duration(
            "agent.hot_set_interval",
            &a.hot_set_interval,
            Duration::from_secs(10),
        ),
        min_usagecount: c.count(
            "agent.hot_set_min_usagecount",
            a.hot_set_min_usagecount,
            2,
            1,
            5,
        ) as u8,
        budget,
        rate_bytes: if rate.is_finite() && rate > 0.0 {
            (rate * 1048576.0) as u64
        } else {
            64 << 20
        },
        mode,
        switchover_warmth,
        switchover_timeout: c.duration(
            "agent.switchover_warmth_timeout",
            &a.switchover_warmth_timeout,
            Duration::from_secs(30),
        ),
    }
}
