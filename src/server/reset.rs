//! Bringing a server session back to its pool's baseline, and reading back what a client's
//! session changed (the settings it now has, the session-scoped objects it holds).
//!
//! These run between client transactions, never on the forwarding path.

use super::{from_frame_err, postgres_error, ParamSet, ServerConn, ServerError, CONTROL_MAX};
use crate::net::frame_io::read_frame;
use crate::proto::{builders, tags::backend, views};
use bytes::BytesMut;
use std::sync::Arc;

/// Every setting the session changed from the server's baseline (its own startup packet, the
/// role's and database's defaults, the configuration file): `source = 'session'` is what SET,
/// `set_config(..., false)` and SET SESSION CHARACTERISTICS leave, and what RESET, RESET ALL
/// and DISCARD ALL remove. `role` is not listed in `pg_settings`, so it is read on its own.
pub const SETTINGS_SQL: &str = "SELECT name, pg_catalog.current_setting(name) \
     FROM pg_catalog.pg_settings WHERE source = 'session' \
     UNION ALL SELECT 'role', pg_catalog.current_setting('role') \
     WHERE pg_catalog.current_setting('role') <> 'none'";

/// SQLSTATE of a statement cancelled (by `statement_timeout` here).
const QUERY_CANCELED: &str = "57014";

/// What one pipelined exchange produced.
#[derive(Debug, Default)]
pub struct Exchange {
    /// Status of the last ReadyForQuery.
    pub status: u8,
    /// The first error, if any, and the index of the request (counted in ReadyForQuery
    /// messages) it answered.
    pub error: Option<(usize, ServerError)>,
    /// DataRow values of every row, as text (NULL as `None`).
    pub rows: Vec<Vec<Option<String>>>,
    /// ParameterStatus messages seen.
    pub reported: Vec<(String, String)>,
}

impl ServerConn {
    /// Writes `out` (holding `requests` messages that each end with a ReadyForQuery) and reads
    /// every answer. A COPY the server starts is failed; notices are dropped.
    pub async fn exchange(&mut self, out: &[u8], requests: usize) -> Result<Exchange, ServerError> {
        self.send(out).await?;
        let mut ex = Exchange::default();
        let mut done = 0;
        while done < requests {
            let f = read_frame(&mut self.stream, &mut self.buf, CONTROL_MAX)
                .await
                .map_err(|e| from_frame_err(&self.node, e))?;
            match f.tag {
                backend::READY_FOR_QUERY => {
                    ex.status = views::ready_for_query(&f.body).unwrap_or(b'E');
                    done += 1;
                }
                backend::ERROR_RESPONSE if ex.error.is_none() => {
                    ex.error = Some((done, postgres_error(&self.node, &f.body)));
                }
                backend::PARAMETER_STATUS => {
                    if let Ok((k, v)) = views::parameter_status(&f.body) {
                        ex.reported.push((k.to_string(), v.to_string()));
                    }
                }
                backend::DATA_ROW => {
                    let row = views::data_row(&f.body).map_err(|e| ServerError::Protocol {
                        node: self.node.to_string(),
                        message: e.to_string(),
                    })?;
                    let text =
                        |v: Option<&[u8]>| v.map(|b| String::from_utf8_lossy(b).into_owned());
                    ex.rows.push(row.into_iter().map(text).collect());
                }
                backend::COPY_IN_RESPONSE => {
                    let mut fail = BytesMut::new();
                    super::fail_copy(&mut fail);
                    self.send(&fail).await?;
                }
                _ => {}
            }
        }
        Ok(ex)
    }

    /// Ends whatever a departed client left and runs `reset_query` (when not empty): a Sync
    /// closes an extended-query batch left without one (and ends a failed one), a ROLLBACK
    /// ends an open transaction, then the reset query runs on its own (DISCARD ALL refuses to
    /// run inside a multi-statement query). Succeeds only when every step did and the session
    /// is idle; the caller closes the connection otherwise.
    pub async fn reset_session(&mut self, reset_query: &str) -> Result<(), ServerError> {
        let mut out = BytesMut::with_capacity(64 + reset_query.len());
        builders::sync(&mut out);
        builders::query(&mut out, "ROLLBACK");
        let mut requests = 2;
        if !reset_query.is_empty() {
            builders::query(&mut out, reset_query);
            requests += 1;
        }
        let ex = self.exchange(&out, requests).await?;
        // An error answering the Sync is the failed batch's own; any later one is ours.
        if let Some((_, e)) = ex.error.filter(|(at, _)| *at > 0) {
            return Err(e);
        }
        if ex.status != b'I' {
            return Err(ServerError::Protocol {
                node: self.node.to_string(),
                message: "session not idle after reset".into(),
            });
        }
        if !reset_query.is_empty() {
            self.prepared.after_reset(reset_query);
            self.params = if reset_query.trim().eq_ignore_ascii_case("DISCARD ALL") {
                ParamSet::default().intern()
            } else {
                // Another reset query may leave any setting: read what is left.
                self.session_settings().await?.intern()
            };
        }
        Ok(())
    }

