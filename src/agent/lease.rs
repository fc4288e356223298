//! Leader election among agents over etcd: every agent holds a lease of `lease_ttl` seconds
//! and registers itself under `<prefix>agents/<name>`; the leader is whoever created
//! `<prefix>leader` (attached to its lease). The creation revision of that key is the
//! leadership's fencing revision: every write of the state is a transaction that holds only
//! while the leader key still has that revision, so a deposed leader cannot write.
//!
//! A background ticker renews the lease every [`tick_interval`] and campaigns when there is
//! no leader. Any failed etcd request ends the leadership at once (before the lease can
//! expire on etcd's side); the leadership is also never trusted beyond `sent + ttl`, where
//! `sent` is when the last successful renewal was sent.

use crate::etcd::{Cmp, EtcdClient, EtcdError, Op};
use serde::{Deserialize, Serialize};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// What an agent publishes about itself (its registration and, when it leads, the leader key).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentInfo {
    /// `agent.name`.
    pub name: String,
    /// `agent.listen` (where its HTTP endpoint and the verbs reach it).
    pub listen: String,
    /// When it started (ms since the Unix epoch).
    pub started_unix_ms: u64,
}

/// The agents, the leader and its lease, as read from etcd (for `status`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Membership {
    /// Every registered agent (their lease is alive).
    pub agents: Vec<AgentInfo>,
    /// The leader, if any.
    pub leader: Option<AgentInfo>,
    /// The leader's lease id.
    pub lease_id: i64,
    /// Seconds left on the leader's lease.
    pub lease_ttl_left: Option<i64>,
    /// The leadership's fencing revision (creation revision of the leader key).
    pub leader_revision: i64,
}

/// How often the lease is renewed and leadership is campaigned for.
pub fn tick_interval(ttl: Duration) -> Duration {
    (ttl / 3).min(Duration::from_millis(500))
}

#[derive(Debug, Default)]
struct LeaseState {
    lease: i64,
    registered: i64,
    leader_rev: i64,
    valid_until: Option<Instant>,
    /// The last answer etcd gave said this agent leads (kept while etcd fails to answer).
    led_last: bool,
}

/// This agent's lease and leadership.
#[derive(Debug)]
pub struct Leadership {
    client: Arc<EtcdClient>,
    prefix: String,
    me: AgentInfo,
    ttl: Duration,
    state: Mutex<LeaseState>,
}

impl Leadership {
    /// The leadership of agent `me` under `prefix` (nothing is done until [`Leadership::tick`]).
    pub fn new(client: Arc<EtcdClient>, prefix: &str, me: AgentInfo, ttl: Duration) -> Self {
        Leadership {
            client,
            prefix: prefix.to_string(),
            me,
            ttl,
            state: Mutex::new(LeaseState::default()),
        }
    }

    /// The key whose creator leads.
    pub fn leader_key(prefix: &str) -> String {
        format!("{prefix}leader")
    }

    /// This agent's name.
    pub fn name(&self) -> &str {
        &self.me.name
    }

    /// The fencing revision while this agent leads (None otherwise).
    pub fn fence(&self) -> Option<i64> {
        let s = self.state.lock().ok()?;
        let valid = s.valid_until.is_some_and(|t| Instant::now() < t);
        (s.leader_rev > 0 && valid).then_some(s.leader_rev)
    }

    /// Whether this agent leads right now.
    pub fn is_leader(&self) -> bool {
        self.fence().is_some()
    }

    /// Whether this agent may keep renewing the poolers' write lease: it leads, or etcd's
    /// last answer said it led and etcd has not answered since (no other leader seen).
    pub fn may_renew(&self) -> bool {
        self.is_leader() || self.state.lock().is_ok_and(|s| s.led_last)
    }

    fn update(&self, f: impl FnOnce(&mut LeaseState)) {
        if let Ok(mut s) = self.state.lock() {
            f(&mut s);
        }
    }

