//! The life of one client connection after accept: login, then transactions.

use super::cancel::{CancelKey, CancelTarget};
use super::clients::{now_us, ClientInfo, CloseReason, Registered};
use super::ctx::{ConsoleLogin, DbGate, SessionCtx};
use super::forward::{Forwarder, Outcome, Pipe};
use super::login::{self, Login};
use super::prepared_flow::{self, Flow};
use super::route::Routed;
use super::{buffers, LoginError};
use crate::config::PoolMode;
use crate::net::stream::ClientStream;
use crate::net::stream::Peer;
use crate::pool::{Pool, PoolError};
use crate::proto::{builders, tags::status};
use crate::server::params::{ParamSet, TRACKED_REPORTED};
use crate::server::{Credential, ServerConn};
use bytes::BytesMut;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;
use tracing::{debug, info, Instrument};

/// Decrements the client count when a session ends.
struct ClientGuard(Arc<SessionCtx>);

impl Drop for ClientGuard {
    fn drop(&mut self) {
        self.0.totals.clients.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Serves one accepted client until it leaves; past `max_client_conn` it gets an error.
///
/// The login runs in a boxed future of its own and returns only what the session keeps, so
/// that the task of an idle client holds little more than its socket.
pub async fn serve(ctx: Arc<SessionCtx>, client: ClientStream, peer: Peer) {
    let max = ctx.config().pooler.max_client_conn;
    let admitted = ctx.totals.clients.fetch_add(1, Ordering::Relaxed) < max;
    let _guard = ClientGuard(ctx.clone());
    let Some((mut session, held, span)) = Box::pin(admit(ctx, client, peer, admitted)).await else {
        return;
    };
    async move {
        let why = session.run(held).await;
        if session.ctx.config().pooler.log_disconnections {
            info!(reason = why, "disconnect");
        }
    }
    .instrument(span)
    .await;
}

/// Login with its timeout and error reporting; the session to run, or `None`.
async fn admit(
    ctx: Arc<SessionCtx>,
    mut client: ClientStream,
    peer: Peer,
    admitted: bool,
) -> Option<(Session, Option<Box<ServerConn>>, tracing::Span)> {
    let config = ctx.config();
    let timeout = config.pooler.client_login_timeout;
    let started = tokio::time::timeout(timeout, login_phase(&ctx, &mut client, admitted)).await;
    let (login, pool, key, view, server) = match started {
        Ok(Ok(Some(Begun::Pool(ok)))) => ok,
        Ok(Ok(Some(Begun::Console(login, key)))) => {
            // Console sessions are few: they run inside this boxed future.
            serve_console(&ctx, client, peer, login, key).await;
            return None;
        }
        Ok(Ok(None)) => return None,
        Ok(Err(e)) => {
            ctx.totals.login_failures.fetch_add(1, Ordering::Relaxed);
            match &e {
                LoginError::Fatal { code, message } => {
                    let _ = send_error(&mut client, "FATAL", code, message).await;
                }
                LoginError::Startup(p) => {
                    let msg = format!("invalid startup packet: {p}");
                    let _ = send_error(&mut client, "FATAL", "08P01", &msg).await;
                }
                _ => {}
            }
            debug!(%peer, error = %e, "login failed");
            return None;
        }
        Err(_) => {
            let _ = send_error(&mut client, "FATAL", "08P01", "client_login_timeout").await;
            return None;
        }
    };
    let span = tracing::info_span!("client", id = key.pid, %peer, db = %login.database.name, user = %login.user);
    if config.pooler.log_connections {
        span.in_scope(|| info!(application_name = %login.application_name, "login"));
    }
    let reg = ctx.register_client(ClientInfo::new(
        key.pid,
        (&login.user, &pool.user),
        &login.database.name,
        &login.application_name,
        peer,
        false,
    ));
    let hints = login
        .route_hints
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()));
    let route = Routed::new(
        &login.database,
        &login.user,
        &pool,
        hints.chain(login.wanted.iter()),
        key.pid as usize,
    );
    let cluster = login.database.backend == crate::config::Backend::Cluster;
    let session = Session {
        cluster,
        route,
        db_gate: ctx.gate.db(&pool.database),
        ctx,
        client,
        pool,
        key,
        view,
        reg,
        c2s: Pipe::default(),
        s2c: Pipe::default(),
        flow: None,
    };
    Some((session, server.map(Box::new), span))
}

