//! The pooler's own view of the cluster: probes every node for its role, WAL position and
//! health over a kept connection (the status statement and rounds of `crate::probe`, shared
//! with the agent), so that it works without an agent, follows a promotion done
//! by hand (DESIGN.md, decision 2), and feeds the router lag, bans and the primary's LSN.
//!
//! A topology pushed by an agent (epoch > 0) wins over discovery while its primary answers as
//! a primary; a fenced node is never chosen, whatever it claims.

use crate::backend::Backend;
use crate::config::{ClusterConfig, NodeConfig};
use crate::lsn::Lsn;
use crate::probe::{error_text, Answer, Conns, NodeStatus, SqlError, Target, STATUS_SQL};
use crate::router::{lag_time, ClusterView, NodeRole, NodeState};
use crate::topology::Topology;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// What one probe learned of a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Primary,
    Standby,
    Down,
}

/// One probe's answer: role and WAL position (insert position on a primary, replayed on a
/// standby).
#[derive(Debug, Clone)]
pub struct Probe {
    pub role: Role,
    pub lsn: Lsn,
    pub error: Option<String>,
}

/// The pooler's probe sessions, told apart from the agent's on the node.
const APPLICATION_NAME: &str = "pgsluice-pooler-probe";

impl Probe {
    /// A node's answer to the shared status statement ([`STATUS_SQL`]).
    fn of(answer: Result<Answer, SqlError>) -> Probe {
        let status = match answer {
            Ok(a) => a.rows.first().and_then(NodeStatus::parse),
            Err(e) => return Probe::down(error_text(&e)),
        };
        let Some((in_recovery, lsn)) =
            status.and_then(|st| Some((st.in_recovery?, st.readable_position())))
        else {
            return Probe::down("probe returned no row".to_string());
        };
        let role = if in_recovery {
            Role::Standby
        } else {
            Role::Primary
        };
        Probe {
            role,
            lsn,
            error: None,
        }
    }

    fn down(error: String) -> Probe {
        Probe {
            role: Role::Down,
            lsn: Lsn::ZERO,
            error: Some(error),
        }
    }
}

/// Picks the primary from probe results under a topology: the topology's own primary while it
/// answers as one, else the single unfenced node that answers as a primary.
pub fn choose(topology: &Topology, roles: &[(NodeConfig, Role)]) -> Option<NodeConfig> {
    if let Some(p) = &topology.primary {
        if let Some((n, Role::Primary)) = roles.iter().find(|(n, _)| &n.name == p) {
            if !topology.is_fenced(&n.name) {
                return Some(n.clone());
            }
        }
    }
    let mut primaries = roles
        .iter()
        .filter(|(n, r)| *r == Role::Primary && !topology.is_fenced(&n.name));
    match (primaries.next(), primaries.next()) {
        (Some((n, _)), None) => Some(n.clone()),
        _ => None,
    }
}

/// The primary's recent `(lsn, first seen)` samples, for lag in time.
const HISTORY: usize = 2048;

/// Builds the node view of one round from the probes, carrying bans over from `prev`.
pub fn build_view(
    prev: &ClusterView,
    probes: &[(NodeConfig, Probe)],
    writer: Option<&str>,
    topology: &Topology,
    (started, now, ban_time): (Instant, Instant, Duration),
    history: &mut VecDeque<(Lsn, Instant)>,
) -> ClusterView {
    let primary_lsn = probes
        .iter()
        .find(|(n, _)| Some(n.name.as_str()) == writer)
        .filter(|(_, p)| p.role == Role::Primary)
        .map(|(_, p)| p.lsn);
    if let Some(lsn) = primary_lsn {
        if history.back().is_none_or(|(l, _)| *l < lsn) {
            history.push_back((lsn, started));
            if history.len() > HISTORY {
                history.pop_front();
            }
        }
    }
    let samples: Vec<(Lsn, Instant)> = history.iter().copied().collect();
    let nodes = probes
        .iter()
        .map(|(n, p)| {
            let old = prev.index(&n.name).map(|i| &prev.nodes[i]);
            let (banned_until, failures) = match (&p.error, old) {
                (Some(_), o) => (Some(now + ban_time), o.map_or(0, |o| o.failures) + 1),
                (None, Some(o)) if o.is_banned(now) => (o.banned_until, o.failures),
                (None, _) => (None, 0),
            };
            let role = match p.role {
                Role::Primary => NodeRole::Primary,
                Role::Standby => NodeRole::Standby,
                Role::Down => NodeRole::Down,
            };
            let standby_lag = |lsn: Lsn| primary_lsn.map(|pl| pl.bytes_after(lsn));
            NodeState {
                name: n.name.as_str().into(),
                role,
                lsn: p.lsn,
                lag_bytes: if role == NodeRole::Standby {
                    standby_lag(p.lsn)
                } else {
                    None
                },
                lag_time: (role == NodeRole::Standby && primary_lsn.is_some())
                    .then(|| lag_time(&samples, p.lsn, now)),
                banned_until,
                failures,
                last_error: p
                    .error
                    .clone()
                    .or_else(|| old.and_then(|o| o.last_error.clone())),
                weight: n.weight,
                fenced: topology.is_fenced(&n.name)
                    || (role == NodeRole::Primary && Some(n.name.as_str()) != writer),
            }
        })
        .collect();
    ClusterView {
        nodes,
        primary_lsn: primary_lsn.map(|l| (l, started)),
        round: prev.round + 1,
    }
}

