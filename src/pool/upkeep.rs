//! The janitor's side of a pool: trimming idle and old connections, opening connections in
//! the background for waiters and `min_pool_size`.

use super::{lock, Pool, Slot};
use crate::server::ServerConn;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

impl Pool {
    /// Opens up to `n` connections in the background for waiters or `min_pool_size`.
    pub(super) fn spawn_refill(self: &Arc<Self>, n: usize) {
        for _ in 0..n {
            let me = self.clone();
            let slot = {
                let mut inner = lock(&me.inner);
                let size = me.settings.load().size;
                if !me.is_suspended() && !inner.closed && inner.total < size && me.take_limits() {
                    inner.total += 1;
                    Some(Slot::counted(me.clone()))
                } else {
                    None
                }
            };
            let Some(slot) = slot else {
                return;
            };
            tokio::spawn(async move {
                if let Ok(c) = me.open(slot).await {
                    me.to_idle(c);
                }
            });
        }
    }

    /// Janitor pass: closes connections idle past `server_idle_timeout` or older than
    /// `server_lifetime` (keeping `min_pool_size` or the spares), then opens up to that many.
    pub fn maintain(self: &Arc<Self>) {
        let settings = self.settings();
        let floor = settings
            .min_size
            .max(self.spares.load(Ordering::Relaxed))
            .min(settings.size);
        let now = Instant::now();
        let stale: Vec<Box<ServerConn>> = {
            let mut inner = lock(&self.inner);
            let mut keep = Vec::with_capacity(inner.idle.len());
            let mut stale = Vec::new();
            let mut total = inner.total;
            for c in std::mem::take(&mut inner.idle) {
                let idle_long = !settings.idle_timeout.is_zero()
                    && now.duration_since(c.last_used) >= settings.idle_timeout;
                let old = !settings.lifetime.is_zero()
                    && now.duration_since(c.created) >= settings.lifetime;
                if (idle_long && total > floor) || old {
                    total -= 1;
                    stale.push(c);
                } else {
                    keep.push(c);
                }
            }
            inner.idle = keep;
            stale
        };
        for c in stale {
            self.discard(c);
        }
        let missing = {
            let inner = lock(&self.inner);
            floor.saturating_sub(inner.total)
        };
        if missing > 0 {
            self.spawn_refill(missing);
        }
    }
}
