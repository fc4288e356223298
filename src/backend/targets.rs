//! Where a pool connects and with which settings: the mapping from (database, user, primary or
//! standby) to a pool, connect specs, credentials towards servers, pool settings and the
//! per-user connection cap (computed here only).

use super::Backend;
use crate::auth::Secret;
use crate::config::{Backend as DbBackend, Config, DatabaseConfig, NodeConfig};
use crate::pool::{Pool, PoolSettings};
use crate::server::{ConnectSpec, Credential};
use std::sync::Arc;

/// Which pool of a (database, user) a transaction uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target<'a> {
    /// The pool that follows the primary (writes, and every transaction of `primary` policy).
    Primary,
    /// The read pool on one standby node.
    Standby(&'a str),
}

impl Backend {
    /// The pool for `(db, user)` on `target`, created on first use from the configuration in
    /// force. `None` for a standby the configuration does not list, or for the primary pool of
    /// a cluster database while no primary is known and the pool does not exist yet.
    pub fn pool(&self, db: &DatabaseConfig, user: &str, target: Target<'_>) -> Option<Arc<Pool>> {
        let config = self.config.load_full();
        let pool_user = db.user.clone().unwrap_or_else(|| user.to_string());
        let user_max = Self::user_max(&config, user);
        match target {
            Target::Primary => {
                let spec = self.connect_spec(&config, db, user)?;
                let credential = spec.credential.clone();
                let pool = self.pools.get_or_create(
                    &db.name,
                    &pool_user,
                    db.max_db_connections,
                    user_max,
                    || {
                        // Settings from the configuration in force now, not the one a slow
                        // login began with: a reload meanwhile found no pool to update.
                        let now = self.config.load();
                        let settings = match now.databases.get(&db.name) {
                            Some(d) => Self::pool_settings(&now, d, user),
                            None => Self::pool_settings(&config, db, user),
                        };
                        (spec.clone(), settings)
                    },
                );
                // SCRAM pass-through keys appear at a client's login and change with the
                // password; a suspended pool stays suspended until the topology names a primary.
                if pool.spec().credential != credential
                    && credential != Credential::None
                    && !pool.is_suspended()
                {
                    pool.retarget(spec);
                }
                Some(pool)
            }
            Target::Standby(node) => {
                let n = config.cluster.as_ref()?.node(node)?.clone();
                let pool = self.pools.node_pool(
                    (&db.name, &pool_user, node),
                    db.max_db_connections,
                    user_max,
                    || {
                        (
                            self.spec_on(&config, db, user, &n),
                            Self::pool_settings(&config, db, user),
                        )
                    },
                );
                if self.truth.load().topology.is_fenced(node) && !pool.is_suspended() {
                    pool.suspend();
                }
                Some(pool)
            }
        }
    }

    /// The cap on server connections of `user` (`users.<name>.max_user_connections`, else the
    /// pooler's `max_user_connections`; 0 = no cap).
    pub fn user_max(config: &Config, user: &str) -> usize {
        config
            .users
            .get(user)
            .map(|u| u.max_user_connections)
            .filter(|m| *m > 0)
            .unwrap_or(config.pooler.max_user_connections)
    }

    /// Where and as whom a pool for `(db, user)` connects on node `n`.
    pub fn spec_on(
        &self,
        config: &Config,
        db: &DatabaseConfig,
        user: &str,
        n: &NodeConfig,
    ) -> ConnectSpec {
        self.spec(config, db, user, (n.name.clone(), n.host.clone(), n.port))
    }

    /// Where and as whom a pool for `(db, user)` connects now: the database's host, or the
    /// primary of a cluster database (`None` while there is none).
    pub fn connect_spec(
        &self,
        config: &Config,
        db: &DatabaseConfig,
        user: &str,
    ) -> Option<ConnectSpec> {
        let place = match &db.backend {
            DbBackend::Host { host, port } => (format!("{host}:{port}"), host.clone(), *port),
            DbBackend::Cluster => {
                let truth = self.truth.load();
                let n = truth.primary.as_ref()?;
                (n.name.clone(), n.host.clone(), n.port)
            }
        };
        Some(self.spec(config, db, user, place))
    }

    fn spec(
        &self,
        config: &Config,
        db: &DatabaseConfig,
        user: &str,
        (node, host, port): (String, String, u16),
    ) -> ConnectSpec {
        let (server_user, credential) = match &db.user {
            Some(forced) => (
                forced.clone(),
                db.password
                    .clone()
                    .map_or_else(|| self.credential_for(forced), Credential::Password),
            ),
            None => (user.to_string(), self.credential_for(user)),
        };
        ConnectSpec {
            node: node.into(),
            host,
            port,
            user: server_user,
            database: db.dbname.clone(),
            credential,
            connect_timeout: config.pooler.server_connect_timeout,
            keepalive: config.pooler.tcp_keepalive,
            tls: self.server_tls.clone(),
        }
    }

    /// How the pooler logs in to a server as `user`: the password or MD5 hash it knows, or
    /// the SCRAM keys a client proved for the secret in force (pass-through).
    pub fn credential_for(&self, user: &str) -> Credential {
        match self.secret(user) {
            Some(Secret::Plain(p) | Secret::Md5(p)) => Credential::Password(p),
            Some(Secret::Scram(s)) => self
                .auth
                .scram_keys(user, &s.server_key)
                .unwrap_or_default(),
            None => Credential::None,
        }
    }

    /// Pool settings for `(db, user)` from the configuration.
    pub fn pool_settings(config: &Config, db: &DatabaseConfig, user: &str) -> PoolSettings {
        let p = &config.pooler;
        let u = config.users.get(user);
        PoolSettings {
            mode: u.and_then(|u| u.pool_mode).unwrap_or(db.pool_mode),
            size: u.and_then(|u| u.pool_size).unwrap_or(db.pool_size),
            min_size: db.min_pool_size,
            reserve_size: db.reserve_pool_size,
            reserve_timeout: p.reserve_pool_timeout,
            query_wait_timeout: p.query_wait_timeout,
            idle_timeout: p.server_idle_timeout,
            lifetime: p.server_lifetime,
            check_query: p.server_check_query.clone(),
            check_delay: p.server_check_delay,
            reset_query: p.server_reset_query.clone(),
        }
    }

    /// Puts a reloaded configuration's pool settings and caps in force (the configuration
    /// itself is already in force, so that a pool created meanwhile reads it).
    pub fn refresh_pools(&self, c: &Config) {
        for pool in self.pools.all() {
            if let Some(db) = c.databases.get(&*pool.database) {
                pool.set_settings(Self::pool_settings(c, db, &pool.user));
            }
        }
        self.pools.set_limits(
            |d| c.databases.get(d).map_or(0, |db| db.max_db_connections),
            |u| Self::user_max(c, u),
        );
    }
}
