//! The agent's SQL connections to the nodes: the shared `probe::conn` types, as the agent names
//! them (its `application_name` is `pgsluice-agent`), and the quoting its actions use.

use crate::config::{ClusterConfig, NodeConfig};

pub use crate::probe::conn::{run_query, Conns, Rows, SqlError, Target};
// The agent's actions quote through the crate's one quoting module; these names keep them short.
pub use crate::quote::{conninfo_value, sql_literal as literal};

/// The agent's `application_name` on every node (switchover's drain leaves these sessions out).
pub const APPLICATION_NAME: &str = "pgsluice-agent";

impl Target {
    /// The agent's target for `node` of `cluster`, as its superuser.
    pub fn of(cluster: &ClusterConfig, node: &NodeConfig) -> Target {
        Target::new(cluster, node, APPLICATION_NAME)
    }

    /// The agent's targets: every node of `cluster`.
    pub fn all(cluster: &ClusterConfig) -> Vec<Target> {
        cluster
            .nodes
            .iter()
            .map(|n| Target::of(cluster, n))
            .collect()
    }
}
