//! Configurations unit tests across modules share.

/// A cluster database `app` on a two-node `[cluster]` (`a` on port 5001, `b` on 5002) and a
/// direct database `direct`.
pub const TWO_NODE_CLUSTER: &str = r#"
[databases.app]
[databases.direct]
host = "127.0.0.1"
port = 5432
[cluster]
name = "c"
[[cluster.nodes]]
name = "a"
port = 5001
[[cluster.nodes]]
name = "b"
port = 5002
"#;