/// A console client: registered for `SHOW CLIENTS`, then served by the console.
async fn serve_console(
    ctx: &Arc<SessionCtx>,
    client: ClientStream,
    peer: Peer,
    login: ConsoleLogin,
    key: CancelKey,
) {
    let Some(console) = ctx.console() else {
        return;
    };
    let reg = ctx.register_client(ClientInfo::new(
        key.pid,
        (&login.user, &login.user),
        "pgsluice",
        "",
        peer,
        true,
    ));
    console.serve(client, login, reg).await;
    drop(key);
}

/// What a login led to (the pool variant is the common one: not boxed).
#[allow(clippy::large_enum_variant)]
enum Begun {
    Pool(Started),
    Console(ConsoleLogin, CancelKey),
}

type Started = (
    Login,
    Arc<Pool>,
    CancelKey,
    Arc<ParamSet>,
    Option<ServerConn>,
);

async fn login_phase(
    ctx: &Arc<SessionCtx>,
    client: &mut ClientStream,
    admitted: bool,
) -> Result<Option<Begun>, LoginError> {
    let config = ctx.config();
    let Some(params) =
        login::read_startup(ctx, client, config.pooler.max_startup_packet_size).await?
    else {
        return Ok(None);
    };
    if !admitted {
        return Err(LoginError::fatal(
            "53300",
            "sorry, too many clients already (max_client_conn)",
        ));
    }
    if login::wants_console(&params) {
        let console = login::console_login(ctx, &config, client, &params).await?;
        let key = ctx.cancels.register();
        login::greet_console(client, (key.pid, key.secret)).await?;
        return Ok(Some(Begun::Console(console, key)));
    }
    let login = login::authenticate(ctx, &config, client, params).await?;
    let db = login.database.clone();
    if ctx.gate.db(&db.name).is_disabled() {
        ctx.totals.refused.fetch_add(1, Ordering::Relaxed);
        return Err(LoginError::fatal(
            "57P03",
            format!(
                "database \"{}\" does not allow connections (DISABLE)",
                db.name
            ),
        ));
    }
    let pool = pool_for_login(ctx, &config, &db, &login).await?;
    // A server session tells us the parameters to show and spells the client's settings;
    // while a cluster database has no usable primary, the parameters its last server
    // connection sent do (a login does not need the primary).
    let cluster = db.backend == crate::config::Backend::Cluster;
    let kept = (pool.database.clone(), pool.user.clone());
    let cached = cluster.then(|| ctx.writer.params(&kept)).flatten();
    let server = match &cached {
        Some(_) if writer_blocked(ctx, &config) => None,
        // The primary may be gone without a word (a partition): do not wait on it.
        Some(_) => match tokio::time::timeout(LOGIN_WAIT, login_checkout(ctx, &pool, true)).await {
            Ok(Ok(s)) => Some(s),
            Ok(Err(PoolError::Server(e))) if unreachable(e.sqlstate()) => None,
            Ok(Err(e)) => return Err(pool_login_error(e)),
            Err(_) => None,
        },
        None => Some(
            login_checkout(ctx, &pool, cluster)
                .await
                .map_err(pool_login_error)?,
        ),
    };
    let (startup_params, canonical, server) = match (server, cached) {
        (Some(mut server), _) => {
            let reported = match server.sync_params(&login.wanted.clone().intern()).await {
                Ok(r) => r,
                Err(e) => {
                    pool.close(server);
                    return Err(LoginError::fatal(static_code(e.sqlstate()), e.to_string()));
                }
            };
            let canonical = canonical(&login.wanted, &reported).intern();
            server.params = canonical.clone();
            if cluster {
                ctx.writer.keep_params(kept, server.startup_params.clone());
            }
            (server.startup_params.clone(), canonical, Some(server))
        }
        (None, Some(params)) => (params, login.wanted.clone().intern(), None),
        (None, None) => return Err(LoginError::fatal("08006", "no server connection")),
    };
    let key = ctx.cancels.register();
    login::greet(client, &startup_params, &canonical, (key.pid, key.secret)).await?;
    ctx.totals.logins.fetch_add(1, Ordering::Relaxed);
    let keep = pool.settings().mode == PoolMode::Session;
    let server = match server {
        Some(server) if !keep => {
            pool.release(server);
            None
        }
        other => other,
    };
    Ok(Some(Begun::Pool((login, pool, key, canonical, server))))
}

