//! The registry of connected clients, for the console (`SHOW CLIENTS`, `SHOW SERVERS`,
//! `KILL_CLIENT`) and for graceful shutdown.
//!
//! A client is registered once after login and removed when its session ends (one short lock
//! each). Per transaction the session only stores into its own [`ClientInfo`] atomics; asking a
//! session to close sets a flag and wakes it through an `AtomicWaker`, so nothing on the hot
//! path takes a lock.

use super::client_names::ClientNames;
use crate::net::stream::Peer;
use atomic_waker::AtomicWaker;
use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{SystemTime, UNIX_EPOCH};

/// Client state, as the console shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum ClientState {
    Login,
    Idle,
    Waiting,
    Active,
}

/// Why a session was asked to close.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum CloseReason {
    /// The client's server connection is on a node a topology just fenced (or that stopped
    /// being the primary): close now, even mid-transaction, so that nothing more reaches it.
    Fenced = 1,
    /// The client holds a server and sent part of a message, then nothing more for
    /// `client_message_timeout` (seen by the janitor): close now, the server with it.
    Stalled = 2,
    /// `KILL_CLIENT` or `KILL db`: close now, even mid-transaction.
    Killed = 3,
    /// Graceful shutdown: close at the next transaction boundary (an idle client at once).
    Shutdown = 4,
    /// Draining after a hand-over: a client that has not run a transaction yet (it may have
    /// connected just before the new process took over) is left to run one and is closed at
    /// its first transaction boundary; see [`ClientInfo::has_run`].
    Drain = 5,
}

impl CloseReason {
    fn from_u8(v: u8) -> Option<Self> {
        match v {
            1 => Some(Self::Fenced),
            2 => Some(Self::Stalled),
            3 => Some(Self::Killed),
            4 => Some(Self::Shutdown),
            5 => Some(Self::Drain),
            _ => None,
        }
    }

    /// SQLSTATE and message told to the client.
    pub fn error(self) -> (&'static str, &'static str) {
        match self {
            Self::Fenced => (
                "08006",
                "terminating connection because its server node was fenced (failover)",
            ),
            Self::Stalled => ("08P01", "client_message_timeout"),
            Self::Killed => (
                "57P01",
                "terminating connection due to administrator command",
            ),
            Self::Shutdown | Self::Drain => ("57P01", "pgsluice is shutting down"),
        }
    }
}

/// Microseconds since the Unix epoch.
pub fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// What the console shows of one client; updated by its session with relaxed stores.
#[derive(Debug)]
pub struct ClientInfo {
    /// The pooler-issued backend pid (also the `KILL_CLIENT` id).
    pub id: i32,
    /// User, pool user, database and application name (interned by the registry).
    names: Arc<ClientNames>,
    pub peer: Peer,
    /// Login time, µs since the epoch.
    pub connect_time_us: u64,
    /// Whether this is a console session.
    pub console: bool,
    state: AtomicU8,
    /// Start of the current or last request, µs since the epoch.
    request_time_us: AtomicU64,
    /// Backend pid of the attached server connection (0 = none).
    server_pid: AtomicI32,
    /// Since when (ms since the epoch) the attached server waits for the rest of a client
    /// message; 0 = it does not.
    partial_since_ms: AtomicU64,
    /// Identity of the pool the attached server came from (0 when none), so that a fence can
    /// close the clients attached to that pool's node.
    pool_id: AtomicUsize,
    /// Set when the client asks for its first server.
    has_run: AtomicBool,
    close: AtomicU8,
    waker: AtomicWaker,
}

impl ClientInfo {
    /// A client that just logged in (state idle).
    pub fn new(
        id: i32,
        (user, pool_user): (&str, &str),
        database: &str,
        application_name: &str,
        peer: Peer,
        console: bool,
    ) -> Self {
        let now = now_us();
        Self {
            id,
            names: Arc::new(ClientNames::new(
                user,
                pool_user,
                database,
                application_name,
            )),
            peer,
            connect_time_us: now,
            console,
            state: AtomicU8::new(ClientState::Idle as u8),
            request_time_us: AtomicU64::new(now),
            server_pid: AtomicI32::new(0),
            pool_id: AtomicUsize::new(0),
            partial_since_ms: AtomicU64::new(0),
            has_run: AtomicBool::new(false),
            close: AtomicU8::new(0),
            waker: AtomicWaker::new(),
        }
    }

