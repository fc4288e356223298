//! All pools of a pooler, keyed by (database, user), with the shared per-database and
//! per-user connection caps. Looked up once per client login, never per transaction.

use super::{lock, Limit, Pool, PoolSettings};
use crate::server::ConnectSpec;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// The pooler's pools.
#[derive(Default)]
pub struct Pools {
    pools: Mutex<HashMap<(String, String), Arc<Pool>>>,
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

    /// Every pool, for the janitor, the console and metrics.
    pub fn all(&self) -> Vec<Arc<Pool>> {
        lock(&self.pools).values().cloned().collect()
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

    /// Pools of one database.
    pub fn of_database(&self, database: &str) -> Vec<Arc<Pool>> {
        lock(&self.pools)
            .iter()
            .filter(|((d, _), _)| d == database)
            .map(|(_, p)| p.clone())
            .collect()
    }
}
