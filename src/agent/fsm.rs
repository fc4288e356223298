//! The failover state machine, pure: `(state, input) -> (state, actions)`, no IO, no clock.
//!
//! Each probe round is an [`Input::Round`] carrying every node's [`NodeProbe`] and the time.
//! The primary is declared failed after `failure_threshold` failed probes within
//! `failure_window` (a successful probe clears the count) **and** when no reachable standby
//! still streams from it (a standby whose WAL receiver streams from anything but another
//! known standby vetoes: an agent cut off alone never promotes). The candidate is the
//! eligible standby with the most advanced received LSN, then the highest priority
//! (0 = never), then the warmest (hook for warm failover), then the name.

use super::election::sync_gap;
pub use super::election::{rank, sync_set, sync_setting, vetoes, Verdict};
use super::state::{Lsn, NodeProbe, Role};
use crate::topology::Topology;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};

/// Static inputs of the machine, from `[agent]` and `[cluster]`.
#[derive(Debug, Clone)]
pub struct FsmConfig {
    /// Failed probes needed within the window.
    pub failure_threshold: u32,
    /// The window, in milliseconds.
    pub failure_window_ms: u64,
    /// Largest gap in bytes between the primary's last known LSN and a candidate.
    pub max_failover_lag: u64,
    /// Whether the agent may fail over by itself.
    pub auto_failover: bool,
    /// Synchronous mode: k of `ANY k (standbys)`; 0 = asynchronous.
    pub synchronous_standbys: u32,
    /// Every configured node.
    pub nodes: Vec<NodeSpec>,
}

/// A configured node, as the machine needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeSpec {
    /// Name.
    pub name: String,
    /// Host standbys use to reach it.
    pub host: String,
    /// Port.
    pub port: u16,
    /// Promotion priority; 0 = never.
    pub priority: u32,
}

/// One probe round.
#[derive(Debug, Clone, Default)]
pub struct Round {
    /// Monotonic time in milliseconds.
    pub now_ms: u64,
    /// One probe per configured node.
    pub probes: Vec<NodeProbe>,
    /// Warmth per node (0..=1), the third election key; empty until warm failover lands.
    pub warmth: BTreeMap<String, f64>,
}

impl Round {
    /// The probe of `name`.
    pub fn probe(&self, name: &str) -> Option<&NodeProbe> {
        self.probes.iter().find(|p| p.name == name)
    }
}

/// What the machine feeds on.
#[derive(Debug, Clone)]
pub enum Input {
    /// A probe round completed.
    Round(Round),
    /// The failover started by [`Action::Failover`] ended.
    FailoverFinished {
        /// Time in milliseconds.
        now_ms: u64,
        /// Whether the candidate was promoted and the topology published.
        ok: bool,
        /// What happened.
        detail: String,
    },
    /// The topology changed outside the machine (manual verb): start afresh.
    Reset,
}

/// Where the decision stands.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "phase", rename_all = "snake_case")]
pub enum Phase {
    /// No topology yet: waiting for exactly one writable node.
    Discovering,
    /// The primary answers.
    Healthy,
    /// The primary failed some probes, fewer than the threshold within the window.
    Suspect {
        /// Times of the failed probes in the window.
        failures: Vec<u64>,
    },
    /// Threshold reached but standbys still stream from the primary.
    Vetoed {
        /// Times of the failed probes in the window.
        failures: Vec<u64>,
        /// The vetoing standbys.
        by: Vec<String>,
    },
    /// Failure confirmed but no failover possible now.
    Blocked {
        /// Times of the failed probes in the window.
        failures: Vec<u64>,
        /// Why.
        reason: String,
        /// Do not decide again before this time.
        retry_at_ms: u64,
    },
    /// A failover is being executed.
    FailingOver {
        /// The primary being replaced, if any.
        old_primary: Option<String>,
        /// The node being promoted.
        candidate: String,
    },
}

