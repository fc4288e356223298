//! Unit tests of the failover state machine: thresholds, windows, vetoes, election order.
#![allow(clippy::unwrap_used)]

use super::*;
use crate::agent::state::WalReceiver;

const WINDOW: u64 = 10_000;

fn cfg() -> FsmConfig {
    FsmConfig {
        failure_threshold: 3,
        failure_window_ms: WINDOW,
        max_failover_lag: 1 << 20,
        auto_failover: true,
        synchronous_standbys: 0,
        nodes: vec![
            spec("a", 5001, 100),
            spec("b", 5002, 100),
            spec("c", 5003, 50),
        ],
    }
}

fn spec(name: &str, port: u16, priority: u32) -> NodeSpec {
    NodeSpec {
        name: name.into(),
        host: "127.0.0.1".into(),
        port,
        priority,
    }
}

fn topo() -> Topology {
    Topology {
        epoch: 1,
        primary: Some("a".into()),
        standbys: vec!["b".into(), "c".into()],
        fenced: vec![],
    }
}

fn primary(name: &str, lsn: u64) -> NodeProbe {
    NodeProbe {
        name: name.into(),
        reachable: true,
        in_recovery: Some(false),
        current_lsn: Some(Lsn(lsn)),
        flush_lsn: Some(Lsn(lsn)),
        read_only: Some(false),
        ..NodeProbe::default()
    }
}

fn standby(name: &str, lsn: u64, upstream_port: Option<u16>) -> NodeProbe {
    NodeProbe {
        name: name.into(),
        reachable: true,
        in_recovery: Some(true),
        receive_lsn: Some(Lsn(lsn)),
        replay_lsn: Some(Lsn(lsn)),
        read_only: Some(false),
        wal_receiver: upstream_port.map(|port| WalReceiver {
            status: "streaming".into(),
            sender_host: Some("127.0.0.1".into()),
            sender_port: Some(port),
            ..WalReceiver::default()
        }),
        ..NodeProbe::default()
    }
}

fn down(name: &str) -> NodeProbe {
    NodeProbe::unreachable(name, "connection refused")
}

fn round(now_ms: u64, probes: Vec<NodeProbe>) -> Input {
    Input::Round(Round {
        now_ms,
        probes,
        warmth: BTreeMap::new(),
    })
}

fn healthy() -> FsmState {
    FsmState {
        phase: Phase::Healthy,
        ..FsmState::default()
    }
}

/// Runs rounds in order, returning the final state and every action.
fn run(
    mut s: FsmState,
    c: &FsmConfig,
    t: &Topology,
    inputs: Vec<Input>,
) -> (FsmState, Vec<Action>) {
    let mut all = Vec::new();
    for i in inputs {
        let (n, a) = step(&s, c, t, &i);
        s = n;
        all.extend(a);
    }
    (s, all)
}

fn kinds(actions: &[Action]) -> Vec<&'static str> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Note(n) => Some(n.kind),
            _ => None,
        })
        .collect()
}

fn plan(actions: &[Action]) -> Option<&Plan> {
    actions.iter().find_map(|a| match a {
        Action::Failover(p) => Some(p),
        _ => None,
    })
}

fn dead_primary_rounds(times: &[u64], b: u64, c: u64) -> Vec<Input> {
    times
        .iter()
        .map(|t| {
            round(
                *t,
                vec![down("a"), standby("b", b, None), standby("c", c, None)],
            )
        })
        .collect()
}

#[test]
fn healthy_primary_stays_healthy_and_tracks_lsn() {
    let (s, a) = run(
        healthy(),
        &cfg(),
        &topo(),
        vec![round(
            0,
            vec![primary("a", 500), standby("b", 500, Some(5001))],
        )],
    );
    assert_eq!(s.phase, Phase::Healthy);
    assert_eq!(s.last_primary_lsn, Some(Lsn(500)));
    assert!(a.is_empty());
}

#[test]
fn threshold_within_window_fails_over() {
    let c = cfg();
    let (s, a) = run(
        healthy(),
        &c,
        &topo(),
        dead_primary_rounds(&[0, 1000], 100, 100),
    );
    assert!(matches!(s.phase, Phase::Suspect { ref failures } if failures.len() == 2));
    assert_eq!(kinds(&a), vec!["primary_probe_failed"]);
    let (s, a) = run(s, &c, &topo(), dead_primary_rounds(&[2000], 100, 100));
    assert!(matches!(s.phase, Phase::FailingOver { ref candidate, .. } if candidate == "b"));
    let p = plan(&a).unwrap();
    assert_eq!(p.old_primary.as_deref(), Some("a"));
    assert_eq!(p.followers, vec!["c".to_string()]);
    assert_eq!(kinds(&a), vec!["failover_decided"]);
}

