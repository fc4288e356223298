//! The pooler daemon: builds the runtime, wires listener, sessions, janitor, discovery and the
//! HTTP endpoint together, and handles signals (HUP reload, TERM/INT graceful, QUIT now).

pub mod discovery;
pub mod http;
pub mod metrics;

use crate::auth::{parse_userlist, Secret};
use crate::config::{self, Config};
use crate::net::listener;
use crate::session::{self, SessionCtx};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::signal::unix::{signal, SignalKind};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// How long a graceful shutdown waits for clients to finish their transactions.
const SHUTDOWN_WAIT: Duration = Duration::from_secs(30);
/// How often the pooler probes cluster nodes for their role.
const PROBE_INTERVAL: Duration = Duration::from_secs(1);

/// Why the daemon could not run.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("{0}")]
    Config(#[from] config::ConfigError),
    #[error("auth_file {path}: {message}")]
    AuthFile { path: String, message: String },
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("runtime: {0}")]
    Runtime(std::io::Error),
}

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
pub fn run_pooler(path: &Path) -> Result<(), DaemonError> {
    let config = Arc::new(config::load(path)?);
    let secrets = load_auth_file(&config)?;
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if config.pooler.workers > 0 {
        builder.worker_threads(config.pooler.workers);
    }
    let rt = builder
        .enable_all()
        .thread_name("pgsluice-worker")
        .build()
        .map_err(DaemonError::Runtime)?;
    rt.block_on(serve(path.to_path_buf(), config, secrets))
}

async fn serve(
    path: PathBuf,
    config: Arc<Config>,
    secrets: HashMap<String, Secret>,
) -> Result<(), DaemonError> {
    let addr = config.pooler.listen;
    let listener = listener::bind(addr, true, 4096).map_err(|source| DaemonError::Listen {
        addr: addr.to_string(),
        source,
    })?;
    let ctx = SessionCtx::new(config.clone(), secrets);
    let stop = CancellationToken::new();
    let tracker = TaskTracker::new();
    if config.metrics.enabled {
        let http =
            http::bind(config.metrics.listen)
                .await
                .map_err(|source| DaemonError::Listen {
                    addr: config.metrics.listen.to_string(),
                    source,
                })?;
        tokio::spawn(http::serve(http, ctx.clone(), stop.clone()));
    }
    if config.cluster.is_some() {
        tokio::spawn(discovery::run(ctx.clone(), PROBE_INTERVAL, stop.clone()));
    }
    tokio::spawn(janitor(ctx.clone(), stop.clone()));
    tokio::spawn(signals(path, ctx.clone(), stop.clone()));
    tracing::info!(%addr, "pooler listening");
    notify_ready();
    if let Some(dir) = &config.pooler.unix_socket_dir {
        let unix = listener::bind_unix(dir, addr.port()).map_err(|source| DaemonError::Listen {
            addr: dir.join(format!(".s.PGSQL.{}", addr.port())).display().to_string(),
            source,
        })?;
        let (ctx, tracker) = (ctx.clone(), tracker.clone());
        tokio::spawn(listener::accept_loop(unix, stop.clone(), false, move |stream, peer| {
            tracker.spawn(session::serve(ctx.clone(), stream, peer));
        }));
    }
    let accept_ctx = ctx.clone();
    let accept_tracker = tracker.clone();
    listener::accept_loop(
        listener,
        stop.clone(),
        config.pooler.tcp_keepalive,
        move |stream, peer| {
            accept_tracker.spawn(session::serve(accept_ctx.clone(), stream, peer));
        },
    )
    .await;
    tracker.close();
    tracing::info!(
        clients = ctx.totals.clients.load(Ordering::Relaxed),
        "stopped accepting; waiting for clients"
    );
    if tokio::time::timeout(SHUTDOWN_WAIT, tracker.wait())
        .await
        .is_err()
    {
        tracing::warn!("shutdown timeout: closing remaining clients");
    }
    for p in ctx.pools.all() {
        p.shut();
    }
    Ok(())
}

/// Maintains pools every second and logs a stats line every `stats_period`.
async fn janitor(ctx: Arc<SessionCtx>, stop: CancellationToken) {
    let mut last_stats = Instant::now();
    let mut last_tx = 0u64;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
        for p in ctx.pools.all() {
            p.maintain();
        }
        let period = ctx.config().pooler.stats_period;
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

/// HUP reloads; TERM and INT stop accepting and drain; QUIT exits at once.
async fn signals(path: PathBuf, ctx: Arc<SessionCtx>, stop: CancellationToken) {
    let (Ok(mut hup), Ok(mut term), Ok(mut int), Ok(mut quit)) = (
        signal(SignalKind::hangup()),
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::quit()),
    ) else {
        tracing::error!("cannot install signal handlers");
        return;
    };
    loop {
        tokio::select! {
            _ = hup.recv() => reload(&path, &ctx),
            _ = term.recv() => { tracing::info!("SIGTERM: graceful shutdown"); stop.cancel(); }
            _ = int.recv() => { tracing::info!("SIGINT: graceful shutdown"); stop.cancel(); }
            _ = quit.recv() => { tracing::info!("SIGQUIT: immediate shutdown"); std::process::exit(0); }
        }
    }
}

/// Re-reads the configuration; an invalid one is logged and the old one kept.
pub fn reload(path: &Path, ctx: &SessionCtx) {
    let loaded = config::load(path)
        .map_err(DaemonError::from)
        .and_then(|c| load_auth_file(&c).map(|s| (c, s)));
    match loaded {
        Ok((c, secrets)) => {
            let c = Arc::new(c);
            for pool in ctx.pools.all() {
                if let Some(db) = c.databases.get(&*pool.database) {
                    pool.set_settings(SessionCtx::pool_settings(&c, db, &pool.user));
                }
            }
            ctx.set_config(c, secrets);
            tracing::info!("configuration reloaded");
        }
        Err(e) => tracing::error!(error = %e, "reload refused; keeping the old configuration"),
    }
}

/// Tells systemd (Type=notify) that the daemon is ready, when run under it.
fn notify_ready() {
    let Some(sock) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let path = PathBuf::from(sock);
    if let Ok(s) = std::os::unix::net::UnixDatagram::unbound() {
        let _ = s.send_to(b"READY=1", path);
    }
}
