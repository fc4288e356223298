//! Console commands that act: PAUSE, RESUME, DISABLE, ENABLE, RECONNECT, KILL, KILL_CLIENT,
//! WAIT_CLOSE, RELOAD, SHUTDOWN and SET, plus the rows of `SHOW CONFIG`; both read the
//! `[pooler]` keys (value, kind, bounds, changeable) from the key table, `config::keys`.

use super::{show, Admin, AdminError, Command};
use crate::backend::clients::CloseReason;
use crate::config::keys::{self, Change, Kind, KEYS};
use crate::config::{parse_duration, Config};
use crate::pool::Pool;
use crate::proto::builders;
use bytes::BytesMut;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// `(key, value, changeable by SET)` for every `[pooler]` key of the key table, in table order:
/// the rows of `SHOW CONFIG`.
pub(super) fn settings(c: &Config) -> Vec<(&'static str, String, bool)> {
    KEYS.iter()
        .filter_map(|k| Some((k.short(), k.show?(c), k.change == Change::Set)))
        .collect()
}

fn bool_value(v: &str) -> Option<bool> {
    match v.to_ascii_lowercase().as_str() {
        "1" | "on" | "true" | "yes" => Some(true),
        "0" | "off" | "false" | "no" => Some(false),
        _ => None,
    }
}

/// A value given to `SET`, checked against the key's kind and bounds.
enum SetValue {
    Duration(Duration),
    Flag(bool),
    Count(usize),
    Text(String),
}

fn set_value(kind: Kind, value: &str) -> Option<SetValue> {
    match kind {
        Kind::Duration => parse_duration(value).map(SetValue::Duration),
        Kind::Bool => bool_value(value).map(SetValue::Flag),
        Kind::Count { min, max } => {
            let n: i64 = value.parse().ok()?;
            let n = usize::try_from(n)
                .ok()
                .filter(|_| (min..=max).contains(&n))?;
            Some(SetValue::Count(n))
        }
        Kind::Text => Some(SetValue::Text(value.to_string())),
        _ => None,
    }
}

/// A copy of `c` with `key` set to `value`, or why not.
pub(super) fn apply_set(c: &Config, key: &str, value: &str) -> Result<Config, AdminError> {
    let entry = keys::pooler_key(key).ok_or_else(|| {
        AdminError::new(
            "42704",
            format!("unknown setting {key} (SHOW CONFIG lists them)"),
        )
    })?;
    if entry.change != Change::Set {
        return Err(AdminError::new(
            "55000",
            format!("{key} cannot be changed with SET: edit the file and RELOAD"),
        ));
    }
    let v = set_value(entry.kind, value).ok_or_else(|| {
        let doc = entry.doc;
        AdminError::new(
            "22023",
            format!("invalid value for {key}: {value:?} ({doc})"),
        )
    })?;
    let mut n = c.clone();
    let p = &mut n.pooler;
    use SetValue::*;
    match (key, v) {
        ("max_client_conn", Count(v)) => p.max_client_conn = v,
        ("reserve_pool_timeout", Duration(v)) => p.reserve_pool_timeout = v,
        ("server_reset_query", Text(v)) => p.server_reset_query = v,
        ("server_check_query", Text(v)) => p.server_check_query = v,
        ("server_check_delay", Duration(v)) => p.server_check_delay = v,
        ("server_connect_timeout", Duration(v)) => p.server_connect_timeout = v,
        ("server_idle_timeout", Duration(v)) => p.server_idle_timeout = v,
        ("server_lifetime", Duration(v)) => p.server_lifetime = v,
        ("query_wait_timeout", Duration(v)) => p.query_wait_timeout = v,
        ("client_idle_timeout", Duration(v)) => p.client_idle_timeout = v,
        ("client_login_timeout", Duration(v)) => p.client_login_timeout = v,
        ("log_connections", Flag(v)) => p.log_connections = v,
        ("log_disconnections", Flag(v)) => p.log_disconnections = v,
        ("stats_period", Duration(v)) => p.stats_period = v,
        ("shutdown_timeout", Duration(v)) => p.shutdown_timeout = v,
        ("pause_timeout", Duration(v)) => p.pause_timeout = v,
        _ => {
            return Err(AdminError::new(
                "XX000",
                format!("{key} is marked SET in the key table but SET cannot assign it"),
            ))
        }
    }
    Ok(n)
}