#[test]
fn failures_spread_beyond_the_window_never_trigger() {
    let (s, a) = run(
        healthy(),
        &cfg(),
        &topo(),
        dead_primary_rounds(&[0, 6000, 12_000, 18_000, 24_000], 1, 1),
    );
    assert!(matches!(s.phase, Phase::Suspect { ref failures } if failures.len() == 2));
    assert!(plan(&a).is_none());
}

#[test]
fn a_successful_probe_clears_the_count() {
    let mut inputs = dead_primary_rounds(&[0, 100], 1, 1);
    inputs.push(round(
        200,
        vec![primary("a", 1), standby("b", 1, Some(5001))],
    ));
    inputs.extend(dead_primary_rounds(&[300, 400], 1, 1));
    let (s, a) = run(healthy(), &cfg(), &topo(), inputs);
    assert!(matches!(s.phase, Phase::Suspect { ref failures } if failures.len() == 2));
    assert_eq!(
        kinds(&a),
        vec![
            "primary_probe_failed",
            "primary_recovered",
            "primary_probe_failed"
        ]
    );
}

#[test]
fn primary_in_recovery_counts_as_failed() {
    let mut a = primary("a", 1);
    a.in_recovery = Some(true);
    let (s, _) = run(healthy(), &cfg(), &topo(), vec![round(0, vec![a])]);
    assert!(matches!(s.phase, Phase::Suspect { .. }));
}

#[test]
fn a_standby_still_streaming_from_the_primary_vetoes() {
    let rounds = [0, 100, 200, 300]
        .iter()
        .map(|t| {
            round(
                *t,
                vec![
                    down("a"),
                    standby("b", 9, Some(5001)),
                    standby("c", 9, None),
                ],
            )
        })
        .collect();
    let (s, a) = run(healthy(), &cfg(), &topo(), rounds);
    assert!(matches!(s.phase, Phase::Vetoed { ref by, .. } if by == &vec!["b".to_string()]));
    assert_eq!(kinds(&a), vec!["primary_probe_failed", "failover_vetoed"]);
    assert!(plan(&a).is_none());
    // The veto lifts when b loses the primary too.
    let (s, a) = run(s, &cfg(), &topo(), dead_primary_rounds(&[400], 9, 9));
    assert!(matches!(s.phase, Phase::FailingOver { .. }));
    assert!(plan(&a).is_some());
}

#[test]
fn streaming_from_an_unknown_upstream_vetoes() {
    // The agent reaches the primary through a proxy (port 5001) while standbys use 6001.
    let rounds = [0, 1, 2]
        .iter()
        .map(|t| {
            round(
                *t,
                vec![
                    down("a"),
                    standby("b", 9, Some(6001)),
                    standby("c", 9, Some(6001)),
                ],
            )
        })
        .collect();
    let (s, _) = run(healthy(), &cfg(), &topo(), rounds);
    assert!(matches!(s.phase, Phase::Vetoed { ref by, .. } if by.len() == 2));
}

#[test]
fn a_cascaded_standby_does_not_veto() {
    let rounds = [0, 1, 2]
        .iter()
        .map(|t| {
            round(
                *t,
                vec![
                    down("a"),
                    standby("b", 9, None),
                    standby("c", 8, Some(5002)),
                ],
            )
        })
        .collect();
    let (s, a) = run(healthy(), &cfg(), &topo(), rounds);
    assert!(matches!(s.phase, Phase::FailingOver { ref candidate, .. } if candidate == "b"));
    assert_eq!(plan(&a).unwrap().followers, vec!["c".to_string()]);
}

#[test]
fn most_advanced_lsn_wins_over_priority() {
    let (s, _) = run(
        healthy(),
        &cfg(),
        &topo(),
        dead_primary_rounds(&[0, 1, 2], 100, 200),
    );
    assert!(matches!(s.phase, Phase::FailingOver { ref candidate, .. } if candidate == "c"));
}

#[test]
fn priority_breaks_lsn_ties_then_warmth_then_name() {
    let mut c = cfg();
    let (s, _) = run(
        healthy(),
        &c,
        &topo(),
        dead_primary_rounds(&[0, 1, 2], 100, 100),
    );
    assert!(matches!(s.phase, Phase::FailingOver { ref candidate, .. } if candidate == "b"));
    c.nodes[2].priority = 100;
    let mut r = Round {
        now_ms: 0,
        probes: vec![down("a"), standby("b", 7, None), standby("c", 7, None)],
        warmth: BTreeMap::from([("b".into(), 0.3), ("c".into(), 0.9)]),
    };
    let ranked = rank(&c, &topo(), &r, None, Some("a"));
    assert_eq!(ranked[0].name, "c");
    r.warmth.clear();
    let ranked = rank(&c, &topo(), &r, None, Some("a"));
    assert_eq!(ranked[0].name, "b");
}

