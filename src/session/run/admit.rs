//! Admission and login orchestration: the client cap, the login under its timeout, the pool
//! a client is served from and the session that then runs.

use super::{send_error, Session};
use crate::backend::Target;
use crate::config::PoolMode;
use crate::net::stream::{ClientStream, Peer};
use crate::pool::{Pool, PoolError};
use crate::server::params::ParamSet;
use crate::server::{ServerConn, ServerError};
use crate::session::cancel::CancelKey;
use crate::session::clients::ClientInfo;
use crate::session::ctx::{ConsoleLogin, SessionCtx};
use crate::session::login::{self, Login};
use crate::session::route::Routed;
use crate::session::sqlstate::SqlState;
use crate::session::LoginError;
use bytes::{BufMut, BytesMut};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;
use tracing::{debug, info};

/// Holds one place in the client count; drops with the session (or the failed login).
pub(super) struct ClientGuard(Arc<SessionCtx>);

impl Drop for ClientGuard {
    fn drop(&mut self) {
        self.0.totals.clients.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The session of one accepted client, as its task's future; past `max_client_conn` the
/// client gets an error.
///
/// The login runs in a boxed future of its own and returns only what the session keeps, and
/// the arguments travel inside that box: an idle client's task holds its [`Session`] and the
/// small idle wait, nothing else (`tests/footprint.rs` keeps the budget).
pub fn serve(
    ctx: Arc<SessionCtx>,
    client: ClientStream,
    peer: Peer,
) -> impl std::future::Future<Output = ()> + Send {
    let max = ctx.config().pooler.max_client_conn;
    let admitted = ctx.totals.clients.fetch_add(1, Ordering::Relaxed) < max;
    let guard = ClientGuard(ctx.clone());
    super::run_session(Box::pin(admit(ctx, client, peer, admitted, guard)))
}

/// Login with its timeout and error reporting; the session to run, or `None`.
async fn admit(
    ctx: Arc<SessionCtx>,
    mut client: ClientStream,
    peer: Peer,
    admitted: bool,
    count: ClientGuard,
) -> Option<Session> {
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
            report_login_error(&mut client, &e).await;
            debug!(%peer, error = %e, "login failed");
            return None;
        }
        Err(_) => {
            let code = SqlState::ProtocolViolation;
            let _ = send_error(&mut client, "FATAL", code, "client_login_timeout").await;
            return None;
        }
    };
    let reg = ctx.register_client(ClientInfo::new(
        key.pid,
        (&login.user, &pool.user),
        &login.database.name,
        &login.application_name,
        peer,
        false,
    ));
    if config.pooler.log_connections {
        super::client_span(&reg.info)
            .in_scope(|| info!(application_name = %login.application_name, "login"));
    }
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
        startup: view.clone(),
        view,
        reg,
        pipes: None,
        flow: None,
        config: None,
        pin: None,
        // A server the login already holds (session mode) serves the first transaction.
        pinned: server,
        refusal: None,
        _count: count,
    };
    Some(session)
}

