//! The cluster truth of one pooler and its one way in.
//!
//! [`ClusterTruth`] bundles the topology of the highest epoch seen, the node that takes writes
//! under it, and the discovery view (roles, LSNs, lag, bans). Every source goes through here:
//! the agent's HTTP push and the etcd watch call [`Backend::apply`] (epoch-ordered), the
//! pooler's own discovery calls [`Backend::propose_primary`] (followed only while no agent
//! topology is held, epoch 0) and [`Backend::set_cluster_view`]. Applying a topology re-points
//! or suspends the pools before it returns, so that no transaction starting afterwards reaches
//! a fenced node or a former primary.

use super::clients::CloseReason;
use super::Backend;
use crate::config::{Backend as DbBackend, Config, NodeConfig};
use crate::pool::Pool;
use crate::router::ClusterView;
use crate::topology::Topology;
use std::sync::{Arc, MutexGuard};
use std::time::Instant;

/// What one pooler believes about its cluster now.
#[derive(Debug, Clone, Default)]
pub struct ClusterTruth {
    /// The topology of the highest epoch seen (epoch 0: none from an agent; discovery's own).
    pub topology: Topology,
    /// The node writes go to, if any (never a fenced node).
    pub primary: Option<NodeConfig>,
    /// Roles, WAL positions, lag and bans of the nodes (discovery, the router).
    pub view: Arc<ClusterView>,
}

impl ClusterTruth {
    /// Before any probe or push: the first configured node is presumed primary (epoch 0).
    pub fn initial(config: &Config) -> Self {
        let primary = config
            .cluster
            .as_ref()
            .and_then(|c| c.nodes.first().cloned());
        Self {
            topology: Topology {
                primary: primary.as_ref().map(|n| n.name.clone()),
                ..Topology::default()
            },
            primary,
            view: Arc::default(),
        }
    }
}

impl Backend {
    /// Closes the clients whose transaction runs on a connection of `pool`, whose node was
    /// just fenced or stopped being the primary (after the pool stopped handing out more).
    fn close_attached(&self, pool: &Arc<Pool>) {
        let n = self.clients.close_attached(pool.id(), CloseReason::Fenced);
        if n > 0 {
            tracing::warn!(
                database = %pool.database,
                user = %pool.user,
                clients = n,
                "closing clients attached to a fenced node"
            );
        }
    }
}

/// Why a topology was not applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApplyError {
    /// Its epoch is not above the one held.
    #[error("epoch {offered} is not above {held}")]
    Stale { offered: u64, held: u64 },
    /// It names a primary the configuration does not list.
    #[error("unknown node {0:?}")]
    UnknownNode(String),
}

impl Backend {
    /// The cluster truth in force (one reference count).
    pub fn truth(&self) -> Arc<ClusterTruth> {
        self.truth.load_full()
    }

    /// The topology in force and the node that takes writes.
    pub fn topology(&self) -> (Topology, Option<NodeConfig>) {
        let t = self.truth.load();
        (t.topology.clone(), t.primary.clone())
    }

    /// The node view discovery published last (SHOW NODES, metrics, the router).
    pub fn cluster_view(&self) -> Arc<ClusterView> {
        self.truth.load().view.clone()
    }

    fn writer(&self) -> MutexGuard<'_, ()> {
        match self.apply_lock.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    /// Installs an agent's topology (HTTP push, etcd watch) if its epoch is above the one held
    /// (any epoch replaces discovery's epoch 0). Before it returns, the writer pools point at
    /// the new primary, or are suspended when there is none, and read pools of fenced nodes
    /// are suspended: no transaction that starts afterwards reaches a fenced node.
    ///
    /// # Errors
    /// A stale epoch or an unknown primary; nothing changes then.
    pub fn apply(&self, t: Topology) -> Result<(), ApplyError> {
        let _w = self.writer();
        let current = self.truth.load_full();
        if current.topology.epoch > 0 && !current.topology.superseded_by(&t) {
            return Err(ApplyError::Stale {
                offered: t.epoch,
                held: current.topology.epoch,
            });
        }
        let config = self.config.load_full();
        let primary = match (&config.cluster, &t.primary) {
            (Some(c), Some(p)) if !t.is_fenced(p) => match c.node(p) {
                Some(n) => Some(n.clone()),
                None => return Err(ApplyError::UnknownNode(p.clone())),
            },
            _ => None,
        };
        let mut view = (*current.view).clone();
        for n in &mut view.nodes {
            n.fenced = t.is_fenced(&n.name);
        }
        self.install(
            &config,
            ClusterTruth {
                topology: t,
                primary,
                view: Arc::new(view),
            },
        );
        Ok(())
    }

    /// Discovery's proposal of the node that answers as the primary. Followed only while no
    /// agent topology is held (epoch 0: a pooler without an agent follows a promotion done by
    /// hand); under an agent's topology only an epoch-ordered [`Backend::apply`] moves writes.
    /// Returns whether the primary changed.
    pub fn propose_primary(&self, seen: Option<NodeConfig>) -> bool {
        let _w = self.writer();
        let current = self.truth.load_full();
        let Some(seen) = seen else { return false };
        if current.topology.epoch > 0
            || current.primary.as_ref().map(|n| &n.name) == Some(&seen.name)
        {
            return false;
        }
        let config = self.config.load_full();
        let topology = Topology {
            primary: Some(seen.name.clone()),
            ..current.topology.clone()
        };
        self.install(
            &config,
            ClusterTruth {
                topology,
                primary: Some(seen),
                view: current.view.clone(),
            },
        );
        true
    }

    /// Publishes a new node view (discovery); topology and primary are kept.
    pub fn set_cluster_view(&self, view: ClusterView) {
        let _w = self.writer();
        let current = self.truth.load_full();
        self.truth.store(Arc::new(ClusterTruth {
            view: Arc::new(view),
            ..(*current).clone()
        }));
    }

    /// Leaves node `name` out of reads until `until` (a connection to it failed).
    pub fn ban_node(&self, name: &str, until: Instant, why: String) {
        let _w = self.writer();
        let current = self.truth.load_full();
        let mut view = (*current.view).clone();
        let Some(i) = view.index(name) else { return };
        let n = &mut view.nodes[i];
        n.banned_until = Some(until);
        n.failures += 1;
        n.last_error = Some(why);
        self.truth.store(Arc::new(ClusterTruth {
            view: Arc::new(view),
            ..(*current).clone()
        }));
    }

    /// Stores `truth`, then re-points or suspends every pool it concerns (called with the
    /// writer lock held, so that two applies cannot interleave their pool updates); a writer
    /// pool re-pointed at a promoted standby takes that standby's spares.
    fn install(&self, config: &Config, truth: ClusterTruth) {
        let truth = Arc::new(truth);
        self.truth.store(truth.clone());
        self.writer.installed(&truth.topology);
        for pool in self.pools.writer_pools() {
            let Some(db) = config.database(&pool.database) else {
                continue;
            };
            if db.backend != DbBackend::Cluster {
                continue;
            }
            let moved = match &truth.primary {
                Some(node) => {
                    let moved = *pool.spec().node != *node.name;
                    pool.retarget(self.spec_on(config, &db, &pool.user, node));
                    if moved {
                        self.hand_over_spares(&pool, &node.name);
                    }
                    moved
                }
                None => {
                    pool.suspend();
                    true
                }
            };
            if moved {
                self.close_attached(&pool);
            }
        }
        for (node, pool) in self.pools.node_pools() {
            if truth.topology.is_fenced(&node) {
                pool.suspend();
                self.close_attached(&pool);
            } else if pool.is_suspended() {
                pool.resume();
            }
        }
    }
}