impl Phase {
    /// Number exported by the `pgsluice_agent_decision_state` gauge.
    pub fn code(&self) -> i64 {
        match self {
            Phase::Healthy => 0,
            Phase::Suspect { .. } => 1,
            Phase::Vetoed { .. } => 2,
            Phase::Blocked { .. } => 3,
            Phase::FailingOver { .. } => 4,
            Phase::Discovering => 5,
        }
    }

    /// Short name.
    pub fn name(&self) -> &'static str {
        match self {
            Phase::Healthy => "healthy",
            Phase::Suspect { .. } => "suspect",
            Phase::Vetoed { .. } => "vetoed",
            Phase::Blocked { .. } => "blocked",
            Phase::FailingOver { .. } => "failing_over",
            Phase::Discovering => "discovering",
        }
    }

    fn failures(&self) -> Vec<u64> {
        match self {
            Phase::Suspect { failures }
            | Phase::Vetoed { failures, .. }
            | Phase::Blocked { failures, .. } => failures.clone(),
            _ => Vec::new(),
        }
    }
}

/// The machine's whole state.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FsmState {
    /// Where the decision stands.
    pub phase: Phase,
    /// The primary's flush LSN at its last successful probe.
    pub last_primary_lsn: Option<Lsn>,
    /// One-shot warnings already recorded, so that each is recorded once per occurrence.
    pub noted: BTreeSet<String>,
}

impl Default for FsmState {
    fn default() -> Self {
        FsmState {
            phase: Phase::Discovering,
            last_primary_lsn: None,
            noted: BTreeSet::new(),
        }
    }
}

/// Something for the agent to record (an event).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    /// Event kind, e.g. `primary_unreachable`.
    pub kind: &'static str,
    /// The node concerned.
    pub node: Option<String>,
    /// Human-readable details.
    pub details: String,
}

/// What the agent must do.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Record an event.
    Note(Note),
    /// Persist and publish this topology (first discovery, or a primary promoted by hand).
    Adopt(Topology),
    /// Fail over as planned, then feed back [`Input::FailoverFinished`].
    Failover(Plan),
    /// Soft-fence this node: it is fenced in the topology but accepts writes.
    Fence(String),
    /// Set `synchronous_standby_names` on the primary (synchronous mode).
    SetSync {
        /// The primary.
        node: String,
        /// The value to set.
        value: String,
    },
}

/// A decided failover.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Plan {
    /// The failed primary, if the topology still names one.
    pub old_primary: Option<String>,
    /// The node to promote.
    pub candidate: String,
    /// The other standbys, to repoint to the candidate.
    pub followers: Vec<String>,
    /// The candidate's WAL position when chosen.
    pub candidate_lsn: Option<Lsn>,
    /// The ranking that chose it, one line per node.
    pub ranking: Vec<String>,
}

/// Advances the machine by one input.
pub fn step(
    state: &FsmState,
    cfg: &FsmConfig,
    topo: &Topology,
    input: &Input,
) -> (FsmState, Vec<Action>) {
    let mut next = state.clone();
    let mut actions = Vec::new();
    match input {
        Input::Reset => {
            next.phase = if topo.primary.is_some() {
                Phase::Healthy
            } else {
                Phase::Discovering
            };
        }
        Input::FailoverFinished { now_ms, ok, detail } => {
            next.phase = if *ok {
                Phase::Healthy
            } else {
                Phase::Blocked {
                    failures: Vec::new(),
                    reason: format!("failover failed: {detail}"),
                    retry_at_ms: now_ms.saturating_add(cfg.failure_window_ms),
                }
            };
        }
        Input::Round(r) => {
            if matches!(state.phase, Phase::FailingOver { .. }) {
                return (next, actions);
            }
            watch_fenced(&mut next, topo, r, &mut actions);
            watch_standbys(&mut next, topo, r, &mut actions);
            match topo.primary.as_deref() {
                Some(p) => watch_primary(&mut next, cfg, topo, r, p, &mut actions),
                None => headless(&mut next, cfg, topo, r, &mut actions),
            }
        }
    }
    (next, actions)
}

fn note(actions: &mut Vec<Action>, kind: &'static str, node: Option<&str>, details: String) {
    actions.push(Action::Note(Note {
        kind,
        node: node.map(str::to_string),
        details,
    }));
}

