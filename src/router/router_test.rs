//! Unit tests of routing decisions.

use super::*;
use std::time::Duration;

fn node(name: &str, role: NodeRole, lsn: u64) -> NodeState {
    NodeState {
        name: name.into(),
        role,
        lsn: Lsn(lsn),
        lag_bytes: Some(0),
        lag_time: Some(Duration::ZERO),
        banned_until: None,
        failures: 0,
        last_error: None,
        weight: 100,
        fenced: false,
    }
}

fn view(now: Instant) -> ClusterView {
    ClusterView {
        nodes: vec![
            node("p", NodeRole::Primary, 1000),
            node("s1", NodeRole::Standby, 1000),
            node("s2", NodeRole::Standby, 1000),
        ],
        primary_lsn: Some((Lsn(1000), now)),
        round: 1,
    }
}

fn auto() -> Routing {
    Routing {
        policy: RoutePolicy::Auto,
        read_your_writes: true,
        replica_fallback: true,
        ..Routing::default()
    }
}

fn read() -> Class {
    Class {
        read_only: true,
        ..Class::default()
    }
}

fn write() -> Class {
    Class::default()
}

#[test]
fn policies() {
    let now = Instant::now();
    let v = view(now);
    let mut r = ClientRoute::default();
    assert!(matches!(
        r.decide(&auto(), &read(), &v, now, |_| 0),
        Decision::Replica(_)
    ));
    let ro = Routing {
        policy: RoutePolicy::ReadOnly,
        ..auto()
    };
    let mut r = ClientRoute::default();
    assert_eq!(r.decide(&ro, &read(), &v, now, |_| 0), Decision::Primary);
    let begin = Class {
        begins_read_only: true,
        ..Class::default()
    };
    assert!(matches!(
        r.decide(&ro, &begin, &v, now, |_| 0),
        Decision::Replica(_)
    ));
    let primary = Routing::default();
    let mut r = ClientRoute::default();
    assert_eq!(
        r.decide(&primary, &begin, &v, now, |_| 0),
        Decision::Primary
    );
}

#[test]
fn overrides_win() {
    let now = Instant::now();
    let v = view(now);
    let forced = Class {
        forced: Some(Target::Primary),
        ..read()
    };
    let mut r = ClientRoute::default();
    assert_eq!(
        r.decide(&auto(), &forced, &v, now, |_| 0),
        Decision::Primary
    );
    let mut r = ClientRoute::from_startup([("pgsluice.route", "replica")].into_iter(), 0);
    assert!(matches!(
        r.decide(&auto(), &write(), &v, now, |_| 0),
        Decision::Replica(_)
    ));
    let set = Class {
        session: Some(SessionChange::Route(Some(Target::Primary))),
        ..Class::default()
    };
    assert_eq!(r.decide(&auto(), &set, &v, now, |_| 0), Decision::Primary);
    assert_eq!(
        r.decide(&auto(), &read(), &v, now, |_| 0),
        Decision::Primary
    );
    let mut r = ClientRoute::from_startup([("target_session_attrs", "read-only")].into_iter(), 0);
    let ro = Routing {
        policy: RoutePolicy::ReadOnly,
        ..auto()
    };
    assert!(matches!(
        r.decide(&ro, &write(), &v, now, |_| 0),
        Decision::Replica(_)
    ));
}

#[test]
fn lag_bans_and_fallback() {
    let now = Instant::now();
    let mut v = view(now);
    v.nodes[1].lag_bytes = Some(10_000);
    v.nodes[2].banned_until = Some(now + Duration::from_secs(5));
    let mut cfg = Routing {
        max_replica_lag: 1000,
        ..auto()
    };
    let mut r = ClientRoute::default();
    assert_eq!(r.decide(&cfg, &read(), &v, now, |_| 0), Decision::Primary);
    cfg.replica_fallback = false;
    assert_eq!(r.decide(&cfg, &read(), &v, now, |_| 0), Decision::NoReplica);
    let later = now + Duration::from_secs(6);
    assert_eq!(
        r.decide(&cfg, &read(), &v, later, |_| 0),
        Decision::Replica(2)
    );
    v.nodes[2].lag_time = Some(Duration::from_secs(3));
    cfg.max_replica_lag_time = Duration::from_secs(1);
    assert_eq!(
        r.decide(&cfg, &read(), &v, later, |_| 0),
        Decision::NoReplica
    );
}

