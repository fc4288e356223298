//! Where a pool connects, and when it must not: its connect spec, re-pointing it at another
//! node (a new primary), and suspending it while its node is fenced or no primary is named.

use super::{lock, Pool};
use crate::server::{ConnectSpec, ServerConn};
use std::sync::atomic::Ordering;
use std::sync::Arc;

impl Pool {
    /// Where new connections go.
    pub fn spec(&self) -> Arc<ConnectSpec> {
        self.spec.load_full()
    }

    /// Whether `spec` is this pool's connect spec now (pointer identity, no reference count).
    pub fn spec_is(&self, spec: &ConnectSpec) -> bool {
        std::ptr::eq(&**self.spec.load(), spec)
    }

    /// Whether `node` is where this pool connects now (no reference count taken).
    pub(super) fn targets(&self, node: &str) -> bool {
        *self.spec.load().node == *node
    }

    /// Points new connections at another node and lifts a suspension; idle connections
    /// elsewhere are closed and checked-out ones are closed when they come back.
    pub fn retarget(self: &Arc<Self>, spec: ConnectSpec) {
        let node = spec.node.clone();
        let (stale, waiting): (Vec<Box<ServerConn>>, usize) = {
            let mut inner = lock(&self.inner);
            self.spec.store(Arc::new(spec));
            self.suspended.store(false, Ordering::Release);
            let (keep, stale) = std::mem::take(&mut inner.idle)
                .into_iter()
                .partition(|c| c.node == node);
            inner.idle = keep;
            (stale, inner.waiters.len())
        };
        for c in stale {
            self.discard(c);
        }
        self.retargeted.notify_waiters();
        if waiting > 0 {
            self.spawn_refill(waiting);
        }
    }

    /// Stops handing out connections to the pool's node (fenced, or no primary): idle
    /// connections are closed before this returns, checked-out ones when they come back, and
    /// check-outs fail with [`PoolError::NoTarget`] until [`Pool::retarget`] or
    /// [`Pool::resume`].
    pub fn suspend(self: &Arc<Self>) {
        let idle = {
            let mut inner = lock(&self.inner);
            self.suspended.store(true, Ordering::SeqCst);
            std::mem::take(&mut inner.idle)
        };
        self.retargeted.notify_waiters();
        for c in idle {
            self.discard(c);
        }
    }

    /// Lifts a suspension without changing the node (a standby no longer fenced).
    pub fn resume(self: &Arc<Self>) {
        let _inner = lock(&self.inner);
        self.suspended.store(false, Ordering::Release);
    }

    /// Whether a connection to `node` may still serve a transaction of this pool: the pool is
    /// not suspended and still points there (checked after a check-out, see
    /// `ClientInfo::active`).
    pub fn serves(&self, node: &str) -> bool {
        !self.suspended.load(Ordering::SeqCst) && self.targets(node)
    }

    /// A stable identity of this pool while it exists (for the client registry).
    pub fn id(self: &Arc<Self>) -> usize {
        Arc::as_ptr(self) as usize
    }

    /// Whether check-outs are refused because the pool's node must not be used.
    pub fn is_suspended(&self) -> bool {
        self.suspended.load(Ordering::Acquire)
    }
}
