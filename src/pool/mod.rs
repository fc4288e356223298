//! Server connection pools, one per (database, user): FIFO check-out with timeouts, a reserve,
//! per-database and per-user caps, and a janitor that trims and refills.
//!
//! The hot path is one short `std::sync::Mutex` section per check-out and one per release; a
//! waiting client parks on a oneshot and is handed a connection directly, in arrival order.

pub mod hist;
mod limit;
mod registry;
mod waiter;

pub use limit::Limit;
pub use registry::Pools;

use crate::config::PoolMode;
use crate::server::{connect, ConnectSpec, ServerConn, ServerError};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;
use waiter::Waiter;

/// Why a check-out failed.
#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    #[error("query_wait_timeout")]
    WaitTimeout,
    #[error("{0}")]
    Server(#[from] ServerError),
    #[error("pool is closed")]
    Closed,
}

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

struct Inner {
    idle: Vec<ServerConn>,
    /// Connections that exist (idle, checked out, or being opened).
    total: usize,
    reserve_in_use: usize,
    waiters: VecDeque<(u64, oneshot::Sender<ServerConn>)>,
    next_waiter: u64,
    closed: bool,
}

/// One pool of server connections.
pub struct Pool {
    pub database: Arc<str>,
    pub user: Arc<str>,
    spec: Mutex<Arc<ConnectSpec>>,
    settings: Mutex<Arc<PoolSettings>>,
    inner: Mutex<Inner>,
    db_limit: Arc<Limit>,
    user_limit: Arc<Limit>,
    pub stats: PoolStats,
    /// Origin of the pool's clock for `reconnect_mark_us`.
    born: Instant,
    /// The standby this pool serves reads on; unset for a pool that follows the primary.
    reads_on: std::sync::OnceLock<Arc<str>>,
    /// Notified by [`Pool::retarget`]: connects still under way to the old node give up.
    retargeted: tokio::sync::Notify,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

impl Pool {
    /// A new, empty pool.
    pub fn new(
        database: &str,
        user: &str,
        spec: ConnectSpec,
        settings: PoolSettings,
        db_limit: Arc<Limit>,
        user_limit: Arc<Limit>,
    ) -> Arc<Self> {
        Arc::new(Self {
            database: database.into(),
            user: user.into(),
            spec: Mutex::new(Arc::new(spec)),
            settings: Mutex::new(Arc::new(settings)),
            inner: Mutex::new(Inner {
                idle: Vec::new(),
                total: 0,
                reserve_in_use: 0,
                waiters: VecDeque::new(),
                next_waiter: 0,
                closed: false,
            }),
            db_limit,
            user_limit,
            stats: PoolStats::default(),
            born: Instant::now(),
            reads_on: std::sync::OnceLock::new(),
            retargeted: tokio::sync::Notify::new(),
        })
    }

    /// Marks the pool as the read pool of standby `node` (set once, by the registry).
    pub fn pin_reads(&self, node: &str) {
        let _ = self.reads_on.set(node.into());
    }

    /// `"primary"` for a pool that follows the primary, `"standby"` for a standby's read pool.
    pub fn role(&self) -> &'static str {
        if self.reads_on.get().is_some() {
            "standby"
        } else {
            "primary"
        }
    }

    /// Current settings.
    pub fn settings(&self) -> Arc<PoolSettings> {
        lock(&self.settings).clone()
    }

    /// Replaces the settings (reload); applies to the next check-outs.
    pub fn set_settings(&self, s: PoolSettings) {
        *lock(&self.settings) = Arc::new(s);
    }

    /// Where new connections go.
    pub fn spec(&self) -> Arc<ConnectSpec> {
        lock(&self.spec).clone()
    }

    /// Points new connections at another node; idle connections elsewhere are closed and
    /// checked-out ones are closed when they come back.
    pub fn retarget(self: &Arc<Self>, spec: ConnectSpec) {
        let node = spec.node.clone();
        *lock(&self.spec) = Arc::new(spec);
        let stale: Vec<ServerConn> = {
            let mut inner = lock(&self.inner);
            let (keep, stale) = std::mem::take(&mut inner.idle)
                .into_iter()
                .partition(|c| c.node == node);
            inner.idle = keep;
            stale
        };
        for c in stale {
            self.discard(c);
        }
        self.retargeted.notify_waiters();
    }

