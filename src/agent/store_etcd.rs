//! The state in etcd, for several agents (`agent.state_store = "etcd"`). Keys under
//! `agent.etcd_prefix` (`P`):
//!
//! | key | value |
//! |---|---|
//! | `P/topology` | the topology and the action in flight (JSON of [`Persisted`]); poolers watch it |
//! | `P/leader` | the leading agent ([`AgentInfo`]), attached to its lease |
//! | `P/agents/<name>` | every running agent, attached to its own lease |
//! | `P/events/<ms>-<agent>-<n>` | one event each, naming the agent that recorded it |
//! | `P/docs/<name>` | small documents such as the latest hot set |
//!
//! Every write of `P/topology` (and of a document) is one transaction that holds only if the
//! leader key still has this agent's fencing revision and the topology key was not changed
//! since it was read: the epoch check is a compare-and-swap, and a deposed leader cannot write.

use super::events::Event;
use super::lease::{AgentInfo, Leadership};
use super::store::{Persisted, StateStore, StoreError};
use crate::etcd::{Cmp, EtcdClient, EtcdSettings, Op};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How many events are kept; older ones are deleted as new ones come.
pub const EVENTS_KEPT: usize = 10_000;

/// The state store in etcd.
#[derive(Debug)]
pub struct EtcdStore {
    client: Arc<EtcdClient>,
    prefix: String,
    lead: Option<Arc<Leadership>>,
    stop: CancellationToken,
    seq: AtomicU64,
}

impl Drop for EtcdStore {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// The key holding the topology (and the action in flight) under `prefix` (the same as
/// [`crate::config::EtcdConfig::topology_key`]).
pub fn topology_key(prefix: &str) -> String {
    format!("{prefix}topology")
}

fn corrupt(key: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt {
        path: key.to_string(),
        message: e.to_string(),
    }
}

impl EtcdStore {
    /// A store for agent `me`, whose ticker renews its lease and campaigns until the store is
    /// dropped or [`StateStore::release`] is called. Must run inside a tokio runtime.
    pub fn open(settings: EtcdSettings, prefix: &str, me: AgentInfo, ttl: Duration) -> Self {
        let client = Arc::new(EtcdClient::new(settings));
        let lead = Arc::new(Leadership::new(client.clone(), prefix, me, ttl));
        let stop = CancellationToken::new();
        tokio::spawn(lead.clone().run(stop.clone()));
        EtcdStore {
            client,
            prefix: prefix.to_string(),
            lead: Some(lead),
            stop,
            seq: AtomicU64::new(0),
        }
    }

    /// A store that only reads (`status`, `events`): it never leads, so it cannot write state.
    pub fn read_only(settings: EtcdSettings, prefix: &str) -> Self {
        EtcdStore {
            client: Arc::new(EtcdClient::new(settings)),
            prefix: prefix.to_string(),
            lead: None,
            stop: CancellationToken::new(),
            seq: AtomicU64::new(0),
        }
    }

    /// The client (for membership reads).
    pub fn client(&self) -> &EtcdClient {
        &self.client
    }

    /// The key prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    fn fence(&self) -> Result<i64, StoreError> {
        self.lead
            .as_ref()
            .and_then(|l| l.fence())
            .ok_or_else(|| StoreError::NotLeader("this agent does not hold the etcd lease".into()))
    }

    /// Writes `value` at `key` if this agent still leads and `key` was last changed at
    /// `mod_rev` (0 = absent). Returns whether it was written; NotLeader if deposed.
    async fn guarded_put(&self, key: &str, mod_rev: i64, value: &[u8]) -> Result<bool, StoreError> {
        let fence = self.fence()?;
        let leader = Leadership::leader_key(&self.prefix);
        let r = self
            .client
            .txn(
                vec![
                    Cmp::create_revision(&leader, fence),
                    Cmp::mod_revision(key, mod_rev),
                ],
                vec![Op::put(key, value, 0)],
                vec![Op::get(&leader)],
            )
            .await?;
        if r.succeeded {
            return Ok(true);
        }
        match r.reads.first().and_then(Option::as_ref) {
            Some(kv) if kv.create_revision == fence => Ok(false),
            _ => Err(StoreError::NotLeader(
                "the etcd leader key changed: another agent leads".into(),
            )),
        }
    }