    /// The user the client logged in as.
    pub fn user(&self) -> &str {
        self.names.user()
    }

    /// The user of the pool the client draws from (the database's forced user, if any).
    pub fn pool_user(&self) -> &str {
        self.names.pool_user()
    }

    /// The database the client asked for.
    pub fn database(&self) -> &str {
        self.names.database()
    }

    /// The client's `application_name` at login.
    pub fn application_name(&self) -> &str {
        self.names.application_name()
    }

    /// The client asked for a server: it waits (for the gate or the pool).
    pub fn waiting(&self, now_us: u64) {
        self.request_time_us.store(now_us, Ordering::Relaxed);
        self.has_run.store(true, Ordering::Relaxed);
        self.state
            .store(ClientState::Waiting as u8, Ordering::Relaxed);
    }

    /// The client got server `pid` from the pool identified by `pool_id` and forwards.
    /// The store is sequentially consistent: a fence that suspends the pool and then scans
    /// the clients, and a session that stores here and then checks the pool, cannot both miss.
    pub fn active(&self, pid: i32, pool_id: usize) {
        self.server_pid.store(pid, Ordering::Relaxed);
        self.pool_id.store(pool_id, Ordering::SeqCst);
        self.state
            .store(ClientState::Active as u8, Ordering::Relaxed);
    }

    /// The forwarder went to sleep waiting for the client, with part of a message (`true`)
    /// or none: one relaxed load per sleep, a clock read only when a stall begins.
    pub fn mark_partial(&self, partial: bool) {
        let since = self.partial_since_ms.load(Ordering::Relaxed);
        if partial && since == 0 {
            self.partial_since_ms
                .store((now_us() / 1000).max(1), Ordering::Relaxed);
        } else if !partial && since != 0 {
            self.partial_since_ms.store(0, Ordering::Relaxed);
        }
    }

    /// How long (ms) the client has held its server with part of a message, if it does.
    pub fn stalled_for_ms(&self, now_ms: u64) -> Option<u64> {
        let since = self.partial_since_ms.load(Ordering::Relaxed);
        (since != 0).then(|| now_ms.saturating_sub(since))
    }

    /// The client gave its server back.
    pub fn idle(&self) {
        self.partial_since_ms.store(0, Ordering::Relaxed);
        self.server_pid.store(0, Ordering::Relaxed);
        self.pool_id.store(0, Ordering::Relaxed);
        self.state.store(ClientState::Idle as u8, Ordering::Relaxed);
    }

    /// Whether the client has asked for a server at least once since its login.
    pub fn has_run(&self) -> bool {
        self.has_run.load(Ordering::Relaxed)
    }

    /// State now.
    pub fn state(&self) -> ClientState {
        match self.state.load(Ordering::Relaxed) {
            x if x == ClientState::Waiting as u8 => ClientState::Waiting,
            x if x == ClientState::Active as u8 => ClientState::Active,
            x if x == ClientState::Login as u8 => ClientState::Login,
            _ => ClientState::Idle,
        }
    }

    /// Start of the current or last request (µs since the epoch).
    pub fn request_time_us(&self) -> u64 {
        self.request_time_us.load(Ordering::Relaxed)
    }

    /// Since when the client waits for a server (µs since the epoch), if it does: a waiting
    /// client's request started when its wait did.
    pub fn wait_since_us(&self) -> Option<u64> {
        (self.state() == ClientState::Waiting).then(|| self.request_time_us())
    }

    /// Backend pid of the attached server, if any.
    pub fn server_pid(&self) -> Option<i32> {
        Some(self.server_pid.load(Ordering::Relaxed)).filter(|p| *p != 0)
    }

