//! Moving idle connections between two pools of the same server database and user: when a
//! standby is promoted, its read pool's idle connections (its spares) become the writer
//! pool's, so that the first writes after a failover need no new server connection.
//!
//! A connection moves only from the idle list (between transactions, nothing in flight,
//! settings tagged as for any idle connection: the next check-out brings it to its client's
//! settings exactly as it does a fresh one), and it keeps counting against the shared database
//! and user caps throughout: it leaves one pool's count and enters the other's.

use super::{lock, Pool, Slot};
use crate::server::ServerConn;
use std::sync::atomic::Ordering;
use std::sync::Arc;

impl Pool {
    /// Sets how many connections the janitor keeps open beyond `min_pool_size`.
    pub fn set_spares(&self, n: usize) {
        self.spares.store(n, Ordering::Relaxed);
    }

    /// Takes up to `max` idle connections out of this pool for [`Pool::take_over`]. Each
    /// holds a slot of this pool while it travels, so dropping it anywhere frees this pool's
    /// count and the caps.
    #[allow(clippy::vec_box)]
    pub fn lend_idle(self: &Arc<Self>, max: usize) -> Vec<Box<ServerConn>> {
        let lent: Vec<Box<ServerConn>> = {
            let mut inner = lock(&self.inner);
            let keep = inner.idle.len().saturating_sub(max);
            inner.idle.split_off(keep)
        };
        lent.into_iter().map(|c| self.adopt(c)).collect()
    }

    /// Takes `conn`, lent by another pool of the same server database and user, into this
    /// pool: it goes to the first waiter or the idle list, marked for a recovery check before
    /// its first use (see `vet`). Refused, and handed back as `Some`, when the pool is full,
    /// closed or suspended, when the connection's node is not where the pool points, or when
    /// the two pools do not share their caps.
    pub fn take_over(self: &Arc<Self>, mut conn: Box<ServerConn>) -> Option<Box<ServerConn>> {
        let Some(from) = conn.slot.as_ref().and_then(Slot::pool).cloned() else {
            return Some(conn);
        };
        let (spec, theirs) = (self.spec(), from.spec());
        let same = Arc::ptr_eq(&from.db_limit, &self.db_limit)
            && Arc::ptr_eq(&from.user_limit, &self.user_limit)
            && spec.user == theirs.user
            && spec.database == theirs.database
            && *spec.node == *conn.node;
        if !same || Arc::ptr_eq(&from, self) {
            return Some(conn);
        }
        {
            let mut inner = lock(&self.inner);
            let full = inner.total >= self.settings.load().size;
            if inner.closed || self.is_suspended() || full {
                return Some(conn);
            }
            inner.total += 1;
        }
        // Out of the lender's count without giving the caps back: the connection still
        // exists and still counts against them, now through this pool.
        {
            let mut inner = lock(&from.inner);
            inner.total = inner.total.saturating_sub(1);
        }
        if let Some(old) = conn.slot.take() {
            old.keep();
        }
        conn.slot = Some(Slot::counted(self.clone()));
        conn.recovery_check = true;
        self.to_idle(conn);
        None
    }
}
