//! The election, pure: who vetoes a failover, which standbys may be promoted and in what
//! order (received LSN, then priority with 0 = never, then warmth, then name), and what
//! synchronous mode requires of the primary and of a failover.

use super::fsm::{FsmConfig, NodeSpec, Round};
use super::state::{Lsn, NodeProbe, Role};
use crate::topology::Topology;
use serde::Serialize;

/// One node's standing in the election.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Verdict {
    /// Node name.
    pub name: String,
    /// Whether it may be promoted.
    pub eligible: bool,
    /// Why not, or a summary of its keys.
    pub reason: String,
    /// Received (or replayed) LSN.
    pub lsn: Option<Lsn>,
    /// Configured priority.
    pub priority: u32,
    /// Warmth, when known.
    pub warmth: Option<f64>,
}

impl Verdict {
    /// One line for events and `--dry-run`.
    pub fn line(&self) -> String {
        let lsn = self.lsn.map_or("-".into(), |l| l.to_string());
        let verdict = if self.eligible { "eligible" } else { "refused" };
        let warmth = self
            .warmth
            .map_or(String::new(), |w| format!(", warmth {:.0}%", w * 100.0));
        format!(
            "{}: {verdict} ({}; lsn {lsn}, priority {}{warmth})",
            self.name, self.reason, self.priority
        )
    }
}

/// The standbys whose acknowledgement a commit may wait for: the topology's unfenced standbys.
pub fn sync_set(topo: &Topology, exclude: Option<&str>) -> Vec<String> {
    let mut set: Vec<String> = topo
        .standbys
        .iter()
        .filter(|s| {
            !topo.is_fenced(s) && Some(s.as_str()) != exclude && topo.primary.as_ref() != Some(*s)
        })
        .cloned()
        .collect();
    set.sort();
    set
}

/// The `synchronous_standby_names` the primary of `topo` must have in synchronous mode:
/// `ANY k ("a", "b")` with k capped by the number of standbys (empty when none is left).
pub fn sync_setting(k: u32, topo: &Topology) -> Option<String> {
    if k == 0 || topo.primary.is_none() {
        return None;
    }
    let set = sync_set(topo, None);
    let k = (k as usize).min(set.len());
    if k == 0 {
        return Some(String::new());
    }
    let names: Vec<String> = set
        .iter()
        .map(|n| format!("\"{}\"", n.replace('"', "\"\"")))
        .collect();
    Some(format!("ANY {k} ({})", names.join(", ")))
}

/// In synchronous mode, why a failover could lose an acknowledged commit: a commit waits for
/// k of the n synchronous standbys, so n - k + 1 of them must answer for the most advanced one
/// to hold every acknowledged commit.
pub fn sync_gap(cfg: &FsmConfig, topo: &Topology, r: &Round, old: Option<&str>) -> Option<String> {
    if cfg.synchronous_standbys == 0 {
        return None;
    }
    let set = sync_set(topo, old);
    let k = (cfg.synchronous_standbys as usize).min(set.len());
    if k == 0 {
        return None;
    }
    let up = set
        .iter()
        .filter(|n| r.probe(n).is_some_and(|p| p.role() == Role::Standby))
        .count();
    let need = set.len() - k + 1;
    (up < need).then(|| {
        format!(
            "synchronous mode: {up} of the synchronous standbys {set:?} answer, {need} needed \
             to be sure to keep every acknowledged commit"
        )
    })
}

/// Standbys whose WAL receiver still streams from the primary, or from anything that is not
/// another known standby (a proxy, an address alias): each one vetoes a failover.
pub fn vetoes(cfg: &FsmConfig, topo: &Topology, r: &Round, primary: Option<&str>) -> Vec<String> {
    r.probes
        .iter()
        .filter(|p| Some(p.name.as_str()) != primary && p.role() == Role::Standby)
        .filter(|p| {
            let Some(w) = p.wal_receiver.as_ref().filter(|w| w.is_streaming()) else {
                return false;
            };
            let upstream = cfg.nodes.iter().find(|n| {
                Some(n.port) == w.sender_port && w.sender_host.as_deref() == Some(n.host.as_str())
            });
            match upstream {
                Some(n) => {
                    Some(n.name.as_str()) == primary || topo.primary.as_deref() == Some(&n.name)
                }
                None => true,
            }
        })
        .map(|p| p.name.clone())
        .collect()
}

/// Every non-primary node with its election verdict; eligible ones first, best first.
pub fn rank(
    cfg: &FsmConfig,
    topo: &Topology,
    r: &Round,
    last_primary_lsn: Option<Lsn>,
    old_primary: Option<&str>,
) -> Vec<Verdict> {
    let best_pos = r
        .probes
        .iter()
        .filter(|p| p.role() == Role::Standby)
        .filter_map(NodeProbe::wal_position)
        .max();
    let reference = last_primary_lsn.max(best_pos);
    let mut out: Vec<Verdict> = cfg
        .nodes
        .iter()
        .filter(|n| Some(n.name.as_str()) != old_primary)
        .map(|n| verdict(cfg, topo, r, n, reference))
        .collect();
    out.sort_by(|a, b| {
        b.eligible
            .cmp(&a.eligible)
            .then(b.lsn.cmp(&a.lsn))
            .then(b.priority.cmp(&a.priority))
            .then(
                b.warmth
                    .partial_cmp(&a.warmth)
                    .unwrap_or(std::cmp::Ordering::Equal),
            )
            .then(a.name.cmp(&b.name))
    });
    out
}

fn verdict(
    cfg: &FsmConfig,
    topo: &Topology,
    r: &Round,
    n: &NodeSpec,
    reference: Option<Lsn>,
) -> Verdict {
    let probe = r.probe(&n.name);
    let lsn = probe.and_then(NodeProbe::wal_position);
    let refuse = |reason: String| Verdict {
        name: n.name.clone(),
        eligible: false,
        reason,
        lsn,
        priority: n.priority,
        warmth: r.warmth.get(&n.name).copied(),
    };
    if topo.is_fenced(&n.name) {
        return refuse("fenced".into());
    }
    if n.priority == 0 {
        return refuse("priority 0: never promoted".into());
    }
    if cfg.synchronous_standbys > 0 && !topo.standbys.contains(&n.name) {
        return refuse("not a synchronous standby of the topology".into());
    }
    let Some(p) = probe.filter(|p| p.reachable) else {
        let err = probe.and_then(|p| p.error.clone()).unwrap_or_default();
        return refuse(format!("unreachable {err}").trim_end().to_string());
    };
    if p.in_recovery != Some(true) {
        return refuse("not in recovery".into());
    }
    let Some(pos) = lsn else {
        return refuse("no WAL position".into());
    };
    let behind = reference.map_or(0, |r| r.bytes_after(pos));
    if behind > cfg.max_failover_lag {
        return refuse(format!(
            "{behind} bytes behind, above max_failover_lag {}",
            cfg.max_failover_lag
        ));
    }
    let mut v = refuse(format!("{behind} bytes behind"));
    v.eligible = true;
    v
}