    async fn trim_events(&self) -> Result<(), StoreError> {
        let prefix = format!("{}events/", self.prefix);
        let all = self.client.list(&prefix, 0, 0).await?;
        if all.len() > EVENTS_KEPT {
            let first_kept = &all[all.len() - EVENTS_KEPT].key;
            self.client.delete_range(&prefix, first_kept).await?;
        }
        Ok(())
    }
}

impl StateStore for EtcdStore {
    async fn load(&self) -> Result<Persisted, StoreError> {
        let key = topology_key(&self.prefix);
        match self.client.get(&key).await?.0 {
            Some(kv) => serde_json::from_slice(&kv.value).map_err(|e| corrupt(&key, e)),
            None => Ok(Persisted::default()),
        }
    }

    async fn save(&self, expected_epoch: u64, next: &Persisted) -> Result<(), StoreError> {
        let key = topology_key(&self.prefix);
        let value = serde_json::to_vec(next).map_err(|e| corrupt(&key, e))?;
        loop {
            let (cur, _) = self.client.get(&key).await?;
            let found = match &cur {
                Some(kv) => {
                    serde_json::from_slice::<Persisted>(&kv.value)
                        .map_err(|e| corrupt(&key, e))?
                        .topology
                        .epoch
                }
                None => 0,
            };
            if found != expected_epoch {
                return Err(StoreError::EpochMoved {
                    expected: expected_epoch,
                    found,
                });
            }
            let mod_rev = cur.map_or(0, |kv| kv.mod_revision);
            if self.guarded_put(&key, mod_rev, &value).await? {
                return Ok(());
            }
            // Changed between the read and the write: read again and compare the epoch.
        }
    }

    async fn append_event(&self, event: &Event) -> Result<(), StoreError> {
        let mut e = event.clone();
        let name = self.lead.as_ref().map_or("cli", |l| l.name()).to_string();
        e.agent = Some(name.clone());
        let n = self.seq.fetch_add(1, Ordering::Relaxed);
        let key = format!("{}events/{:013}-{name}-{n:06}", self.prefix, e.unix_ms);
        let value = serde_json::to_vec(&e).map_err(|err| corrupt(&key, err))?;
        self.client.put(&key, &value, 0).await?;
        if n % 256 == 255 {
            self.trim_events().await?;
        }
        Ok(())
    }

    async fn events(&self, from: u64) -> Result<(Vec<Event>, u64), StoreError> {
        let prefix = format!("{}events/", self.prefix);
        let kvs = self.client.list(&prefix, from as i64, 0).await?;
        let next = kvs
            .iter()
            .map(|kv| kv.create_revision as u64 + 1)
            .max()
            .unwrap_or(from);
        let mut out: Vec<Event> = kvs
            .iter()
            .filter_map(|kv| serde_json::from_slice(&kv.value).ok())
            .collect();
        out.sort_by_key(|e: &Event| e.unix_ms);
        Ok((out, next))
    }

    async fn put_doc(&self, name: &str, doc: &serde_json::Value) -> Result<(), StoreError> {
        let key = format!("{}docs/{name}", self.prefix);
        let value = serde_json::to_vec(doc).map_err(|e| corrupt(&key, e))?;
        loop {
            let mod_rev = self
                .client
                .get(&key)
                .await?
                .0
                .map_or(0, |kv| kv.mod_revision);
            if self.guarded_put(&key, mod_rev, &value).await? {
                return Ok(());
            }
        }
    }

    async fn get_doc(&self, name: &str) -> Result<Option<serde_json::Value>, StoreError> {
        let key = format!("{}docs/{name}", self.prefix);
        match self.client.get(&key).await?.0 {
            Some(kv) => Ok(Some(
                serde_json::from_slice(&kv.value).map_err(|e| corrupt(&key, e))?,
            )),
            None => Ok(None),
        }
    }

    fn may_act(&self) -> bool {
        self.lead.as_ref().is_some_and(|l| l.is_leader())
    }

    fn may_renew(&self) -> bool {
        self.lead.as_ref().is_some_and(|l| l.may_renew())
    }

    fn agent_name(&self) -> Option<String> {
        self.lead.as_ref().map(|l| l.name().to_string())
    }

    async fn release(&self) {
        self.stop.cancel();
        if let Some(l) = &self.lead {
            l.resign().await;
        }
    }
}