impl Admin {
    pub(super) async fn control(
        &self,
        cmd: &Command,
        out: &mut BytesMut,
    ) -> Result<(), AdminError> {
        let tag = match cmd {
            Command::Pause(db) => {
                self.pause(db.as_deref()).await?;
                "PAUSE"
            }
            Command::Resume(db) => {
                self.resume(db.as_deref())?;
                "RESUME"
            }
            Command::Disable(db) | Command::Enable(db) => {
                self.known(db)?;
                let disable = matches!(cmd, Command::Disable(_));
                self.ctx.gate.db(db).set_disabled(disable);
                if disable {
                    "DISABLE"
                } else {
                    "ENABLE"
                }
            }
            Command::Reconnect(db) => {
                for p in self.pools_of(db.as_deref())? {
                    p.reconnect();
                }
                "RECONNECT"
            }
            Command::Kill(db) => {
                self.known(db)?;
                self.ctx.gate.db(db).set_paused(true);
                for c in self.ctx.clients.all() {
                    if !c.console && c.database() == db.as_str() {
                        c.request_close(CloseReason::Killed);
                    }
                }
                for p in self.ctx.pools.of_database(db) {
                    p.close_idle();
                }
                "KILL"
            }
            Command::KillClient(id) => {
                let c = self.ctx.clients.get(*id).ok_or_else(|| {
                    AdminError::new(
                        "42704",
                        format!("no client with id {id} (see SHOW CLIENTS)"),
                    )
                })?;
                c.request_close(CloseReason::Killed);
                "KILL_CLIENT"
            }
            Command::WaitClose(db) => {
                self.wait_close(db.as_deref()).await?;
                "WAIT_CLOSE"
            }
            Command::Reload => {
                self.ops
                    .reload()
                    .map_err(|e| AdminError::new("F0000", format!("reload refused: {e}")))?;
                "RELOAD"
            }
            Command::Set { key, value } => {
                let next = apply_set(&self.ctx.config(), key, value)?;
                self.ops
                    .install(next)
                    .map_err(|e| AdminError::new("F0000", e))?;
                "SET"
            }
            Command::Shutdown(_) => "SHUTDOWN",
            Command::Show(_) => "SHOW",
        };
        builders::command_complete(out, tag);
        Ok(())
    }

    fn known(&self, db: &str) -> Result<(), AdminError> {
        match show::database(&self.ctx.config(), db) {
            Some(_) => Ok(()),
            None => Err(AdminError::new(
                "3D000",
                format!("database \"{db}\" does not exist"),
            )),
        }
    }

    fn pools_of(&self, db: Option<&str>) -> Result<Vec<Arc<Pool>>, AdminError> {
        match db {
            Some(d) => {
                self.known(d)?;
                Ok(self.ctx.pools.of_database(d))
            }
            None => Ok(self.ctx.pools.all()),
        }
    }

