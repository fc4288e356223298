//! Topology pushes, one at a time, and the heartbeat that renews the poolers' write lease.
//!
//! Every push of the agent goes through [`Pushes::push`], which holds a lock for the whole
//! push: so a fence push starts only after every earlier push (renewals included) ended,
//! which is what `fence::promote_after` relies on. The heartbeat pushes the last published
//! topology again every `topology_lease / 3` (every [`REPUSH_EVERY`] with the lease off)
//! while this agent acts; a pooler holding it answers 200 and renews its lease.
//!
//! With etcd, an agent that led keeps renewing while etcd does not answer (failsafe: an etcd
//! outage alone stops no writes), until etcd shows another leader or a pooler answers 409
//! (it holds a newer epoch: another agent fenced). It changes no topology meanwhile.

use super::pooler::{Poolers, Reply};
use super::store::StateStore;
use crate::topology::Topology;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// How often the topology is pushed again when the write lease is off (a restarted pooler
/// catches up).
pub const REPUSH_EVERY: Duration = Duration::from_secs(5);

/// One push: when it started and what each pooler answered.
#[derive(Debug, Clone)]
pub struct Pushed {
    /// When the push started (after every earlier push ended).
    pub started: Instant,
    /// The poolers' answers.
    pub replies: Vec<Reply>,
}

/// The serialised pushes and the topology the heartbeat renews.
#[derive(Debug, Default)]
pub struct Pushes {
    last: tokio::sync::Mutex<Option<Topology>>,
    /// Whether this agent took charge (holds the lock or led in etcd): only then it renews.
    pub acting: AtomicBool,
    /// A renewal was answered 409: a pooler holds a newer topology, someone else fenced;
    /// no renewal until this agent publishes again.
    deposed: AtomicBool,
}

impl Pushes {
    /// Pushes `topology` to every pooler, after any push in progress, and keeps it for the
    /// heartbeat.
    pub async fn push(&self, poolers: &Poolers, topology: &Topology) -> Pushed {
        let mut last = self.last.lock().await;
        *last = Some(topology.clone());
        self.deposed.store(false, Ordering::Release);
        let started = Instant::now();
        let replies = poolers.publish(topology).await;
        Pushed { started, replies }
    }

    /// Pushes the last published topology again (a renewal); nothing before the first.
    async fn renew(&self, poolers: &Poolers) {
        let last = self.last.lock().await;
        let Some(t) = last.as_ref().filter(|t| t.epoch > 0) else {
            return;
        };
        for r in poolers.publish(t).await {
            match r.outcome {
                super::pooler::Outcome::Stale => {
                    tracing::warn!(url = %r.url, epoch = t.epoch, "a pooler holds a newer topology: renewals stop");
                    self.deposed.store(true, Ordering::Release);
                }
                super::pooler::Outcome::Failed(why) => {
                    tracing::debug!(url = %r.url, %why, "pooler did not take the renewal")
                }
                _ => {}
            }
        }
    }
}

/// The heartbeat's period: a third of the lease, so that two renewals may be lost in a row.
pub fn period(lease: Duration) -> Duration {
    if lease.is_zero() {
        REPUSH_EVERY
    } else {
        lease / 3
    }
}

/// Renews the poolers' leases until `stop`, while this agent acts and may act.
pub async fn run<S: StateStore>(
    pushes: Arc<Pushes>,
    poolers: Poolers,
    store: Arc<S>,
    lease: Duration,
    stop: CancellationToken,
) {
    if poolers.is_empty() {
        return;
    }
    let mut tick = tokio::time::interval(period(lease));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        // An agent another one replaced must not extend a topology that one may be fencing:
        // `may_renew` (no other leader seen) and `deposed` (no pooler holds a newer epoch)
        // are checked right before each renewal.
        let deposed = pushes.deposed.load(Ordering::Acquire);
        if pushes.acting.load(Ordering::Acquire) && store.may_renew() && !deposed {
            pushes.renew(&poolers).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn period_is_a_third_of_the_lease() {
        assert_eq!(period(Duration::from_secs(3)), Duration::from_secs(1));
        assert_eq!(period(Duration::ZERO), REPUSH_EVERY);
    }
}
