//! The pooler daemon: builds the runtime, wires listener, sessions, console, janitor,
//! discovery and the HTTP endpoint together; reload lives here, signals, shutdown and the
//! socket hand-over in [`lifecycle`].

pub mod agent_notice;
pub mod discovery;
pub mod etcd_watch;
pub mod http;
pub mod lifecycle;
pub mod metrics;
pub mod trim;
pub mod workers;

use crate::admin::{Admin, ConsoleHandle};
use crate::auth::{parse_userlist, Secret};
use crate::backend::clients::CloseReason;
use crate::backend::{Backend, SessionStarter};
use crate::config::{self, Config};
use crate::net::listener;
use lifecycle::Lifecycle;
use std::collections::HashMap;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Why the daemon could not run.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("{0}")]
    Config(#[from] config::ConfigError),
    #[error("auth_file {path}: {message}")]
    AuthFile { path: String, message: String },
    #[error("{0}")]
    FrontDoor(#[from] crate::tls::FrontDoorError),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("runtime: {0}")]
    Runtime(std::io::Error),
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
}

/// Builds the [`SessionStarter`] over the pooler's backend.
pub type Sessions = fn(Arc<Backend>) -> SessionStarter;

/// Reads the `auth_file` named by the configuration, if any.
pub fn load_auth_file(config: &Config) -> Result<HashMap<String, Secret>, DaemonError> {
    let Some(path) = &config.pooler.auth_file else {
        return Ok(HashMap::new());
    };
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| DaemonError::AuthFile {
        path: shown.clone(),
        message: e.to_string(),
    })?;
    let entries = parse_userlist(&text).map_err(|e| DaemonError::AuthFile {
        path: shown,
        message: e.to_string(),
    })?;
    Ok(entries.into_iter().collect())
}

/// Runs the pooler for the configuration at `path` until a shutdown signal.
pub fn run_pooler(path: &Path, sessions: Sessions) -> Result<(), DaemonError> {
    let config = Arc::new(config::load(path)?);
    let secrets = load_auth_file(&config)?;
    // One current-thread runtime per worker: this thread is worker 0 (it also accepts and
    // runs the janitor, the console and the HTTP endpoint); clients are dealt out in turn.
    let count = match config.pooler.workers {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .thread_name("pgsluice-worker")
        .build()
        .map_err(DaemonError::Runtime)?;
    let workers = Arc::new(workers::Workers::start(count).map_err(DaemonError::Runtime)?);
    let served = rt.block_on(serve(
        path.to_path_buf(),
        config,
        secrets,
        sessions,
        workers.clone(),
    ));
    workers.stop();
    served
}

async fn serve(
    path: PathBuf,
    config: Arc<Config>,
    secrets: HashMap<String, Secret>,
    sessions: Sessions,
    workers: Arc<workers::Workers>,
) -> Result<(), DaemonError> {
    let addr = config.pooler.listen;
    let listen_err = |source| DaemonError::Listen {
        addr: addr.to_string(),
        source,
    };
    let listener = match lifecycle::inherited("listen", addr) {
        Some(l) => tokio::net::TcpListener::from_std(l)
            .map(listener::Listener::Tcp)
            .map_err(listen_err)?,
        None => listener::bind(addr, config.pooler.so_reuseport, 4096).map_err(listen_err)?,
    };
    let ctx = Backend::new(config.clone(), secrets);
    let start = sessions(ctx.clone());
    ctx.set_front_door(crate::tls::FrontDoor::load(&config.pooler)?);
    let stop = CancellationToken::new();
    let tracker = TaskTracker::new();
    let life = Lifecycle::new(path, ctx.clone(), stop.clone());
    if let listener::Listener::Tcp(l) = &listener {
        life.add_fd("listen", l.as_raw_fd());
    }
    let admin = Admin::new(ctx.clone(), life.clone());
    ctx.set_console(Arc::new(ConsoleHandle(Arc::downgrade(&admin))));
    if config.metrics.enabled {
        let maddr = config.metrics.listen;
        let http = match lifecycle::inherited("metrics", maddr) {
            Some(l) => tokio::net::TcpListener::from_std(l),
            None => http::bind(maddr).await,
        }
        .map_err(|source| DaemonError::Listen {
            addr: maddr.to_string(),
            source,
        })?;
        life.add_fd("metrics", http.as_raw_fd());
        crate::net::http::log_control_state(&config.control);
        let metrics = Arc::new(metrics::Metrics::new(ctx.clone())?);
        tokio::spawn(http::serve(http, ctx.clone(), metrics, stop.clone()));
    }
    if config.cluster.is_some() {
        tokio::spawn(discovery::run(ctx.clone(), stop.clone()));
    }
    if let config::StateStoreConfig::Etcd(e) = &config.agent.state_store {
        tokio::spawn(etcd_watch::run(ctx.clone(), e.clone(), stop.clone()));
    }
    tokio::spawn(janitor(admin.clone(), stop.clone()));
    tokio::spawn(agent_notice::run(ctx.clone(), stop.clone()));
    tokio::spawn(lifecycle::signals(life.clone()));
    tracing::info!(%addr, "pooler listening");
    if let Some(dir) = &config.pooler.unix_socket_dir {
        let unix = listener::bind_unix(dir, addr.port()).map_err(|source| DaemonError::Listen {
            addr: dir
                .join(format!(".s.PGSQL.{}", addr.port()))
                .display()
                .to_string(),
            source,
        })?;
        let (start, tracker, workers) = (start.clone(), tracker.clone(), workers.clone());
        tokio::spawn(listener::accept_loop(
            unix,
            stop.clone(),
            false,
            move |stream, peer| workers.deal(stream, peer, &start, &tracker),
        ));
    }
    lifecycle::notify_ready();
    let accept_tracker = tracker.clone();
    listener::accept_loop(
        listener,
        stop.clone(),
        config.pooler.tcp_keepalive,
        |stream, peer| workers.deal(stream, peer, &start, &accept_tracker),
    )
    .await;
    tracing::info!(
        clients = ctx.totals.clients.load(Ordering::Relaxed),
        "stopped accepting"
    );
    life.finish(&tracker).await;
    drop(admin);
    Ok(())
}

/// Maintains pools every second, samples the console's averages and logs a stats line every
/// `stats_period`; pools of databases removed by a reload lose their idle connections.
async fn janitor(admin: Arc<Admin>, stop: CancellationToken) {
    let ctx = admin.ctx.clone();
    let mut last_stats = Instant::now();
    let mut last_sample = Instant::now();
    let mut last_tx = 0u64;
    let mut trim = trim::Trim::default();
    admin.averages.sample(&ctx);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
        let config = ctx.config();
        close_stalled(&ctx, config.pooler.client_message_timeout);
        ctx.clients.sweep_names();
        if trim.pass(ctx.totals.clients.load(Ordering::Relaxed)) {
            tracing::debug!("many clients left: free memory returned to the system");
        }
        ctx.keep_spares();
        for p in ctx.pools.all() {
            if config.database(&p.database).is_some() {
                p.maintain();
            } else {
                p.close_idle();
            }
        }
        let period = config.pooler.stats_period;
        let sample_every = if period.is_zero() {
            Duration::from_secs(60)
        } else {
            period
        };
        if last_sample.elapsed() >= sample_every {
            admin.averages.sample(&ctx);
            last_sample = Instant::now();
        }
        if !period.is_zero() && last_stats.elapsed() >= period {
            let tx = ctx.totals.transactions.load(Ordering::Relaxed);
            let rate = (tx - last_tx) as f64 / last_stats.elapsed().as_secs_f64();
            tracing::info!(
                clients = ctx.totals.clients.load(Ordering::Relaxed),
                transactions = tx,
                tps = format!("{rate:.1}"),
                "stats"
            );
            last_tx = tx;
            last_stats = Instant::now();
        }
    }
}

