//! Console commands that act: PAUSE, RESUME, DISABLE, ENABLE, RECONNECT, KILL, KILL_CLIENT,
//! WAIT_CLOSE, RELOAD, SHUTDOWN and SET, plus the table of settings `SHOW CONFIG` and `SET`
//! share.

use super::{show, Admin, AdminError, Command};
use crate::backend::clients::CloseReason;
use crate::config::{parse_duration, Config};
use crate::pool::Pool;
use crate::proto::builders;
use bytes::BytesMut;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn secs(d: Duration) -> String {
    format!("{}", d.as_secs_f64())
}

/// `(key, value, changeable by SET)` for every `[pooler]` setting shown by `SHOW CONFIG`.
pub(super) fn settings(c: &Config) -> Vec<(&'static str, String, bool)> {
    let p = &c.pooler;
    vec![
        ("listen_addr", p.listen.ip().to_string(), false),
        ("listen_port", p.listen.port().to_string(), false),
        ("workers", p.workers.to_string(), false),
        ("max_client_conn", p.max_client_conn.to_string(), true),
        ("pool_mode", p.pool_mode.as_str().into(), false),
        ("default_pool_size", p.default_pool_size.to_string(), false),
        ("min_pool_size", p.min_pool_size.to_string(), false),
        ("reserve_pool_size", p.reserve_pool_size.to_string(), false),
        ("reserve_pool_timeout", secs(p.reserve_pool_timeout), true),
        (
            "max_db_connections",
            p.max_db_connections.to_string(),
            false,
        ),
        (
            "max_user_connections",
            p.max_user_connections.to_string(),
            false,
        ),
        ("auth_type", p.auth_type.as_str().into(), false),
        ("admin_users", p.admin_users.join(","), false),
        ("stats_users", p.stats_users.join(","), false),
        ("server_reset_query", p.server_reset_query.clone(), true),
        ("server_check_query", p.server_check_query.clone(), true),
        ("server_check_delay", secs(p.server_check_delay), true),
        (
            "server_connect_timeout",
            secs(p.server_connect_timeout),
            true,
        ),
        ("server_idle_timeout", secs(p.server_idle_timeout), true),
        ("server_lifetime", secs(p.server_lifetime), true),
        ("query_wait_timeout", secs(p.query_wait_timeout), true),
        ("client_idle_timeout", secs(p.client_idle_timeout), true),
        ("client_login_timeout", secs(p.client_login_timeout), true),
        (
            "log_connections",
            u8::from(p.log_connections).to_string(),
            true,
        ),
        (
            "log_disconnections",
            u8::from(p.log_disconnections).to_string(),
            true,
        ),
        ("stats_period", secs(p.stats_period), true),
        ("shutdown_timeout", secs(p.shutdown_timeout), true),
        ("pause_timeout", secs(p.pause_timeout), true),
        ("so_reuseport", u8::from(p.so_reuseport).to_string(), false),
    ]
}

fn bool_value(v: &str) -> Option<bool> {
    match v.to_ascii_lowercase().as_str() {
        "1" | "on" | "true" | "yes" => Some(true),
        "0" | "off" | "false" | "no" => Some(false),
        _ => None,
    }
}

/// A copy of `c` with `key` set to `value`, or why not.
pub(super) fn apply_set(c: &Config, key: &str, value: &str) -> Result<Config, AdminError> {
    let mut n = c.clone();
    let p = &mut n.pooler;
    let bad = || AdminError::new("22023", format!("invalid value for {key}: {value:?}"));
    let dur = || parse_duration(value).ok_or_else(bad);
    let flag = || bool_value(value).ok_or_else(bad);
    match key {
        "max_client_conn" => p.max_client_conn = value.parse().map_err(|_| bad())?,
        "reserve_pool_timeout" => p.reserve_pool_timeout = dur()?,
        "server_reset_query" => p.server_reset_query = value.to_string(),
        "server_check_query" => p.server_check_query = value.to_string(),
        "server_check_delay" => p.server_check_delay = dur()?,
        "server_connect_timeout" => p.server_connect_timeout = dur()?,
        "server_idle_timeout" => p.server_idle_timeout = dur()?,
        "server_lifetime" => p.server_lifetime = dur()?,
        "query_wait_timeout" => p.query_wait_timeout = dur()?,
        "client_idle_timeout" => p.client_idle_timeout = dur()?,
        "client_login_timeout" => p.client_login_timeout = dur()?,
        "log_connections" => p.log_connections = flag()?,
        "log_disconnections" => p.log_disconnections = flag()?,
        "stats_period" => p.stats_period = dur()?,
        "shutdown_timeout" => p.shutdown_timeout = dur()?,
        "pause_timeout" => p.pause_timeout = dur()?,
        _ if settings(c).iter().any(|(k, _, _)| *k == key) => {
            return Err(AdminError::new(
                "55000",
                format!("{key} cannot be changed with SET: edit the file and RELOAD"),
            ))
        }
        _ => {
            return Err(AdminError::new(
                "42704",
                format!("unknown setting {key} (SHOW CONFIG lists them)"),
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
                    if !c.console && c.database == *db {
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
    }
}
