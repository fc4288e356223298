//! With `agent.state_store = "etcd"`, the pooler reads and watches the topology key itself,
//! besides the agent's pushes: a pooler that missed a push (down, restarted, partitioned from
//! the agent) converges as soon as it reaches etcd. The epoch rule is the push's: a topology
//! is installed only when its epoch is higher than the one held.
//!
//! Each session reads the key, then watches it from the next revision; a session lasts at
//! most [`SESSION`] (so a silently dead connection is replaced), and a failed one is retried
//! after [`RETRY`]. An etcd outage changes nothing: the pooler keeps the topology it holds.
//!
//! Under a write lease (`Config::write_lease`) the key is also read every lease / 3: a read
//! that finds the topology held (or installs a newer one) renews the lease from the moment the
//! read was *sent*. etcd reads are linearizable, so a read that still saw the old topology was
//! sent before the agent wrote the fence; watch events install but never renew (an event may
//! arrive late). The agent's pushes renew too, so an etcd outage alone stops no writes.

use crate::backend::{ApplyError, Backend};
use crate::config::EtcdConfig;
use crate::etcd::watch::watch_for;
use crate::etcd::{EtcdClient, EtcdError};
use crate::topology::Topology;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// The longest one watch stream is kept before it is read and opened again.
pub const SESSION: Duration = Duration::from_secs(30);
/// Pause after a failed session.
pub const RETRY: Duration = Duration::from_secs(1);

/// Applies `t` (epoch-ordered, see [`Backend::apply`]); returns whether it was installed.
/// `sent`: the read that returned it started then, and renews the write lease from then (also
/// when `t` is the topology held); watch events pass `None` (they may arrive late).
pub fn install(ctx: &Backend, t: Topology, sent: Option<Instant>) -> bool {
    let (current, _) = ctx.topology();
    if current.epoch > 0 && t == current {
        if let Some(at) = sent {
            ctx.writer.renew(at);
        }
        return false;
    }
    let (epoch, primary, fenced) = (t.epoch, t.primary.clone(), t.fenced.clone());
    match ctx.apply(t) {
        Ok(()) => {
            if let Some(at) = sent {
                ctx.writer.renew(at);
            }
            tracing::info!(epoch, ?primary, ?fenced, "topology from etcd");
            true
        }
        Err(ApplyError::Stale { .. }) => false,
        Err(e) => {
            tracing::warn!(error = %e, "topology in etcd not applied");
            false
        }
    }
}

/// The part of the stored state a pooler needs (the agent also keeps its action in flight).
#[derive(serde::Deserialize)]
struct Stored {
    topology: Topology,
}

fn topology_of(value: &[u8]) -> Option<Topology> {
    match serde_json::from_slice::<Stored>(value) {
        Ok(p) if p.topology.epoch > 0 => Some(p.topology),
        Ok(_) => None,
        Err(e) => {
            tracing::warn!(error = %e, "topology key in etcd is not valid JSON; ignored");
            None
        }
    }
}

async fn session(ctx: &Backend, client: &EtcdClient, key: &str) -> Result<(), EtcdError> {
    let sent = Instant::now();
    let (kv, revision) = client.get(key).await?;
    if let Some(t) = kv.and_then(|kv| topology_of(&kv.value)) {
        install(ctx, t, Some(sent));
    }
    watch_for(client, key, revision + 1, SESSION, |e| {
        if let Some(t) = (!e.deleted).then(|| topology_of(&e.kv.value)).flatten() {
            install(ctx, t, None);
        }
    })
    .await
    .map(|_| ())
}

/// Reads the key every lease / 3 while a write lease applies, renewing it (see the top).
async fn renew(ctx: &Backend, client: &EtcdClient, key: &str, stop: &CancellationToken) {
    loop {
        let Some(lease) = ctx.config().write_lease() else {
            // No lease now (a reload may set one): look again later.
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(RETRY) => continue,
            }
        };
        let sent = Instant::now();
        match client.get(key).await {
            Ok((kv, _)) => {
                if let Some(t) = kv.and_then(|kv| topology_of(&kv.value)) {
                    install(ctx, t, Some(sent));
                }
            }
            Err(e) => tracing::debug!(error = %e, "etcd read for the write lease failed"),
        }
        let next = (sent + lease / 3).saturating_duration_since(Instant::now());
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(next) => {}
        }
    }
}

/// Follows the topology key until `stop`; renews the write lease from it meanwhile.
pub async fn run(ctx: Arc<Backend>, etcd: EtcdConfig, stop: CancellationToken) {
    let client = EtcdClient::new(etcd.settings());
    let key = etcd.topology_key();
    tokio::join!(
        renew(&ctx, &client, &key, &stop),
        follow(&ctx, &client, &key, &stop)
    );
}

async fn follow(ctx: &Backend, client: &EtcdClient, key: &str, stop: &CancellationToken) {
    let mut failing = false;
    loop {
        let r = tokio::select! {
            _ = stop.cancelled() => return,
            r = session(ctx, client, key) => r,
        };
        match r {
            Ok(()) => failing = false,
            Err(e) => {
                if !failing {
                    tracing::warn!(error = %e, "cannot follow the topology in etcd; retrying");
                }
                failing = true;
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(RETRY) => {}
                }
            }
        }
    }
}