    /// Asks the session to close (a stronger reason wins) and wakes it.
    pub fn request_close(&self, why: CloseReason) {
        let _ = self
            .close
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |old| {
                (old == 0 || (why as u8) < old).then_some(why as u8)
            });
        self.waker.wake();
    }

    /// Whether (and why) the session was asked to close.
    pub fn close_requested(&self) -> Option<CloseReason> {
        CloseReason::from_u8(self.close.load(Ordering::Acquire))
    }

    /// Completes when the session is asked to close for at least `min` (Killed < Shutdown <
    /// Drain).
    ///
    /// # Cancellation safety
    /// Safe: it holds no state but the registered waker.
    pub fn closing(&self, min: CloseReason) -> Closing<'_> {
        Closing { info: self, min }
    }

    /// [`ClientInfo::closing`] as a poll function: ready with a request at least as strong as
    /// `min`, otherwise the task's waker is registered.
    pub fn poll_closing(&self, min: CloseReason, cx: &mut Context<'_>) -> Poll<CloseReason> {
        let check = || self.close_requested().filter(|r| (*r as u8) <= min as u8);
        if let Some(r) = check() {
            return Poll::Ready(r);
        }
        self.waker.register(cx.waker());
        match check() {
            Some(r) => Poll::Ready(r),
            None => Poll::Pending,
        }
    }
}

/// Future of [`ClientInfo::closing`].
pub struct Closing<'a> {
    info: &'a ClientInfo,
    min: CloseReason,
}

impl Future for Closing<'_> {
    type Output = CloseReason;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<CloseReason> {
        self.info.poll_closing(self.min, cx)
    }
}

/// Every logged-in client.
#[derive(Debug, Default)]
pub struct Clients {
    map: Mutex<HashMap<i32, Arc<ClientInfo>>>,
    /// The names of the clients now, one copy each (thousands of clients of one application
    /// share a single allocation).
    names: Mutex<HashSet<Arc<ClientNames>>>,
}

/// Removes a client from the registry when its session ends.
pub struct Registered {
    clients: Arc<Clients>,
    pub info: Arc<ClientInfo>,
}

impl Drop for Registered {
    fn drop(&mut self) {
        if let Ok(mut m) = self.clients.map.lock() {
            m.remove(&self.info.id);
        }
        // The last client with these names takes them out of the set (the set holds one
        // reference, this client another); a copy of the entry the console still holds is
        // left to `sweep_names`.
        if let Ok(mut names) = self.clients.names.lock() {
            if Arc::strong_count(&self.info.names) == 2 && Arc::strong_count(&self.info) == 1 {
                names.remove(&self.info.names);
            }
        }
    }
}

impl Clients {
    /// Registers a client until the returned guard drops.
    pub fn register(self: &Arc<Self>, mut info: ClientInfo) -> Registered {
        if let Ok(mut names) = self.names.lock() {
            match names.get(&info.names) {
                Some(shared) => info.names = shared.clone(),
                None => {
                    names.insert(info.names.clone());
                }
            }
        }
        let info = Arc::new(info);
        if let Ok(mut m) = self.map.lock() {
            m.insert(info.id, info.clone());
        }
        Registered {
            clients: self.clone(),
            info,
        }
    }

    /// Forgets names no client uses any more (the janitor's pass: a client whose entry the
    /// console still held when it left could not take its names out itself).
    pub fn sweep_names(&self) {
        if let Ok(mut names) = self.names.lock() {
            names.retain(|n| Arc::strong_count(n) > 1);
        }
    }

    /// How many distinct sets of names the clients now have.
    #[cfg(test)]
    fn distinct_names(&self) -> usize {
        self.names.lock().map_or(0, |n| n.len())
    }

    /// The clients that have held their server with part of a message for `limit_ms` or
    /// longer at `now_ms`: one pass under the lock, no copy of the whole registry (the janitor
    /// asks every second, on a worker that also serves clients).
    pub fn stalled(&self, now_ms: u64, limit_ms: u64) -> Vec<Arc<ClientInfo>> {
        let pick = |m: &HashMap<i32, Arc<ClientInfo>>| {
            m.values()
                .filter(|c| c.stalled_for_ms(now_ms).is_some_and(|ms| ms >= limit_ms))
                .cloned()
                .collect()
        };
        match self.map.lock() {
            Ok(m) => pick(&m),
            Err(p) => pick(&p.into_inner()),
        }
    }

    /// Every client now, ordered by id.
    pub fn all(&self) -> Vec<Arc<ClientInfo>> {
        let mut v: Vec<_> = match self.map.lock() {
            Ok(m) => m.values().cloned().collect(),
            Err(p) => p.into_inner().values().cloned().collect(),
        };
        v.sort_by_key(|c| c.id);
        v
    }

    /// The client with this id.
    pub fn get(&self, id: i32) -> Option<Arc<ClientInfo>> {
        self.map.lock().ok().and_then(|m| m.get(&id).cloned())
    }

