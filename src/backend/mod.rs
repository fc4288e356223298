//! The backend layer: what every client session shares, owned in one place.
//!
//! [`Backend`] holds the configuration snapshot (swapped whole on reload, read without a
//! lock), the cluster truth (topology, the primary's node and the discovery view; changed only
//! through [`Backend::apply`] and [`Backend::propose_primary`]), the pool registry and the
//! mapping from (database, user, primary or standby) to a pool, the client registry, the pause
//! gate and the login-side credential store. Sessions, the admin console, the metrics and the
//! daemon each hold an `Arc<Backend>`; none of them reaches into another for shared state.
//!
//! Layering: `backend` uses `config`, `topology`, `auth`, `net`, `tls`, `server`, `pool` and
//! `router`; `session`, `admin` and `daemon` sit above it.

pub mod auth_cache;
pub mod client_names;
pub mod clients;
mod cluster;
pub mod console;
pub mod gate;
mod spares;
mod targets;
pub mod writer;

pub use cluster::{ApplyError, ClusterTruth};
pub use console::{Console, ConsoleLogin, CONSOLE_DATABASES};
pub use gate::{DbGate, Gate};
pub use targets::Target;

use crate::auth::Secret;
use crate::config::Config;
use crate::net::pending::PendingLogins;
use crate::net::stream::{ClientStream, Peer};
use crate::pool::Pools;
use crate::tls::client::ServerTlsHandle;
use crate::tls::FrontDoor;
use arc_swap::{ArcSwap, Guard};
use auth_cache::AuthCache;
use clients::{ClientInfo, Clients, CloseReason, Registered};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use tokio_util::task::TaskTracker;

/// Starts one client session on the tracker's runtime: the session layer's entry point,
/// handed to the daemon by the command line's wiring (the daemon drives the backend and never
/// reaches into sessions). The session layer spawns its own future type, so the task holds
/// the session inline (no second allocation per client).
pub type SessionStarter = Arc<dyn Fn(ClientStream, Peer, &TaskTracker) + Send + Sync>;

/// Counters over all clients, for logs and metrics.
#[derive(Default)]
pub struct Totals {
    pub clients: AtomicUsize,
    pub logins: AtomicU64,
    pub login_failures: AtomicU64,
    pub transactions: AtomicU64,
    pub queries: AtomicU64,
    pub bytes_in: AtomicU64,
    pub bytes_out: AtomicU64,
    pub server_errors: AtomicU64,
    /// Clients refused at login (`max_client_conn`, disabled database, shutdown).
    pub refused: AtomicU64,
}

/// The pooler's shared state. Created once by the daemon; see the module doc.
pub struct Backend {
    config: ArcSwap<Config>,
    credentials: ArcSwap<HashMap<String, Secret>>,
    /// Topology, primary node and node view, replaced whole; writers serialise on `apply_lock`.
    truth: ArcSwap<ClusterTruth>,
    apply_lock: Mutex<()>,
    pub pools: Pools,
    pub gate: Gate,
    pub totals: Totals,
    pub clients: Arc<Clients>,
    /// Set once a graceful shutdown began: new sessions are asked to close at once.
    pub shutting_down: AtomicBool,
    /// Set once this process handed its sockets to a new one: the shutdown drains, so that
    /// clients accepted just before the new process took over still run their transaction.
    pub handing_over: AtomicBool,
    console: OnceLock<Arc<dyn Console>>,
    /// HBA rules (and TLS) in force.
    front: ArcSwap<FrontDoor>,
    /// `server_tls_*` in force (from the front door), shared with every connect spec.
    server_tls: ServerTlsHandle,
    /// Logins in progress (`max_pending_logins`).
    pub pending: Arc<PendingLogins>,
    /// `auth_query` answers and SCRAM pass-through keys.
    pub auth: AuthCache,
    /// The write lease: whether writes may go to the primary now (`writer`).
    pub writer: writer::WriteLease,
    /// Raised when a connection to a cluster database's primary broke or could not be opened;
    /// the daemon asks the agent to probe at once (`daemon::agent_notice`).
    pub primary_trouble: tokio::sync::Notify,
}

