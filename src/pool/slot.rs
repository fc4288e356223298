//! A unit of a pool's capacity held by a value: the connection a client checked out, or one
//! being opened. Dropping the value gives the unit back, on every path (an error, a `?`, a
//! cancelled future, a panic), so a pool's counts cannot drift from the connections that exist.

use super::Pool;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

/// One counted connection of a pool (`total`, the database and user limits, perhaps the
/// reserve) that is not in the pool's idle list. It rides in [`crate::server::ServerConn::slot`]
/// while the connection is checked out; dropping it frees the unit and, if it was checked out,
/// the `active` count. [`Pool::release`] hands the unit back to the idle list instead.
pub struct Slot {
    /// `None` once the unit passed to the idle list.
    pool: Option<Arc<Pool>>,
    /// Counted in `PoolStats::active` (checked out by a client, not merely being opened).
    active: bool,
    /// When the connection was created, for `RECONNECT` accounting; unset while opening.
    created: Option<Instant>,
}

impl Slot {
    /// Takes ownership of a unit `pool` has already counted (under its lock).
    pub(super) fn counted(pool: Arc<Pool>) -> Self {
        Self {
            pool: Some(pool),
            active: false,
            created: None,
        }
    }

    /// Marks the unit's connection as checked out: counted as active until the slot goes.
    pub(super) fn activate(&mut self, created: Instant) {
        self.created = Some(created);
        if !self.active {
            if let Some(p) = &self.pool {
                p.stats.active.fetch_add(1, Ordering::Relaxed);
            }
            self.active = true;
        }
    }

    /// The pool that counts this unit (unset once it passed to the idle list).
    pub fn pool(&self) -> Option<&Arc<Pool>> {
        self.pool.as_ref()
    }

    /// Hands the unit to the pool's idle list: the connection is no longer active, and the
    /// unit stays counted.
    pub(super) fn keep(mut self) {
        self.deactivate();
        self.pool = None;
    }

    fn deactivate(&mut self) {
        if std::mem::take(&mut self.active) {
            if let Some(p) = &self.pool {
                p.stats.active.fetch_sub(1, Ordering::Relaxed);
            }
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.deactivate();
        let Some(pool) = self.pool.take() else {
            return;
        };
        if let Some(created) = self.created {
            pool.settle_stale(created);
        }
        pool.free_slot();
    }
}

impl std::fmt::Debug for Slot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Slot")
            .field("held", &self.pool.is_some())
            .field("active", &self.active)
            .finish()
    }
}
