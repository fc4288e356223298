//! What the agent believes about each node: one probe's observations, LSN helpers and roles.

use serde::{Deserialize, Serialize};

pub use crate::lsn::Lsn;

/// A node's role as observed (not as the topology says).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Reachable and not in recovery.
    Primary,
    /// Reachable and in recovery.
    Standby,
    /// Not reachable in the last probe.
    Unknown,
}

impl Role {
    /// Lower-case spelling used in tables, metrics and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Primary => "primary",
            Role::Standby => "standby",
            Role::Unknown => "unknown",
        }
    }

    /// Number exported by the `pgsluice_agent_node_role` gauge.
    pub fn code(self) -> i64 {
        match self {
            Role::Unknown => 0,
            Role::Primary => 1,
            Role::Standby => 2,
        }
    }
}

/// The WAL receiver of a standby (`pg_stat_wal_receiver`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct WalReceiver {
    /// `streaming`, `starting`, `waiting`, ...
    pub status: String,
    /// Upstream host as the receiver sees it.
    pub sender_host: Option<String>,
    /// Upstream port.
    pub sender_port: Option<u16>,
    /// Timeline being received.
    pub received_tli: Option<u32>,
    /// Seconds since the last message from the upstream.
    pub last_msg_age_s: Option<f64>,
}

impl WalReceiver {
    /// Whether WAL is flowing from an upstream right now.
    pub fn is_streaming(&self) -> bool {
        self.status == "streaming"
    }
}

/// A replication slot (`pg_replication_slots`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Slot {
    /// Slot name.
    pub name: String,
    /// `physical` or `logical`.
    pub kind: String,
    /// Whether a receiver uses it now.
    pub active: bool,
    /// Oldest WAL position it pins.
    pub restart_lsn: Option<Lsn>,
}

/// A downstream seen in `pg_stat_replication`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Downstream {
    /// The standby's `application_name` (pgsluice sets it to the node name).
    pub application_name: String,
    /// `streaming`, `catchup`, ...
    pub state: String,
    /// Last WAL position sent.
    pub sent_lsn: Option<Lsn>,
    /// Last WAL position replayed by the standby.
    pub replay_lsn: Option<Lsn>,
    /// `replay_lag` in seconds.
    pub replay_lag_s: Option<f64>,
}

/// Everything one probe learnt about one node.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct NodeProbe {
    /// Node name from the configuration.
    pub name: String,
    /// Whether the probe connected and its queries answered within the timeout.
    pub reachable: bool,
    /// Why not, when not reachable.
    pub error: Option<String>,
    /// `pg_is_in_recovery()`.
    pub in_recovery: Option<bool>,
    /// Current timeline (insert timeline on a primary, received or checkpoint timeline on a standby).
    pub timeline: Option<u32>,
    /// `pg_current_wal_lsn()` (primary).
    pub current_lsn: Option<Lsn>,
    /// `pg_current_wal_flush_lsn()` (primary).
    pub flush_lsn: Option<Lsn>,
    /// `pg_last_wal_receive_lsn()` (standby).
    pub receive_lsn: Option<Lsn>,
    /// `pg_last_wal_replay_lsn()` (standby).
    pub replay_lsn: Option<Lsn>,
    /// Seconds since the last replayed transaction's commit (standby).
    pub replay_delay_s: Option<f64>,
    /// `default_transaction_read_only` (the agent's soft fence).
    pub read_only: Option<bool>,
    /// `synchronous_standby_names`.
    #[serde(default)]
    pub sync_names: Option<String>,
    /// The WAL receiver, when one runs.
    pub wal_receiver: Option<WalReceiver>,
    /// Replication slots on this node.
    #[serde(default)]
    pub slots: Vec<Slot>,
    /// Standbys streaming from this node.
    #[serde(default)]
    pub downstreams: Vec<Downstream>,
    /// Probe round trip in milliseconds.
    pub rtt_ms: Option<f64>,
}

impl NodeProbe {
    /// A failed probe.
    pub fn unreachable(name: &str, error: impl Into<String>) -> NodeProbe {
        NodeProbe {
            name: name.to_string(),
            error: Some(error.into()),
            ..NodeProbe::default()
        }
    }

    /// The observed role.
    pub fn role(&self) -> Role {
        match (self.reachable, self.in_recovery) {
            (true, Some(false)) => Role::Primary,
            (true, Some(true)) => Role::Standby,
            _ => Role::Unknown,
        }
    }

    /// The most advanced WAL position this node holds: received (or replayed) on a standby,
    /// flushed (or inserted) on a primary. This is the first election key.
    pub fn wal_position(&self) -> Option<Lsn> {
        if self.in_recovery == Some(false) {
            return self.flush_lsn.or(self.current_lsn);
        }
        match (self.receive_lsn, self.replay_lsn) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        }
    }

    /// Whether its WAL receiver is streaming right now.
    pub fn is_streaming(&self) -> bool {
        self.wal_receiver
            .as_ref()
            .is_some_and(WalReceiver::is_streaming)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn lsn_round_trip_and_order() {
        let a = Lsn::parse("0/3000060").unwrap();
        let b = Lsn::parse("1/0").unwrap();
        assert_eq!(a.to_string(), "0/3000060");
        assert_eq!(b.0, 1 << 32);
        assert!(b > a);
        assert_eq!(b.bytes_after(a), (1 << 32) - 0x300_0060);
        assert_eq!(a.bytes_after(b), 0);
        assert!(Lsn::parse("zz").is_none());
        assert!(Lsn::parse("100000000/0").is_none());
    }

    #[test]
    fn role_and_position() {
        let mut p = NodeProbe::unreachable("a", "refused");
        assert_eq!(p.role(), Role::Unknown);
        p.reachable = true;
        p.in_recovery = Some(true);
        p.receive_lsn = Lsn::parse("0/10");
        p.replay_lsn = Lsn::parse("0/20");
        assert_eq!(p.role(), Role::Standby);
        assert_eq!(p.wal_position(), Lsn::parse("0/20"));
        p.in_recovery = Some(false);
        p.flush_lsn = Lsn::parse("0/30");
        assert_eq!(p.wal_position(), Lsn::parse("0/30"));
    }
}
