//! What every action needs: the configuration, the state store, the poolers, the metrics, and
//! the helpers to record an event, publish a topology and build conninfo strings.

use super::events::{run_hook, Event};
use super::fsm::{FsmConfig, NodeSpec, Round};
use super::heartbeat::{Pushed, Pushes};
use super::metrics::Metrics;
use super::pooler::{Outcome, Poolers};
use super::probe::Prober;
use super::sql::{conninfo_value, Conns, Rows, Target};
use super::store::{Persisted, StateStore};
use super::AgentError;
use crate::config::{AgentConfig, ClusterConfig, Config, NodeConfig};
use crate::topology::Topology;
use std::sync::Arc;
use std::time::Duration;

/// Shared by the agent loop, its HTTP server and the command-line verbs.
#[derive(Debug)]
pub struct Ctx<S> {
    /// `[cluster]`.
    pub cluster: ClusterConfig,
    /// `[agent]`.
    pub agent: AgentConfig,
    /// Durable state.
    pub store: Arc<S>,
    /// The poolers to push to.
    pub poolers: Poolers,
    /// Exported metrics.
    pub metrics: Metrics,
    /// Connections kept open to the nodes, shared by probes and actions.
    pub conns: Arc<Conns>,
    /// Warm failover: hot set, warmth, catch-up.
    pub warm: Arc<super::warmth::Warmer>,
    /// Serialised topology pushes and the heartbeat's topology.
    pub pushes: Arc<Pushes>,
}

