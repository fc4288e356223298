//! A pool's settings (reloadable) and its counters (read by the console and metrics).

use super::hist;
use crate::config::PoolMode;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

/// Tunables of one pool (reloadable).
#[derive(Debug, Clone)]
pub struct PoolSettings {
    pub mode: PoolMode,
    pub size: usize,
    pub min_size: usize,
    pub reserve_size: usize,
    pub reserve_timeout: Duration,
    pub query_wait_timeout: Duration,
    pub idle_timeout: Duration,
    pub lifetime: Duration,
    pub check_query: String,
    pub check_delay: Duration,
    pub reset_query: String,
}

/// Counters read by the console and metrics; updated without locks.
#[derive(Debug, Default)]
pub struct PoolStats {
    pub checkouts: AtomicU64,
    pub waits: AtomicU64,
    pub wait_time_us: AtomicU64,
    pub connects: AtomicU64,
    pub connect_errors: AtomicU64,
    pub closed: AtomicU64,
    pub active: AtomicUsize,
    pub waiting: AtomicUsize,
    /// Transaction-mode clients kept on their server connection by session-scoped state.
    pub pinned: AtomicUsize,
    /// Per-transaction counters folded in by sessions at each boundary.
    pub xacts: AtomicU64,
    pub queries: AtomicU64,
    pub bytes_in: AtomicU64,
    pub bytes_out: AtomicU64,
    /// Check-out to release, per transaction.
    pub xact_time: hist::Histogram,
    /// Time a client waited for a connection (only check-outs that had to wait).
    pub wait_time: hist::Histogram,
    /// Connections created before this time (µs on the pool's clock) close when next released
    /// (`RECONNECT`); `stale` counts those still checked out.
    pub reconnect_mark_us: AtomicU64,
    pub stale: AtomicUsize,
}

impl PoolStats {
    /// Folds one finished transaction in (relaxed atomic adds only).
    #[inline]
    pub fn record_xact(&self, queries: u64, bytes_in: u64, bytes_out: u64, us: u64) {
        self.xacts.fetch_add(1, Ordering::Relaxed);
        self.queries.fetch_add(queries, Ordering::Relaxed);
        self.bytes_in.fetch_add(bytes_in, Ordering::Relaxed);
        self.bytes_out.fetch_add(bytes_out, Ordering::Relaxed);
        self.xact_time.observe(us);
    }
}