/// `client_message_timeout`: closes clients that hold a server with part of a message and
/// sent nothing more for that long (checked each janitor pass, so within a second of it; no
/// timer is armed per transaction).
fn close_stalled(ctx: &Backend, timeout: Duration) {
    if timeout.is_zero() {
        return;
    }
    let now_ms = crate::backend::clients::now_us() / 1000;
    let limit = timeout.as_millis() as u64;
    for c in ctx.clients.stalled(now_ms, limit) {
        tracing::info!(
            client_id = c.id,
            "client_message_timeout: closing a stalled client"
        );
        c.request_close(CloseReason::Stalled);
    }
}

/// Re-reads the configuration (and `auth_file`); an invalid one is refused, the old one kept.
pub fn reload(path: &Path, ctx: &Backend) -> Result<(), DaemonError> {
    lifecycle::notify_reloading(false);
    let result = config::load(path)
        .map_err(DaemonError::from)
        .and_then(|c| install(ctx, c));
    match &result {
        Ok(()) => tracing::info!("configuration reloaded"),
        Err(e) => tracing::error!(error = %e, "reload refused; keeping the old configuration"),
    }
    lifecycle::notify_reloading(true);
    result
}

/// Puts a validated configuration in force: pool settings and caps apply to the next
/// check-outs; clients of a removed database are closed at their next transaction boundary.
pub fn install(ctx: &Backend, c: Config) -> Result<(), DaemonError> {
    let secrets = load_auth_file(&c)?;
    let front = crate::tls::FrontDoor::load(&c.pooler)?;
    let c = Arc::new(c);
    // In force before the pools are updated: a pool created meanwhile (by a login) reads it.
    ctx.set_config(c.clone(), secrets);
    ctx.set_front_door(front);
    ctx.refresh_pools(&c);
    for client in ctx.clients.all() {
        if !client.console && c.database(client.database()).is_none() {
            client.request_close(CloseReason::Shutdown);
        }
    }
    Ok(())
}