/// The client's settings with the server's spelling of those it reported.
fn canonical(wanted: &ParamSet, reported: &[(String, String)]) -> ParamSet {
    let mut set = wanted.clone();
    for (k, v) in reported {
        if set.get(k).is_some() {
            set = set.with(k, v);
        }
    }
    set
}

/// How long a login waits for a server connection when parameters are kept for its pool;
/// then it completes from them.
const LOGIN_WAIT: Duration = Duration::from_millis(500);

/// A check-out for a login; on a cluster database, started again when a topology is
/// installed meanwhile (its connect may be stuck on the old primary).
async fn login_checkout(
    ctx: &SessionCtx,
    pool: &Arc<Pool>,
    cluster: bool,
) -> Result<ServerConn, PoolError> {
    loop {
        if !cluster {
            return pool.checkout().await;
        }
        if let Some(r) = ctx.writer.unless_retargeted(pool.checkout()).await {
            return r;
        }
    }
}

/// Whether writes to a cluster database's primary are held now (session::writer).
fn writer_blocked(ctx: &SessionCtx, config: &crate::config::Config) -> bool {
    ctx.writer
        .blocked(config.write_lease(), Instant::now())
        .is_some()
}

/// Whether SQLSTATE `code` says the server cannot be reached (class 08, 57P).
fn unreachable(code: &str) -> bool {
    code.starts_with("08") || code.starts_with("57P")
}

/// [`pool_for`] for a login: while a cluster database has no usable primary, its existing
/// pool serves (from kept parameters), or, before any, the login waits for a primary up to
/// `primary_wait_timeout`.
async fn pool_for_login(
    ctx: &SessionCtx,
    config: &crate::config::Config,
    db: &crate::config::DatabaseConfig,
    login: &Login,
) -> Result<Arc<Pool>, LoginError> {
    if db.backend != crate::config::Backend::Cluster || !writer_blocked(ctx, config) {
        if let Ok(p) = pool_for(ctx, config, db, login) {
            return Ok(p);
        }
    }
    let pool_user = db.user.clone().unwrap_or_else(|| login.user.clone());
    let existing = ctx.pools.writer_pools().into_iter().find(|p| {
        *p.database == *db.name
            && *p.user == *pool_user
            && ctx
                .writer
                .params(&(p.database.clone(), p.user.clone()))
                .is_some()
    });
    if let Some(p) = existing {
        return Ok(p);
    }
    let lease = config.write_lease();
    let deadline = Instant::now() + config.pooler.primary_wait_timeout;
    let w = &ctx.writer;
    let _ = w
        .wait(deadline, |now| {
            let known = ctx.topology().1.is_some();
            w.blocked(lease, now).or((!known).then_some(""))
        })
        .await;
    pool_for(ctx, config, db, login)
}

/// The pool of a logged-in client, created on first use.
fn pool_for(
    ctx: &SessionCtx,
    config: &crate::config::Config,
    db: &crate::config::DatabaseConfig,
    login: &Login,
) -> Result<Arc<Pool>, LoginError> {
    let pool_user = db.user.clone().unwrap_or_else(|| login.user.clone());
    let spec = ctx
        .connect_spec(config, db, &login.user)
        .ok_or_else(|| LoginError::fatal("08006", "no primary node is known for this database"))?;
    let user_max = config
        .users
        .get(&login.user)
        .map(|u| u.max_user_connections)
        .filter(|m| *m > 0)
        .unwrap_or(config.pooler.max_user_connections);
    let credential = spec.credential.clone();
    let pool = ctx.pools.get_or_create(
        &db.name,
        &pool_user,
        db.max_db_connections,
        user_max,
        || {
            // Settings from the configuration in force now, not the one this (slow)
            // login began with: a reload meanwhile found no pool to update.
            let now = ctx.config();
            let settings = match now.databases.get(&db.name) {
                Some(d) => SessionCtx::pool_settings(&now, d, &login.user),
                None => SessionCtx::pool_settings(config, db, &login.user),
            };
            (spec.clone(), settings)
        },
    );
    // SCRAM pass-through keys appear at a client's login, and change with the password.
    if pool.spec().credential != credential && credential != Credential::None {
        pool.retarget(spec);
    }
    Ok(pool)
}

fn static_code(code: &str) -> &'static str {
    match code {
        "28P01" => "28P01",
        "28000" => "28000",
        "3D000" => "3D000",
        "42704" => "42704",
        "22023" => "22023",
        "53300" => "53300",
        "57P03" => "57P03",
        _ => "08006",
    }
}

