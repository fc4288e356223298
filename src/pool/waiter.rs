//! A client waiting for a connection: dequeues itself on drop, and returns a connection that
//! was handed over too late, so that cancellation never leaks a server slot.

use super::{lock, Pool};
use crate::server::ServerConn;
use std::sync::Arc;
use tokio::sync::oneshot;

/// A place in a pool's FIFO queue.
pub(super) struct Waiter {
    pool: Arc<Pool>,
    id: u64,
    rx: Option<oneshot::Receiver<Box<ServerConn>>>,
}

impl Waiter {
    pub(super) fn new(pool: Arc<Pool>, id: u64, rx: oneshot::Receiver<Box<ServerConn>>) -> Self {
        Self {
            pool,
            id,
            rx: Some(rx),
        }
    }

    /// Waits for a hand-over; `None` if the pool dropped the queue (closed).
    ///
    /// # Cancellation safety
    /// Safe: the receiver stays in `self`, and `Drop` settles whatever arrived.
    pub(super) async fn recv(&mut self) -> Option<Box<ServerConn>> {
        let rx = self.rx.as_mut()?;
        let got = rx.await.ok();
        self.rx = None;
        // Owned by a slot from here on: dropped, it frees its place in the pool.
        got.map(|c| self.pool.adopt(c))
    }
}

impl Drop for Waiter {
    fn drop(&mut self) {
        let Some(mut rx) = self.rx.take() else { return };
        lock(&self.pool.inner)
            .waiters
            .retain(|(id, _)| *id != self.id);
        rx.close();
        if let Ok(conn) = rx.try_recv() {
            self.pool.give_back(conn);
        }
    }
}
