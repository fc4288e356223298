//! Unit tests of the state machine outside a failover: discovery of the primary, fenced
//! nodes coming back, a headless topology.

use super::*;

#[test]
fn discovery_adopts_the_only_writable_node() {
    let t = Topology::default();
    let (s, a) = run(
        FsmState::default(),
        &cfg(),
        &t,
        vec![round(
            0,
            vec![primary("b", 5), standby("a", 5, Some(5002)), down("c")],
        )],
    );
    assert_eq!(s.phase, Phase::Healthy);
    let adopted = a.iter().find_map(|a| match a {
        Action::Adopt(t) => Some(t.clone()),
        _ => None,
    });
    let adopted = adopted.unwrap();
    assert_eq!(adopted.epoch, 1);
    assert_eq!(adopted.primary.as_deref(), Some("b"));
    assert_eq!(adopted.standbys, vec!["a".to_string(), "c".to_string()]);
}

#[test]
fn discovery_refuses_several_primaries() {
    let t = Topology::default();
    let r = || round(0, vec![primary("a", 5), primary("b", 5), down("c")]);
    let (s, a) = run(FsmState::default(), &cfg(), &t, vec![r(), r()]);
    assert_eq!(s.phase, Phase::Discovering);
    assert_eq!(kinds(&a), vec!["several_primaries"]);
    assert!(!a.iter().any(|a| matches!(a, Action::Adopt(_))));
}

#[test]
fn discovery_waits_with_no_writable_node() {
    let (s, a) = run(
        FsmState::default(),
        &cfg(),
        &Topology::default(),
        vec![round(0, vec![down("a"), standby("b", 1, None)])],
    );
    assert_eq!(s.phase, Phase::Discovering);
    assert!(a.is_empty());
}

#[test]
fn a_fenced_node_back_as_primary_is_soft_fenced_and_never_adopted() {
    let t = Topology {
        epoch: 3,
        primary: Some("b".into()),
        standbys: vec!["c".into()],
        fenced: vec!["a".into()],
    };
    let r = || {
        round(
            0,
            vec![
                primary("a", 5),
                primary("b", 9),
                standby("c", 9, Some(5002)),
            ],
        )
    };
    let (s, a) = run(healthy(), &cfg(), &t, vec![r(), r()]);
    assert_eq!(s.phase, Phase::Healthy);
    let fences = a
        .iter()
        .filter(|a| matches!(a, Action::Fence(n) if n == "a"))
        .count();
    assert_eq!(fences, 2, "fence until the node reports read-only");
    assert_eq!(kinds(&a), vec!["unexpected_primary"]);
    let mut ro = primary("a", 5);
    ro.read_only = Some(true);
    let (_, a) = run(s, &cfg(), &t, vec![round(1, vec![ro, primary("b", 9)])]);
    assert!(a.is_empty());
}

#[test]
fn headless_topology_fails_over_at_once() {
    let t = Topology {
        epoch: 4,
        primary: None,
        standbys: vec!["b".into(), "c".into()],
        fenced: vec!["a".into()],
    };
    let (s, a) = run(healthy(), &cfg(), &t, dead_primary_rounds(&[0], 3, 4));
    assert!(
        matches!(s.phase, Phase::FailingOver { ref candidate, ref old_primary } if candidate == "c" && old_primary.is_none())
    );
    assert_eq!(plan(&a).unwrap().followers, vec!["b".to_string()]);
}

#[test]
fn headless_topology_adopts_a_hand_promoted_node() {
    let t = Topology {
        epoch: 4,
        primary: None,
        standbys: vec!["b".into(), "c".into()],
        fenced: vec!["a".into()],
    };
    let (_, a) = run(
        healthy(),
        &cfg(),
        &t,
        vec![round(
            0,
            vec![down("a"), primary("c", 4), standby("b", 3, None)],
        )],
    );
    assert!(a.iter().any(|a| matches!(a, Action::Adopt(t) if t.epoch == 5 && t.primary.as_deref() == Some("c") && t.fenced == vec!["a".to_string()])));
}

#[test]
fn reset_follows_the_topology() {
    let (s, _) = step(&FsmState::default(), &cfg(), &topo(), &Input::Reset);
    assert_eq!(s.phase, Phase::Healthy);
    let (s, _) = step(&s, &cfg(), &Topology::default(), &Input::Reset);
    assert_eq!(s.phase, Phase::Discovering);
}

#[test]
fn synchronous_mode_sets_the_primary_and_needs_enough_standbys() {
    let mut c = cfg();
    c.synchronous_standbys = 1;
    assert_eq!(
        sync_setting(1, &topo()).as_deref(),
        Some("ANY 1 (\"b\", \"c\")")
    );
    let (_, a) = run(
        healthy(),
        &c,
        &topo(),
        vec![round(0, vec![primary("a", 1)])],
    );
    assert!(a.iter().any(|a| matches!(a, Action::SetSync { node, value } if node == "a" && value.starts_with("ANY 1"))));
    let mut p = primary("a", 1);
    p.sync_names = sync_setting(1, &topo());
    let (_, a) = run(healthy(), &c, &topo(), vec![round(0, vec![p])]);
    assert!(a.is_empty());
    // ANY 1 of {b, c}: both must answer (n - k + 1 = 2) to be sure to hold every commit.
    let rounds = [0, 1, 2]
        .iter()
        .map(|t| round(*t, vec![down("a"), standby("b", 9, None), down("c")]))
        .collect();
    let (s, _) = run(healthy(), &c, &topo(), rounds);
    assert!(
        matches!(s.phase, Phase::Blocked { ref reason, .. } if reason.starts_with("synchronous mode")),
        "{s:?}"
    );
    let (s, _) = run(s, &c, &topo(), dead_primary_rounds(&[3], 5, 9));
    assert!(matches!(s.phase, Phase::FailingOver { ref candidate, .. } if candidate == "c"));
    // With k = 2 (every standby), one answering standby is enough.
    c.synchronous_standbys = 2;
    let rounds = [0, 1, 2]
        .iter()
        .map(|t| round(*t, vec![down("a"), standby("b", 9, None), down("c")]))
        .collect();
    let (s, _) = run(healthy(), &c, &topo(), rounds);
    assert!(matches!(s.phase, Phase::FailingOver { ref candidate, .. } if candidate == "b"));
    let none = Topology {
        standbys: vec![],
        ..topo()
    };
    assert_eq!(sync_setting(1, &none).as_deref(), Some(""));
    assert_eq!(sync_setting(0, &topo()), None);
}

#[test]
fn standby_loss_and_return_are_recorded_once() {
    let r = |b: NodeProbe| round(0, vec![primary("a", 1), b, standby("c", 1, Some(5001))]);
    let (s, a) = run(
        healthy(),
        &cfg(),
        &topo(),
        vec![r(down("b")), r(down("b")), r(standby("b", 1, Some(5001)))],
    );
    assert_eq!(kinds(&a), vec!["standby_unreachable", "standby_recovered"]);
    assert_eq!(s.phase, Phase::Healthy);
}