fn pool_login_error(e: PoolError) -> LoginError {
    match e {
        PoolError::Server(s) => LoginError::fatal(static_code(s.sqlstate()), s.to_string()),
        PoolError::WaitTimeout => LoginError::fatal("08006", "query_wait_timeout"),
        PoolError::Closed => LoginError::fatal("08006", "database is being shut down"),
    }
}

async fn send_error(
    client: &mut ClientStream,
    severity: &str,
    code: &str,
    message: &str,
) -> std::io::Result<()> {
    let mut out = BytesMut::new();
    builders::error_response(&mut out, severity, code, message);
    client.write_all(&out).await
}

/// Waits until an idle client is readable; a close request (console, shutdown) ends the wait.
async fn readable(
    client: &ClientStream,
    info: &ClientInfo,
) -> Result<std::io::Result<()>, CloseReason> {
    tokio::select! {
        biased;
        r = client.readable() => Ok(r),
        why = info.closing(CloseReason::Shutdown) => Err(why),
    }
}

struct Session {
    ctx: Arc<SessionCtx>,
    client: ClientStream,
    pool: Arc<Pool>,
    key: CancelKey,
    view: Arc<ParamSet>,
    /// This client's entry in the registry (state for the console, close requests).
    reg: Registered,
    db_gate: Arc<DbGate>,
    c2s: Pipe,
    s2c: Pipe,
    /// Named prepared statements (transaction and statement modes), made on first use.
    flow: Option<Box<Flow>>,
    /// Read routing to standbys (databases with a policy other than `primary`).
    route: Option<Box<Routed>>,
    /// A `[cluster]` database: writes wait for a usable primary (session::writer).
    cluster: bool,
}

