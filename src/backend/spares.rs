//! Connections kept open on the standbys that may be promoted, and handing them to the writer
//! pool at a promotion, so that the new primary serves writes at once
//! (`pooler.standby_spares`, docs/failover.md section 11).
//!
//! The spares are idle connections of the standby's read pool (the pool reads go to anyway),
//! opened by the janitor for every writer pool of a cluster database. When a topology names
//! one of those standbys primary, [`Backend::apply`] moves its read pool's idle connections
//! into the writer pool before it returns; each is checked out of recovery before its first
//! use ([`crate::server::ServerConn::out_of_recovery`]).

use super::{Backend, ClusterTruth, Target};
use crate::config::{Backend as DbBackend, Config};
use crate::pool::Pool;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Instant;

impl Backend {
    /// Janitor pass: every writer pool of a cluster database keeps `pooler.standby_spares`
    /// connections open on each standby that may be promoted; other read pools keep none.
    pub fn keep_spares(&self) {
        let config = self.config.load_full();
        let truth = self.truth.load_full();
        let n = config.pooler.standby_spares;
        let nodes = if n == 0 {
            Vec::new()
        } else {
            candidates(&config, &truth, Instant::now())
        };
        let mut kept = HashSet::new();
        for writer in self.pools.writer_pools() {
            let Some(db) = config.database(&writer.database) else {
                continue;
            };
            if db.backend != DbBackend::Cluster || writer.is_closed() {
                continue;
            }
            for node in &nodes {
                if let Some(p) = self.pool(&db, &writer.user, Target::Standby(node)) {
                    p.set_spares(n);
                    kept.insert(p.id());
                }
            }
        }
        for (_, p) in self.pools.node_pools() {
            if !kept.contains(&p.id()) {
                p.set_spares(0);
            }
        }
    }

    /// Moves the idle connections of `writer`'s read pool on `node` (just named primary) into
    /// `writer`, as many as it has room for. Called by `install` with the writer lock held,
    /// after `writer` was re-pointed at `node`.
    pub(super) fn hand_over_spares(&self, writer: &Arc<Pool>, node: &str) {
        let from = self
            .pools
            .node_pools()
            .into_iter()
            .find(|(n, p)| n == node && p.database == writer.database && p.user == writer.user);
        let Some((_, from)) = from else { return };
        let room = {
            let (_, total) = writer.counts();
            writer.settings().size.saturating_sub(total)
        };
        let mut moved = 0;
        for conn in from.lend_idle(room) {
            match writer.take_over(conn) {
                None => moved += 1,
                Some(back) => from.release(back),
            }
        }
        if moved > 0 {
            tracing::info!(
                database = %writer.database,
                user = %writer.user,
                node,
                connections = moved,
                "standby spares handed to the writer pool"
            );
        }
    }
}

/// The standbys that may be promoted: standbys in the node view (and in the topology, when an
/// agent names them), not fenced, not banned, with priority > 0, other than the primary.
fn candidates(config: &Config, truth: &ClusterTruth, now: Instant) -> Vec<String> {
    let Some(cluster) = &config.cluster else {
        return Vec::new();
    };
    let t = &truth.topology;
    let primary = truth.primary.as_ref().map(|n| n.name.as_str());
    truth
        .view
        .nodes
        .iter()
        .filter(|s| s.is_standby() && !s.fenced && !s.is_banned(now))
        .map(|s| &*s.name)
        .filter(|name| Some(*name) != primary && !t.is_fenced(name))
        .filter(|name| t.standbys.is_empty() || t.standbys.iter().any(|s| s == name))
        .filter(|name| cluster.node(name).is_some_and(|n| n.priority > 0))
        .map(str::to_string)
        .collect()
}