#[test]
fn priority_zero_is_never_promoted() {
    let mut c = cfg();
    c.nodes[2].priority = 0;
    let (s, a) = run(
        healthy(),
        &c,
        &topo(),
        dead_primary_rounds(&[0, 1, 2], 100, 900),
    );
    assert!(matches!(s.phase, Phase::FailingOver { ref candidate, .. } if candidate == "b"));
    let p = plan(&a).unwrap();
    assert!(p
        .ranking
        .iter()
        .any(|l| l.contains("c: refused (priority 0")));
}

#[test]
fn a_candidate_too_far_behind_is_refused() {
    let c = cfg();
    let s = FsmState {
        last_primary_lsn: Some(Lsn(10 << 20)),
        ..healthy()
    };
    let (s, a) = run(s, &c, &topo(), dead_primary_rounds(&[0, 1, 2, 3, 4], 1, 2));
    assert!(
        matches!(s.phase, Phase::Blocked { ref reason, .. } if reason.contains("max_failover_lag"))
    );
    assert_eq!(kinds(&a), vec!["primary_probe_failed", "failover_blocked"]);
    // Within the limit (1 MiB behind the last known primary LSN) it is accepted.
    let (s, _) = run(s, &c, &topo(), dead_primary_rounds(&[5], 9 << 20, 1));
    assert!(matches!(s.phase, Phase::FailingOver { ref candidate, .. } if candidate == "b"));
}

#[test]
fn unreachable_and_non_recovering_nodes_are_refused() {
    let r = Round {
        now_ms: 0,
        probes: vec![down("a"), down("b"), primary("c", 5)],
        warmth: BTreeMap::new(),
    };
    let ranked = rank(&cfg(), &topo(), &r, None, Some("a"));
    assert!(ranked.iter().all(|v| !v.eligible));
    assert!(
        ranked[0].reason.starts_with("unreachable") || ranked[1].reason.starts_with("unreachable")
    );
    assert!(ranked.iter().any(|v| v.reason == "not in recovery"));
}

#[test]
fn auto_failover_off_blocks_and_says_so_once() {
    let mut c = cfg();
    c.auto_failover = false;
    let (s, a) = run(
        healthy(),
        &c,
        &topo(),
        dead_primary_rounds(&[0, 1, 2, 3, 4], 5, 5),
    );
    assert!(
        matches!(s.phase, Phase::Blocked { ref reason, .. } if reason == "auto_failover is off")
    );
    assert_eq!(kinds(&a), vec!["primary_probe_failed", "failover_blocked"]);
    assert!(plan(&a).is_none());
}

#[test]
fn failing_over_ignores_rounds_until_finished() {
    let c = cfg();
    let (s, _) = run(
        healthy(),
        &c,
        &topo(),
        dead_primary_rounds(&[0, 1, 2], 5, 5),
    );
    let (s2, a) = run(s.clone(), &c, &topo(), dead_primary_rounds(&[3, 4], 5, 5));
    assert_eq!(s2, s);
    assert!(a.is_empty());
    let done = Input::FailoverFinished {
        now_ms: 5,
        ok: true,
        detail: String::new(),
    };
    let (s3, _) = step(&s2, &c, &topo(), &done);
    assert_eq!(s3.phase, Phase::Healthy);
}

#[test]
fn a_failed_failover_retries_after_the_window() {
    let c = cfg();
    let s = FsmState {
        phase: Phase::FailingOver {
            old_primary: Some("a".into()),
            candidate: "b".into(),
        },
        ..FsmState::default()
    };
    let failed = Input::FailoverFinished {
        now_ms: 100,
        ok: false,
        detail: "promote timed out".into(),
    };
    let (s, _) = step(&s, &c, &topo(), &failed);
    assert!(matches!(s.phase, Phase::Blocked { retry_at_ms, .. } if retry_at_ms == 100 + WINDOW));
    let (s, a) = run(s, &c, &topo(), dead_primary_rounds(&[200, 300, 400], 5, 5));
    assert!(matches!(s.phase, Phase::Blocked { .. }));
    assert!(plan(&a).is_none());
    let (s, a) = run(s, &c, &topo(), dead_primary_rounds(&[100 + WINDOW], 5, 5));
    assert!(matches!(s.phase, Phase::FailingOver { .. }));
    assert!(plan(&a).is_some());
}

#[path = "fsm_discovery_test.rs"]
mod discovery;