/// Records each fenced or unexpected writable node once, and soft-fences fenced ones.
fn watch_fenced(next: &mut FsmState, topo: &Topology, r: &Round, actions: &mut Vec<Action>) {
    for p in &r.probes {
        let key = format!("writable:{}", p.name);
        let unexpected = p.role() == Role::Primary
            && topo.primary.is_some()
            && topo.primary.as_deref() != Some(&p.name);
        if !unexpected {
            next.noted.remove(&key);
            continue;
        }
        if topo.is_fenced(&p.name) && p.read_only != Some(true) {
            actions.push(Action::Fence(p.name.clone()));
        }
        if next.noted.insert(key) {
            let why = if topo.is_fenced(&p.name) {
                "fenced node runs as a primary: never routed to, soft-fenced; run `pgsluice rejoin`"
            } else {
                "node runs as a primary outside the topology: ignored"
            };
            note(actions, "unexpected_primary", Some(&p.name), why.into());
        }
    }
}

/// Records once when a standby of the topology stops answering, and when it answers again.
fn watch_standbys(next: &mut FsmState, topo: &Topology, r: &Round, actions: &mut Vec<Action>) {
    for name in topo.standbys.iter().filter(|s| !topo.is_fenced(s)) {
        let Some(p) = r.probe(name) else { continue };
        let key = format!("down:{name}");
        if !p.reachable && next.noted.insert(key.clone()) {
            let why = p.error.clone().unwrap_or_default();
            note(actions, "standby_unreachable", Some(name), why);
        } else if p.reachable && next.noted.remove(&key) {
            note(actions, "standby_recovered", Some(name), String::new());
        }
    }
}

fn watch_primary(
    next: &mut FsmState,
    cfg: &FsmConfig,
    topo: &Topology,
    r: &Round,
    primary: &str,
    actions: &mut Vec<Action>,
) {
    let probe = r.probe(primary);
    if let Some(p) = probe.filter(|p| p.role() == Role::Primary) {
        next.last_primary_lsn = p.wal_position().or(next.last_primary_lsn);
        if let Some(want) = sync_setting(cfg.synchronous_standbys, topo) {
            if p.sync_names.as_deref() != Some(want.as_str()) {
                actions.push(Action::SetSync {
                    node: primary.to_string(),
                    value: want,
                });
            }
        }
        if !matches!(next.phase, Phase::Healthy | Phase::Discovering) {
            note(actions, "primary_recovered", Some(primary), String::new());
        }
        next.phase = Phase::Healthy;
        return;
    }
    let why = match probe {
        Some(p) if p.reachable => "reachable but in recovery".to_string(),
        Some(p) => p.error.clone().unwrap_or_else(|| "unreachable".into()),
        None => "not probed".into(),
    };
    let mut failures = next.phase.failures();
    failures.push(r.now_ms);
    failures.retain(|t| t.saturating_add(cfg.failure_window_ms) > r.now_ms);
    if matches!(next.phase, Phase::Healthy | Phase::Discovering) {
        note(actions, "primary_probe_failed", Some(primary), why.clone());
    }
    if let Phase::Blocked {
        retry_at_ms,
        reason,
        ..
    } = &next.phase
    {
        if *retry_at_ms > r.now_ms {
            let (reason, retry_at_ms) = (reason.clone(), *retry_at_ms);
            next.phase = Phase::Blocked {
                failures,
                reason,
                retry_at_ms,
            };
            return;
        }
    }
    if (failures.len() as u64) < u64::from(cfg.failure_threshold) {
        next.phase = Phase::Suspect { failures };
        return;
    }
    decide(next, cfg, topo, r, Some(primary), failures, actions);
}