impl Backend {
    /// The backend for a configuration and the secrets of its `auth_file`.
    pub fn new(config: Arc<Config>, file_secrets: HashMap<String, Secret>) -> Arc<Self> {
        let credentials = Arc::new(merge_credentials(&config, file_secrets));
        let pending_cap = config.pooler.max_pending_logins;
        let truth = ClusterTruth::initial(&config);
        Arc::new(Self {
            config: ArcSwap::new(config),
            credentials: ArcSwap::new(credentials),
            truth: ArcSwap::from_pointee(truth),
            apply_lock: Mutex::new(()),
            pools: Pools::default(),
            gate: Gate::default(),
            totals: Totals::default(),
            clients: Arc::default(),
            shutting_down: AtomicBool::new(false),
            handing_over: AtomicBool::new(false),
            console: OnceLock::new(),
            front: ArcSwap::from_pointee(FrontDoor::default()),
            server_tls: ServerTlsHandle::default(),
            pending: PendingLogins::new(pending_cap),
            auth: AuthCache::default(),
            writer: writer::WriteLease::default(),
            primary_trouble: tokio::sync::Notify::new(),
        })
    }

    /// The configuration in force (one reference count; see [`Backend::config_ref`]).
    pub fn config(&self) -> Arc<Config> {
        self.config.load_full()
    }

    /// The configuration in force, borrowed without a lock or a reference count: for reads
    /// that do not cross an `.await`.
    pub fn config_ref(&self) -> Guard<Arc<Config>> {
        self.config.load()
    }

    /// Whether `config` is the configuration in force (a pointer compare, no reference count).
    pub fn config_is(&self, config: &Arc<Config>) -> bool {
        Arc::ptr_eq(&self.config.load(), config)
    }

    /// Replaces configuration and credentials (reload); pools pick up settings at next use.
    pub fn set_config(&self, config: Arc<Config>, file_secrets: HashMap<String, Secret>) {
        let creds = Arc::new(merge_credentials(&config, file_secrets));
        self.pending.set_cap(config.pooler.max_pending_logins);
        self.credentials.store(creds);
        self.config.store(config);
    }

    /// Installs the console (once, by the daemon).
    pub fn set_console(&self, console: Arc<dyn Console>) {
        let _ = self.console.set(console);
    }

    /// The console, if the daemon installed one.
    pub fn console(&self) -> Option<Arc<dyn Console>> {
        self.console.get().cloned()
    }

    /// Registers a logged-in client; during a shutdown it is asked to close at once (after
    /// its first transaction when draining after a hand-over).
    pub fn register_client(&self, info: ClientInfo) -> Registered {
        let r = self.clients.register(info);
        if self.shutting_down.load(Ordering::Acquire) {
            r.info.request_close(self.shutdown_reason(&r.info));
        }
        r
    }

    /// How a graceful shutdown closes `client`: at its next boundary (idle: at once), or,
    /// when draining after a hand-over and it has run no transaction yet, after its first.
    pub fn shutdown_reason(&self, client: &ClientInfo) -> CloseReason {
        if self.handing_over.load(Ordering::Acquire) && !client.console && !client.has_run() {
            CloseReason::Drain
        } else {
            CloseReason::Shutdown
        }
    }

    /// HBA rules (and TLS) in force.
    pub fn front_door(&self) -> Arc<FrontDoor> {
        self.front.load_full()
    }

    /// Installs new HBA rules (and TLS) (start, reload).
    pub fn set_front_door(&self, front: FrontDoor) {
        self.server_tls.set(front.server_tls.clone());
        self.front.store(Arc::new(front));
    }

    /// The secret a user logs in with, if known: the configuration and `auth_file` first,
    /// then the last `auth_query` answer.
    pub fn secret(&self, user: &str) -> Option<Secret> {
        self.credentials
            .load()
            .get(user)
            .cloned()
            .or_else(|| self.auth.cached(user))
    }

    /// Whether the configuration or `auth_file` gives `user`'s secret.
    pub fn listed(&self, user: &str) -> bool {
        self.credentials.load().contains_key(user)
    }
}

fn merge_credentials(config: &Config, file: HashMap<String, Secret>) -> HashMap<String, Secret> {
    let mut all = file;
    for (name, u) in &config.users {
        if let Some(pw) = &u.password {
            all.insert(name.clone(), Secret::parse(pw));
        }
    }
    all
}