    /// Holds new transactions, waits (up to `pause_timeout`) until running ones end, then
    /// closes the idle server connections.
    async fn pause(&self, db: Option<&str>) -> Result<(), AdminError> {
        let pools = self.pools_of(db)?;
        match db {
            Some(d) => self.ctx.gate.db(d).set_paused(true),
            None => self.ctx.gate.pause(),
        }
        let timeout = self.ctx.config().pooler.pause_timeout;
        let deadline = Instant::now() + timeout;
        loop {
            let db_pools = match db {
                Some(d) => self.ctx.pools.of_database(d),
                None => self.ctx.pools.all(),
            };
            let active: usize = db_pools.iter().map(|p| p.active()).sum();
            if active == 0 {
                break;
            }
            if Instant::now() >= deadline {
                return Err(AdminError::new(
                    "57014",
                    format!(
                        "PAUSE timed out after {}s: {active} server connection(s) still in a \
                         transaction; new transactions stay held until RESUME",
                        timeout.as_secs_f64()
                    ),
                ));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        for p in pools {
            p.close_idle();
        }
        Ok(())
    }

    fn resume(&self, db: Option<&str>) -> Result<(), AdminError> {
        match db {
            Some(d) => {
                self.known(d)?;
                let g = self.ctx.gate.db(d);
                if !g.is_paused() {
                    return Err(AdminError::new(
                        "55000",
                        format!("database {d} is not paused"),
                    ));
                }
                g.set_paused(false);
            }
            None => {
                let dbs: Vec<String> = self.ctx.config().databases.keys().cloned().collect();
                let any_db = dbs.iter().any(|d| self.ctx.gate.db(d).is_paused());
                if !self.ctx.gate.is_paused() && !any_db {
                    return Err(AdminError::new("55000", "pooler is not paused"));
                }
                for d in dbs {
                    self.ctx.gate.db(&d).set_paused(false);
                }
                self.ctx.gate.resume();
            }
        }
        Ok(())
    }

    /// Waits until every connection marked by `RECONNECT` (or a reload) has closed.
    async fn wait_close(&self, db: Option<&str>) -> Result<(), AdminError> {
        let timeout = self.ctx.config().pooler.pause_timeout;
        let deadline = Instant::now() + timeout;
        loop {
            let stale: usize = self
                .pools_of(db)?
                .iter()
                .map(|p| p.stats.stale.load(std::sync::atomic::Ordering::Relaxed))
                .sum();
            if stale == 0 {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(AdminError::new(
                    "57014",
                    format!("WAIT_CLOSE timed out: {stale} connection(s) still in use"),
                ));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_changes_reloadable_keys_only() {
        let c = crate::config::validate(&Default::default()).unwrap();
        let n = apply_set(&c, "query_wait_timeout", "5s").unwrap();
        assert_eq!(n.pooler.query_wait_timeout, Duration::from_secs(5));
        let n = apply_set(&c, "log_connections", "off").unwrap();
        assert!(!n.pooler.log_connections);
        assert_eq!(apply_set(&c, "listen_port", "1").unwrap_err().code, "55000");
        assert_eq!(apply_set(&c, "nope", "1").unwrap_err().code, "42704");
        assert_eq!(
            apply_set(&c, "stats_period", "x").unwrap_err().code,
            "22023"
        );
        assert!(settings(&c)
            .iter()
            .any(|(k, _, ch)| *k == "shutdown_timeout" && *ch));
        assert_eq!(
            apply_set(&c, "max_client_conn", "0").unwrap_err().code,
            "22023"
        );
    }

    #[test]
    fn show_config_lists_every_pooler_key_and_set_assigns_every_set_key() {
        let c = crate::config::validate(&Default::default()).unwrap();
        let rows = settings(&c);
        let pooler = KEYS
            .iter()
            .filter(|k| k.name.starts_with("pooler."))
            .count();
        assert_eq!(rows.len(), pooler);
        for (key, value, changeable) in rows {
            let entry = keys::pooler_key(key).unwrap();
            assert_eq!(changeable, entry.change == Change::Set, "{key}");
            if changeable {
                // Setting the value shown keeps it: SET and SHOW CONFIG agree on every key.
                let value = if value.is_empty() {
                    "x".to_string()
                } else {
                    value
                };
                let n = apply_set(&c, key, &value).unwrap_or_else(|e| panic!("{key}: {e:?}"));
                let shown = settings(&n).into_iter().find(|r| r.0 == key).unwrap().1;
                assert_eq!(shown, value, "{key}");
            }
        }
    }
}
