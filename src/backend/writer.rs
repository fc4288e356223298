//! Whether the pooler may send writes now, waiting until it may, and the login parameters
//! kept so that a login completes without the primary.
//!
//! A cluster database's writer pool is used only while the topology names an unfenced primary
//! and, for a pooler under an agent (`Config::write_lease`), while that topology is fresh: it
//! was renewed (an agent's push, an etcd read) within `agent.topology_lease`, measured on this
//! process's monotonic clock from the renewal's receipt (from the request's start for etcd).
//! A transaction that finds no usable primary waits, up to `pooler.primary_wait_timeout`, for
//! one (a failover is a pause); transactions already running finish, except those on a node
//! the agent fenced, which `Backend::apply` ends with 08006.

use crate::topology::Topology;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// Why writes cannot be sent now (the text clients see when the wait runs out).
pub const NO_TOPOLOGY: &str = "no topology from the agent yet";
/// See [`NO_TOPOLOGY`].
pub const LEASE_EXPIRED: &str =
    "the topology lease ran out (no renewal from the agent or etcd): writes held";
/// See [`NO_TOPOLOGY`].
pub const NO_PRIMARY: &str = "failover in progress: no primary in the topology";

/// A pool's key: (database, user).
pub type PoolKey = (Arc<str>, Arc<str>);
/// The ParameterStatus pairs a server sent at login.
pub type StartupParams = Arc<Vec<(String, String)>>;

/// No topology from an agent yet (epoch 0): discovery decides.
const NO_AGENT: u8 = 0;
/// The topology names an unfenced primary.
const USABLE: u8 = 1;
/// The topology names no usable primary (fenced, or none: a failover is under way).
const HEADLESS: u8 = 2;

/// The write lease of one pooler, and a wake-up for the transactions waiting on it.
pub struct WriteLease {
    base: Instant,
    /// Milliseconds from `base` to the last renewal, plus one; 0 = never renewed.
    renewed: AtomicU64,
    /// What the topology in force allows: [`NO_AGENT`], [`USABLE`] or [`HEADLESS`].
    state: AtomicU8,
    changed: Notify,
    /// Startup parameters of each (database, user) pool's last server login.
    params: Mutex<HashMap<PoolKey, StartupParams>>,
}

impl Default for WriteLease {
    fn default() -> Self {
        WriteLease {
            base: Instant::now(),
            renewed: AtomicU64::new(0),
            state: AtomicU8::new(NO_AGENT),
            changed: Notify::new(),
            params: Mutex::default(),
        }
    }
}

impl WriteLease {
    /// Records a renewal received at `at` (never moves backwards).
    pub fn renew(&self, at: Instant) {
        let ms = at.saturating_duration_since(self.base).as_millis() as u64 + 1;
        self.renewed.fetch_max(ms, Ordering::AcqRel);
        self.changed.notify_waiters();
    }

    /// Notes what the topology just installed allows and wakes the waiting transactions.
    pub fn installed(&self, t: &Topology) {
        let usable = t.primary.as_deref().is_some_and(|p| !t.is_fenced(p));
        let state = match (t.epoch, usable) {
            (0, _) => NO_AGENT,
            (_, true) => USABLE,
            (_, false) => HEADLESS,
        };
        self.state.store(state, Ordering::Release);
        self.changed.notify_waiters();
    }

    /// When the lease runs out, if it was ever renewed.
    pub fn expiry(&self, lease: Duration) -> Option<Instant> {
        match self.renewed.load(Ordering::Acquire) {
            0 => None,
            ms => Some(self.base + Duration::from_millis(ms - 1) + lease),
        }
    }

    /// Why writes to a cluster database's primary cannot be sent at `now`, if they cannot;
    /// `lease` is `Config::write_lease()` (`None`: no agent manages this pooler).
    pub fn blocked(&self, lease: Option<Duration>, now: Instant) -> Option<&'static str> {
        let state = self.state.load(Ordering::Acquire);
        if let Some(lease) = lease {
            if state == NO_AGENT {
                return Some(NO_TOPOLOGY);
            }
            if self.expiry(lease).is_none_or(|e| now >= e) {
                return Some(LEASE_EXPIRED);
            }
        }
        (state == HEADLESS).then_some(NO_PRIMARY)
    }

    /// Waits until `check` says writes may go, or `deadline`; returns the last reason.
    pub async fn wait(
        &self,
        deadline: Instant,
        mut check: impl FnMut(Instant) -> Option<&'static str>,
    ) -> Result<(), &'static str> {
        loop {
            let notified = self.changed.notified();
            let now = Instant::now();
            let Some(why) = check(now) else {
                return Ok(());
            };
            if now >= deadline {
                return Err(why);
            }
            // Woken by a push or an install; polled too, since a lease that runs out wakes
            // nobody and a retry after an unreachable primary needs no event.
            let nap = (deadline - now).min(Duration::from_millis(50));
            tokio::select! {
                _ = notified => {}
                _ = tokio::time::sleep(nap) => {}
            }
        }
    }

    /// Sleeps up to `max`, or less when a topology is installed or the lease renewed (a
    /// transaction that found its primary unreachable retries at once when one is named).
    pub async fn nap(&self, max: Duration) {
        let notified = self.changed.notified();
        tokio::select! {
            _ = notified => {}
            _ = tokio::time::sleep(max) => {}
        }
    }

    /// Keeps the startup parameters a server of pool `(db, user)` sent at its login.
    pub fn keep_params(&self, key: PoolKey, params: StartupParams) {
        if let Ok(mut m) = self.params.lock() {
            m.insert(key, params);
        }
    }

    /// The startup parameters kept for pool `(db, user)`.
    pub fn params(&self, key: &PoolKey) -> Option<StartupParams> {
        self.params.lock().ok()?.get(key).cloned()
    }
}

#[cfg(test)]
#[path = "writer_test.rs"]
mod tests;