    /// Checks a connection out, waiting in FIFO order up to `query_wait_timeout`.
    ///
    /// # Cancellation safety
    /// Dropping the future leaves the queue and returns any connection already handed over.
    pub async fn checkout(self: &Arc<Self>) -> Result<ServerConn, PoolError> {
        let settings = self.settings();
        self.stats.checkouts.fetch_add(1, Ordering::Relaxed);
        let waiter = loop {
            let now = Instant::now();
            let decision = {
                let mut inner = lock(&self.inner);
                if inner.closed {
                    return Err(PoolError::Closed);
                }
                match inner.idle.pop() {
                    Some(conn) => Decision::Reuse(conn),
                    None if inner.total < settings.size && self.take_limits() => {
                        inner.total += 1;
                        Decision::Connect
                    }
                    None => {
                        let id = inner.next_waiter;
                        inner.next_waiter += 1;
                        let (tx, rx) = oneshot::channel();
                        inner.waiters.push_back((id, tx));
                        Decision::Wait(Waiter::new(self.clone(), id, rx))
                    }
                }
            };
            match decision {
                Decision::Reuse(conn) => match self.vet(conn, &settings, now).await {
                    Some(conn) => return Ok(self.mark_active(conn)),
                    None => continue,
                },
                Decision::Connect => return self.open().await.map(|c| self.mark_active(c)),
                Decision::Wait(w) => break w,
            }
        };
        self.wait(waiter, &settings)
            .await
            .map(|c| self.mark_active(c))
    }

    async fn wait(
        self: &Arc<Self>,
        mut waiter: Waiter,
        settings: &PoolSettings,
    ) -> Result<ServerConn, PoolError> {
        let start = Instant::now();
        self.stats.waits.fetch_add(1, Ordering::Relaxed);
        self.stats.waiting.fetch_add(1, Ordering::Relaxed);
        let _waiting = DecOnDrop(&self.stats.waiting);
        let deadline =
            (!settings.query_wait_timeout.is_zero()).then(|| start + settings.query_wait_timeout);
        let mut reserve_at = (settings.reserve_size > 0).then(|| start + settings.reserve_timeout);
        loop {
            let next = match (reserve_at, deadline) {
                (Some(r), Some(d)) => Some(r.min(d)),
                (r, d) => r.or(d),
            };
            let got = match next {
                Some(at) => tokio::time::timeout_at(at.into(), waiter.recv()).await.ok(),
                None => Some(waiter.recv().await),
            };
            match got {
                Some(Some(conn)) => {
                    let us = start.elapsed().as_micros() as u64;
                    self.stats.wait_time_us.fetch_add(us, Ordering::Relaxed);
                    self.stats.wait_time.observe(us);
                    match self.vet(conn, settings, Instant::now()).await {
                        Some(c) => return Ok(c),
                        None => return Box::pin(self.checkout_after_discard()).await,
                    }
                }
                Some(None) => return Err(PoolError::Closed),
                None => {}
            }
            let now = Instant::now();
            if reserve_at.is_some_and(|r| now >= r) {
                reserve_at = None;
                if self.take_reserve(settings) {
                    drop(waiter);
                    return self.open().await;
                }
            }
            if deadline.is_some_and(|d| now >= d) {
                return Err(PoolError::WaitTimeout);
            }
        }
    }

    async fn checkout_after_discard(self: &Arc<Self>) -> Result<ServerConn, PoolError> {
        let c = self.checkout().await?;
        self.stats.active.fetch_sub(1, Ordering::Relaxed);
        Ok(c)
    }

    fn take_limits(&self) -> bool {
        if !self.db_limit.try_acquire() {
            return false;
        }
        if !self.user_limit.try_acquire() {
            self.db_limit.release();
            return false;
        }
        true
    }

    fn take_reserve(&self, settings: &PoolSettings) -> bool {
        let mut inner = lock(&self.inner);
        if inner.reserve_in_use < settings.reserve_size && self.take_limits() {
            inner.reserve_in_use += 1;
            inner.total += 1;
            true
        } else {
            false
        }
    }

    fn mark_active(&self, c: ServerConn) -> ServerConn {
        self.stats.active.fetch_add(1, Ordering::Relaxed);
        c
    }