    /// Renews (or grants) the lease, registers, campaigns. Returns whether this agent leads.
    /// Any failure ends the leadership at once.
    pub async fn tick(&self) -> Result<bool, EtcdError> {
        let r = self.tick_inner().await;
        if r.is_err() {
            self.update(|s| s.leader_rev = 0);
        }
        r
    }

    async fn tick_inner(&self) -> Result<bool, EtcdError> {
        let sent = Instant::now();
        let lease = self.renew().await?;
        let registered = self.state.lock().map(|s| s.registered).unwrap_or(0);
        let info = serde_json::to_vec(&self.me).map_err(|e| EtcdError::Bad(e.to_string()))?;
        if registered != lease {
            let key = format!("{}agents/{}", self.prefix, self.me.name);
            self.client.put(&key, &info, lease).await?;
            self.update(|s| s.registered = lease);
        }
        let key = Self::leader_key(&self.prefix);
        let r = self
            .client
            .txn(
                vec![Cmp::create_revision(&key, 0)],
                vec![Op::put(&key, &info, lease)],
                vec![Op::get(&key)],
            )
            .await?;
        let rev = if r.succeeded {
            r.revision
        } else {
            match r.reads.first().and_then(Option::as_ref) {
                Some(kv) if kv.lease == lease => kv.create_revision,
                _ => 0,
            }
        };
        self.update(|s| {
            s.leader_rev = rev;
            s.valid_until = Some(sent + self.ttl);
            s.led_last = rev > 0;
        });
        Ok(rev > 0)
    }

    /// Keeps the current lease alive, or grants a new one when there is none or it expired.
    async fn renew(&self) -> Result<i64, EtcdError> {
        let current = self.state.lock().map(|s| s.lease).unwrap_or(0);
        if current != 0 && self.client.keep_alive(current).await? {
            return Ok(current);
        }
        let lease = self.client.grant(self.ttl.as_secs().max(1)).await?;
        self.update(|s| {
            s.lease = lease;
            s.leader_rev = 0;
        });
        Ok(lease)
    }

    /// Gives the leadership and the registration up at once (clean shutdown).
    pub async fn resign(&self) {
        let lease = self.state.lock().map(|s| s.lease).unwrap_or(0);
        self.update(|s| *s = LeaseState::default());
        if lease != 0 {
            if let Err(e) = self.client.revoke(lease).await {
                tracing::warn!(error = %e, "could not revoke the lease; it expires by itself");
            }
        }
    }

    /// Ticks every [`tick_interval`] until `stop`, logging leadership changes.
    pub async fn run(self: Arc<Self>, stop: CancellationToken) {
        let mut every = tokio::time::interval(tick_interval(self.ttl));
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut was = false;
        let mut failing = false;
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = every.tick() => {}
            }
            let now = match self.tick().await {
                Ok(l) => {
                    if failing {
                        tracing::info!("etcd reachable again");
                    }
                    failing = false;
                    l
                }
                Err(e) => {
                    if !failing {
                        tracing::warn!(error = %e, "etcd request failed: not acting until it answers");
                    }
                    failing = true;
                    false
                }
            };
            if now != was {
                tracing::info!(agent = %self.me.name, leader = now, "leadership changed");
            }
            was = now;
        }
    }
}

/// Reads the agents, the leader and its lease under `prefix`.
pub async fn membership(client: &EtcdClient, prefix: &str) -> Result<Membership, EtcdError> {
    let parse = |v: &[u8]| serde_json::from_slice::<AgentInfo>(v).ok();
    let agents = client
        .list(&format!("{prefix}agents/"), 0, 0)
        .await?
        .iter()
        .filter_map(|kv| parse(&kv.value))
        .collect();
    let (leader, _) = client.get(&Leadership::leader_key(prefix)).await?;
    let mut m = Membership {
        agents,
        ..Membership::default()
    };
    if let Some(kv) = leader {
        m.leader = parse(&kv.value);
        m.lease_id = kv.lease;
        m.leader_revision = kv.create_revision;
        m.lease_ttl_left = client.time_to_live(kv.lease).await?;
    }
    Ok(m)
}
