//! The pause gate: `PAUSE`/`RESUME` (whole pooler or one database), `DISABLE`, and the
//! switchover's pause. New transactions wait at the gate; two atomic loads when nothing is paused.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::Notify;

/// Holds new transactions while paused (PAUSE, switchover).
#[derive(Default)]
pub struct Gate {
    paused: AtomicBool,
    resumed: Notify,
    dbs: Mutex<HashMap<String, Arc<DbGate>>>,
}

impl Gate {
    /// Whether new transactions are held.
    pub fn is_paused(&self) -> bool {
        self.paused.load(Ordering::Acquire)
    }

    /// Holds new transactions from now on.
    pub fn pause(&self) {
        self.paused.store(true, Ordering::Release);
    }

    /// Lets held transactions go.
    pub fn resume(&self) {
        self.paused.store(false, Ordering::Release);
        self.resumed.notify_waiters();
    }

    /// Waits while paused.
    pub async fn pass(&self) {
        while self.is_paused() {
            let notified = self.resumed.notified();
            if !self.is_paused() {
                break;
            }
            notified.await;
        }
    }

    /// The gate of one database (created on first use).
    pub fn db(&self, name: &str) -> Arc<DbGate> {
        let mut dbs = match self.dbs.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        dbs.entry(name.to_string()).or_default().clone()
    }

    /// Waits while either the whole pooler or database `db` is paused (two atomic loads when
    /// neither is).
    pub async fn pass_db(&self, db: &DbGate) {
        while self.is_paused() || db.is_paused() {
            self.pass().await;
            db.pass().await;
        }
    }
}

/// Pause and disable flags of one database (`PAUSE db`, `DISABLE db`, `KILL db`).
#[derive(Default)]
pub struct DbGate {
    paused: AtomicBool,
    disabled: AtomicBool,
    resumed: Notify,
}

impl DbGate {
    /// Whether new transactions of this database are held.
    pub fn is_paused(&self) -> bool {
        self.paused.load(Ordering::Acquire)
    }

    /// Holds or releases new transactions of this database.
    pub fn set_paused(&self, paused: bool) {
        self.paused.store(paused, Ordering::Release);
        if !paused {
            self.resumed.notify_waiters();
        }
    }

    /// Whether new client logins to this database are refused.
    pub fn is_disabled(&self) -> bool {
        self.disabled.load(Ordering::Acquire)
    }

    /// Refuses or admits new client logins.
    pub fn set_disabled(&self, disabled: bool) {
        self.disabled.store(disabled, Ordering::Release);
    }

    async fn pass(&self) {
        while self.is_paused() {
            let notified = self.resumed.notified();
            if !self.is_paused() {
                break;
            }
            notified.await;
        }
    }
}