    /// Opens a connection whose slot (`total`, limits) is already taken.
    async fn open(self: &Arc<Self>) -> Result<ServerConn, PoolError> {
        let spec = self.spec();
        self.stats.connects.fetch_add(1, Ordering::Relaxed);
        // Frees the slot unless a connection comes out of it, also when the caller drops
        // this future mid-connect (a failover abandons a connect to the old primary).
        let mut slot = OpenSlot(Some(self));
        // A connect to a node the pool no longer points at (a partitioned old primary may
        // answer nothing until `server_connect_timeout`) gives its slot up at once.
        let moved = self.retargeted.notified();
        let r = tokio::select! {
            r = connect(&spec) => r,
            _ = moved => Err(crate::server::ServerError::Io {
                node: spec.node.to_string(),
                source: std::io::Error::other("connect abandoned: the pool now points elsewhere"),
            }),
        };
        match r {
            Ok(c) => {
                slot.0 = None;
                Ok(c)
            }
            Err(e) => {
                self.stats.connect_errors.fetch_add(1, Ordering::Relaxed);
                Err(e.into())
            }
        }
    }

    /// Checks an idle connection before use; `None` means it was discarded.
    async fn vet(
        self: &Arc<Self>,
        mut conn: ServerConn,
        settings: &PoolSettings,
        now: Instant,
    ) -> Option<ServerConn> {
        let expired = (!settings.lifetime.is_zero()
            && now.duration_since(conn.created) >= settings.lifetime)
            || self.is_stale(&conn);
        if expired || !conn.is_quiet() || *conn.node != *self.spec().node {
            self.discard(conn);
            return None;
        }
        if !settings.check_query.is_empty()
            && now.duration_since(conn.last_used) >= settings.check_delay
        {
            match conn.control(&settings.check_query).await {
                Ok(r) if r.error.is_none() && r.status == b'I' => {}
                _ => {
                    self.discard(conn);
                    return None;
                }
            }
        }
        Some(conn)
    }

    /// Whether `conn` predates the last `RECONNECT`; such a connection is closed on release.
    fn is_stale(&self, conn: &ServerConn) -> bool {
        let mark = self.stats.reconnect_mark_us.load(Ordering::Relaxed);
        mark > 0
            && (conn
                .created
                .saturating_duration_since(self.born)
                .as_micros() as u64)
                < mark
    }

    /// Closes idle connections now and the checked-out ones when they come back (`RECONNECT`).
    pub fn reconnect(self: &Arc<Self>) {
        let mark = self.born.elapsed().as_micros() as u64 + 1;
        self.stats.reconnect_mark_us.store(mark, Ordering::Relaxed);
        self.stats.stale.store(self.active(), Ordering::Relaxed);
        self.close_idle();
    }

