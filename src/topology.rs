//! The cluster topology with its epoch: the single truth about who is primary (DESIGN.md, decision 1).
//!
//! The agent owns it and only ever replaces it with one of a higher epoch; poolers accept a
//! pushed topology only if its epoch is higher than the one they hold, send writes only to its
//! primary, and never use a fenced node.

use serde::{Deserialize, Serialize};

/// Who is primary, who streams from it, and who must never be written to, at one epoch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Topology {
    /// Monotonic version; the fencing token.
    pub epoch: u64,
    /// Name of the node that takes writes, if any.
    pub primary: Option<String>,
    /// Names of the nodes streaming from the primary.
    #[serde(default)]
    pub standbys: Vec<String>,
    /// Names of nodes that must not be used, whatever they claim to be.
    #[serde(default)]
    pub fenced: Vec<String>,
}

impl Topology {
    /// Whether `node` is fenced in this topology.
    pub fn is_fenced(&self, node: &str) -> bool {
        self.fenced.iter().any(|n| n == node)
    }

    /// Whether `node` may take writes under this topology.
    pub fn is_writable(&self, node: &str) -> bool {
        self.primary.as_deref() == Some(node) && !self.is_fenced(node)
    }

    /// Whether `other` may replace `self` (strictly higher epoch).
    pub fn superseded_by(&self, other: &Topology) -> bool {
        other.epoch > self.epoch
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fenced_primary_is_not_writable() {
        let t = Topology {
            epoch: 3,
            primary: Some("a".into()),
            standbys: vec!["b".into()],
            fenced: vec!["a".into()],
        };
        assert!(!t.is_writable("a"));
        assert!(!t.is_writable("b"));
        let newer = Topology {
            epoch: 4,
            primary: Some("b".into()),
            ..Default::default()
        };
        assert!(t.superseded_by(&newer));
        assert!(!newer.superseded_by(&t));
        assert!(newer.is_writable("b"));
    }

    #[test]
    fn json_round_trip() {
        let t = Topology {
            epoch: 1,
            primary: Some("n1".into()),
            standbys: vec!["n2".into()],
            fenced: vec![],
        };
        let s = serde_json::to_string(&t).unwrap();
        assert_eq!(serde_json::from_str::<Topology>(&s).unwrap(), t);
    }
}