impl Session {
    /// Runs transactions until the client leaves; returns why.
    ///
    /// Only the idle wait lives in this future; each transaction runs in a boxed future of its
    /// own, so that an idle client's task stays small (DESIGN.md: under 1 KiB per idle client).
    async fn run(&mut self, mut held: Option<Box<ServerConn>>) -> &'static str {
        let idle_timeout = self.ctx.config().pooler.client_idle_timeout;
        loop {
            let server = match held.take() {
                Some(s) => *s,
                None => {
                    match self.wait_for_client(idle_timeout).await {
                        Ok(true) => {}
                        Ok(false) => return "client closed",
                        Err(why) => return why,
                    }
                    let info = self.reg.info.clone();
                    info.waiting(now_us());
                    let attached = tokio::select! {
                        biased;
                        _ = info.closing(CloseReason::Killed) => Err("killed by the console"),
                        r = Box::pin(async {
                            self.ctx.gate.pass_db(&self.db_gate).await;
                            self.attach().await
                        }) => r,
                    };
                    match attached {
                        Ok(s) => s,
                        Err(why) => return why,
                    }
                }
            };
            if let Some(why) = Box::pin(self.transaction(server)).await {
                return why;
            }
        }
    }

    /// One transaction on `server`; `Some(why)` when the session must end.
    async fn transaction(&mut self, mut server: ServerConn) -> Option<&'static str> {
        let config = self.ctx.config();
        let mode = self.pool.settings().mode;
        let target = CancelTarget {
            spec: self.pool.spec(),
            pid: server.key.0,
            secret: server.key.1,
        };
        self.key.slot.set(Some(target.clone()));
        let info = self.reg.info.clone();
        info.active(server.key.0);
        let started = Instant::now();
        let release = mode != PoolMode::Session;
        let mut fwd = Forwarder::new(
            config.pooler.max_packet_size,
            mode == PoolMode::Statement,
            release,
        );
        if release {
            let max = config.pooler.max_prepared_statements;
            let registry = &self.ctx.prepared;
            fwd.flow = prepared_flow::lend(&mut self.flow, &mut server.prepared, registry, max);
        }
        let (ctx, node) = (self.ctx.clone(), server.node.clone());
        let on_writer = self.cluster && self.route.as_ref().is_none_or(|r| r.on_replica.is_none());
        let fenced = async {
            match on_writer {
                true => ctx.writer.fenced(&node, || ctx.topology().0).await,
                false => std::future::pending().await,
            }
        };
        let outcome = tokio::select! {
            biased;
            o = self.forward(&mut fwd, &mut server, &target, &config) => Some(o),
            _ = info.closing(CloseReason::Killed) => None,
            _ = fenced => Some(Ok(Outcome::ServerGone { fatal_sent: false })),
        };
        self.key.slot.set(None);
        prepared_flow::give_back(fwd.flow.take(), &mut self.flow, &mut server.prepared);
        let Some(outcome) = outcome else {
            // Killed from the console: the server's state is unknown, so it is closed.
            self.pool.close(server);
            return Some("killed by the console");
        };
        self.account(&fwd, &mut server);
        let us = started.elapsed().as_micros() as u64;
        self.pool
            .stats
            .record_xact(fwd.queries, fwd.bytes_in, fwd.bytes_out, us);
        match outcome {
            Ok(Outcome::Boundary) => return Box::pin(self.boundary(server, mode)).await,
            Ok(Outcome::OpenTransaction) => {
                Box::pin(self.end_server(server, status::IN_TRANSACTION, true)).await;
                let msg = "transaction blocks not allowed in statement pooling mode";
                let _ = Box::pin(send_error(&mut self.client, "FATAL", "08P01", msg)).await;
                return Some("transaction in statement mode");
            }
            Ok(Outcome::ClientGone { clean }) => {
                Box::pin(self.end_server(server, fwd.status, clean)).await;
                return Some("client closed");
            }
            Ok(Outcome::ServerGone { fatal_sent }) => {
                let node = server.node.clone();
                self.pool.close(server);
                self.ctx
                    .totals
                    .server_errors
                    .fetch_add(1, Ordering::Relaxed);
                if !Box::pin(self.server_lost(&fwd, fatal_sent, mode, node)).await {
                    return Some("server connection lost");
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {
                self.pool.close(server);
                let _ = Box::pin(send_error(
                    &mut self.client,
                    "FATAL",
                    "08P01",
                    &e.to_string(),
                ))
                .await;
                return Some("timeout");
            }
            Err(e) => {
                self.pool.close(server);
                let msg = format!("protocol violation: {e}");
                let _ = Box::pin(send_error(&mut self.client, "FATAL", "08P01", &msg)).await;
                return Some("protocol violation");
            }
        }
        None
    }

    /// At a transaction boundary: gives the server back; `Some(why)` when the session must
    /// end because a close was requested.
    async fn boundary(&mut self, mut server: ServerConn, mode: PoolMode) -> Option<&'static str> {
        if let Some(r) = self.route.as_mut() {
            r.ended();
        }
        if mode == PoolMode::Session {
            // Only after a close request (see `forward`): reset as if the client left.
            Box::pin(self.end_server(server, status::IDLE, true)).await;
        } else if server.prepared.sql_prepared && Box::pin(server.deallocate_all()).await.is_err() {
            // SQL-level PREPARE lasts until the end of its transaction in these modes.
            self.pool.close(server);
        } else {
            self.pool.release(server);
        }
        self.c2s.park();
        self.s2c.park();
        let info = &self.reg.info;
        info.idle();
        let why = info.close_requested()?;
        let (code, msg) = why.error();
        let _ = Box::pin(send_error(&mut self.client, "FATAL", code, msg)).await;
        Some("closed by the console or a shutdown")
    }

    /// Forwards one transaction (see [`Self::forward_once`]). In session mode the forwarder
    /// runs until the client leaves; a close request (shutdown, removed database) makes it
    /// stop at the session's next transaction boundary instead, where it is reset and closed.
    async fn forward(
        &mut self,
        fwd: &mut Forwarder,
        server: &mut ServerConn,
        target: &CancelTarget,
        config: &crate::config::Config,
    ) -> std::io::Result<Outcome> {
        if !fwd.release_at_boundary && !fwd.statement_mode {
            let info = self.reg.info.clone();
            // `Forwarder::run` is cancellation safe (it is re-entered on every timeout tick).
            tokio::select! {
                biased;
                r = Box::pin(self.forward_once(fwd, server, target, config)) => return r,
                _ = info.closing(CloseReason::Drain) => fwd.release_at_boundary = true,
            }
        }
        self.forward_once(fwd, server, target, config).await
    }

    /// Forwards one transaction, enforcing `query_timeout` (cancel, then close after twice the
    /// timeout) and `idle_transaction_timeout` (close) when they are set. Both are checked on a
    /// tick of a quarter of the shorter one, so they fire within 25% of their value.
    async fn forward_once(
        &mut self,
        fwd: &mut Forwarder,
        server: &mut ServerConn,
        target: &CancelTarget,
        config: &crate::config::Config,
    ) -> std::io::Result<Outcome> {
        let (qt, itt) = (
            config.pooler.query_timeout,
            config.pooler.idle_transaction_timeout,
        );
        let (client, c2s, s2c) = (&mut self.client, &mut self.c2s, &mut self.s2c);
        if qt.is_zero() && itt.is_zero() {
            return fwd.run(client, &mut server.stream, c2s, s2c).await;
        }
        Box::pin(forward_timed(
            fwd, client, server, c2s, s2c, target, qt, itt,
        ))
        .await
    }
    /// Waits until the idle client sends something; false when it closed.
    async fn wait_for_client(&mut self, idle_timeout: Duration) -> Result<bool, &'static str> {
        loop {
            let ready = if idle_timeout.is_zero() {
                readable(&self.client, &self.reg.info).await
            } else {
                match Box::pin(tokio::time::timeout(
                    idle_timeout,
                    readable(&self.client, &self.reg.info),
                ))
                .await
                {
                    Ok(r) => r,
                    Err(_) => {
                        let _ =
                            send_error(&mut self.client, "FATAL", "08P01", "client_idle_timeout")
                                .await;
                        return Err("client_idle_timeout");
                    }
                }
            };
            let ready = match ready {
                Ok(r) => r,
                Err(why) => {
                    let (code, msg) = why.error();
                    let _ = send_error(&mut self.client, "FATAL", code, msg).await;
                    return Err("closed by the console or a shutdown");
                }
            };
            if ready.is_err() {
                return Ok(false);
            }
            let mut buf = buffers::take();
            match self.client.try_read_buf(&mut buf) {
                Ok(0) => return Ok(false),
                Ok(_) => {
                    if buf.first() == Some(&b'X') && buf.len() == 5 {
                        return Ok(false);
                    }
                    if let Some(r) = self.route.as_mut() {
                        r.observe(&buf);
                    }
                    self.c2s.preload(buf);
                    return Ok(true);
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => buffers::give(buf),
                Err(_) => return Ok(false),
            }
        }
    }

    /// Checks a server out and brings its settings in line with this client's.
    ///
    /// On a cluster database whose primary cannot be reached, the transaction waits (up to
    /// `primary_wait_timeout`) for discovery or the agent to name a reachable primary, so that
    /// a client idle at a failover sees a delay rather than an error; past that, a routed
    /// session gets an ERROR for this transaction and keeps its connection.
    async fn attach(&mut self) -> Result<ServerConn, &'static str> {
        let mut primary_deadline = None;
        loop {
            if let Some(msg) = self.route.as_mut().and_then(|r| r.broken.take()) {
                Box::pin(self.refuse_batch("08006", &msg)).await?;
            }
            while let Some(r) = self.route.as_mut() {
                match r.choose(&self.ctx) {
                    Ok(pool) => {
                        self.pool = pool;
                        break;
                    }
                    Err(msg) => Box::pin(self.refuse_batch("57P03", msg)).await?,
                }
            }
            if self.route.as_ref().is_none_or(|r| r.on_replica.is_none()) {
                if let Err(why) = self.await_writer().await {
                    let msg = format!("no usable primary after primary_wait_timeout: {why}");
                    if self.route.is_some() {
                        Box::pin(self.refuse_batch("08006", &msg)).await?;
                        continue;
                    }
                    let _ = send_error(&mut self.client, "FATAL", "08006", &msg).await;
                    return Err("no usable primary");
                }
            }
            let checkout = self.pool.checkout();
            let checked = match self.cluster {
                true => self.ctx.writer.unless_retargeted(checkout).await,
                false => Some(checkout.await),
            };
            let Some(checked) = checked else {
                continue; // a new topology: check out again, maybe from elsewhere
            };
            let e = match checked {
                Ok(mut server) => match server.sync_params(&self.view).await {
                    Ok(_) => return Ok(server),
                    Err(_) => {
                        self.pool.close(server);
                        continue;
                    }
                },
                Err(e) => e,
            };
            if let Some(r) = self.route.as_mut().filter(|r| r.on_replica.is_some()) {
                // A standby that cannot be reached: banned, and the transaction is routed
                // again (to another standby or the primary).
                r.replica_failed(&self.ctx, e.to_string());
                continue;
            }
            if self.awaits_primary(&e, &mut primary_deadline) {
                let probe = self.ctx.config().pooler.probe_interval;
                let pause =
                    (probe / 2).clamp(Duration::from_millis(10), Duration::from_millis(250));
                tokio::time::sleep(pause).await;
                continue;
            }
            let (code, msg) = match &e {
                PoolError::WaitTimeout => ("08P01", "query_wait_timeout".to_string()),
                PoolError::Server(s) => (static_code(s.sqlstate()), s.to_string()),
                PoolError::Closed => ("08006", "database is being shut down".to_string()),
            };
            if self.route.is_some() && matches!(e, PoolError::Server(_)) {
                primary_deadline = None;
                Box::pin(self.refuse_batch(code, &msg)).await?;
                continue;
            }
            let _ = send_error(&mut self.client, "FATAL", code, &msg).await;
            return Err("no server connection");
        }
    }

    /// Waits (up to `primary_wait_timeout`) until writes may go to a cluster database's
    /// primary: the topology names an unfenced one and, under an agent, its lease is fresh.
    async fn await_writer(&self) -> Result<(), &'static str> {
        if !self.cluster {
            return Ok(());
        }
        let w = &self.ctx.writer;
        let config = self.ctx.config();
        let lease = config.write_lease();
        if w.blocked(lease, Instant::now()).is_none() {
            return Ok(());
        }
        let deadline = Instant::now() + config.pooler.primary_wait_timeout;
        w.wait(deadline, |now| w.blocked(lease, now)).await
    }

    /// Whether a failed check-out from a cluster database's primary should wait for a new
    /// primary: the node is unreachable (SQLSTATE class 08 or 57P) and the wait that
    /// `deadline` tracks has not run out.
    fn awaits_primary(&self, e: &PoolError, deadline: &mut Option<Instant>) -> bool {
        let PoolError::Server(s) = e else {
            return false;
        };
        let code = s.sqlstate();
        if !(code.starts_with("08") || code.starts_with("57P")) {
            return false;
        }
        let config = self.ctx.config();
        let cluster = config
            .databases
            .get(&*self.pool.database)
            .is_some_and(|d| d.backend == crate::config::Backend::Cluster);
        let until =
            *deadline.get_or_insert_with(|| Instant::now() + config.pooler.primary_wait_timeout);
        cluster && Instant::now() < until
    }

    /// Answers a transaction that cannot run (a read no standby can serve under
    /// `replica_fallback = "error"`, an unreachable primary): an ERROR and a ReadyForQuery for
    /// each Query/Sync of the batch, which is dropped; then waits for the client's next
    /// transaction.
    async fn refuse_batch(&mut self, code: &str, msg: &str) -> Result<(), &'static str> {
        let ends = self.route.as_ref().map_or(1, |r| r.ends().max(1));
        let mut out = BytesMut::new();
        builders::error_response(&mut out, "ERROR", code, msg);
        for _ in 0..ends {
            builders::ready_for_query(&mut out, status::IDLE);
        }
        self.c2s = Pipe::default();
        if self.client.write_all(&out).await.is_err() {
            return Err("client closed");
        }
        match self.wait_for_client(Duration::ZERO).await {
            Ok(true) => Ok(()),
            Ok(false) => Err("client closed"),
            Err(why) => Err(why),
        }
    }

    /// Folds a run's counters and reported settings into the session.
    fn account(&mut self, fwd: &Forwarder, server: &mut ServerConn) {
        let t = &self.ctx.totals;
        t.queries.fetch_add(fwd.queries, Ordering::Relaxed);
        t.transactions.fetch_add(1, Ordering::Relaxed);
        t.bytes_in.fetch_add(fwd.bytes_in, Ordering::Relaxed);
        t.bytes_out.fetch_add(fwd.bytes_out, Ordering::Relaxed);
        let tracked = |k: &str| {
            TRACKED_REPORTED.iter().any(|t| t.eq_ignore_ascii_case(k))
                || self
                    .ctx
                    .config()
                    .pooler
                    .track_extra_parameters
                    .iter()
                    .any(|t| t.eq_ignore_ascii_case(k))
        };
        let reset = std::mem::take(&mut server.prepared.settings_reset);
        if reset {
            // DISCARD ALL / RESET: the server is at its defaults; the next sync re-applies
            // this client's settings, as PostgreSQL itself restores startup-packet values.
            server.params = ParamSet::default().intern();
        }
        if fwd.reported.is_empty() {
            return;
        }
        let mut view = (*self.view).clone();
        let mut changed = false;
        for (k, v) in &fwd.reported {
            if tracked(k) && view.get(k) != Some(v.as_str()) {
                view = view.with(k, v);
                changed = true;
            }
        }
        if changed {
            self.view = view.intern();
            if !reset {
                server.params = self.view.clone();
            }
        }
    }

    /// Gives a server back after the client left, clean or not.
    async fn end_server(&mut self, mut server: ServerConn, tx_status: u8, clean: bool) {
        if !clean {
            self.pool.close(server);
            return;
        }
        let settings = self.pool.settings();
        let mut sql = String::new();
        if tx_status != status::IDLE {
            sql.push_str("ROLLBACK;");
        }
        if settings.mode == PoolMode::Session && !settings.reset_query.is_empty() {
            sql.push_str(&settings.reset_query);
        }
        if !sql.is_empty() {
            match server.control(&sql).await {
                Ok(r) if r.status == status::IDLE => {
                    if settings.mode == PoolMode::Session {
                        server.params = ParamSet::default().intern();
                        server.prepared.after_reset(&sql);
                    }
                }
                _ => {
                    self.pool.close(server);
                    return;
                }
            }
        }
        self.pool.release(server);
    }

    /// Tells the client its server is gone; true if the client may go on.
    /// `node`: the server's node (the pool may point elsewhere already, after a failover).
    async fn server_lost(
        &mut self,
        fwd: &Forwarder,
        fatal_sent: bool,
        mode: PoolMode,
        node: Arc<str>,
    ) -> bool {
        let _ = Forwarder::flush_to_client(&mut self.client, &mut self.s2c).await;
        self.s2c = Pipe::default();
        self.c2s = Pipe::default();
        if let Some(r) = self.route.as_mut().filter(|_| fwd.outstanding == 0) {
            if mode != PoolMode::Session && !fatal_sent {
                // Idle in a transaction on a node that died: the client's next batch gets
                // the error, and the client goes on (see `attach`).
                r.broken = Some(lost(&node));
                return true;
            }
        }
        if mode == PoolMode::Session || fwd.outstanding == 0 {
            if !fatal_sent {
                let _ = send_error(&mut self.client, "FATAL", "08006", &lost(&node)).await;
            }
            return false;
        }
        let mut out = BytesMut::new();
        if !fatal_sent {
            builders::error_response(&mut out, "ERROR", "08006", &lost(&node));
        }
        for _ in 0..fwd.outstanding.max(1) {
            builders::ready_for_query(&mut out, status::IDLE);
        }
        self.client.write_all(&out).await.is_ok()
    }
}