/// Tells a client why its login failed, where there is something to tell.
async fn report_login_error(client: &mut ClientStream, e: &LoginError) {
    match e {
        LoginError::Fatal { code, message } => {
            let _ = send_error(client, "FATAL", *code, message).await;
        }
        LoginError::Server(body) => {
            let mut out = BytesMut::with_capacity(body.len() + 5);
            out.put_u8(b'E');
            out.put_i32(body.len() as i32 + 4);
            out.put_slice(body);
            let _ = client.write_all(&out).await;
        }
        LoginError::Startup(p) => {
            let msg = format!("invalid startup packet: {p}");
            let _ = send_error(client, "FATAL", SqlState::ProtocolViolation, &msg).await;
        }
        _ => {}
    }
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
        "pgbouncer",
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
    Option<Box<ServerConn>>,
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
            SqlState::TooManyConnections,
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
            SqlState::CannotConnectNow,
            format!(
                "database \"{}\" does not allow connections (DISABLE)",
                db.name
            ),
        ));
    }
    let pool = pool_for_login(ctx, &config, &db, &login).await?;
    // A server session takes the client's settings and tells us how it spells them; while a
    // cluster database has no usable primary, the parameters its last server connection sent
    // do (a login does not need the primary).
    let cluster = db.backend == crate::config::Backend::Cluster;
    let kept = (pool.database.clone(), pool.user.clone());
    let cached = cluster.then(|| ctx.writer.params(&kept)).flatten();
    let server = match &cached {
        Some(_) if writer_blocked(ctx, &config) => None,
        // The primary may be gone without a word (a partition): do not wait on it.
        Some(_) => match tokio::time::timeout(LOGIN_WAIT, pool.checkout()).await {
            Ok(Ok(s)) => Some(s),
            Ok(Err(PoolError::Server(e))) if unreachable(e.sqlstate()) => None,
            Ok(Err(PoolError::NoTarget)) | Err(_) => None,
            Ok(Err(e)) => return Err(pool_login_error(e)),
        },
        None => Some(pool.checkout().await.map_err(pool_login_error)?),
    };
    let (startup_params, canonical, server) = match (server, cached) {
        (Some(mut server), _) => {
            let canonical = match server.adopt(&login.wanted).await {
                Ok(set) => set,
                Err(e) => {
                    pool.close(server);
                    return Err(LoginError::fatal(
                        SqlState::from_server(e.sqlstate()),
                        e.to_string(),
                    ));
                }
            };
            if cluster {
                ctx.writer.keep_params(kept, server.startup_params.clone());
            }
            (server.startup_params.clone(), canonical, Some(server))
        }
        (None, Some(params)) => (params, login.wanted.clone().intern(), None),
        (None, None) => {
            return Err(LoginError::fatal(
                SqlState::ConnectionFailure,
                "no server connection",
            ))
        }
    };
    let keep = pool.settings().mode == PoolMode::Session;
    // Session mode shows the backend's real pid (cancel keys still come to the pooler).
    let real_pid = server.as_ref().filter(|_| keep).map(|s| s.key.0);
    let key = ctx.cancels.register_as(real_pid);
    let shown = (key.wire_pid, key.secret);
    if let Err(e) = login::greet(client, &startup_params, &canonical, shown).await {
        // The client is gone; the server, just brought in line, is clean.
        if let Some(server) = server {
            pool.release(server);
        }
        return Err(e.into());
    }
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

/// How long a login waits for a server connection when parameters are kept for its pool;
/// then it completes from them.
const LOGIN_WAIT: Duration = Duration::from_millis(500);

/// Whether writes to a cluster database's primary are held now (backend::writer).
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
        if let Ok(p) = pool_for(ctx, db, login) {
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
    pool_for(ctx, db, login)
}

/// The pool of a logged-in client, created on first use.
fn pool_for(
    ctx: &SessionCtx,
    db: &crate::config::DatabaseConfig,
    login: &Login,
) -> Result<Arc<Pool>, LoginError> {
    ctx.pool(db, &login.user, Target::Primary).ok_or_else(|| {
        LoginError::fatal(
            SqlState::ConnectionFailure,
            "no primary node is known for this database",
        )
    })
}

/// A failed check-out at login, as the client's FATAL error.
fn pool_login_error(e: PoolError) -> LoginError {
    match e {
        // PostgreSQL's own FATAL (unknown database or role, no CONNECT privilege...).
        PoolError::Server(ServerError::Postgres { body, .. }) => LoginError::Server(body),
        PoolError::Server(s) => {
            LoginError::fatal(SqlState::from_server(s.sqlstate()), s.to_string())
        }
        PoolError::WaitTimeout => {
            LoginError::fatal(SqlState::ConnectionFailure, "query_wait_timeout")
        }
        PoolError::Closed => {
            LoginError::fatal(SqlState::ConnectionFailure, "database is being shut down")
        }
        PoolError::NoTarget => {
            LoginError::fatal(SqlState::ConnectionFailure, PoolError::NoTarget.to_string())
        }
    }
}