fn headless(
    next: &mut FsmState,
    cfg: &FsmConfig,
    topo: &Topology,
    r: &Round,
    actions: &mut Vec<Action>,
) {
    let writable: Vec<&NodeProbe> = r
        .probes
        .iter()
        .filter(|p| p.role() == Role::Primary && !topo.is_fenced(&p.name))
        .collect();
    if let [only] = writable.as_slice() {
        let adopted = Topology {
            epoch: topo.epoch + 1,
            primary: Some(only.name.clone()),
            standbys: cfg
                .nodes
                .iter()
                .filter(|n| n.name != only.name && !topo.is_fenced(&n.name))
                .map(|n| n.name.clone())
                .collect(),
            fenced: topo.fenced.clone(),
        };
        note(
            actions,
            "topology_adopted",
            Some(&only.name),
            format!(
                "the only writable node becomes primary at epoch {}",
                adopted.epoch
            ),
        );
        actions.push(Action::Adopt(adopted));
        next.phase = Phase::Healthy;
        return;
    }
    if writable.len() > 1 {
        let names: Vec<&str> = writable.iter().map(|p| p.name.as_str()).collect();
        if next.noted.insert("several-primaries".into()) {
            note(
                actions,
                "several_primaries",
                None,
                format!("{} all accept writes: nothing adopted", names.join(", ")),
            );
        }
        next.phase = Phase::Discovering;
        return;
    }
    next.noted.remove("several-primaries");
    if topo.epoch == 0 {
        next.phase = Phase::Discovering;
        return;
    }
    if let Phase::Blocked { retry_at_ms, .. } = &next.phase {
        if *retry_at_ms > r.now_ms {
            return;
        }
    }
    decide(next, cfg, topo, r, None, Vec::new(), actions);
}

fn decide(
    next: &mut FsmState,
    cfg: &FsmConfig,
    topo: &Topology,
    r: &Round,
    old_primary: Option<&str>,
    failures: Vec<u64>,
    actions: &mut Vec<Action>,
) {
    let by = vetoes(cfg, topo, r, old_primary);
    if !by.is_empty() {
        if !matches!(&next.phase, Phase::Vetoed { by: b, .. } if *b == by) {
            note(
                actions,
                "failover_vetoed",
                old_primary,
                format!("{} still stream(s) from the primary", by.join(", ")),
            );
        }
        next.phase = Phase::Vetoed { failures, by };
        return;
    }
    let ranking = rank(cfg, topo, r, next.last_primary_lsn, old_primary);
    let best = ranking.iter().find(|v| v.eligible);
    let sync_gap = sync_gap(cfg, topo, r, old_primary);
    let reason = match best {
        _ if !cfg.auto_failover => "auto_failover is off".to_string(),
        _ if sync_gap.is_some() => sync_gap.unwrap_or_default(),
        None => format!(
            "no eligible candidate: {}",
            ranking
                .iter()
                .map(Verdict::line)
                .collect::<Vec<_>>()
                .join("; ")
        ),
        Some(best) => {
            let plan = Plan {
                old_primary: old_primary.map(str::to_string),
                candidate: best.name.clone(),
                followers: followers(cfg, topo, old_primary, &best.name),
                candidate_lsn: best.lsn,
                ranking: ranking.iter().map(Verdict::line).collect(),
            };
            note(
                actions,
                "failover_decided",
                Some(&best.name),
                format!(
                    "primary {} failed; promoting {}: {}",
                    old_primary.unwrap_or("(none)"),
                    best.name,
                    plan.ranking.join("; ")
                ),
            );
            next.phase = Phase::FailingOver {
                old_primary: plan.old_primary.clone(),
                candidate: best.name.clone(),
            };
            actions.push(Action::Failover(plan));
            return;
        }
    };
    if !matches!(&next.phase, Phase::Blocked { reason: r0, .. } if *r0 == reason) {
        note(actions, "failover_blocked", old_primary, reason.clone());
    }
    next.phase = Phase::Blocked {
        failures,
        reason,
        retry_at_ms: r.now_ms,
    };
}

fn followers(cfg: &FsmConfig, topo: &Topology, old: Option<&str>, candidate: &str) -> Vec<String> {
    cfg.nodes
        .iter()
        .map(|n| n.name.as_str())
        .filter(|n| Some(*n) != old && *n != candidate && !topo.is_fenced(n))
        .map(str::to_string)
        .collect()
}

#[cfg(test)]
#[path = "fsm_test.rs"]
mod tests;
