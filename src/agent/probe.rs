//! Probing nodes: one round trip per node per round (four statements in one simple query) over a
//! kept-open connection, bounded by `probe_timeout`; a broken connection is reopened next time.

use super::sql::{run_query, Conns, Rows, Target};
use super::state::{Downstream, Lsn, NodeProbe, Slot, WalReceiver};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::task::JoinSet;

/// The probe: role, LSNs, timeline, soft-fence setting; WAL receiver; slots; downstreams.
pub const PROBE_SQL: &str = "\
SELECT pg_is_in_recovery(), \
 CASE WHEN pg_is_in_recovery() THEN NULL ELSE pg_current_wal_lsn() END, \
 CASE WHEN pg_is_in_recovery() THEN NULL ELSE pg_current_wal_flush_lsn() END, \
 pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn(), \
 CASE WHEN pg_is_in_recovery() THEN (SELECT timeline_id FROM pg_control_checkpoint()) \
  ELSE ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int END, \
 extract(epoch FROM now() - pg_last_xact_replay_timestamp()), \
 current_setting('default_transaction_read_only'), \
 current_setting('synchronous_standby_names'); \
SELECT status, sender_host, sender_port, received_tli, \
 extract(epoch FROM now() - last_msg_receipt_time) FROM pg_stat_wal_receiver; \
SELECT slot_name, slot_type, active, restart_lsn FROM pg_replication_slots ORDER BY 1; \
SELECT application_name, state, sent_lsn, replay_lsn, extract(epoch FROM replay_lag) \
 FROM pg_stat_replication ORDER BY 1";

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
        let mut set = JoinSet::new();
        for (i, t) in self.targets.iter().enumerate() {
            let (t, timeout, conns) = (t.clone(), self.timeout, self.conns.clone());
            set.spawn(async move { (i, probe_node(&t, &conns, timeout).await) });
        }
        let mut out: Vec<Option<NodeProbe>> = vec![None; self.targets.len()];
        while let Some(done) = set.join_next().await {
            if let Ok((i, probe)) = done {
                out[i] = Some(probe);
            }
        }
        out.into_iter()
            .zip(&self.targets)
            .map(|(p, t)| p.unwrap_or_else(|| NodeProbe::unreachable(&t.name, "probe task failed")))
            .collect()
    }
}

/// Probes one node over its kept connection (a new one if it has none or it closed); the
/// whole probe, connecting included, is bounded by `timeout`. A failed probe drops the
/// connection, so that the next one reconnects: reachability means accepting connections.
pub async fn probe_node(t: &Target, conns: &Conns, timeout: Duration) -> NodeProbe {
    let started = Instant::now();
    let attempt = async {
        let client = conns.get(t, timeout).await?;
        let left = timeout
            .saturating_sub(started.elapsed())
            .max(Duration::from_millis(1));
        run_query(&client, t, PROBE_SQL, left).await
    };
    match attempt.await {
        Ok(rows) => {
            let mut p = parse(&t.name, &rows);
            p.rtt_ms = Some(started.elapsed().as_secs_f64() * 1000.0);
            p
        }
        Err(e) => {
            conns.evict(&t.name);
            NodeProbe::unreachable(&t.name, error_text(&e))
        }
    }
}

/// The error with its causes, on one line.
pub fn error_text(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let s = c.to_string();
        if !text.contains(&s) {
            text = format!("{text}: {s}");
        }
        cause = c.source();
    }
    text
}

fn col(rows: &Rows, row: usize, col: usize) -> Option<&str> {
    rows.get(row)?.get(col)?.as_deref()
}

fn lsn(v: Option<&str>) -> Option<Lsn> {
    v.and_then(Lsn::parse)
}

fn num<T: std::str::FromStr>(v: Option<&str>) -> Option<T> {
    v.and_then(|s| s.parse().ok())
}

/// Builds a probe from the four statements' rows.
pub fn parse(name: &str, rows: &[Rows]) -> NodeProbe {
    let empty = Rows::new();
    let [main, recv, slots, downs] = [0, 1, 2, 3].map(|i| rows.get(i).unwrap_or(&empty));
    let mut p = NodeProbe {
        name: name.to_string(),
        reachable: !main.is_empty(),
        in_recovery: col(main, 0, 0).map(|v| v == "t"),
        current_lsn: lsn(col(main, 0, 1)),
        flush_lsn: lsn(col(main, 0, 2)),
        receive_lsn: lsn(col(main, 0, 3)),
        replay_lsn: lsn(col(main, 0, 4)),
        timeline: num(col(main, 0, 5)),
        replay_delay_s: num(col(main, 0, 6)),
        read_only: col(main, 0, 7).map(|v| v == "on"),
        sync_names: col(main, 0, 8).map(str::to_string),
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