    /// Asks every client attached to a server of pool `pool_id` to close for `why`; returns
    /// how many were asked.
    pub fn close_attached(&self, pool_id: usize, why: CloseReason) -> usize {
        let attached: Vec<Arc<ClientInfo>> = match self.map.lock() {
            Ok(m) => m.values().cloned().collect(),
            Err(p) => p.into_inner().values().cloned().collect(),
        };
        let mut n = 0;
        for c in attached {
            if c.pool_id.load(Ordering::SeqCst) == pool_id {
                c.request_close(why);
                n += 1;
            }
        }
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info() -> ClientInfo {
        ClientInfo::new(7, ("u", "u"), "d", "", Peer::Unix, false)
    }

    #[test]
    fn clients_with_the_same_names_share_them_until_the_last_leaves() {
        let clients = Arc::new(Clients::default());
        let named = |id, app| ClientInfo::new(id, ("u", "u"), "d", app, Peer::Unix, false);
        let a = clients.register(named(1, "app"));
        let b = clients.register(named(2, "app"));
        let c = clients.register(named(3, "other"));
        assert!(Arc::ptr_eq(&a.info.names, &b.info.names));
        assert_eq!(b.info.application_name(), "app");
        assert_eq!(clients.distinct_names(), 2);
        drop(a);
        assert_eq!(clients.distinct_names(), 2, "b still uses \"app\"");
        drop(b);
        drop(c);
        assert_eq!(clients.distinct_names(), 0);
        // The console held a client's entry when it left: the janitor's sweep forgets them.
        let d = clients.register(named(4, "held"));
        let held = clients.get(4);
        drop(d);
        assert_eq!(clients.distinct_names(), 1);
        drop(held);
        clients.sweep_names();
        assert_eq!(clients.distinct_names(), 0);
    }

    #[test]
    fn a_waiting_client_waits_since_its_request() {
        let i = info();
        assert_eq!(i.wait_since_us(), None);
        i.waiting(42);
        assert_eq!(i.wait_since_us(), Some(42));
        i.active(1, 1);
        assert_eq!(i.wait_since_us(), None);
        assert_eq!(i.request_time_us(), 42);
    }

    #[tokio::test]
    async fn closing_wakes_on_request_and_respects_strength() {
        let i = Arc::new(info());
        let j = i.clone();
        let t = tokio::spawn(async move { j.closing(CloseReason::Shutdown).await });
        tokio::task::yield_now().await;
        i.request_close(CloseReason::Shutdown);
        assert_eq!(t.await.unwrap(), CloseReason::Shutdown);
        // Only Killed passes a Killed-only wait; a later Killed overrides Shutdown.
        let only_kill = tokio::time::timeout(
            std::time::Duration::from_millis(20),
            i.closing(CloseReason::Killed),
        )
        .await;
        assert!(only_kill.is_err());
        i.request_close(CloseReason::Killed);
        assert_eq!(i.closing(CloseReason::Killed).await, CloseReason::Killed);
        i.request_close(CloseReason::Shutdown);
        assert_eq!(i.close_requested(), Some(CloseReason::Killed));
    }

    #[tokio::test]
    async fn drain_does_not_close_an_idle_wait_but_shutdown_overrides_it() {
        let i = info();
        assert!(!i.has_run());
        i.request_close(CloseReason::Drain);
        let idle_wait = tokio::time::timeout(
            std::time::Duration::from_millis(20),
            i.closing(CloseReason::Shutdown),
        )
        .await;
        assert!(idle_wait.is_err());
        assert_eq!(i.closing(CloseReason::Drain).await, CloseReason::Drain);
        i.request_close(CloseReason::Shutdown);
        assert_eq!(
            i.closing(CloseReason::Shutdown).await,
            CloseReason::Shutdown
        );
        i.waiting(1);
        assert!(i.has_run());
    }

    #[test]
    fn registry_removes_on_drop() {
        let c = Arc::new(Clients::default());
        let g = c.register(info());
        assert_eq!(c.all().len(), 1);
        g.info.waiting(5);
        assert_eq!(g.info.state(), ClientState::Waiting);
        g.info.active(42, 1);
        assert_eq!(g.info.server_pid(), Some(42));
        drop(g);
        assert!(c.get(7).is_none());
    }
}
