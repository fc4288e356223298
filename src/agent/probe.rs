//! The agent's probe: the shared node status (`crate::probe`) plus what only the agent reads:
//! the WAL receiver, replication slots and downstreams. One round trip per node per round over
//! a kept-open connection shared with the actions, bounded by `probe_timeout`.

use super::sql::{Conns, Rows, Target};
use super::state::{Downstream, NodeProbe, Slot, WalReceiver};
use crate::probe::{col, lsn, num, NodeStatus, STATUS_SQL};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

pub use crate::probe::error_text;

/// What the agent reads beyond the shared status: WAL receiver; slots; downstreams.
const AGENT_SQL: &str = "\
SELECT status, sender_host, sender_port, received_tli, \
 extract(epoch FROM now() - last_msg_receipt_time) FROM pg_stat_wal_receiver; \
SELECT slot_name, slot_type, active, restart_lsn FROM pg_replication_slots ORDER BY 1; \
SELECT application_name, state, sent_lsn, replay_lsn, extract(epoch FROM replay_lag) \
 FROM pg_stat_replication ORDER BY 1";

/// The probe: the shared status statement, then the agent's three.
pub static PROBE_SQL: LazyLock<String> = LazyLock::new(|| format!("{STATUS_SQL}; {AGENT_SQL}"));

/// Probes every node, keeping one connection per node between rounds.
#[derive(Debug)]
pub struct Prober {
    targets: Vec<Target>,
    timeout: Duration,
    conns: Arc<Conns>,
}

impl Prober {
    /// A prober for `targets`, each probe bounded by `timeout`.
    pub fn new(targets: Vec<Target>, timeout: Duration) -> Prober {
        Prober::with_conns(targets, timeout, Arc::default())
    }

    /// A prober keeping its connections in `conns` (shared with the actions).
    pub fn with_conns(targets: Vec<Target>, timeout: Duration, conns: Arc<Conns>) -> Prober {
        Prober {
            targets,
            timeout,
            conns,
        }
    }

    /// Probes every node concurrently; one [`NodeProbe`] per target, in target order.
    pub async fn round(&mut self) -> Vec<NodeProbe> {
        let sql: &'static str = PROBE_SQL.as_str();
        let answers = crate::probe::round(&self.targets, &self.conns, sql, self.timeout).await;
        answers
            .into_iter()
            .zip(&self.targets)
            .map(|(answer, t)| match answer {
                Ok(a) => {
                    let mut p = parse(&t.name, &a.rows);
                    p.rtt_ms = Some(a.rtt.as_secs_f64() * 1000.0);
                    p
                }
                Err(e) => NodeProbe::unreachable(&t.name, error_text(&e)),
            })
            .collect()
    }
}

/// Builds a probe from the four statements' rows.
pub fn parse(name: &str, rows: &[Rows]) -> NodeProbe {
    let empty = Rows::new();
    let [main, recv, slots, downs] = [0, 1, 2, 3].map(|i| rows.get(i).unwrap_or(&empty));
    let status = NodeStatus::parse(main);
    let st = status.clone().unwrap_or_default();
    let mut p = NodeProbe {
        name: name.to_string(),
        reachable: status.is_some(),
        in_recovery: st.in_recovery,
        current_lsn: st.current_lsn,
        flush_lsn: st.flush_lsn,
        receive_lsn: st.receive_lsn,
        replay_lsn: st.replay_lsn,
        timeline: st.timeline,
        replay_delay_s: st.replay_delay_s,
        read_only: st.read_only,
        sync_names: st.sync_names,
        ..NodeProbe::default()
    };
    if !p.reachable {
        p.error = Some("probe returned no row".into());
    }
    if !recv.is_empty() {
        let w = WalReceiver {
            status: col(recv, 0, 0).unwrap_or_default().to_string(),
            sender_host: col(recv, 0, 1).map(str::to_string),
            sender_port: num(col(recv, 0, 2)),
            received_tli: num(col(recv, 0, 3)),
            last_msg_age_s: num(col(recv, 0, 4)),
        };
        if p.in_recovery == Some(true) && w.received_tli.is_some() {
            p.timeline = p.timeline.max(w.received_tli);
        }
        p.wal_receiver = Some(w);
    }
    p.slots = (0..slots.len())
        .map(|i| Slot {
            name: col(slots, i, 0).unwrap_or_default().to_string(),
            kind: col(slots, i, 1).unwrap_or_default().to_string(),
            active: col(slots, i, 2) == Some("t"),
            restart_lsn: lsn(col(slots, i, 3)),
        })
        .collect();
    p.downstreams = (0..downs.len())
        .map(|i| Downstream {
            application_name: col(downs, i, 0).unwrap_or_default().to_string(),
            state: col(downs, i, 1).unwrap_or_default().to_string(),
            sent_lsn: lsn(col(downs, i, 2)),
            replay_lsn: lsn(col(downs, i, 3)),
            replay_lag_s: num(col(downs, i, 4)),
        })
        .collect();
    p
}

