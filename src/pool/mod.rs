//! Server connection pools, one per (database, user): check-out in arrival order with timeouts,
//! a reserve, per-database and per-user caps, and a janitor that trims and refills.
//!
//! The hot path is one short `std::sync::Mutex` section per check-out and one per release; a
//! waiting client parks on a oneshot and is handed a connection directly, in arrival order
//! (a younger waiter on the worker holding the connection's socket may go first, a bounded
//! number of times: [`waiter`]).

mod adopt;
pub mod hist;
mod limit;
mod registry;
mod slot;
mod stats;
mod target;
#[cfg(test)]
mod tests;
mod upkeep;
mod waiter;

pub use limit::Limit;
pub use registry::Pools;
pub use slot::Slot;
pub use stats::{PoolSettings, PoolStats};

use crate::config::PoolMode;
use crate::server::{connect, ConnectSpec, ServerConn, ServerError};
use arc_swap::ArcSwap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
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
    /// The pool has no node to connect to: its node is fenced or the topology names no
    /// primary (a failover is in progress). Transient: the session waits for a new target.
    #[error("no primary node is available (fenced or failing over)")]
    NoTarget,
}

struct Inner {
    // Boxed on purpose: a connection moves between the idle list, check-outs and sessions
    // several times per transaction, and a pointer moves cheaper than its ~280 bytes.
    #[allow(clippy::vec_box)]
    idle: Vec<Box<ServerConn>>,
    /// Connections that exist (idle, checked out, or being opened).
    total: usize,
    reserve_in_use: usize,
    waiters: waiter::Queue,
    closed: bool,
}