/// What a client whose transaction was running when its server died is told (08006): the
/// transaction is lost; the next one waits for a usable primary (a failover is a pause).
fn lost(node: &str) -> String {
    format!(
        "server connection to node {node} lost during the transaction (server crash or \
         failover): it did not complete; the next transaction waits for a usable primary"
    )
}

/// [`Session::forward`] with timeouts: ticks at a quarter of the shorter timeout.
#[allow(clippy::too_many_arguments)]
async fn forward_timed(
    fwd: &mut Forwarder,
    client: &mut ClientStream,
    server: &mut ServerConn,
    c2s: &mut Pipe,
    s2c: &mut Pipe,
    target: &CancelTarget,
    qt: Duration,
    itt: Duration,
) -> std::io::Result<Outcome> {
    let shortest = [qt, itt]
        .into_iter()
        .filter(|d| !d.is_zero())
        .min()
        .unwrap_or(qt);
    let tick = (shortest / 4).max(Duration::from_millis(10));
    let snapshot = |f: &Forwarder| (f.queries, f.bytes_in, f.bytes_out);
    let mut last = snapshot(fwd);
    let (mut idle_since, mut query_since) = (Instant::now(), Instant::now());
    let mut cancelled = false;
    loop {
        tokio::select! {
            r = fwd.run(client, &mut server.stream, c2s, s2c) => return r,
            _ = tokio::time::sleep(tick) => {}
        }
        let now = snapshot(fwd);
        if now.0 != last.0 {
            query_since = Instant::now();
            cancelled = false;
        }
        if now != last {
            idle_since = Instant::now();
        }
        last = now;
        if !qt.is_zero() && fwd.outstanding > 0 {
            let running = query_since.elapsed();
            if running >= qt * 2 {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "query_timeout",
                ));
            }
            if running >= qt && !cancelled {
                cancelled = true;
                target.send().await;
            }
        }
        if !itt.is_zero()
            && fwd.outstanding == 0
            && fwd.status != status::IDLE
            && idle_since.elapsed() >= itt
        {
            return Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "idle transaction timeout",
            ));
        }
    }
}
