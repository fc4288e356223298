//! Unit tests of the write lease: when writes are held, and the wait.

#![allow(clippy::unwrap_used)]

use super::*;
use crate::config::{from_str, Config};

const CLUSTER: &str = crate::config::fixtures::TWO_NODE_CLUSTER;

fn managed() -> Config {
    let text = format!("{CLUSTER}[agent]\npoolers = [\"http://127.0.0.1:9930\"]\n");
    from_str(&text, "t").unwrap()
}

fn topo(epoch: u64, primary: Option<&str>, fenced: &[&str]) -> Topology {
    Topology {
        epoch,
        primary: primary.map(str::to_string),
        standbys: vec![],
        fenced: fenced.iter().map(|s| s.to_string()).collect(),
    }
}

#[test]
fn under_an_agent_writes_need_a_fresh_topology() {
    let config = managed();
    let l = config.write_lease();
    let lease = WriteLease::default();
    let now = Instant::now();
    assert_eq!(lease.blocked(l, now), Some(NO_TOPOLOGY));
    lease.installed(&topo(3, Some("a"), &[]));
    // Never renewed: no writes, even with a primary named.
    assert_eq!(lease.blocked(l, now), Some(LEASE_EXPIRED));
    lease.renew(now);
    assert_eq!(lease.blocked(l, now), None);
    let d = l.unwrap();
    assert_eq!(lease.blocked(l, now + d - Duration::from_millis(5)), None);
    assert_eq!(
        lease.blocked(l, now + d + Duration::from_millis(5)),
        Some(LEASE_EXPIRED)
    );
    // Fresh but fenced, or without a primary: a failover is under way.
    lease.installed(&topo(4, None, &["a"]));
    assert_eq!(lease.blocked(l, now), Some(NO_PRIMARY));
    lease.installed(&topo(5, Some("a"), &["a"]));
    assert_eq!(lease.blocked(l, now), Some(NO_PRIMARY));
    lease.installed(&topo(6, Some("b"), &["a"]));
    assert_eq!(lease.blocked(l, now), None);
}

#[test]
fn renewals_never_move_backwards() {
    let lease = WriteLease::default();
    let now = Instant::now();
    lease.renew(now + Duration::from_secs(2));
    lease.renew(now);
    let e = lease.expiry(Duration::from_secs(1)).unwrap();
    assert!(e >= now + Duration::from_secs(3) - Duration::from_millis(1));
}

#[test]
fn without_an_agent_discovery_rules_alone() {
    let config = from_str(CLUSTER, "t").unwrap();
    assert_eq!(config.write_lease(), None);
    let lease = WriteLease::default();
    let now = Instant::now();
    // Never renewed, epoch 0 (discovery): writes go.
    assert_eq!(lease.blocked(None, now), None);
    // A topology an agent pushed once still fences.
    lease.installed(&topo(2, None, &["a"]));
    assert_eq!(lease.blocked(None, now), Some(NO_PRIMARY));
}

#[tokio::test]
async fn a_waiting_transaction_goes_once_renewed_or_fails_at_its_deadline() {
    let l = managed().write_lease();
    let lease = Arc::new(WriteLease::default());
    lease.installed(&topo(3, Some("a"), &[]));
    let started = Instant::now();
    let deadline = started + Duration::from_millis(150);
    let r = lease.wait(deadline, |now| lease.blocked(l, now)).await;
    assert_eq!(r, Err(LEASE_EXPIRED));
    assert!(started.elapsed() >= Duration::from_millis(150));
    let renewer = lease.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(30)).await;
        renewer.renew(Instant::now());
    });
    let started = Instant::now();
    let deadline = started + Duration::from_secs(5);
    let r = lease.wait(deadline, |now| lease.blocked(l, now)).await;
    assert_eq!(r, Ok(()));
    assert!(started.elapsed() < Duration::from_secs(1));
}