/// The physical replication slot pgsluice keeps for `node` on its upstream (the node name,
/// lower-cased, with characters other than `[a-z0-9_]` replaced by `_`).
pub fn slot_name(node: &str) -> String {
    node.chars()
        .map(|c| {
            let c = c.to_ascii_lowercase();
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

impl<S: StateStore> Ctx<S> {
    /// A context for `config`, which must describe a cluster.
    pub fn new(config: &Config, store: Arc<S>) -> Result<Ctx<S>, AgentError> {
        let cluster = config
            .cluster
            .clone()
            .ok_or_else(|| AgentError::Refused("the configuration has no [cluster]".into()))?;
        let timeout = config.agent.probe_timeout.max(Duration::from_millis(500));
        let metrics = Metrics::new().map_err(|e| AgentError::Failed(e.to_string()))?;
        let warm =
            super::warmth::Warmer::new(cluster.clone(), config.agent.warm.clone(), metrics.clone());
        Ok(Ctx {
            poolers: Poolers::new(config.agent.poolers.clone(), timeout)
                .with_secret(config.control.secret_file.clone()),
            cluster,
            agent: config.agent.clone(),
            store,
            metrics,
            conns: Arc::default(),
            warm: Arc::new(warm),
            pushes: Arc::default(),
        })
    }

    /// The poolers' write lease the agent must respect before promoting: `None` when it is
    /// off (`topology_lease = 0`) or no pooler is managed (none listed, no etcd).
    pub fn write_lease(&self) -> Option<Duration> {
        let managed = !self.poolers.is_empty()
            || matches!(
                self.agent.state_store,
                crate::config::StateStoreConfig::Etcd(_)
            );
        (managed && !self.agent.topology_lease.is_zero()).then_some(self.agent.topology_lease)
    }

    /// The state machine's static inputs.
    pub fn fsm_config(&self) -> FsmConfig {
        FsmConfig {
            failure_threshold: self.agent.failure_threshold,
            failure_window_ms: self.agent.failure_window.as_millis() as u64,
            max_failover_lag: self.agent.max_failover_lag,
            auto_failover: self.agent.auto_failover,
            synchronous_standbys: self.agent.synchronous_standbys,
            nodes: self
                .cluster
                .nodes
                .iter()
                .map(|n| NodeSpec {
                    name: n.name.clone(),
                    host: n.host.clone(),
                    port: n.port,
                    priority: n.priority,
                })
                .collect(),
        }
    }

    /// A prober over every node sharing the context's connections.
    pub fn prober(&self) -> Prober {
        Prober::with_conns(
            Target::all(&self.cluster),
            self.agent.probe_timeout,
            self.conns.clone(),
        )
    }

    /// Runs `sql` on `node` over its kept connection.
    pub async fn sql(
        &self,
        node: &str,
        sql: &str,
        timeout: Duration,
    ) -> Result<Vec<Rows>, AgentError> {
        Ok(self.conns.query(&self.target(node)?, sql, timeout).await?)
    }

    /// Runs each statement in order on `node`.
    pub async fn sql_each(
        &self,
        node: &str,
        sqls: &[&str],
        timeout: Duration,
    ) -> Result<(), AgentError> {
        Ok(self.conns.each(&self.target(node)?, sqls, timeout).await?)
    }

    /// The first value `sql` returns on `node`.
    pub async fn scalar(
        &self,
        node: &str,
        sql: &str,
        timeout: Duration,
    ) -> Result<Option<String>, AgentError> {
        Ok(self.conns.scalar(&self.target(node)?, sql, timeout).await?)
    }

    /// Probes every node once.
    pub async fn probe_all(&self) -> Round {
        let mut prober = self.prober();
        Round {
            now_ms: 0,
            probes: prober.round().await,
            warmth: Default::default(),
        }
    }

    /// The configured node `name`.
    pub fn node(&self, name: &str) -> Result<&NodeConfig, AgentError> {
        self.cluster
            .node(name)
            .ok_or_else(|| AgentError::Refused(format!("no node named {name:?} in [cluster]")))
    }

    /// The superuser SQL target of `name`.
    pub fn target(&self, name: &str) -> Result<Target, AgentError> {
        Ok(Target::of(&self.cluster, self.node(name)?))
    }

    /// Timeout for one administrative statement (longer than a probe).
    pub fn sql_timeout(&self) -> Duration {
        (self.agent.probe_timeout * 5).max(Duration::from_secs(5))
    }

    /// The `primary_conninfo` for `standby` streaming from `upstream`.
    pub fn replication_conninfo(
        &self,
        upstream: &str,
        standby: &str,
    ) -> Result<String, AgentError> {
        let (mut s, password) = self.replication_source(upstream, standby)?;
        if let Some(p) = password {
            s.push_str(&format!(" password={}", conninfo_value(&p)));
        }
        Ok(s)
    }

    /// [`Ctx::replication_conninfo`] without the password, and the password apart (for
    /// pg_basebackup, which gets it through a private `PGPASSFILE`).
    pub fn replication_source(
        &self,
        upstream: &str,
        standby: &str,
    ) -> Result<(String, Option<String>), AgentError> {
        let n = self.node(upstream)?;
        let s = format!(
            "host={} port={} user={} application_name={}",
            conninfo_value(&n.host),
            n.port,
            conninfo_value(&self.cluster.replication_user),
            conninfo_value(standby)
        );
        Ok((s, self.cluster.replication_password.clone()))
    }

    /// A superuser conninfo for `node` without the password, and the password apart
    /// (pg_rewind's source; the password goes through a private `PGPASSFILE`).
    pub fn superuser_source(&self, node: &str) -> Result<(String, Option<String>), AgentError> {
        let n = self.node(node)?;
        let s = format!(
            "host={} port={} user={} dbname={}",
            conninfo_value(&n.host),
            n.port,
            conninfo_value(&self.cluster.superuser),
            conninfo_value(&self.cluster.probe_database)
        );
        Ok((s, self.cluster.superuser_password.clone()))
    }

    /// Records an event: log, store, hook. A store failure is logged, never fatal.
    pub async fn record(
        &self,
        kind: &str,
        node: Option<&str>,
        details: impl Into<String>,
        epoch: u64,
    ) {
        let e = Event::now(kind, node, details, epoch);
        tracing::info!(kind = %e.kind, node = e.node.as_deref().unwrap_or("-"), epoch, "{}", e.details);
        if let Err(err) = self.store.append_event(&e).await {
            tracing::error!(error = %err, "could not record event");
        }
        if let Some(cmd) = &self.agent.event_command {
            run_hook(cmd, &e);
        }
    }

    /// The one "save, then publish" step: stores `next` over `expected_epoch` (the store's
    /// compare-and-swap; a lost race is an error and nothing is pushed), then pushes its
    /// topology to every pooler.
    ///
    /// # Errors
    /// The store refused or failed; the poolers were not told.
    pub async fn commit(&self, expected_epoch: u64, next: Persisted) -> Result<Pushed, AgentError> {
        self.store.save(expected_epoch, &next).await?;
        Ok(self.publish(&next.topology).await)
    }

    /// Pushes `topology` to every pooler; each pooler that does not accept it is an event.
    pub async fn publish(&self, topology: &Topology) -> Pushed {
        self.metrics.set_epoch(topology.epoch);
        let pushed = self.pushes.push(&self.poolers, topology).await;
        for r in pushed.replies.clone() {
            match r.outcome {
                Outcome::Ok => {}
                Outcome::Stale => {
                    let d = format!("{} already holds epoch >= {}", r.url, topology.epoch);
                    self.record("pooler_stale", None, d, topology.epoch).await;
                }
                other => {
                    let d = format!("{}: {other:?}", r.url);
                    self.record("pooler_unreachable", None, d, topology.epoch)
                        .await;
                }
            }
        }
        pushed
    }

    /// Pushes `topology` again without recording anything (taking charge); the heartbeat
    /// then renews it.
    pub async fn republish(&self, topology: &Topology) {
        if topology.epoch == 0 {
            return; // nothing adopted yet: leave the poolers to their own discovery
        }
        for r in self.pushes.push(&self.poolers, topology).await.replies {
            if let Outcome::Failed(why) = r.outcome {
                tracing::debug!(url = %r.url, %why, "pooler did not take the topology");
            }
        }
    }

    /// Sets `synchronous_standby_names` on `node` and reloads it.
    pub async fn set_sync(&self, node: &str, value: &str, epoch: u64) -> Result<(), AgentError> {
        let set = format!(
            "ALTER SYSTEM SET synchronous_standby_names = {}",
            super::sql::literal(value)
        );
        self.sql_each(node, &[&set, "SELECT pg_reload_conf()"], self.sql_timeout())
            .await?;
        self.record(
            "synchronous_standbys_set",
            Some(node),
            format!("synchronous_standby_names = '{value}'"),
            epoch,
        )
        .await;
        Ok(())
    }

    /// Creates `standby`'s physical slot on `upstream` if missing (pitfall 6).
    pub async fn ensure_slot(&self, upstream: &str, standby: &str) -> Result<(), AgentError> {
        let slot = super::sql::literal(&slot_name(standby));
        let sql = format!(
            "SELECT pg_create_physical_replication_slot({slot}, true) WHERE NOT EXISTS \
             (SELECT 1 FROM pg_replication_slots WHERE slot_name = {slot})"
        );
        self.sql(upstream, &sql, self.sql_timeout()).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slot_names_are_valid() {
        assert_eq!(slot_name("node2"), "node2");
        assert_eq!(slot_name("DB-East.1"), "db_east_1");
    }
}
