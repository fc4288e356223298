//! Probing PostgreSQL nodes, shared by the agent and the pooler's discovery: the statement that
//! reads a node's role and WAL positions, its parsing, and a concurrent round over connections
//! kept between rounds. Each user adds what only it needs on top (the agent: WAL receiver,
//! slots, downstreams; discovery: bans, lag in time, the primary it proposes).

pub mod conn;

pub use crate::error_text::error_text;
pub use conn::{Conns, Rows, SqlError, Target};

use crate::lsn::Lsn;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::task::JoinSet;

/// One row: role, WAL positions (current, flush and insert on a primary; received and replayed
/// on a standby), timeline, replay delay, and the soft-fence and synchronous settings.
///
/// The insert position is read besides the write position: with `synchronous_commit = off` a
/// commit record may still sit in WAL buffers, and a read-your-writes fence must not stop short
/// of it.
pub const STATUS_SQL: &str = "\
SELECT pg_is_in_recovery(), \
 CASE WHEN pg_is_in_recovery() THEN NULL ELSE pg_current_wal_lsn() END, \
 CASE WHEN pg_is_in_recovery() THEN NULL ELSE pg_current_wal_flush_lsn() END, \
 pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn(), \
 CASE WHEN pg_is_in_recovery() THEN (SELECT timeline_id FROM pg_control_checkpoint()) \
  ELSE ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int END, \
 extract(epoch FROM now() - pg_last_xact_replay_timestamp()), \
 current_setting('default_transaction_read_only'), \
 current_setting('synchronous_standby_names'), \
 CASE WHEN pg_is_in_recovery() THEN NULL ELSE pg_current_wal_insert_lsn() END";

/// What [`STATUS_SQL`] read from one node.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct NodeStatus {
    /// `pg_is_in_recovery()`.
    pub in_recovery: Option<bool>,
    /// `pg_current_wal_lsn()` (primary).
    pub current_lsn: Option<Lsn>,
    /// `pg_current_wal_flush_lsn()` (primary).
    pub flush_lsn: Option<Lsn>,
    /// `pg_current_wal_insert_lsn()` (primary).
    pub insert_lsn: Option<Lsn>,
    /// `pg_last_wal_receive_lsn()` (standby).
    pub receive_lsn: Option<Lsn>,
    /// `pg_last_wal_replay_lsn()` (standby).
    pub replay_lsn: Option<Lsn>,
    /// Insert timeline on a primary, checkpoint timeline on a standby.
    pub timeline: Option<u32>,
    /// Seconds since the last replayed transaction's commit (standby).
    pub replay_delay_s: Option<f64>,
    /// `default_transaction_read_only`.
    pub read_only: Option<bool>,
    /// `synchronous_standby_names`.
    pub sync_names: Option<String>,
}

impl NodeStatus {
    /// Reads the [`STATUS_SQL`] statement's rows; `None` when it returned no row.
    pub fn parse(rows: &Rows) -> Option<NodeStatus> {
        rows.first()?;
        Some(NodeStatus {
            in_recovery: col(rows, 0, 0).map(|v| v == "t"),
            current_lsn: lsn(col(rows, 0, 1)),
            flush_lsn: lsn(col(rows, 0, 2)),
            receive_lsn: lsn(col(rows, 0, 3)),
            replay_lsn: lsn(col(rows, 0, 4)),
            timeline: num(col(rows, 0, 5)),
            replay_delay_s: num(col(rows, 0, 6)),
            read_only: col(rows, 0, 7).map(|v| v == "on"),
            sync_names: col(rows, 0, 8).map(str::to_string),
            insert_lsn: lsn(col(rows, 0, 9)),
        })
    }

    /// What a reader of this node can see: the insert position on a primary, the replayed
    /// position on a standby (`0/0` before any replay).
    pub fn readable_position(&self) -> Lsn {
        let at = match self.in_recovery {
            Some(false) => self.insert_lsn.or(self.current_lsn),
            _ => self.replay_lsn,
        };
        at.unwrap_or(Lsn::ZERO)
    }
}

/// Column `col` of row `row`, when present and not NULL.
pub fn col(rows: &Rows, row: usize, col: usize) -> Option<&str> {
    rows.get(row)?.get(col)?.as_deref()
}

