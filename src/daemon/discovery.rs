//! The pooler's own view of the cluster: probes every node for its role, so that it works
//! without an agent and follows a promotion done by hand (DESIGN.md, decision 2).
//!
//! A topology pushed by an agent (epoch > 0) wins over discovery while its primary answers as
//! a primary; a fenced node is never chosen, whatever it claims.

use crate::config::{ClusterConfig, NodeConfig};
use crate::session::SessionCtx;
use crate::topology::Topology;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// What one probe learned of a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Primary,
    Standby,
    Down,
}

/// Asks a node whether it is in recovery.
pub async fn probe(cluster: &ClusterConfig, node: &NodeConfig, timeout: Duration) -> Role {
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
    let work = async {
        let (client, conn) = cfg.connect(tokio_postgres::NoTls).await.ok()?;
        tokio::spawn(conn);
        let row = client
            .query_one("select pg_is_in_recovery()", &[])
            .await
            .ok()?;
        row.try_get::<_, bool>(0).ok()
    };
    match tokio::time::timeout(timeout, work).await {
        Ok(Some(false)) => Role::Primary,
        Ok(Some(true)) => Role::Standby,
        _ => Role::Down,
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

/// Probes every `interval` until `stop`, installing the primary it finds.
pub async fn run(ctx: Arc<SessionCtx>, interval: Duration, stop: CancellationToken) {
    loop {
        let config = ctx.config();
        if let Some(cluster) = &config.cluster {
            let probes = cluster.nodes.iter().map(|n| async move {
                (
                    n.clone(),
                    probe(cluster, n, interval.max(Duration::from_secs(1))).await,
                )
            });
            let roles = futures_join_all(probes).await;
            let (topology, current) = ctx.topology();
            let chosen = choose(&topology, &roles);
            if chosen.is_some()
                && chosen.as_ref().map(|n| &n.name) != current.as_ref().map(|n| &n.name)
            {
                tracing::info!(primary = ?chosen.as_ref().map(|n| &n.name), "primary discovered");
                ctx.set_topology(topology, chosen);
            }
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(interval) => {}
        }
    }
}

async fn futures_join_all<F: std::future::Future>(futs: impl Iterator<Item = F>) -> Vec<F::Output> {
    let handles: Vec<_> = futs.collect();
    let mut out = Vec::with_capacity(handles.len());
    for f in handles {
        out.push(f.await);
    }
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