/// One pool of server connections.
pub struct Pool {
    pub database: Arc<str>,
    pub user: Arc<str>,
    spec: ArcSwap<ConnectSpec>,
    settings: ArcSwap<PoolSettings>,
    /// Set while the pool's node must not be used (fenced, or no primary): check-outs fail
    /// with [`PoolError::NoTarget`] and connections coming back are closed. Changed only with
    /// `inner` locked, so that no connection slips between the flag and the idle list.
    suspended: AtomicBool,
    inner: Mutex<Inner>,
    db_limit: Arc<Limit>,
    user_limit: Arc<Limit>,
    pub stats: PoolStats,
    /// Origin of the pool's clock for `reconnect_mark_us`.
    born: Instant,
    /// The standby this pool serves reads on; unset for a pool that follows the primary.
    reads_on: std::sync::OnceLock<Arc<str>>,
    /// Notified by [`Pool::retarget`] and [`Pool::suspend`]: connects still under way to
    /// the old node give up.
    retargeted: tokio::sync::Notify,
    /// Connections the janitor keeps open beyond `min_pool_size` (a standby's spares for
    /// its promotion, `pooler.standby_spares`).
    spares: AtomicUsize,
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
            spec: ArcSwap::from_pointee(spec),
            settings: ArcSwap::from_pointee(settings),
            suspended: AtomicBool::new(false),
            inner: Mutex::new(Inner {
                idle: Vec::new(),
                total: 0,
                reserve_in_use: 0,
                waiters: Default::default(),
                closed: false,
            }),
            db_limit,
            user_limit,
            stats: PoolStats::default(),
            born: Instant::now(),
            reads_on: std::sync::OnceLock::new(),
            retargeted: tokio::sync::Notify::new(),
            spares: AtomicUsize::new(0),
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
        self.settings.load_full()
    }

    /// The pool mode, read without taking a reference count (hot path).
    pub fn mode(&self) -> PoolMode {
        self.settings.load().mode
    }

    /// Replaces the settings (reload); applies to the next check-outs.
    pub fn set_settings(&self, s: PoolSettings) {
        self.settings.store(Arc::new(s));
    }

    /// Checks a connection out, waiting in arrival order (see [`waiter`]) up to `query_wait_timeout`. The connection
    /// holds its [`Slot`]: dropping it (instead of [`Self::release`] or [`Self::close`]) closes
    /// it and frees the slot.
    ///
    /// # Cancellation safety
    /// Dropping the future leaves the queue, returns any connection already handed over and
    /// frees a slot taken for a connection being opened.
    pub async fn checkout(self: &Arc<Self>) -> Result<Box<ServerConn>, PoolError> {
        let settings = self.settings.load();
        self.stats.checkouts.fetch_add(1, Ordering::Relaxed);
        let waiter = loop {
            let now = Instant::now();
            let decision = {
                let mut inner = lock(&self.inner);
                if inner.closed {
                    return Err(PoolError::Closed);
                }
                if self.is_suspended() {
                    return Err(PoolError::NoTarget);
                }
                match take_idle(&mut inner.idle) {
                    Some(conn) => Decision::Reuse(self.adopt(conn)),
                    None if inner.total < settings.size && self.take_limits() => {
                        inner.total += 1;
                        Decision::Connect(Slot::counted(self.clone()))
                    }
                    None => {
                        let (id, rx) = inner.waiters.push();
                        Decision::Wait(Waiter::new(self.clone(), id, rx))
                    }
                }
            };
            match decision {
                Decision::Reuse(conn) => match self.vet(conn, &settings, now).await {
                    Some(conn) => return Ok(activate(conn)),
                    None => continue,
                },
                // Boxed (rare): keeps the check-out future small.
                Decision::Connect(slot) => return Box::pin(self.open(slot)).await.map(activate),
                Decision::Wait(w) => break w,
            }
        };
        self.wait(waiter, &settings).await.map(activate)
    }

    /// Gives a connection taken from the idle list (or handed over) a slot of its own.
    fn adopt(self: &Arc<Self>, mut conn: Box<ServerConn>) -> Box<ServerConn> {
        conn.slot = Some(Slot::counted(self.clone()));
        conn
    }

    async fn wait(
        self: &Arc<Self>,
        mut waiter: Waiter,
        settings: &PoolSettings,
    ) -> Result<Box<ServerConn>, PoolError> {
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
                        None => return Box::pin(self.checkout()).await,
                    }
                }
                Some(None) => return Err(PoolError::Closed),
                None => {}
            }
            let now = Instant::now();
            if reserve_at.is_some_and(|r| now >= r) {
                reserve_at = None;
                if let Some(slot) = self.take_reserve(settings) {
                    drop(waiter);
                    return Box::pin(self.open(slot)).await;
                }
            }
            if deadline.is_some_and(|d| now >= d) {
                return Err(PoolError::WaitTimeout);
            }
        }
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

    fn take_reserve(self: &Arc<Self>, settings: &PoolSettings) -> Option<Slot> {
        let mut inner = lock(&self.inner);
        if inner.reserve_in_use < settings.reserve_size && self.take_limits() {
            inner.reserve_in_use += 1;
            inner.total += 1;
            Some(Slot::counted(self.clone()))
        } else {
            None
        }
    }

    /// Opens a connection for `slot` (`total` and the limits already taken); the slot is freed
    /// if the connect fails or is cancelled.
    async fn open(self: &Arc<Self>, slot: Slot) -> Result<Box<ServerConn>, PoolError> {
        let spec = self.spec();
        self.stats.connects.fetch_add(1, Ordering::Relaxed);
        // A connect to a node the pool no longer points at (a partitioned old primary may
        // answer nothing until `server_connect_timeout`) gives its slot up at once.
        let moved = self.retargeted.notified();
        // Boxed: a login is a large future, and it would otherwise make every check-out's
        // future (copied into the session's per-transaction box) as large as itself.
        let r = tokio::select! {
            r = Box::pin(connect(&spec)) => r,
            _ = moved => Err(crate::server::ServerError::Io {
                node: spec.node.to_string(),
                source: std::io::Error::other("connect abandoned: the pool now points elsewhere"),
            }),
        };
        match r {
            Ok(c) => {
                let mut c = Box::new(c);
                c.slot = Some(slot);
                // Fenced or re-pointed while connecting: the connection goes to a node that
                // must no longer serve this pool.
                if self.is_suspended() || !self.targets(&c.node) {
                    self.discard(c);
                    return Err(PoolError::NoTarget);
                }
                Ok(c)
            }
            Err(e) => {
                self.stats.connect_errors.fetch_add(1, Ordering::Relaxed);
                drop(slot);
                Err(e.into())
            }
        }
    }

    /// Checks an idle connection before use; `None` means it was discarded.
    async fn vet(
        self: &Arc<Self>,
        mut conn: Box<ServerConn>,
        settings: &PoolSettings,
        now: Instant,
    ) -> Option<Box<ServerConn>> {
        let expired = (!settings.lifetime.is_zero()
            && now.duration_since(conn.created) >= settings.lifetime)
            || self.is_stale(&conn);
        if expired || !conn.is_quiet() || self.is_suspended() || !self.targets(&conn.node) {
            self.discard(conn);
            return None;
        }
        let here = crate::net::worker::current();
        if conn.home != here && !conn.stream.is_tls() {
            // Taken on another worker than the one whose reactor holds its socket.
            match conn.stream.rebind() {
                Ok(stream) => {
                    conn.stream = stream;
                    conn.home = here;
                }
                Err(e) => {
                    tracing::debug!(error = %e, "server connection lost moving to this worker");
                    // The slot goes with the connection (adopted above).
                    self.stats.closed.fetch_add(1, Ordering::Relaxed);
                    return None;
                }
            }
        }
        if conn.recovery_check {
            // A standby's spare, handed over at its promotion (`adopt`).
            match conn.out_of_recovery().await {
                Ok(true) => conn.recovery_check = false,
                _ => {
                    self.discard(conn);
                    return None;
                }
            }
        }
        if !settings.check_query.is_empty()
            && now.duration_since(conn.last_used) >= settings.check_delay
        {
            match Box::pin(conn.control(&settings.check_query)).await {
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
        self.is_stale_at(conn.created)
    }

    fn is_stale_at(&self, created: Instant) -> bool {
        let mark = self.stats.reconnect_mark_us.load(Ordering::Relaxed);
        mark > 0 && (created.saturating_duration_since(self.born).as_micros() as u64) < mark
    }

    /// Closes idle connections now and the checked-out ones when they come back (`RECONNECT`).
    pub fn reconnect(self: &Arc<Self>) {
        let mark = self.born.elapsed().as_micros() as u64 + 1;
        self.stats.reconnect_mark_us.store(mark, Ordering::Relaxed);
        self.stats.stale.store(self.active(), Ordering::Relaxed);
        self.close_idle();
    }

    /// Counts a connection created at `created` out of `stale` if it predates `RECONNECT`.
    pub(super) fn settle_stale(&self, created: Instant) -> bool {
        let stale = self.is_stale_at(created);
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

    /// Returns a clean connection (idle, outside a transaction) to the pool it came from.
    pub fn release(self: &Arc<Self>, mut conn: Box<ServerConn>) {
        if let Some(owner) = conn.slot.as_ref().and_then(Slot::pool) {
            if !Arc::ptr_eq(owner, self) {
                let owner = owner.clone();
                return owner.release(conn);
            }
        }
        conn.last_used = Instant::now();
        if self.is_stale(&conn) || !self.targets(&conn.node) {
            self.discard(conn);
            return;
        }
        self.to_idle(conn);
    }

    /// Gives a connection whose slot this pool counts back to the idle list (or a waiter).
    fn to_idle(self: &Arc<Self>, mut conn: Box<ServerConn>) {
        match conn.slot.take() {
            Some(slot) => slot.keep(),
            None => {
                // Not counted by this pool: it never enters the idle list.
                self.stats.closed.fetch_add(1, Ordering::Relaxed);
                return;
            }
        }
        self.give_back(conn);
    }

    fn give_back(self: &Arc<Self>, conn: Box<ServerConn>) {
        let mut inner = lock(&self.inner);
        if inner.closed || self.is_suspended() {
            drop(inner);
            self.discard(conn);
            return;
        }
        if let Some(conn) = inner.waiters.hand(conn) {
            inner.idle.push(conn);
        }
    }

    /// Closes a checked-out connection that cannot be reused (dirty, broken).
    pub fn close(self: &Arc<Self>, conn: Box<ServerConn>) {
        self.discard(conn);
    }

    /// Drops a connection and frees its slot (through the slot's drop); wakes a waiter with a
    /// fresh connection if any. An idle connection (no slot of its own) is given one first.
    fn discard(self: &Arc<Self>, mut conn: Box<ServerConn>) {
        self.stats.closed.fetch_add(1, Ordering::Relaxed);
        if conn.slot.is_none() {
            conn.slot = Some(Slot::counted(self.clone()));
        }
        drop(conn);
    }

    /// Uncounts one connection; called only by [`Slot`]'s drop.
    pub(super) fn free_slot(self: &Arc<Self>) {
        let has_waiters = {
            let mut inner = lock(&self.inner);
            inner.total = inner.total.saturating_sub(1);
            if inner.reserve_in_use > 0 && inner.total < self.settings.load().size {
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

// A transient on the check-out's stack: boxing the connection would cost an allocation per
// check-out to save stack bytes.
#[allow(clippy::large_enum_variant)]
enum Decision {
    Reuse(Box<ServerConn>),
    Connect(Slot),
    Wait(Waiter),
}

/// The idle connection to check out: the most recently used one whose socket is on this
/// worker's reactor, else the most recently used one.
#[allow(clippy::vec_box)]
fn take_idle(idle: &mut Vec<Box<ServerConn>>) -> Option<Box<ServerConn>> {
    let here = crate::net::worker::current();
    match idle.iter().rposition(|c| c.home == here) {
        Some(i) => Some(idle.remove(i)),
        None => idle.pop(),
    }
}

/// Counts a checked-out connection as active (for as long as its slot lives).
fn activate(mut conn: Box<ServerConn>) -> Box<ServerConn> {
    let created = conn.created;
    if let Some(s) = conn.slot.as_mut() {
        s.activate(created);
    }
    conn
}

impl Drop for Pool {
    /// Idle connections count against the shared database and user limits: give those back.
    fn drop(&mut self) {
        let inner = match self.inner.get_mut() {
            Ok(i) => i,
            Err(p) => p.into_inner(),
        };
        for conn in inner.idle.drain(..) {
            drop(conn);
            self.db_limit.release();
            self.user_limit.release();
        }
    }
}

struct DecOnDrop<'a>(&'a AtomicUsize);

impl Drop for DecOnDrop<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}
