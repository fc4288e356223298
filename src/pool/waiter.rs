//! Clients waiting for a connection: the queue (oldest first, with a bounded preference for a
//! waiter on the worker that holds the connection's socket), and the waiter, which dequeues
//! itself on drop and returns a connection that was handed over too late, so that
//! cancellation never leaks a server slot.

use super::{lock, Pool};
use crate::server::ServerConn;
use std::collections::VecDeque;
use std::sync::Arc;
use tokio::sync::oneshot;

/// How many hand-overs may pass the oldest waiter by for a younger one on the connection's own
/// worker (a hand-over across workers costs the socket's move, two system calls): after that
/// many, the oldest waiter gets the next connection whatever its worker.
const MAX_PASSED: u8 = 4;

struct Queued {
    id: u64,
    /// The worker the waiter runs on ([`crate::net::worker`]).
    worker: u16,
    passed: u8,
    tx: oneshot::Sender<Box<ServerConn>>,
}

/// The clients waiting for a connection of one pool.
#[derive(Default)]
pub(super) struct Queue {
    waiters: VecDeque<Queued>,
    next_id: u64,
}

impl Queue {
    /// Queues a waiter on the current worker; its id and the end that receives the connection.
    pub(super) fn push(&mut self) -> (u64, oneshot::Receiver<Box<ServerConn>>) {
        let id = self.next_id;
        self.next_id += 1;
        let (tx, rx) = oneshot::channel();
        let worker = crate::net::worker::current();
        self.waiters.push_back(Queued {
            id,
            worker,
            passed: 0,
            tx,
        });
        (id, rx)
    }

    /// Hands `conn` to a waiter: the oldest, or the oldest on the connection's worker while
    /// the oldest has been passed by fewer than [`MAX_PASSED`] times. Returns the connection
    /// if nobody is waiting (any more).
    pub(super) fn hand(&mut self, mut conn: Box<ServerConn>) -> Option<Box<ServerConn>> {
        while let Some(head) = self.waiters.front() {
            let passable = head.worker != conn.home && head.passed < MAX_PASSED;
            let mine = |w: &Queued| w.worker == conn.home;
            let at = if passable {
                self.waiters.iter().position(mine).unwrap_or(0)
            } else {
                0
            };
            if at > 0 {
                if let Some(head) = self.waiters.front_mut() {
                    head.passed += 1;
                }
            }
            let Some(w) = self.waiters.remove(at) else {
                break;
            };
            match w.tx.send(conn) {
                Ok(()) => return None,
                Err(back) => conn = back,
            }
        }
        Some(conn)
    }

    /// Takes waiter `id` out of the queue (it gave up).
    pub(super) fn remove(&mut self, id: u64) {
        self.waiters.retain(|w| w.id != id);
    }

    pub(super) fn len(&self) -> usize {
        self.waiters.len()
    }

    pub(super) fn is_empty(&self) -> bool {
        self.waiters.is_empty()
    }

    /// Drops every waiter: each one's `recv` ends with `None` (the pool closed).
    pub(super) fn clear(&mut self) {
        self.waiters.clear();
    }
}

/// A place in a pool's queue of waiters.
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
        lock(&self.pool.inner).waiters.remove(self.id);
        rx.close();
        if let Ok(conn) = rx.try_recv() {
            self.pool.give_back(conn);
        }
    }
}
