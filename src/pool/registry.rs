//! All pools of a pooler, keyed by (database, user) for the primary (the pool follows the
//! primary across failovers) and by (database, user, node) for reads on standbys, with the
//! shared per-database and per-user connection caps. Looked up once per client login (and
//! once per standby a session first reads from), never per transaction.

use super::{lock, Limit, Pool, PoolSettings};
use crate::server::ConnectSpec;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// The pooler's pools.
#[derive(Default)]
pub struct Pools {
    pools: Mutex<HashMap<(String, String), Arc<Pool>>>,
    /// Pools of (database, user) on one named standby node (reads); the pool of
    /// (database, user) above follows whichever node is primary.
    node_pools: Mutex<HashMap<(String, String, String), Arc<Pool>>>,
    db_limits: Mutex<HashMap<String, Arc<Limit>>>,
    user_limits: Mutex<HashMap<String, Arc<Limit>>>,
}

impl Pools {
    /// The pool for (database, user), created with `make` on first use.
    pub fn get_or_create(
        &self,
        database: &str,
        user: &str,
        db_max: usize,
        user_max: usize,
        make: impl FnOnce() -> (ConnectSpec, PoolSettings),
    ) -> Arc<Pool> {
        let key = (database.to_string(), user.to_string());
        if let Some(p) = lock(&self.pools).get(&key) {
            return p.clone();
        }
        let db_limit = lock(&self.db_limits)
            .entry(database.to_string())
            .or_insert_with(|| Arc::new(Limit::new(db_max)))
            .clone();
        let user_limit = lock(&self.user_limits)
            .entry(user.to_string())
            .or_insert_with(|| Arc::new(Limit::new(user_max)))
            .clone();
        let (spec, settings) = make();
        lock(&self.pools)
            .entry(key)
            .or_insert_with(|| Pool::new(database, user, spec, settings, db_limit, user_limit))
            .clone()
    }

    /// The pool of (database, user) on node `node`, created with `make` on first use.
    pub fn node_pool(
        &self,
        (database, user, node): (&str, &str, &str),
        db_max: usize,
        user_max: usize,
        make: impl FnOnce() -> (ConnectSpec, PoolSettings),
    ) -> Arc<Pool> {
        let key = (database.to_string(), user.to_string(), node.to_string());
        if let Some(p) = lock(&self.node_pools).get(&key) {
            return p.clone();
        }
        let (db_limit, user_limit) = self.limits(database, user, db_max, user_max);
        let (spec, settings) = make();
        lock(&self.node_pools)
            .entry(key)
            .or_insert_with(|| {
                let pool = Pool::new(database, user, spec, settings, db_limit, user_limit);
                pool.pin_reads(node);
                pool
            })
            .clone()
    }

    fn limits(
        &self,
        database: &str,
        user: &str,
        db_max: usize,
        user_max: usize,
    ) -> (Arc<Limit>, Arc<Limit>) {
        let db_limit = lock(&self.db_limits)
            .entry(database.to_string())
            .or_insert_with(|| Arc::new(Limit::new(db_max)))
            .clone();
        let user_limit = lock(&self.user_limits)
            .entry(user.to_string())
            .or_insert_with(|| Arc::new(Limit::new(user_max)))
            .clone();
        (db_limit, user_limit)
    }

    /// The pools that follow the primary.
    pub fn writer_pools(&self) -> Vec<Arc<Pool>> {
        lock(&self.pools).values().cloned().collect()
    }

    /// The standby read pools, with the node each serves.
    pub fn node_pools(&self) -> Vec<(String, Arc<Pool>)> {
        lock(&self.node_pools)
            .iter()
            .map(|((_, _, node), p)| (node.clone(), p.clone()))
            .collect()
    }

    /// Every pool (primary and per-node), for the janitor, the console and metrics.
    pub fn all(&self) -> Vec<Arc<Pool>> {
        let mut all: Vec<Arc<Pool>> = lock(&self.pools).values().cloned().collect();
        all.extend(lock(&self.node_pools).values().cloned());
        all
    }

    /// Server connections counted against database `name`'s cap now.
    pub fn db_connections(&self, name: &str) -> usize {
        lock(&self.db_limits).get(name).map_or(0, |l| l.current())
    }

    /// Server connections counted against user `name`'s cap now.
    pub fn user_connections(&self, name: &str) -> usize {
        lock(&self.user_limits).get(name).map_or(0, |l| l.current())
    }

    /// Applies new caps (reload); existing connections are not closed.
    pub fn set_limits(&self, db_max: impl Fn(&str) -> usize, user_max: impl Fn(&str) -> usize) {
        for (name, l) in lock(&self.db_limits).iter() {
            l.set_max(db_max(name));
        }
        for (name, l) in lock(&self.user_limits).iter() {
            l.set_max(user_max(name));
        }
    }

    /// Pools of one database (primary and per-node).
    pub fn of_database(&self, database: &str) -> Vec<Arc<Pool>> {
        let mut out: Vec<Arc<Pool>> = lock(&self.pools)
            .iter()
            .filter(|((d, _), _)| d == database)
            .map(|(_, p)| p.clone())
            .collect();
        out.extend(
            lock(&self.node_pools)
                .iter()
                .filter(|((d, _, _), _)| d == database)
                .map(|(_, p)| p.clone()),
        );
        out
    }
}
