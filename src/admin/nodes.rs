//! `SHOW NODES`: the cluster's nodes as the pooler's discovery last saw them (role, health,
//! WAL position, lag, bans) and the topology epoch; empty without `[cluster]`.

use super::table::{s, Table};
use super::{format_time, Admin};
use crate::router::{NodeRole, NodeState};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// The columns of `SHOW NODES`.
const COLUMNS: &[&str] = &[
    "node",
    "host",
    "port",
    "role",
    "health",
    "lsn",
    "lag_bytes",
    "lag_seconds",
    "banned_until",
    "failures",
    "last_error",
    "weight",
    "fenced",
    "writer",
    "epoch",
];

/// `ok`, `down`, `banned` or `fenced`: whether the node serves anything now.
pub fn health(n: &NodeState, now: Instant) -> &'static str {
    if n.role == NodeRole::Down {
        "down"
    } else if n.is_banned(now) {
        "banned"
    } else if n.fenced {
        "fenced"
    } else {
        "ok"
    }
}

impl Admin {
    pub(super) fn nodes(&self) -> Table {
        let mut t = Table::new(COLUMNS);
        let config = self.ctx.config();
        let Some(cluster) = &config.cluster else {
            return t;
        };
        let view = self.ctx.cluster_view();
        let (topology, writer) = self.ctx.topology();
        let now = Instant::now();
        let wall_us = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_micros() as u64);
        for node in &cluster.nodes {
            let seen = view.index(&node.name).map(|i| &view.nodes[i]);
            let banned = seen
                .and_then(|n| n.banned_until)
                .filter(|u| *u > now)
                .map(|u| format_time(wall_us + u.duration_since(now).as_micros() as u64));
            t.row(vec![
                s(&node.name),
                s(&node.host),
                s(node.port),
                s(seen.map_or("unknown", |n| n.role.as_str())),
                s(seen.map_or("unknown", |n| health(n, now))),
                seen.filter(|n| n.role != NodeRole::Down)
                    .map(|n| n.lsn.to_string()),
                seen.and_then(|n| n.lag_bytes).and_then(s),
                seen.and_then(|n| n.lag_time)
                    .map(|d| format!("{:.3}", d.as_secs_f64())),
                banned,
                s(seen.map_or(0, |n| n.failures)),
                seen.and_then(|n| n.last_error.clone()),
                s(node.weight),
                s(i32::from(seen.is_some_and(|n| n.fenced))),
                s(i32::from(
                    writer.as_ref().is_some_and(|w| w.name == node.name),
                )),
                s(topology.epoch),
            ]);
        }
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn health_of_a_node() {
        let now = Instant::now();
        let mut n = NodeState {
            name: "a".into(),
            role: NodeRole::Standby,
            lsn: crate::lsn::Lsn(1),
            lag_bytes: None,
            lag_time: None,
            banned_until: None,
            failures: 0,
            last_error: None,
            weight: 100,
            fenced: false,
        };
        assert_eq!(health(&n, now), "ok");
        n.fenced = true;
        assert_eq!(health(&n, now), "fenced");
        n.banned_until = Some(now + Duration::from_secs(1));
        assert_eq!(health(&n, now), "banned");
        n.role = NodeRole::Down;
        assert_eq!(health(&n, now), "down");
    }
}