    fn settle_stale(&self, conn: &ServerConn) -> bool {
        let stale = self.is_stale(conn);
        if stale {
            let _ = self
                .stats
                .stale
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |s| {
                    Some(s.saturating_sub(1))
                });
        }
        stale
    }

    /// Returns a clean connection (idle, outside a transaction) to the pool.
    pub fn release(self: &Arc<Self>, mut conn: ServerConn) {
        self.stats.active.fetch_sub(1, Ordering::Relaxed);
        conn.last_used = Instant::now();
        if self.settle_stale(&conn) || *conn.node != *self.spec().node {
            self.discard(conn);
            return;
        }
        self.give_back(conn);
    }

    fn give_back(self: &Arc<Self>, mut conn: ServerConn) {
        let mut inner = lock(&self.inner);
        if inner.closed {
            drop(inner);
            self.discard(conn);
            return;
        }
        while let Some((_, tx)) = inner.waiters.pop_front() {
            match tx.send(conn) {
                Ok(()) => return,
                Err(back) => conn = back,
            }
        }
        inner.idle.push(conn);
    }

    /// Closes a checked-out connection that cannot be reused (dirty, broken).
    pub fn close(self: &Arc<Self>, conn: ServerConn) {
        self.stats.active.fetch_sub(1, Ordering::Relaxed);
        self.settle_stale(&conn);
        self.discard(conn);
    }

    /// Drops a connection and frees its slot; wakes a waiter with a fresh connection if any.
    fn discard(self: &Arc<Self>, conn: ServerConn) {
        self.stats.closed.fetch_add(1, Ordering::Relaxed);
        drop(conn);
        self.free_slot();
    }

    fn free_slot(self: &Arc<Self>) {
        let has_waiters = {
            let mut inner = lock(&self.inner);
            inner.total = inner.total.saturating_sub(1);
            if inner.reserve_in_use > 0 && inner.total < self.settings().size {
                inner.reserve_in_use -= 1;
            }
            !inner.waiters.is_empty() && !inner.closed
        };
        self.db_limit.release();
        self.user_limit.release();
        if has_waiters {
            self.spawn_refill(1);
        }
    }

    /// Opens up to `n` connections in the background for waiters or `min_pool_size`.
    fn spawn_refill(self: &Arc<Self>, n: usize) {
        for _ in 0..n {
            let me = self.clone();
            let reserved = {
                let mut inner = lock(&me.inner);
                let size = me.settings().size;
                if inner.total < size && me.take_limits() {
                    inner.total += 1;
                    true
                } else {
                    false
                }
            };
            if !reserved {
                return;
            }
            tokio::spawn(async move {
                if let Ok(c) = me.open().await {
                    me.give_back(c);
                }
            });
        }
    }

    /// Janitor pass: closes connections idle past `server_idle_timeout` or older than
    /// `server_lifetime` (keeping `min_pool_size`), then opens up to `min_pool_size`.
    pub fn maintain(self: &Arc<Self>) {
        let settings = self.settings();
        let now = Instant::now();
        let stale: Vec<ServerConn> = {
            let mut inner = lock(&self.inner);
            let mut keep = Vec::with_capacity(inner.idle.len());
            let mut stale = Vec::new();
            let mut total = inner.total;
            for c in std::mem::take(&mut inner.idle) {
                let idle_long = !settings.idle_timeout.is_zero()
                    && now.duration_since(c.last_used) >= settings.idle_timeout;
                let old = !settings.lifetime.is_zero()
                    && now.duration_since(c.created) >= settings.lifetime;
                if (idle_long && total > settings.min_size) || old {
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
            settings.min_size.saturating_sub(inner.total)
        };
        if missing > 0 {
            self.spawn_refill(missing);
        }
    }

    /// Closes idle connections now; checked-out ones close when they come back.
    pub fn close_idle(self: &Arc<Self>) {
        let idle = std::mem::take(&mut lock(&self.inner).idle);
        for c in idle {
            self.discard(c);
        }
    }

    /// Refuses further check-outs and closes idle connections.
    pub fn shut(self: &Arc<Self>) {
        lock(&self.inner).closed = true;
        lock(&self.inner).waiters.clear();
        self.close_idle();
    }

    /// Connections checked out now.
    pub fn active(&self) -> usize {
        self.stats.active.load(Ordering::Relaxed)
    }

    /// (idle, total) connections now.
    pub fn counts(&self) -> (usize, usize) {
        let inner = lock(&self.inner);
        (inner.idle.len(), inner.total)
    }

    /// Backend pids and ages of the idle connections, for `SHOW SERVERS`.
    pub fn idle_servers(&self) -> Vec<IdleServer> {
        lock(&self.inner)
            .idle
            .iter()
            .map(|c| IdleServer {
                pid: c.key.0,
                node: c.node.clone(),
                age: c.created.elapsed(),
                idle_for: c.last_used.elapsed(),
            })
            .collect()
    }

    /// Whether check-outs are refused (the pool was shut).
    pub fn is_closed(&self) -> bool {
        lock(&self.inner).closed
    }
}

/// What `SHOW SERVERS` shows of an idle connection.
#[derive(Debug, Clone)]
pub struct IdleServer {
    pub pid: i32,
    pub node: Arc<str>,
    pub age: Duration,
    pub idle_for: Duration,
}

enum Decision {
    Reuse(ServerConn),
    Connect,
    Wait(Waiter),
}

struct DecOnDrop<'a>(&'a AtomicUsize);

impl Drop for DecOnDrop<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A slot taken for a connection being opened: freed on drop unless disarmed.
struct OpenSlot<'a>(Option<&'a Arc<Pool>>);

impl Drop for OpenSlot<'_> {
    fn drop(&mut self) {
        if let Some(pool) = self.0.take() {
            pool.free_slot();
        }
    }
}
