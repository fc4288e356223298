//! Session-scoped state a server session holds between transactions (LISTEN, temporary
//! objects, session advisory locks, WITH HOLD cursors, SQL-level prepared statements), read
//! from the server in one query, and the statements that drop it.

use super::{ServerConn, ServerError};
use crate::proto::builders;
use bytes::BytesMut;

/// The session listens on a channel.
pub const LISTEN: u8 = 1;
/// The session has temporary tables, sequences or views.
pub const TEMP: u8 = 2;
/// The session holds session-level advisory locks.
pub const ADVISORY: u8 = 4;
/// The session has open (WITH HOLD) cursors.
pub const CURSOR: u8 = 8;
/// The session has SQL-level prepared statements.
pub const PREPARED: u8 = 16;
/// The session loaded a library with LOAD (cannot be undone).
pub const LOADED: u8 = 32;

/// One row of booleans, in the order of the flags above. At a transaction boundary only
/// session-level advisory locks and holdable cursors remain, so no filter is needed for them.
/// The session's own `statement_timeout` may be shorter than the probe: lifted for it only.
const PROBE_SQL: &str = "SET LOCAL statement_timeout = 0; SELECT \
    EXISTS (SELECT FROM pg_catalog.pg_listening_channels()), \
    EXISTS (SELECT FROM pg_catalog.pg_class \
            WHERE relnamespace = pg_catalog.pg_my_temp_schema()), \
    EXISTS (SELECT FROM pg_catalog.pg_locks WHERE locktype = 'advisory' \
            AND pid = pg_catalog.pg_backend_pid()), \
    EXISTS (SELECT FROM pg_catalog.pg_cursors), \
    EXISTS (SELECT FROM pg_catalog.pg_prepared_statements WHERE from_sql)";

/// Drops everything [`PROBE_SQL`] looks for (not LOAD), one statement per request.
const DROP_SQL: [&str; 5] = [
    "UNLISTEN *",
    "DISCARD TEMP",
    "SELECT pg_catalog.pg_advisory_unlock_all()",
    "CLOSE ALL",
    "DEALLOCATE ALL",
];

/// The features in `held`, named for a log line or an error message.
pub fn names(held: u8) -> String {
    let all = [
        (LISTEN, "LISTEN"),
        (TEMP, "temporary tables"),
        (ADVISORY, "session advisory locks"),
        (CURSOR, "WITH HOLD cursors"),
        (PREPARED, "SQL-level PREPARE"),
        (LOADED, "LOAD"),
    ];
    let picked: Vec<&str> = all
        .iter()
        .filter(|(bit, _)| held & bit != 0)
        .map(|(_, n)| *n)
        .collect();
    picked.join(", ")
}

impl ServerConn {
    /// Which session-scoped state this (idle) session holds now.
    pub async fn session_features(&mut self) -> Result<u8, ServerError> {
        let mut out = BytesMut::with_capacity(PROBE_SQL.len() + 8);
        builders::query(&mut out, PROBE_SQL);
        let ex = self.exchange(&out, 1).await?;
        if let Some((_, e)) = ex.error {
            return Err(e);
        }
        let row = ex.rows.into_iter().next().unwrap_or_default();
        let mut held = 0;
        for (i, v) in row.iter().enumerate().take(5) {
            if v.as_deref() == Some("t") {
                held |= 1 << i;
            }
        }
        Ok(held)
    }

    /// Drops every session-scoped object [`ServerConn::session_features`] reports.
    pub async fn drop_session_features(&mut self) -> Result<(), ServerError> {
        let mut out = BytesMut::new();
        for sql in DROP_SQL {
            builders::query(&mut out, sql);
        }
        let ex = self.exchange(&out, DROP_SQL.len()).await?;
        self.prepared.clear();
        match ex.error {
            Some((_, e)) => Err(e),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_list_what_is_held() {
        assert_eq!(names(LISTEN | CURSOR), "LISTEN, WITH HOLD cursors");
        assert_eq!(names(0), "");
    }
}
