//! What every client session shares: configuration, credentials, pools, cancel keys, the pause
//! gate and where cluster databases live now. Owned by the daemon, passed as an `Arc`.

use crate::auth::Secret;
use crate::config::{Backend, Config, DatabaseConfig, NodeConfig};
use crate::net::pending::PendingLogins;
use crate::net::stream::ClientStream;
use crate::pool::{Pool, PoolSettings, Pools};
use crate::router::ClusterView;
use crate::server::{ConnectSpec, Credential};
use crate::session::auth_cache::AuthCache;
use crate::session::cancel::CancelMap;
use crate::session::clients::{ClientInfo, Clients, CloseReason, Registered};
use crate::session::writer::WriteLease;
use crate::tls::client::ServerTlsHandle;
use crate::tls::FrontDoor;
use crate::topology::Topology;
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
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

/// Database names that reach the admin console (`pgbouncer` for existing scripts and tools).
pub const CONSOLE_DATABASES: [&str; 2] = ["pgsluice", "pgbouncer"];

/// The admin console, installed by the daemon (the console sits above the session layer).
pub trait Console: Send + Sync {
    /// Serves a logged-in console client until it leaves.
    fn serve(
        &self,
        client: ClientStream,
        login: ConsoleLogin,
        registered: Registered,
    ) -> Pin<Box<dyn Future<Output = ()> + Send + 'static>>;
}

/// A client logged in to the console database.
#[derive(Debug, Clone)]
pub struct ConsoleLogin {
    pub user: String,
    /// Admin users may run every command; stats users only SHOW.
    pub admin: bool,
}

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

/// Shared state of the pooler's sessions.
pub struct SessionCtx {
    config: RwLock<Arc<Config>>,
    credentials: RwLock<Arc<HashMap<String, Secret>>>,
    topology: RwLock<(Topology, Option<NodeConfig>)>,
    /// Roles, WAL positions, lag and bans of the cluster's nodes (discovery, the router).
    nodes: RwLock<Arc<ClusterView>>,
    pub pools: Pools,
    pub cancels: Arc<CancelMap>,
    pub gate: Gate,
    pub totals: Totals,
    /// Named prepared statements of every client, and their counters.
    pub prepared: Arc<crate::session::prepared::Registry>,
    pub clients: Arc<Clients>,
    /// Set once a graceful shutdown began: new sessions are asked to close at once.
    pub shutting_down: AtomicBool,
    /// Set once this process handed its sockets to a new one: the shutdown drains, so that
    /// clients accepted just before the new process took over still run their transaction.
    pub handing_over: AtomicBool,
    console: OnceLock<Arc<dyn Console>>,
    /// HBA rules (and TLS) in force.
    front: RwLock<Arc<FrontDoor>>,
    /// `server_tls_*` in force (from the front door), shared with every connect spec.
    server_tls: ServerTlsHandle,
    /// Logins in progress (`max_pending_logins`).
    pub pending: Arc<PendingLogins>,
    /// `auth_query` answers and SCRAM pass-through keys.
    pub auth: AuthCache,
    /// The write lease: whether writes may go to the primary now (session::writer).
    pub writer: WriteLease,
}

fn read<T: Clone>(l: &RwLock<T>) -> T {
    match l.read() {
        Ok(g) => g.clone(),
        Err(p) => p.into_inner().clone(),
    }
}