#[test]
fn read_your_writes_waits_for_a_later_poll_and_replay() {
    let t0 = Instant::now();
    let mut v = view(t0);
    let mut r = ClientRoute::default();
    assert_eq!(
        r.decide(&auto(), &write(), &v, t0, |_| 0),
        Decision::Primary
    );
    // The next read: the last poll started before the commit, so the read stays on the primary.
    let t1 = t0 + Duration::from_millis(10);
    assert_eq!(r.decide(&auto(), &read(), &v, t1, |_| 0), Decision::Primary);
    // A poll after the commit saw LSN 2000; only s2 has replayed it.
    v.primary_lsn = Some((Lsn(2000), t1 + Duration::from_millis(1)));
    v.nodes[2].lsn = Lsn(2000);
    let t2 = t1 + Duration::from_millis(20);
    assert_eq!(
        r.decide(&auto(), &read(), &v, t2, |_| 0),
        Decision::Replica(2)
    );
    assert_eq!(
        r.decide(&auto(), &read(), &v, t2, |_| 0),
        Decision::Replica(2)
    );
    // Every standby catches up; then s1 comes back from a restart behind the fence: the
    // fence still keeps it out.
    v.nodes[1].lsn = Lsn(2000);
    r.decide(&auto(), &read(), &v, t2, |_| 0);
    v.nodes[1].lsn = Lsn(1500);
    for _ in 0..4 {
        assert_eq!(
            r.decide(&auto(), &read(), &v, t2, |_| 0),
            Decision::Replica(2)
        );
    }
    // Off: reads spread at once.
    let off = Routing {
        read_your_writes: false,
        ..auto()
    };
    let mut r = ClientRoute::default();
    r.decide(&off, &write(), &v, t2, |_| 0);
    assert!(matches!(
        r.decide(&off, &read(), &v, t2, |_| 0),
        Decision::Replica(_)
    ));
}

#[test]
fn replica_choice() {
    let now = Instant::now();
    let v = view(now);
    let mut r = ClientRoute::default();
    let busy = |i: usize| if i == 1 { 5 } else { 0 };
    for _ in 0..4 {
        assert_eq!(
            r.decide(&auto(), &read(), &v, now, busy),
            Decision::Replica(2)
        );
    }
    let rr = Routing {
        replica_choice: ReplicaChoice::RoundRobin,
        ..auto()
    };
    let a = r.decide(&rr, &read(), &v, now, |_| 0);
    let b = r.decide(&rr, &read(), &v, now, |_| 0);
    assert_ne!(a, b);
    let mut w = view(now);
    w.nodes[1].weight = 0;
    let weighted = Routing {
        replica_choice: ReplicaChoice::Weighted,
        ..auto()
    };
    for _ in 0..10 {
        assert_eq!(
            r.decide(&weighted, &read(), &w, now, |_| 0),
            Decision::Replica(2)
        );
    }
}

#[test]
fn lag_time_from_primary_history() {
    let t = Instant::now();
    let h = [
        (Lsn(100), t),
        (Lsn(200), t + Duration::from_secs(1)),
        (Lsn(300), t + Duration::from_secs(2)),
    ];
    let now = t + Duration::from_secs(5);
    assert_eq!(lag_time(&h, Lsn(300), now), Duration::ZERO);
    assert_eq!(lag_time(&h, Lsn(150), now), Duration::from_secs(4));
}
