//! `[databases.NAME]` (where each database lives, pool overrides, routing) and `[users.NAME]`.

use super::check::Checker;
use crate::config::model::*;
use crate::config::raw::{RawDatabase, RawUser};
use std::collections::BTreeMap;

/// Validates every `[databases.NAME]`; unset pool keys take the pooler's values.
pub(super) fn databases(
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
        let backend = backend(c, &key, d, cluster);
        let at = |field: &str| format!("{key}.{field}");
        let pool_size = c
            .count_opt(&at("pool_size"), d.pool_size)
            .unwrap_or(pooler.default_pool_size);
        let min_pool_size = c
            .count_opt(&at("min_pool_size"), d.min_pool_size)
            .unwrap_or(pooler.min_pool_size.min(pool_size));
        let reserve_pool_size = c
            .count_opt(&at("reserve_pool_size"), d.reserve_pool_size)
            .unwrap_or(pooler.reserve_pool_size);
        let pool_mode = c
            .choice_opt(&at("pool_mode"), &d.pool_mode)
            .and_then(PoolMode::parse)
            .unwrap_or(pooler.pool_mode);
        let session_features = c
            .choice_opt(&at("session_features"), &d.session_features)
            .and_then(SessionFeatures::parse)
            .unwrap_or(pooler.session_features);
        let max_db_connections = c
            .count_opt(&at("max_db_connections"), d.max_db_connections)
            .unwrap_or(pooler.max_db_connections);
        let routing = routing(c, &key, d, &backend);
        if name == WILDCARD_DATABASE && d.dbname.is_some() {
            c.bad(
                at("dbname"),
                "not allowed on the wildcard entry",
                "it serves every database under its own name; remove dbname",
            );
        }
        let dbname = c.nonempty_opt(&at("dbname"), &d.dbname);
        out.insert(
            name.clone(),
            DatabaseConfig {
                name: name.clone(),
                dbname: dbname.unwrap_or_else(|| name.clone()),
                backend,
                user: d.user.clone(),
                password: d.password.clone(),
                pool_size,
                min_pool_size,
                reserve_pool_size,
                pool_mode,
                session_features,
                max_db_connections,
                routing,
            },
        );
    }
    out
}

/// `host` and `port`: an explicit server, or `[cluster]`.
fn backend(
    c: &mut Checker,
    key: &str,
    d: &RawDatabase,
    cluster: Option<&ClusterConfig>,
) -> Backend {
    match (&d.host, d.port) {
        (Some(h), port) if !h.is_empty() => Backend::Host {
            host: h.clone(),
            port: c.port(&format!("{key}.port"), port),
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
                    key,
                    "has no host and there is no [cluster] with nodes",
                    "set host/port or describe [[cluster.nodes]]",
                );
            }
            Backend::Cluster
        }
    }
}

/// The routing keys of `[databases.NAME]`.
fn routing(c: &mut Checker, key: &str, d: &RawDatabase, backend: &Backend) -> Routing {
    let at = |field: &str| format!("{key}.{field}");
    let policy = match c.choice(&at("policy"), &d.policy) {
        "read-only" => RoutePolicy::ReadOnly,
        "auto" => RoutePolicy::Auto,
        _ => RoutePolicy::Primary,
    };
    let replica_choice = match c.choice(&at("replica_choice"), &d.replica_choice) {
        "round-robin" => ReplicaChoice::RoundRobin,
        "weighted" => ReplicaChoice::Weighted,
        _ => ReplicaChoice::LeastOutstanding,
    };
    if policy != RoutePolicy::Primary && matches!(backend, Backend::Host { .. }) {
        c.bad(
            at("policy"),
            "routes reads to standbys, but this database has an explicit host",
            "omit host and port to use [cluster], or drop policy",
        );
    }
    Routing {
        policy,
        read_your_writes: c.choice(&at("read_your_writes"), &d.read_your_writes) == "session",
        max_replica_lag: c.bytes(&at("max_replica_lag"), &d.max_replica_lag),
        max_replica_lag_time: c.duration(&at("max_replica_lag_time"), &d.max_replica_lag_time),
        replica_choice,
        replica_fallback: c.choice(&at("replica_fallback"), &d.replica_fallback) == "primary",
    }
}

/// Validates every `[users.NAME]`.
pub(super) fn users(
    c: &mut Checker,
    raw: &BTreeMap<String, RawUser>,
) -> BTreeMap<String, UserConfig> {
    raw.iter()
        .map(|(name, u)| {
            let at = |field: &str| format!("users.{name}.{field}");
            if u.password.as_deref() == Some("") {
                c.bad(
                    at("password"),
                    "is empty: an empty password is never accepted",
                    "set a password, or leave the key out",
                );
            }
            let user = UserConfig {
                name: name.clone(),
                password: u.password.clone(),
                pool_mode: c
                    .choice_opt(&at("pool_mode"), &u.pool_mode)
                    .and_then(PoolMode::parse),
                pool_size: c.count_opt(&at("pool_size"), u.pool_size),
                max_user_connections: c.count(&at("max_user_connections"), u.max_user_connections),
            };
            (name.clone(), user)
        })
        .collect()
}
