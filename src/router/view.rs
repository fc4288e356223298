//! The pooler's view of a cluster's nodes as discovery last saw them: role, health, bans,
//! WAL positions and lag. Replaced whole at each probe round (readers take an `Arc`).

use crate::config::Routing;
use crate::lsn::Lsn;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A node's role as the last probe saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeRole {
    Primary,
    Standby,
    Down,
}

impl NodeRole {
    /// For SHOW NODES and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            NodeRole::Primary => "primary",
            NodeRole::Standby => "standby",
            NodeRole::Down => "down",
        }
    }
}

/// One node.
#[derive(Debug, Clone)]
pub struct NodeState {
    pub name: Arc<str>,
    pub role: NodeRole,
    /// `pg_current_wal_lsn()` on a primary, `pg_last_wal_replay_lsn()` on a standby.
    pub lsn: Lsn,
    /// WAL bytes behind the primary (standbys, when the primary is known).
    pub lag_bytes: Option<u64>,
    /// How long ago the primary had written what this standby has not replayed yet.
    pub lag_time: Option<Duration>,
    /// Left out until then (failed probe or connection).
    pub banned_until: Option<Instant>,
    /// Failed probes and connections since the node was last healthy.
    pub failures: u64,
    pub last_error: Option<String>,
    pub weight: u32,
    /// Fenced by the topology, or claims primary without being the topology's primary.
    pub fenced: bool,
}

impl NodeState {
    /// Whether the node is left out now.
    pub fn is_banned(&self, now: Instant) -> bool {
        self.banned_until.is_some_and(|t| t > now)
    }

    /// Whether the node answered as a standby.
    pub fn is_standby(&self) -> bool {
        self.role == NodeRole::Standby
    }
}

/// Every node of the cluster, and the primary's WAL position.
#[derive(Debug, Clone, Default)]
pub struct ClusterView {
    pub nodes: Vec<NodeState>,
    /// The primary's `pg_current_wal_lsn()` and when the poll that read it started.
    pub primary_lsn: Option<(Lsn, Instant)>,
    /// Probe rounds so far.
    pub round: u64,
}

impl ClusterView {
    /// Whether node `i` may serve reads now under `cfg` (lag ignoring the client's fence).
    pub fn usable_replica(&self, i: usize, cfg: &Routing, now: Instant) -> bool {
        let Some(n) = self.nodes.get(i) else {
            return false;
        };
        if !n.is_standby() || n.fenced || n.is_banned(now) {
            return false;
        }
        if cfg.max_replica_lag > 0 && n.lag_bytes.is_none_or(|l| l > cfg.max_replica_lag) {
            return false;
        }
        if !cfg.max_replica_lag_time.is_zero()
            && n.lag_time.is_none_or(|l| l > cfg.max_replica_lag_time)
        {
            return false;
        }
        true
    }

    /// The index of node `name`.
    pub fn index(&self, name: &str) -> Option<usize> {
        self.nodes.iter().position(|n| &*n.name == name)
    }
}

/// Lag in time of a standby that replayed up to `replay`, from the primary's recent
/// `(lsn, sampled at)` history (oldest first): the age of the oldest sample beyond `replay`,
/// zero when the standby has everything the newest sample shows.
pub fn lag_time(history: &[(Lsn, Instant)], replay: Lsn, now: Instant) -> Duration {
    match history.iter().find(|(lsn, _)| *lsn > replay) {
        Some((_, at)) => now.saturating_duration_since(*at),
        None => Duration::ZERO,
    }
}