/// Lag of `standby` behind `primary` in bytes and seconds (seconds from the primary's
/// `pg_stat_replication.replay_lag` when it lists the standby, else from replay delay when
/// bytes are outstanding, else 0).
pub fn lag(primary: &NodeProbe, standby: &NodeProbe) -> (Option<u64>, Option<f64>) {
    let head = primary.wal_position();
    let pos = standby.replay_lsn.or(standby.receive_lsn);
    let bytes = head.zip(pos).map(|(h, p)| h.bytes_after(p));
    let from_primary = primary
        .downstreams
        .iter()
        .find(|d| d.application_name == standby.name)
        .and_then(|d| d.replay_lag_s);
    let secs = match (from_primary, bytes) {
        (Some(s), _) => Some(s),
        (None, Some(0)) => Some(0.0),
        (None, Some(_)) => standby.replay_delay_s,
        (None, None) => None,
    };
    (bytes, secs)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::lsn::Lsn;

    fn s(v: &str) -> Option<String> {
        Some(v.to_string())
    }

    #[test]
    fn parses_a_standby() {
        let rows = vec![
            vec![vec![
                s("t"),
                None,
                None,
                s("0/3000148"),
                s("0/3000100"),
                s("1"),
                s("0.5"),
                s("off"),
            ]],
            vec![vec![
                s("streaming"),
                s("127.0.0.1"),
                s("5432"),
                s("2"),
                s("0.1"),
            ]],
            vec![vec![s("pgsluice_b"), s("physical"), s("f"), s("0/3000000")]],
            vec![],
        ];
        let p = parse("b", &rows);
        assert!(p.reachable);
        assert_eq!(p.in_recovery, Some(true));
        assert_eq!(p.receive_lsn, Lsn::parse("0/3000148"));
        assert_eq!(p.timeline, Some(2));
        assert_eq!(p.read_only, Some(false));
        assert!(p.is_streaming());
        assert_eq!(p.wal_receiver.as_ref().unwrap().sender_port, Some(5432));
        assert_eq!(p.slots[0].name, "pgsluice_b");
        assert!(!p.slots[0].active);
    }

    #[test]
    fn parses_a_primary_and_computes_lag() {
        let rows = vec![
            vec![vec![
                s("f"),
                s("0/5000000"),
                s("0/5000000"),
                None,
                None,
                s("3"),
                None,
                s("on"),
            ]],
            vec![],
            vec![],
            vec![vec![
                s("b"),
                s("streaming"),
                s("0/5000000"),
                s("0/4000000"),
                s("0.25"),
            ]],
        ];
        let p = parse("a", &rows);
        assert_eq!(p.in_recovery, Some(false));
        assert_eq!(p.timeline, Some(3));
        assert_eq!(p.read_only, Some(true));
        assert!(p.wal_receiver.is_none());
        let mut b = NodeProbe::unreachable("b", "");
        b.replay_lsn = Lsn::parse("0/4000000");
        assert_eq!(lag(&p, &b), (Some(0x100_0000), Some(0.25)));
        b.name = "c".into();
        b.replay_lsn = Lsn::parse("0/5000000");
        assert_eq!(lag(&p, &b), (Some(0), Some(0.0)));
    }
}