impl SessionCtx {
    /// Context for a configuration and the secrets of its `auth_file`.
    pub fn new(config: Arc<Config>, file_secrets: HashMap<String, Secret>) -> Arc<Self> {
        let primary = config
            .cluster
            .as_ref()
            .and_then(|c| c.nodes.first().cloned());
        let credentials = Arc::new(merge_credentials(&config, file_secrets));
        let pending_cap = config.pooler.max_pending_logins;
        Arc::new(Self {
            config: RwLock::new(config),
            credentials: RwLock::new(credentials),
            topology: RwLock::new((Topology::default(), primary)),
            nodes: RwLock::default(),
            pools: Pools::default(),
            cancels: Arc::default(),
            gate: Gate::default(),
            totals: Totals::default(),
            prepared: Arc::default(),
            clients: Arc::default(),
            shutting_down: AtomicBool::new(false),
            handing_over: AtomicBool::new(false),
            console: OnceLock::new(),
            front: RwLock::default(),
            server_tls: ServerTlsHandle::default(),
            pending: PendingLogins::new(pending_cap),
            auth: AuthCache::default(),
            writer: WriteLease::default(),
        })
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

    /// The configuration in force.
    pub fn config(&self) -> Arc<Config> {
        read(&self.config)
    }

    /// Replaces configuration and credentials (reload); pools pick up settings at next use.
    pub fn set_config(&self, config: Arc<Config>, file_secrets: HashMap<String, Secret>) {
        let creds = Arc::new(merge_credentials(&config, file_secrets));
        self.pending.set_cap(config.pooler.max_pending_logins);
        if let Ok(mut c) = self.credentials.write() {
            *c = creds;
        }
        if let Ok(mut c) = self.config.write() {
            *c = config;
        }
    }

    /// HBA rules (and TLS) in force.
    pub fn front_door(&self) -> Arc<FrontDoor> {
        read(&self.front)
    }

    /// Installs new HBA rules (and TLS) (start, reload).
    pub fn set_front_door(&self, front: FrontDoor) {
        self.server_tls.set(front.server_tls.clone());
        if let Ok(mut f) = self.front.write() {
            *f = Arc::new(front);
        }
    }

    /// The secret a user logs in with, if known: the configuration and `auth_file` first,
    /// then the last `auth_query` answer.
    pub fn secret(&self, user: &str) -> Option<Secret> {
        read(&self.credentials)
            .get(user)
            .cloned()
            .or_else(|| self.auth.cached(user))
    }

    /// Whether the configuration or `auth_file` gives `user`'s secret.
    pub fn listed(&self, user: &str) -> bool {
        read(&self.credentials).contains_key(user)
    }

    /// The topology in force and the node that takes writes.
    pub fn topology(&self) -> (Topology, Option<NodeConfig>) {
        read(&self.topology)
    }

    /// Installs a topology and the primary's node; re-points cluster pools to it.
    pub fn set_topology(&self, topology: Topology, primary: Option<NodeConfig>) {
        self.writer.installed(&topology);
        if let Ok(mut t) = self.topology.write() {
            *t = (topology, primary.clone());
        }
        let config = self.config();
        for pool in self.pools.writer_pools() {
            let Some(db) = config.databases.get(&*pool.database) else {
                continue;
            };
            if db.backend == Backend::Cluster {
                if let Some(spec) = self.connect_spec(&config, db, &pool.user) {
                    pool.retarget(spec);
                }
            }
        }
    }

    /// The node view discovery published last (SHOW NODES, metrics, the router).
    pub fn cluster_view(&self) -> Arc<ClusterView> {
        read(&self.nodes)
    }

    /// Publishes a new node view (discovery).
    pub fn set_cluster_view(&self, view: ClusterView) {
        if let Ok(mut v) = self.nodes.write() {
            *v = Arc::new(view);
        }
    }

    /// Leaves node `name` out of reads until `until` (a connection to it failed).
    pub fn ban_node(&self, name: &str, until: std::time::Instant, why: String) {
        if let Ok(mut v) = self.nodes.write() {
            let mut view = (**v).clone();
            if let Some(i) = view.index(name) {
                let n = &mut view.nodes[i];
                n.banned_until = Some(until);
                n.failures += 1;
                n.last_error = Some(why);
                *v = Arc::new(view);
            }
        }
    }

    /// The pool of `(db, user)` on cluster node `node` (reads routed to a standby).
    pub fn node_pool(&self, db: &DatabaseConfig, user: &str, node: &str) -> Option<Arc<Pool>> {
        let config = self.config();
        let n = config.cluster.as_ref()?.node(node)?.clone();
        let pool_user = db.user.clone().unwrap_or_else(|| user.to_string());
        let user_max = config
            .users
            .get(user)
            .map(|u| u.max_user_connections)
            .filter(|m| *m > 0)
            .unwrap_or(config.pooler.max_user_connections);
        Some(self.pools.node_pool(
            (&db.name, &pool_user, node),
            db.max_db_connections,
            user_max,
            || {
                let mut spec = self.spec_for(&config, db, user, &n);
                spec.node = n.name.as_str().into();
                (spec, Self::pool_settings(&config, db, user))
            },
        ))
    }

    fn spec_for(
        &self,
        config: &Config,
        db: &DatabaseConfig,
        user: &str,
        n: &NodeConfig,
    ) -> ConnectSpec {
        let (server_user, credential) = match &db.user {
            Some(forced) => (
                forced.clone(),
                db.password
                    .clone()
                    .map_or_else(|| self.credential_for(forced), Credential::Password),
            ),
            None => (user.to_string(), self.credential_for(user)),
        };
        ConnectSpec {
            node: n.name.as_str().into(),
            host: n.host.clone(),
            port: n.port,
            user: server_user,
            database: db.dbname.clone(),
            credential,
            connect_timeout: config.pooler.server_connect_timeout,
            keepalive: config.pooler.tcp_keepalive,
            tls: self.server_tls.clone(),
        }
    }

    /// Where and as whom a pool for `(db, user)` connects, given the current primary.
    pub fn connect_spec(
        &self,
        config: &Config,
        db: &DatabaseConfig,
        user: &str,
    ) -> Option<ConnectSpec> {
        let (node, host, port) = match &db.backend {
            Backend::Host { host, port } => (format!("{host}:{port}"), host.clone(), *port),
            Backend::Cluster => {
                let n = self.topology().1?;
                (n.name.clone(), n.host.clone(), n.port)
            }
        };
        let (server_user, credential) = match &db.user {
            Some(forced) => (
                forced.clone(),
                db.password
                    .clone()
                    .map_or_else(|| self.credential_for(forced), Credential::Password),
            ),
            None => (user.to_string(), self.credential_for(user)),
        };
        Some(ConnectSpec {
            node: node.into(),
            host,
            port,
            user: server_user,
            database: db.dbname.clone(),
            credential,
            connect_timeout: config.pooler.server_connect_timeout,
            keepalive: config.pooler.tcp_keepalive,
            tls: self.server_tls.clone(),
        })
    }

    /// How the pooler logs in to a server as `user`: the password or MD5 hash it knows, or
    /// the SCRAM keys a client proved for the secret in force (pass-through).
    pub fn credential_for(&self, user: &str) -> Credential {
        match self.secret(user) {
            Some(Secret::Plain(p) | Secret::Md5(p)) => Credential::Password(p),
            Some(Secret::Scram(s)) => self
                .auth
                .scram_keys(user, &s.server_key)
                .unwrap_or_default(),
            None => Credential::None,
        }
    }

    /// Pool settings for `(db, user)` from the configuration.
    pub fn pool_settings(config: &Config, db: &DatabaseConfig, user: &str) -> PoolSettings {
        let p = &config.pooler;
        let u = config.users.get(user);
        PoolSettings {
            mode: u.and_then(|u| u.pool_mode).unwrap_or(db.pool_mode),
            size: u.and_then(|u| u.pool_size).unwrap_or(db.pool_size),
            min_size: db.min_pool_size,
            reserve_size: db.reserve_pool_size,
            reserve_timeout: p.reserve_pool_timeout,
            query_wait_timeout: p.query_wait_timeout,
            idle_timeout: p.server_idle_timeout,
            lifetime: p.server_lifetime,
            check_query: p.server_check_query.clone(),
            check_delay: p.server_check_delay,
            reset_query: p.server_reset_query.clone(),
        }
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