/// Probes every `pooler.probe_interval` until `stop`: installs the primary it finds and
/// publishes the node view (roles, LSNs, lag, bans) the router reads.
pub async fn run(ctx: Arc<Backend>, stop: CancellationToken) {
    let conns = Arc::new(Conns::default());
    let mut history = VecDeque::new();
    loop {
        let config = ctx.config();
        let interval = config.pooler.probe_interval.max(Duration::from_millis(10));
        if let Some(cluster) = &config.cluster {
            let timeout = interval.max(Duration::from_secs(1));
            let started = Instant::now();
            let probes = probe_all(cluster, &conns, timeout).await;
            let roles: Vec<(NodeConfig, Role)> =
                probes.iter().map(|(n, p)| (n.clone(), p.role)).collect();
            let (topology, _) = ctx.topology();
            let chosen = choose(&topology, &roles);
            if ctx.propose_primary(chosen) {
                tracing::info!(primary = ?ctx.topology().1.map(|n| n.name), "primary discovered");
            }
            let (topology, current) = ctx.topology();
            let writer = current.map(|n| n.name);
            let prev = ctx.cluster_view();
            let times = (started, Instant::now(), config.pooler.ban_time);
            let view = build_view(
                &prev,
                &probes,
                writer.as_deref(),
                &topology,
                times,
                &mut history,
            );
            ctx.set_cluster_view(view);
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(interval) => {}
        }
    }
}

/// Probes all nodes at once over their kept connections (dropping those of removed nodes).
async fn probe_all(
    cluster: &ClusterConfig,
    conns: &Arc<Conns>,
    timeout: Duration,
) -> Vec<(NodeConfig, Probe)> {
    conns.retain(|name| cluster.nodes.iter().any(|n| n.name == name));
    let targets: Vec<Target> = cluster
        .nodes
        .iter()
        .map(|n| Target::new(cluster, n, APPLICATION_NAME))
        .collect();
    let answers = crate::probe::round(&targets, conns, STATUS_SQL, timeout).await;
    cluster
        .nodes
        .iter()
        .cloned()
        .zip(answers.into_iter().map(Probe::of))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str) -> NodeConfig {
        NodeConfig {
            name: name.into(),
            host: "h".into(),
            port: 1,
            data_dir: None,
            priority: 1,
            os_user: None,
            weight: 100,
        }
    }

    #[test]
    fn fenced_node_is_never_chosen() {
        let t = Topology {
            epoch: 2,
            primary: Some("a".into()),
            standbys: vec![],
            fenced: vec!["a".into()],
        };
        let roles = vec![(node("a"), Role::Primary), (node("b"), Role::Standby)];
        assert_eq!(choose(&t, &roles), None);
        let roles = vec![(node("a"), Role::Primary), (node("b"), Role::Primary)];
        assert_eq!(choose(&t, &roles).map(|n| n.name), Some("b".into()));
    }

    #[test]
    fn two_unfenced_primaries_are_ambiguous_without_topology() {
        let roles = vec![(node("a"), Role::Primary), (node("b"), Role::Primary)];
        assert_eq!(choose(&Topology::default(), &roles), None);
        let t = Topology {
            epoch: 1,
            primary: Some("b".into()),
            ..Default::default()
        };
        assert_eq!(choose(&t, &roles).map(|n| n.name), Some("b".into()));
    }

    #[test]
    fn manual_promotion_is_followed() {
        let t = Topology {
            epoch: 0,
            primary: Some("a".into()),
            ..Default::default()
        };
        let roles = vec![(node("a"), Role::Down), (node("b"), Role::Primary)];
        assert_eq!(choose(&t, &roles).map(|n| n.name), Some("b".into()));
    }
}
