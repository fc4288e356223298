//! Logins in progress, capped: when a new client would exceed `max_pending_logins`, the
//! oldest login still waiting on its client is evicted, so a flood of half-open connections
//! (never sending a startup packet or a password) cannot starve real clients, whose logins
//! take milliseconds.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tokio_util::sync::CancellationToken;

/// The logins waiting on their clients (startup packet, password messages).
#[derive(Debug, Default)]
pub struct PendingLogins {
    waiting: Mutex<BTreeMap<u64, CancellationToken>>,
    next: AtomicU64,
    evicted: AtomicU64,
    cap: AtomicUsize,
}

/// One login's place; leaving drops it.
#[derive(Debug)]
pub struct PendingGuard {
    owner: Arc<PendingLogins>,
    id: u64,
    token: CancellationToken,
}

impl PendingLogins {
    /// A registry allowing `cap` logins at once.
    pub fn new(cap: usize) -> Arc<Self> {
        let me = Arc::new(Self::default());
        me.set_cap(cap);
        me
    }

    /// Changes the cap (reload); takes effect at the next login.
    pub fn set_cap(&self, cap: usize) {
        self.cap.store(cap.max(1), Ordering::Relaxed);
    }

    /// Takes a place, evicting the oldest logins beyond the cap.
    pub fn enter(self: &Arc<Self>) -> PendingGuard {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let token = CancellationToken::new();
        let cap = self.cap.load(Ordering::Relaxed);
        let mut waiting = self.lock();
        waiting.insert(id, token.clone());
        while waiting.len() > cap {
            if let Some((_, oldest)) = waiting.pop_first() {
                oldest.cancel();
                self.evicted.fetch_add(1, Ordering::Relaxed);
            }
        }
        PendingGuard {
            owner: self.clone(),
            id,
            token,
        }
    }

    /// Logins in progress now.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether no login is in progress.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Logins evicted so far.
    pub fn evicted(&self) -> u64 {
        self.evicted.load(Ordering::Relaxed)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, CancellationToken>> {
        match self.waiting.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }
}

impl PendingGuard {
    /// Resolves when a newer login evicted this one.
    pub async fn evicted(&self) {
        self.token.cancelled().await;
    }
}

impl Drop for PendingGuard {
    fn drop(&mut self) {
        self.owner.lock().remove(&self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evicts_the_oldest_beyond_the_cap() {
        let p = PendingLogins::new(2);
        let a = p.enter();
        let b = p.enter();
        assert_eq!(p.len(), 2);
        let c = p.enter();
        assert!(a.token.is_cancelled());
        assert!(!b.token.is_cancelled() && !c.token.is_cancelled());
        assert_eq!(p.len(), 2);
        assert_eq!(p.evicted(), 1);
        drop(a);
        drop(b);
        assert_eq!(p.len(), 1);
        drop(c);
        assert!(p.is_empty());
        p.set_cap(0);
        let d = p.enter();
        assert!(!d.token.is_cancelled(), "a cap of 0 still admits one");
    }
}
