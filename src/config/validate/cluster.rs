//! `[cluster]` and `[[cluster.nodes]]`: the PostgreSQL nodes, described once for pooler and agent.

use super::check::Checker;
use crate::config::model::*;
use crate::config::raw::{RawCluster, RawNode};
use std::collections::HashSet;

/// Validates `[cluster]` and its nodes (names and endpoints unique).
pub(super) fn cluster(c: &mut Checker, rc: &RawCluster) -> ClusterConfig {
    let mut names = HashSet::new();
    let mut endpoints = HashSet::new();
    let mut nodes = Vec::with_capacity(rc.nodes.len());
    for (i, n) in rc.nodes.iter().enumerate() {
        let key = format!("cluster.nodes[{i}]");
        let node = node(c, &key, i, n);
        if !names.insert(node.name.clone()) {
            c.bad(
                format!("{key}.name"),
                format!("{:?} is used by another node", node.name),
                "node names are unique",
            );
        }
        if !endpoints.insert((node.host.clone(), node.port)) {
            c.bad(
                format!("{key}.port"),
                format!("{}:{} is used by another node", node.host, node.port),
                "",
            );
        }
        nodes.push(node);
    }
    if rc.nodes.is_empty() {
        c.bad(
            "cluster.nodes",
            "is empty",
            "add at least one [[cluster.nodes]]",
        );
    }
    ClusterConfig {
        name: c.nonempty("cluster.name", &rc.name),
        pg_bindir: c.path("cluster.pg_bindir", &rc.pg_bindir),
        superuser: c.nonempty("cluster.superuser", &rc.superuser),
        superuser_password: rc.superuser_password.clone(),
        replication_user: c.nonempty("cluster.replication_user", &rc.replication_user),
        replication_password: rc.replication_password.clone(),
        probe_database: c.nonempty("cluster.probe_database", &rc.probe_database),
        nodes,
    }
}

/// One `[[cluster.nodes]]` entry, the `i`-th.
fn node(c: &mut Checker, key: &str, i: usize, n: &RawNode) -> NodeConfig {
    let at = |field: &str| format!("{key}.{field}");
    let name = match n.name.as_deref() {
        Some(s)
            if !s.is_empty()
                && s.chars()
                    .all(|ch| ch.is_ascii_alphanumeric() || ch == '_' || ch == '-') =>
        {
            s.to_string()
        }
        Some(s) => {
            c.bad(
                at("name"),
                format!("{s:?} is not a node name"),
                "letters, digits, '-' and '_'",
            );
            format!("node{i}")
        }
        None => {
            c.bad(at("name"), "is missing", "every node needs a unique name");
            format!("node{i}")
        }
    };
    NodeConfig {
        name,
        host: c.nonempty(&at("host"), &n.host),
        port: c.port(&at("port"), n.port),
        data_dir: c.path(&at("data_dir"), &n.data_dir),
        priority: c.count(&at("priority"), n.priority) as u32,
        os_user: n.os_user.clone(),
        weight: c.count(&at("weight"), n.weight) as u32,
    }
}