/// A text column as an [`Lsn`].
pub fn lsn(v: Option<&str>) -> Option<Lsn> {
    v.and_then(Lsn::parse)
}

/// A text column as a number.
pub fn num<T: std::str::FromStr>(v: Option<&str>) -> Option<T> {
    v.and_then(|s| s.parse().ok())
}

/// A node's answer to one probe.
#[derive(Debug, Clone)]
pub struct Answer {
    /// Rows of each statement of the probe.
    pub rows: Vec<Rows>,
    /// Round trip, connecting included when the probe had to connect.
    pub rtt: Duration,
}

/// Runs `sql` on `t` over its kept connection (a new one if it has none or it closed); the
/// whole probe, connecting included, is bounded by `timeout`. A failed probe drops the
/// connection, so that the next one reconnects: reachability means accepting connections.
pub async fn probe_node(
    t: &Target,
    conns: &Conns,
    sql: &str,
    timeout: Duration,
) -> Result<Answer, SqlError> {
    let started = Instant::now();
    let attempt = async {
        let client = conns.get(t, timeout).await?;
        let left = timeout
            .saturating_sub(started.elapsed())
            .max(Duration::from_millis(1));
        conn::run_query(&client, t, sql, left).await
    };
    match attempt.await {
        Ok(rows) => Ok(Answer {
            rows,
            rtt: started.elapsed(),
        }),
        Err(e) => {
            conns.evict(&t.name);
            Err(e)
        }
    }
}

/// Probes every target at once with [`probe_node`]; one result per target, in target order.
pub async fn round(
    targets: &[Target],
    conns: &Arc<Conns>,
    sql: &'static str,
    timeout: Duration,
) -> Vec<Result<Answer, SqlError>> {
    let mut set = JoinSet::new();
    for (i, t) in targets.iter().enumerate() {
        let (t, conns) = (t.clone(), conns.clone());
        set.spawn(async move { (i, probe_node(&t, &conns, sql, timeout).await) });
    }
    let mut out: Vec<Option<Result<Answer, SqlError>>> = targets.iter().map(|_| None).collect();
    while let Some(done) = set.join_next().await {
        if let Ok((i, answer)) = done {
            out[i] = Some(answer);
        }
    }
    out.into_iter()
        .zip(targets)
        .map(|(a, t)| {
            a.unwrap_or_else(|| {
                Err(SqlError::Lost {
                    node: t.name.clone(),
                })
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &str) -> Option<String> {
        Some(v.to_string())
    }

    #[test]
    fn reads_a_primary_and_a_standby() {
        let primary = vec![vec![
            s("f"),
            s("0/5000000"),
            s("0/4FFFF00"),
            None,
            None,
            s("3"),
            None,
            s("on"),
            s(""),
            s("0/5000100"),
        ]];
        let p = NodeStatus::parse(&primary).unwrap_or_default();
        assert_eq!(p.in_recovery, Some(false));
        assert_eq!(p.flush_lsn, Lsn::parse("0/4FFFF00"));
        assert_eq!(p.timeline, Some(3));
        assert_eq!(p.read_only, Some(true));
        assert_eq!(p.sync_names.as_deref(), Some(""));
        assert_eq!(p.readable_position(), Lsn(0x500_0100));

        let standby = vec![vec![
            s("t"),
            None,
            None,
            s("1/20"),
            s("1/10"),
            s("7"),
            None,
            s("on"),
            s("*"),
            None,
        ]];
        let b = NodeStatus::parse(&standby).unwrap_or_default();
        assert_eq!(b.in_recovery, Some(true));
        assert_eq!(b.receive_lsn, Lsn::parse("1/20"));
        assert_eq!((b.timeline, b.replay_delay_s), (Some(7), None));
        assert_eq!(
            (b.read_only, b.sync_names.as_deref()),
            (Some(true), Some("*"))
        );
        assert_eq!(b.insert_lsn, None);
        assert_eq!(b.readable_position(), Lsn((1 << 32) | 0x10));
    }

    #[test]
    fn no_row_is_no_status_and_no_replay_is_zero() {
        assert_eq!(NodeStatus::parse(&Rows::new()), None);
        let fresh = vec![vec![s("t")]];
        let st = NodeStatus::parse(&fresh).unwrap_or_default();
        assert_eq!(st.readable_position(), Lsn::ZERO);
    }
}
