//! A shared cap on server connections (per database or per user), lock-free.

use std::sync::atomic::{AtomicUsize, Ordering};

/// Counts server connections against a maximum; 0 means unlimited.
#[derive(Debug, Default)]
pub struct Limit {
    max: AtomicUsize,
    current: AtomicUsize,
}

impl Limit {
    /// A limit of `max` connections (0 = unlimited).
    pub fn new(max: usize) -> Self {
        Self {
            max: AtomicUsize::new(max),
            current: AtomicUsize::new(0),
        }
    }

    /// Takes one slot if there is room.
    pub fn try_acquire(&self) -> bool {
        let max = self.max.load(Ordering::Relaxed);
        self.current
            .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |c| {
                (max == 0 || c < max).then_some(c + 1)
            })
            .is_ok()
    }

    /// Gives one slot back.
    pub fn release(&self) {
        let _ = self
            .current
            .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |c| {
                Some(c.saturating_sub(1))
            });
    }

    /// Connections counted now.
    pub fn current(&self) -> usize {
        self.current.load(Ordering::Relaxed)
    }

    /// Changes the maximum (reload); existing connections are not closed.
    pub fn set_max(&self, max: usize) {
        self.max.store(max, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_and_unlimited() {
        let l = Limit::new(2);
        assert!(l.try_acquire() && l.try_acquire());
        assert!(!l.try_acquire());
        l.release();
        assert!(l.try_acquire());
        let u = Limit::new(0);
        for _ in 0..100 {
            assert!(u.try_acquire());
        }
        assert_eq!(u.current(), 100);
    }
}