    /// Applies `want` (as [`ServerConn::sync_params`] would) and reads back every setting the
    /// session then has, in the server's own spelling (`utf-8` comes back as `UTF8`).
    pub async fn adopt(&mut self, want: &ParamSet) -> Result<Arc<ParamSet>, ServerError> {
        if want.iter().next().is_none() && self.params.iter().next().is_none() {
            return Ok(self.params.clone());
        }
        let want_set = want.clone().intern();
        if let Some((w, read)) = &self.adopted {
            if Arc::ptr_eq(w, &want_set) && Arc::ptr_eq(read, &self.params) {
                return Ok(read.clone());
            }
        }
        let mut sql = String::new();
        super::params::sync_sql(&self.params, want, &mut sql);
        let applied = sql.len();
        sql.push_str(SETTINGS_SQL);
        // set_config() rows have one column and are skipped.
        let set = match self.read_settings(&sql).await {
            Ok(rows) => settings_from_rows(rows),
            Err(ServerError::Postgres { code, .. }) if code == QUERY_CANCELED => {
                // A startup statement_timeout shorter than the read-back: apply, then read.
                sql.truncate(applied);
                if !sql.is_empty() {
                    self.read_settings(&sql).await?;
                }
                self.session_settings().await?
            }
            Err(e) => return Err(e),
        };
        let set = set.intern();
        self.params = set.clone();
        self.adopted = Some((want_set, set.clone()));
        Ok(set)
    }

    /// The settings this session has changed from its baseline, read from the server.
    ///
    /// A client's `statement_timeout` may be shorter than the read-back itself (`pg_settings`
    /// builds every row): then its value is read first, the timeout lifted for the read-back
    /// with SET LOCAL, and the value read first is the one kept.
    pub async fn session_settings(&mut self) -> Result<ParamSet, ServerError> {
        match self.read_settings(SETTINGS_SQL).await {
            Err(ServerError::Postgres { code, .. }) if code == QUERY_CANCELED => {}
            other => return other.map(settings_from_rows),
        }
        let sql = format!(
            "SELECT pg_catalog.current_setting('statement_timeout');\
             SET LOCAL statement_timeout = 0;{SETTINGS_SQL}"
        );
        let mut rows = self.read_settings(&sql).await?.into_iter();
        let timeout = rows.next().and_then(|r| r.into_iter().next().flatten());
        let set = settings_from_rows(rows.collect());
        Ok(match timeout {
            Some(t) => set.with("statement_timeout", &t),
            None => set,
        })
    }

    async fn read_settings(&mut self, sql: &str) -> Result<Vec<Vec<Option<String>>>, ServerError> {
        let mut out = BytesMut::with_capacity(sql.len() + 8);
        builders::query(&mut out, sql);
        let ex = self.exchange(&out, 1).await?;
        match ex.error {
            Some((_, e)) => Err(e),
            None => Ok(ex.rows),
        }
    }
}

/// `(name, value)` rows into a set; rows without both columns are skipped.
pub fn settings_from_rows(rows: Vec<Vec<Option<String>>>) -> ParamSet {
    ParamSet::new(rows.into_iter().filter_map(|r| {
        let mut it = r.into_iter();
        Some((it.next()??, it.next()??))
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_become_a_set() {
        let rows = vec![
            vec![Some("work_mem".into()), Some("8MB".into())],
            vec![Some("role".into()), None],
            vec![Some("search_path".into()), Some("a, b".into())],
        ];
        let set = settings_from_rows(rows);
        assert_eq!(set.get("work_mem"), Some("8MB"));
        assert_eq!(set.get("search_path"), Some("a, b"));
        assert_eq!(set.get("role"), None);
    }
}
