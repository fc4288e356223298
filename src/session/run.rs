//! The life of one client connection after accept: login, then transactions.

use super::cancel::{CancelKey, CancelTarget};
use super::ctx::SessionCtx;
use super::forward::{Forwarder, Outcome, Pipe};
use super::login::{self, Login};
use super::{buffers, LoginError};
use crate::config::PoolMode;
use crate::pool::{Pool, PoolError};
use crate::proto::{builders, tags::status};
use crate::server::params::{ParamSet, TRACKED_REPORTED};
use crate::server::ServerConn;
use bytes::BytesMut;
use crate::net::stream::Peer;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;
use crate::net::stream::ClientStream;
use tracing::{debug, info, Instrument};

/// Decrements the client count when a session ends.
struct ClientGuard<'a>(&'a std::sync::atomic::AtomicUsize);

impl Drop for ClientGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Serves one accepted client until it leaves; past `max_client_conn` it gets an error.
pub async fn serve(ctx: Arc<SessionCtx>, mut client: ClientStream, peer: Peer) {
    let config = ctx.config();
    let admitted =
        ctx.totals.clients.fetch_add(1, Ordering::Relaxed) < config.pooler.max_client_conn;
    let counted = ctx.clone();
    let _guard = ClientGuard(&counted.totals.clients);
    let timeout = config.pooler.client_login_timeout;
    let started = tokio::time::timeout(timeout, login_phase(&ctx, &mut client, admitted)).await;
    let (login, pool, key, view, server) = match started {
        Ok(Ok(Some(ok))) => ok,
        Ok(Ok(None)) => return,
        Ok(Err(e)) => {
            ctx.totals.login_failures.fetch_add(1, Ordering::Relaxed);
            match &e {
                LoginError::Fatal { code, message } => {
                    let _ = send_error(&mut client, "FATAL", code, message).await;
                }
                LoginError::Startup(p) => {
                    let _ = send_error(
                        &mut client,
                        "FATAL",
                        "08P01",
                        &format!("invalid startup packet: {p}"),
                    )
                    .await;
                }
                _ => {}
            }
            debug!(%peer, error = %e, "login failed");
            return;
        }
        Err(_) => {
            let _ = send_error(&mut client, "FATAL", "08P01", "client_login_timeout").await;
            return;
        }
    };
    let span = tracing::info_span!("client", id = key.pid, %peer, db = %login.database.name, user = %login.user);
    async move {
        if config.pooler.log_connections {
            info!(application_name = %login.application_name, "login");
        }
        let mut s = Session {
            ctx: ctx.clone(),
            client,
            pool,
            key,
            view,
            c2s: Pipe::default(),
            s2c: Pipe::default(),
        };
        let why = s.run(server).await;
        if config.pooler.log_disconnections {
            info!(reason = why, "disconnect");
        }
    }
    .instrument(span)
    .await;
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
) -> Result<Option<Started>, LoginError> {
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
    let login = login::authenticate(ctx, &config, client, params).await?;
    let db = login.database.clone();
    let pool_user = db.user.clone().unwrap_or_else(|| login.user.clone());
    let pool = {
        let spec = ctx.connect_spec(&config, &db, &login.user).ok_or_else(|| {
            LoginError::fatal("08006", "no primary node is known for this database")
        })?;
        let settings = SessionCtx::pool_settings(&config, &db, &login.user);
        let user_max = config
            .users
            .get(&login.user)
            .map(|u| u.max_user_connections)
            .filter(|m| *m > 0)
            .unwrap_or(config.pooler.max_user_connections);
        ctx.pools.get_or_create(
            &db.name,
            &pool_user,
            db.max_db_connections,
            user_max,
            || (spec, settings),
        )
    };
    // A server session tells us the parameters to show and spells the client's settings.
    let mut server = pool.checkout().await.map_err(pool_login_error)?;
    let reported = match server.sync_params(&login.wanted.clone().intern()).await {
        Ok(r) => r,
        Err(e) => {
            pool.close(server);
            return Err(LoginError::fatal(static_code(e.sqlstate()), e.to_string()));
        }
    };
    let canonical = canonical(&login.wanted, &reported).intern();
    server.params = canonical.clone();
    let startup_params = server.startup_params.clone();
    let key = ctx.cancels.register();
    login::greet(client, &startup_params, &canonical, (key.pid, key.secret)).await?;
    ctx.totals.logins.fetch_add(1, Ordering::Relaxed);
    let keep = pool.settings().mode == PoolMode::Session;
    let server = if keep {
        Some(server)
    } else {
        pool.release(server);
        None
    };
    Ok(Some((login, pool, key, canonical, server)))
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

struct Session {
    ctx: Arc<SessionCtx>,
    client: ClientStream,
    pool: Arc<Pool>,
    key: CancelKey,
    view: Arc<ParamSet>,
    c2s: Pipe,
    s2c: Pipe,
}

impl Session {
    /// Runs transactions until the client leaves; returns why.
    async fn run(&mut self, mut held: Option<ServerConn>) -> &'static str {
        let config = self.ctx.config();
        let mode = self.pool.settings().mode;
        let idle_timeout = config.pooler.client_idle_timeout;
        loop {
            let mut server = match held.take() {
                Some(s) => s,
                None => {
                    match self.wait_for_client(idle_timeout).await {
                        Ok(true) => {}
                        Ok(false) => return "client closed",
                        Err(why) => return why,
                    }
                    self.ctx.gate.pass().await;
                    match self.attach().await {
                        Ok(s) => s,
                        Err(why) => return why,
                    }
                }
            };
            let target = CancelTarget { spec: self.pool.spec(), pid: server.key.0, secret: server.key.1 };
            self.key.slot.set(Some(target.clone()));
            let release = mode != PoolMode::Session;
            let mut fwd = Forwarder::new(
                config.pooler.max_packet_size,
                mode == PoolMode::Statement,
                release,
            );
            let outcome = self.forward(&mut fwd, &mut server, &target, &config).await;
            self.key.slot.set(None);
            self.account(&fwd, &mut server);
            match outcome {
                Ok(Outcome::Boundary) => {
                    self.pool.release(server);
                    self.c2s.park();
                    self.s2c.park();
                }
                Ok(Outcome::OpenTransaction) => {
                    self.end_server(server, status::IN_TRANSACTION, true).await;
                    let _ = send_error(
                        &mut self.client,
                        "FATAL",
                        "08P01",
                        "transaction blocks not allowed in statement pooling mode",
                    )
                    .await;
                    return "transaction in statement mode";
                }
                Ok(Outcome::ClientGone { clean }) => {
                    self.end_server(server, fwd.status, clean).await;
                    return "client closed";
                }
                Ok(Outcome::ServerGone { fatal_sent }) => {
                    self.pool.close(server);
                    self.ctx
                        .totals
                        .server_errors
                        .fetch_add(1, Ordering::Relaxed);
                    if !self.server_lost(&fwd, fatal_sent, mode).await {
                        return "server connection lost";
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {
                    self.pool.close(server);
                    let _ = send_error(&mut self.client, "FATAL", "08P01", &e.to_string()).await;
                    return "timeout";
                }
                Err(e) => {
                    self.pool.close(server);
                    let _ = send_error(
                        &mut self.client,
                        "FATAL",
                        "08P01",
                        &format!("protocol violation: {e}"),
                    )
                    .await;
                    return "protocol violation";
                }
            }
        }
    }

    /// Forwards one transaction, enforcing `query_timeout` (cancel, then close after twice the
    /// timeout) and `idle_transaction_timeout` (close) when they are set. Both are checked on a
    /// tick of a quarter of the shorter one, so they fire within 25% of their value.
    async fn forward(
        &mut self,
        fwd: &mut Forwarder,
        server: &mut ServerConn,
        target: &CancelTarget,
        config: &crate::config::Config,
    ) -> std::io::Result<Outcome> {
        let (qt, itt) = (config.pooler.query_timeout, config.pooler.idle_transaction_timeout);
        let (client, c2s, s2c) = (&mut self.client, &mut self.c2s, &mut self.s2c);
        if qt.is_zero() && itt.is_zero() {
            return fwd.run(client, &mut server.stream, c2s, s2c).await;
        }
        let shortest = [qt, itt].into_iter().filter(|d| !d.is_zero()).min().unwrap_or(qt);
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
                    return Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "query_timeout"));
                }
                if running >= qt && !cancelled {
                    cancelled = true;
                    target.send().await;
                }
            }
            if !itt.is_zero() && fwd.outstanding == 0 && fwd.status != status::IDLE && idle_since.elapsed() >= itt {
                return Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "idle transaction timeout"));
            }
        }
    }

    /// Waits until the idle client sends something; false when it closed.
    async fn wait_for_client(&mut self, idle_timeout: Duration) -> Result<bool, &'static str> {
        loop {
            let ready = if idle_timeout.is_zero() {
                self.client.readable().await
            } else {
                match tokio::time::timeout(idle_timeout, self.client.readable()).await {
                    Ok(r) => r,
                    Err(_) => {
                        let _ =
                            send_error(&mut self.client, "FATAL", "08P01", "client_idle_timeout")
                                .await;
                        return Err("client_idle_timeout");
                    }
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
                    self.c2s.preload(buf);
                    return Ok(true);
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => buffers::give(buf),
                Err(_) => return Ok(false),
            }
        }
    }

    /// Checks a server out and brings its settings in line with this client's.
    async fn attach(&mut self) -> Result<ServerConn, &'static str> {
        loop {
            let mut server = match self.pool.checkout().await {
                Ok(s) => s,
                Err(e) => {
                    let (code, msg) = match &e {
                        PoolError::WaitTimeout => ("08P01", "query_wait_timeout".to_string()),
                        PoolError::Server(s) => (static_code(s.sqlstate()), s.to_string()),
                        PoolError::Closed => ("08006", "database is being shut down".to_string()),
                    };
                    let _ = send_error(&mut self.client, "FATAL", code, &msg).await;
                    return Err("no server connection");
                }
            };
            match server.sync_params(&self.view).await {
                Ok(_) => return Ok(server),
                Err(_) => self.pool.close(server),
            }
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
            server.params = self.view.clone();
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
    async fn server_lost(&mut self, fwd: &Forwarder, fatal_sent: bool, mode: PoolMode) -> bool {
        let _ = Forwarder::flush_to_client(&mut self.client, &mut self.s2c).await;
        self.s2c = Pipe::default();
        self.c2s = Pipe::default();
        let node = self.pool.spec().node.clone();
        if mode == PoolMode::Session || fwd.outstanding == 0 {
            if !fatal_sent {
                let _ = send_error(
                    &mut self.client,
                    "FATAL",
                    "08006",
                    &format!("server connection to node {node} lost"),
                )
                .await;
            }
            return false;
        }
        let mut out = BytesMut::new();
        if !fatal_sent {
            builders::error_response(
                &mut out,
                "ERROR",
                "08006",
                &format!("server connection to node {node} lost"),
            );
        }
        for _ in 0..fwd.outstanding.max(1) {
            builders::ready_for_query(&mut out, status::IDLE);
        }
        self.client.write_all(&out).await.is_ok()
    }
}
