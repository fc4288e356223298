//! `auth_query`: verifiers of users the configuration does not list, looked up on the server
//! as `auth_user` over one dedicated connection and cached for `auth_cache_ttl`; and the
//! SCRAM keys clients revealed at login (pass-through to the server).

use super::Backend;
use crate::auth::Secret;
use crate::config::{AuthQuery, Config, DatabaseConfig};
use crate::server::{connect, Credential, ServerConn};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;
use tracing::warn;

/// Answers kept at most; beyond, expired ones are dropped, then all (unknown user names
/// from a scan must not grow memory without bound).
const MAX_ENTRIES: usize = 10_000;

/// One answer of the auth query: the verifier, or `None` when the user has none.
struct Answer {
    at: Instant,
    secret: Option<Secret>,
}

/// SCRAM keys a client proved at login: the ClientKey and the ServerKey of its secret.
#[derive(Clone, Copy, PartialEq, Eq)]
struct Keys {
    client_key: [u8; 32],
    server_key: [u8; 32],
}

/// The auth query cache, its connection, and pass-through keys.
#[derive(Default)]
pub struct AuthCache {
    answers: Mutex<HashMap<String, Answer>>,
    keys: Mutex<HashMap<String, Keys>>,
    /// The dedicated connection (and the database it is in); its lock serializes lookups.
    conn: tokio::sync::Mutex<Option<(String, ServerConn)>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

impl AuthCache {
    /// The cached verifier of `user`, fresh or not (server logins use it).
    pub fn cached(&self, user: &str) -> Option<Secret> {
        lock(&self.answers).get(user).and_then(|a| a.secret.clone())
    }

    /// Remembers the keys `user` proved with SCRAM, for server logins as that user.
    pub fn remember_keys(&self, user: &str, client_key: [u8; 32], server_key: [u8; 32]) {
        let keys = Keys {
            client_key,
            server_key,
        };
        let mut all = lock(&self.keys);
        if all.len() >= MAX_ENTRIES && !all.contains_key(user) {
            all.clear();
        }
        all.insert(user.to_string(), keys);
    }

    /// Pass-through credentials for `user` whose secret has this ServerKey, if a client
    /// proved them.
    pub fn scram_keys(&self, user: &str, server_key: &[u8; 32]) -> Option<Credential> {
        let keys = *lock(&self.keys).get(user)?;
        (keys.server_key == *server_key).then_some(Credential::ScramKeys {
            client_key: keys.client_key,
            server_key: keys.server_key,
        })
    }

    fn fresh(&self, user: &str, aq: &AuthQuery) -> Option<Option<Secret>> {
        let answers = lock(&self.answers);
        let a = answers.get(user)?;
        (a.at.elapsed() < aq.cache_ttl).then(|| a.secret.clone())
    }

    fn store(&self, user: &str, secret: Option<Secret>) {
        let mut answers = lock(&self.answers);
        if answers.len() >= MAX_ENTRIES && !answers.contains_key(user) {
            answers.retain(|_, a| a.at.elapsed() < std::time::Duration::from_secs(1));
            if answers.len() >= MAX_ENTRIES {
                answers.clear();
            }
        }
        let at = Instant::now();
        answers.insert(user.to_string(), Answer { at, secret });
    }

    /// The verifier of `user` from the auth query (cached for `auth_cache_ttl`, no row
    /// included), run as `auth_user` in `auth_dbname` or else in `db`.
    ///
    /// # Errors
    /// The lookup failed (server unreachable, query error): the client gets a generic
    /// message, the log the reason.
    pub async fn lookup(
        &self,
        backend: &Backend,
        config: &Config,
        db: &DatabaseConfig,
        user: &str,
    ) -> Result<Option<Secret>, LookupFailed> {
        let Some(aq) = &config.pooler.auth_query else {
            return Ok(None);
        };
        if let Some(known) = self.fresh(user, aq) {
            return Ok(known);
        }
        let mut conn = self.conn.lock().await;
        if let Some(known) = self.fresh(user, aq) {
            return Ok(known);
        }
        let db = aq
            .dbname
            .as_ref()
            .and_then(|n| config.databases.get(n))
            .unwrap_or(db);
        let failed = |why: String| {
            warn!(auth_user = %aq.user, database = %db.name, error = %why, "auth_query failed");
            LookupFailed
        };
        if conn.as_ref().is_some_and(|(name, _)| *name != db.name) {
            *conn = None;
        }
        let server = match &mut *conn {
            Some((_, server)) => server,
            None => {
                let mut spec = backend
                    .connect_spec(config, db, &aq.user)
                    .ok_or_else(|| failed("no primary node is known".into()))?;
                spec.user = aq.user.clone();
                spec.credential = backend.credential_for(&aq.user);
                let server = connect(&spec).await.map_err(|e| failed(e.to_string()))?;
                &mut conn.insert((db.name.clone(), server)).1
            }
        };
        let row = match server.query_row(&aq.query, user).await {
            Ok(row) => row,
            Err(e) => {
                *conn = None;
                return Err(failed(e.to_string()));
            }
        };
        let secret = row
            .and_then(|r| r.into_iter().nth(1).flatten())
            .filter(|s| !s.is_empty())
            .map(|s| Secret::parse(&s));
        self.store(user, secret.clone());
        Ok(secret)
    }
}

/// The auth query could not be run (server unreachable, query error); the log says why, the
/// client gets a generic message.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("authentication lookup failed (auth_query)")]
pub struct LookupFailed;
