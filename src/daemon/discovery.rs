//! The pooler's own view of the cluster: probes every node for its role, WAL position and
//! health over a kept connection, so that it works without an agent, follows a promotion done
//! by hand (DESIGN.md, decision 2), and feeds the router lag, bans and the primary's LSN.
//!
//! A topology pushed by an agent (epoch > 0) wins over discovery while its primary answers as
//! a primary; a fenced node is never chosen, whatever it claims.

use crate::backend::Backend;
use crate::config::{ClusterConfig, NodeConfig};
use crate::router::{lag_time, parse_lsn, ClusterView, NodeRole, NodeState};
use crate::topology::Topology;
use std::collections::{HashMap, VecDeque};
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

/// One probe's answer: role and WAL position (current on a primary, replayed on a standby).
#[derive(Debug, Clone)]
pub struct Probe {
    pub role: Role,
    pub lsn: u64,
    pub error: Option<String>,
}

/// The primary's insert position, not its write position: with `synchronous_commit = off` a
/// commit record may still sit in WAL buffers, and a read-your-writes fence must not stop short
/// of it.
const PROBE_SQL: &str = "select pg_is_in_recovery(), \
     (case when pg_is_in_recovery() then coalesce(pg_last_wal_replay_lsn(), '0/0') \
      else pg_current_wal_insert_lsn() end)::text";

/// A node's probe connection, kept open between rounds.
#[derive(Default)]
struct Prober {
    client: Option<tokio_postgres::Client>,
}

impl Prober {
    async fn probe(
        &mut self,
        cluster: &ClusterConfig,
        node: &NodeConfig,
        timeout: Duration,
    ) -> Probe {
        let work = async {
            if self.client.as_ref().is_none_or(|c| c.is_closed()) {
                self.client = Some(connect(cluster, node, timeout).await?);
            }
            let client = self.client.as_ref().ok_or("no connection")?;
            let row = client
                .query_one(PROBE_SQL, &[])
                .await
                .map_err(|e| e.to_string())?;
            let recovery: bool = row.try_get(0).map_err(|e| e.to_string())?;
            let lsn: String = row.try_get(1).map_err(|e| e.to_string())?;
            Ok::<_, String>((recovery, parse_lsn(&lsn).unwrap_or(0)))
        };
        let result = match tokio::time::timeout(timeout, work).await {
            Ok(r) => r,
            Err(_) => Err("probe timed out".to_string()),
        };
        match result {
            Ok((recovery, lsn)) => Probe {
                role: if recovery {
                    Role::Standby
                } else {
                    Role::Primary
                },
                lsn,
                error: None,
            },
            Err(e) => {
                self.client = None;
                Probe {
                    role: Role::Down,
                    lsn: 0,
                    error: Some(e),
                }
            }
        }
    }
}

async fn connect(
    cluster: &ClusterConfig,
    node: &NodeConfig,
    timeout: Duration,
) -> Result<tokio_postgres::Client, String> {
    let mut cfg = tokio_postgres::Config::new();
    cfg.host(&node.host)
        .port(node.port)
        .user(&cluster.superuser)
        .dbname(&cluster.probe_database)
        .application_name("pgsluice-pooler-probe")
        .connect_timeout(timeout);
    if let Some(pw) = &cluster.superuser_password {
        cfg.password(pw);
    }
    let (client, conn) = cfg
        .connect(tokio_postgres::NoTls)
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    Ok(client)
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
    history: &mut VecDeque<(u64, Instant)>,
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
    let samples: Vec<(u64, Instant)> = history.iter().copied().collect();
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
            let standby_lag = |lsn: u64| primary_lsn.map(|pl| pl.saturating_sub(lsn));
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
    let mut probers: HashMap<String, Prober> = HashMap::new();
    let mut history = VecDeque::new();
    loop {
        let config = ctx.config();
        let interval = config.pooler.probe_interval.max(Duration::from_millis(10));
        if let Some(cluster) = &config.cluster {
            let timeout = interval.max(Duration::from_secs(1));
            let started = Instant::now();
            let probes = probe_all(cluster, &mut probers, timeout).await;
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

/// Probes all nodes at once over their kept connections.
async fn probe_all(
    cluster: &ClusterConfig,
    probers: &mut HashMap<String, Prober>,
    timeout: Duration,
) -> Vec<(NodeConfig, Probe)> {
    let mut set = tokio::task::JoinSet::new();
    for n in &cluster.nodes {
        let mut prober = probers.remove(&n.name).unwrap_or_default();
        let (cluster, n) = (cluster.clone(), n.clone());
        set.spawn(async move {
            let p = prober.probe(&cluster, &n, timeout).await;
            (n, p, prober)
        });
    }
    let mut out = Vec::with_capacity(cluster.nodes.len());
    while let Some(r) = set.join_next().await {
        if let Ok((n, p, prober)) = r {
            probers.insert(n.name.clone(), prober);
            out.push((n, p));
        }
    }
    out.sort_by_key(|(n, _)| cluster.nodes.iter().position(|c| c.name == n.name));
    out
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
