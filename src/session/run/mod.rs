//! The life of one client connection after accept: login, then transactions.
//!
//! - [`admit`]: the client cap, the login under its timeout, the pool and the session.
//! - this file: the transaction loop (idle wait, check-out, forwarding, boundary).
//! - [`attach`]: checking a server out for a transaction, waiting for a primary, refusing.
//! - [`timed`]: forwarding under `query_timeout` and `idle_transaction_timeout`.
//! - [`loss`]: giving a server back when the client leaves, and losing a server.
//! - [`end`]: why a session ended; SQLSTATEs are in [`super::sqlstate`].

mod admit;
mod attach;
mod end;
mod loss;
mod pin;
mod timed;

pub use admit::serve;
pub use end::EndReason;

use super::buffers;
use super::cancel::CancelKey;
use super::clients::{now_us, ClientInfo, CloseReason, Registered};
use super::ctx::{DbGate, SessionCtx};
use super::forward::{Forwarder, Outcome, Oversized, Pipes};
use super::prepared_flow::{self, Flow};
use super::route::Routed;
use super::sqlstate::SqlState;
use super::{effects, settings_track};
use crate::config::{Config, PoolMode};
use crate::net::stream::ClientStream;
use crate::pool::Pool;
use crate::proto::{builders, tags::status};
use crate::server::params::ParamSet;
use crate::server::ServerConn;
use bytes::BytesMut;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;
use tokio::time::Sleep;

/// Writes an ErrorResponse (`severity` FATAL or ERROR) to the client.
async fn send_error(
    client: &mut ClientStream,
    severity: &str,
    code: SqlState,
    message: &str,
) -> std::io::Result<()> {
    let mut out = BytesMut::new();
    builders::error_response(&mut out, severity, code.code(), message);
    client.write_all(&out).await
}

/// How an idle wait ended.
enum Woke {
    /// The client sent a request.
    Request,
    /// The client closed (or its socket failed).
    Closed,
    /// `client_idle_timeout` passed without a request.
    IdleTimeout,
    /// A close request (console, shutdown) ended the wait.
    Close(CloseReason),
}

/// The timer of an idle wait under `client_idle_timeout` (none when it is zero), boxed: most
/// idle clients have none.
fn idle_timer(idle_timeout: Duration) -> Option<Pin<Box<Sleep>>> {
    (!idle_timeout.is_zero()).then(|| Box::pin(tokio::time::sleep(idle_timeout)))
}

/// Why a forwarding run failed, as the session's end, the SQLSTATE and the client's message.
fn run_error(e: &std::io::Error) -> (EndReason, SqlState, String) {
    if let Some(o) = Oversized::from_io(e) {
        let why = EndReason::MessageTooLarge;
        (why, SqlState::ProgramLimitExceeded, o.to_string())
    } else if e.kind() == std::io::ErrorKind::TimedOut {
        let why = if e.to_string() == "client_message_timeout" {
            EndReason::MessageTimeout
        } else {
            EndReason::Timeout
        };
        (why, SqlState::ProtocolViolation, e.to_string())
    } else {
        let msg = format!("protocol violation: {e}");
        (
            EndReason::ProtocolViolation,
            SqlState::ProtocolViolation,
            msg,
        )
    }
}

struct Session {
    ctx: Arc<SessionCtx>,
    client: ClientStream,
    pool: Arc<Pool>,
    key: CancelKey,
    /// The client's settings: its startup packet's, then what its SETs made of them.
    view: Arc<ParamSet>,
    /// The startup packet's settings (what RESET, RESET ALL and DISCARD ALL go back to).
    startup: Arc<ParamSet>,
    /// This client's entry in the registry (state for the console, close requests).
    reg: Registered,
    db_gate: Arc<DbGate>,
    /// Both forwarding directions while a transaction runs or bytes wait (none when idle).
    pipes: Option<Box<Pipes>>,
    /// Named prepared statements (transaction and statement modes), made on first use.
    flow: Option<Box<Flow>>,
    /// Read routing to standbys (databases with a policy other than `primary`).
    route: Option<Box<Routed>>,
    /// The configuration snapshot the last transaction ran under.
    config: Option<Arc<Config>>,
    /// Session-scoped state keeps this client on one server connection (`session_features`).
    pin: Option<Box<pin::Pinned>>,
    /// The server connection a pinned client keeps between transactions.
    pinned: Option<Box<ServerConn>>,
    /// An error for the client's next request (`session_features = "error"`).
    refusal: Option<Box<str>>,
    /// A `[cluster]` database: writes wait for a usable primary (backend::writer).
    cluster: bool,
    /// This client's place in the client count (`max_client_conn`).
    _count: admit::ClientGuard,
}

/// The client's log fields (id, peer, database, user) as a span, made for each of the
/// session's few log lines: a span kept per client holds subscriber memory for every idle
/// client (and the subscriber never gives it back), and one entered on every poll costs two
/// subscriber calls per wake-up.
fn client_span(info: &ClientInfo) -> tracing::Span {
    tracing::info_span!(
        "client",
        client_id = info.id,
        peer = %info.peer,
        database = %info.database(),
        user = %info.user()
    )
}

/// Runs the session `login` produces: transactions until the client leaves, then the
/// disconnect line (`log_disconnections`).
///
/// This future is what an idle client's task holds: the session (a local here, not an
/// argument, which the compiler would keep twice), the idle wait (a poll function, and a
/// boxed timer under `client_idle_timeout`) and nothing else. The login, each check-out and
/// each transaction run in boxed futures of their own (`tests/footprint.rs` keeps the
/// budget).
async fn run_session<F>(login: Pin<Box<F>>)
where
    F: Future<Output = Option<Session>>,
{
    let Some(mut s) = login.await else {
        return;
    };
    let why = loop {
        let server = match s.pinned.take() {
            Some(server) => server,
            None => {
                // `wait_for_client` written out: called here, its future (holding the session
                // reference and the idle end's box) makes this one 32 bytes larger (footprint).
                let mut timer = idle_timer(s.idle_timeout());
                let woke = std::future::poll_fn(|cx| s.poll_idle(cx, &mut timer)).await;
                drop(timer);
                if !matches!(woke, Woke::Request) {
                    break Box::pin(s.idle_end(woke)).await;
                }
                match Box::pin(s.check_out()).await {
                    Ok(server) => server,
                    Err(why) => break why,
                }
            }
        };
        // One configuration snapshot per transaction: the session's own, replaced only when
        // a reload put another in force (a pointer compare, no reference count).
        let config = match s.config.take() {
            Some(c) if s.ctx.config_is(&c) => c,
            _ => s.ctx.config(),
        };
        let ended = Box::pin(s.transaction(server, &config)).await;
        s.config = Some(config);
        if let Some(why) = ended {
            break why;
        }
    };
    if s.ctx.config_ref().pooler.log_disconnections {
        client_span(&s.reg.info).in_scope(|| tracing::info!(reason = %why, "disconnect"));
    }
}

impl Session {
    /// `client_idle_timeout` from the snapshot the last transaction ran under (no shared
    /// load per transaction; a reload applies from the wait after the next transaction), or
    /// from the configuration in force before the first.
    fn idle_timeout(&self) -> Duration {
        match self.config.as_deref() {
            Some(c) => c.pooler.client_idle_timeout,
            None => self.ctx.config_ref().pooler.client_idle_timeout,
        }
    }

    /// A server for the request that just arrived (through the database's gate and the
    /// pool), raced against a kill.
    async fn check_out(&mut self) -> Result<Box<ServerConn>, EndReason> {
        let info = self.reg.info.clone();
        info.waiting(now_us());
        tokio::select! {
            biased;
            _ = info.closing(CloseReason::Killed) => Err(EndReason::Killed),
            r = async {
                self.ctx.gate.pass_db(&self.db_gate).await;
                self.attach().await
            } => r,
        }
    }

    /// One transaction on `server` under the configuration snapshot `config`; `Some(why)` when
    /// the session must end. Per transaction this takes no lock and no reference count on
    /// shared state: the pool mode and connect spec are read through `ArcSwap` guards and the
    /// cancel slot is two atomic stores.
    async fn transaction(
        &mut self,
        mut server: Box<ServerConn>,
        config: &Config,
    ) -> Option<EndReason> {
        let mode = self.pool.mode();
        self.key.slot.attach(&self.pool, server.key.0, server.key.1);
        let info = self.reg.info.clone();
        info.active(server.key.0, self.pool.id());
        if !self.pool.serves(&server.node) {
            // Fenced or re-pointed since the check-out: nothing may reach that node now.
            info.request_close(CloseReason::Fenced);
        }
        let started = Instant::now();
        let release = mode != PoolMode::Session;
        let mut fwd = Forwarder::new(
            config.pooler.max_packet_size,
            mode == PoolMode::Statement,
            release,
        );
        // A pinned client's run starts with nothing sent: it ends after a request, not before.
        fwd.wait_for_request = self.pin.is_some();
        fwd.max_inspected = config.pooler.max_inspected_message;
        if !config.pooler.client_message_timeout.is_zero() {
            fwd.stall = Some(info.clone());
        }
        if release {
            let limits = prepared_flow::Limits {
                per_server: config.pooler.max_prepared_statements,
                per_client: config.pooler.max_client_prepared_statements,
                total: config.pooler.max_tracked_prepared_statements,
            };
            let registry = &self.ctx.prepared;
            fwd.flow = prepared_flow::lend(&mut self.flow, &mut server.prepared, registry, limits);
        }
        let outcome = tokio::select! {
            biased;
            o = self.forward(&mut fwd, &mut server, config) => Some(o),
            _ = info.closing(CloseReason::Killed) => None,
        };
        self.key.slot.detach();
        prepared_flow::give_back(fwd.flow.take(), &mut self.flow, &mut server.prepared);
        let Some(outcome) = outcome else {
            // Killed from the console, or the node was fenced: the server's state is unknown,
            // so it is closed.
            self.pool.close(server);
            match info.close_requested() {
                Some(why @ CloseReason::Fenced) => {
                    let _ = Box::pin(self.send_close(why)).await;
                    return Some(EndReason::Fenced);
                }
                Some(why @ CloseReason::Stalled) => {
                    let _ = Box::pin(self.send_close(why)).await;
                    return Some(EndReason::Timeout);
                }
                _ => {}
            }
            return Some(EndReason::Killed);
        };
        self.account(&fwd, &mut server);
        let us = started.elapsed().as_micros() as u64;
        self.pool
            .stats
            .record_xact(fwd.queries, fwd.bytes_in, fwd.bytes_out, us);
        // Not boxed: the common path (a boundary) allocates nothing; the rare paths inside
        // box their own futures, so this stays small.
        self.settle(outcome, &fwd, server, mode).await
    }

    /// What follows a forwarding run's `outcome`; `Some(why)` when the session must end.
    async fn settle(
        &mut self,
        outcome: std::io::Result<Outcome>,
        fwd: &Forwarder,
        server: Box<ServerConn>,
        mode: PoolMode,
    ) -> Option<EndReason> {
        match outcome {
            Ok(Outcome::Boundary) => return self.boundary(server, mode, fwd.effects).await,
            Ok(Outcome::OpenTransaction) => {
                Box::pin(self.end_server(server, status::IN_TRANSACTION, true, fwd.effects)).await;
                let msg = "transaction blocks not allowed in statement pooling mode";
                let code = SqlState::ProtocolViolation;
                let _ = Box::pin(send_error(&mut self.client, "FATAL", code, msg)).await;
                return Some(EndReason::TransactionInStatementMode);
            }
            Ok(Outcome::ClientGone { clean }) => {
                Box::pin(self.end_server(server, fwd.status, clean, fwd.effects)).await;
                return Some(EndReason::ClientClosed);
            }
            Ok(Outcome::ServerGone { fatal_sent }) => {
                self.pool.close(server);
                let errors = &self.ctx.totals.server_errors;
                errors.fetch_add(1, Ordering::Relaxed);
                if !Box::pin(self.server_lost(fwd, fatal_sent, mode)).await {
                    return Some(EndReason::ServerLost);
                }
            }
            Err(e) => {
                self.pool.close(server);
                let (why, code, msg) = run_error(&e);
                let _ = Box::pin(send_error(&mut self.client, "FATAL", code, &msg)).await;
                return Some(why);
            }
        }
        None
    }

    /// At a transaction boundary: gives the server back; `Some(why)` when the session must
    /// end because a close was requested.
    async fn boundary(
        &mut self,
        mut server: Box<ServerConn>,
        mode: PoolMode,
        fx: u8,
    ) -> Option<EndReason> {
        if let Some(r) = self.route.as_mut() {
            r.ended();
        }
        let followed = mode == PoolMode::Session
            || fx & effects::SETTINGS == 0
            || Box::pin(self.follow_settings(&mut server)).await;
        let keep = if mode == PoolMode::Session {
            pin::Keep::Release
        } else if fx & (effects::STATE | effects::LOAD) == 0 {
            // Nothing session-scoped appeared or went: no question to the server.
            match self.pin.as_ref() {
                Some(p) if p.held != 0 => pin::Keep::Pin,
                _ => pin::Keep::Release,
            }
        } else {
            Box::pin(self.session_state(&mut server, fx)).await
        };
        if mode == PoolMode::Session {
            // Only after a close request (see `forward`): reset as if the client left.
            Box::pin(self.end_server(server, status::IDLE, true, fx)).await;
        } else if !followed || matches!(keep, pin::Keep::Close) {
            // Whatever pinned the client is gone with the connection.
            self.pin = None;
            self.pool.close(server);
        } else if matches!(keep, pin::Keep::Pin) {
            self.pinned = Some(server);
        } else if server.prepared.sql_prepared && Box::pin(server.deallocate_all()).await.is_err() {
            // SQL-level PREPARE lasts until the end of its transaction in these modes.
            self.pool.close(server);
        } else {
            self.pool.release(server);
        }
        Pipes::park(&mut self.pipes);
        let info = &self.reg.info;
        info.idle();
        let why = info.close_requested()?;
        if let Some(server) = self.pinned.take() {
            self.pool.close(server);
        }
        let _ = Box::pin(self.send_close(why)).await;
        Some(EndReason::CloseRequested)
    }

    /// Tells the client that a close request ends its session.
    async fn send_close(&mut self, why: CloseReason) -> std::io::Result<()> {
        let (code, msg) = why.error();
        let mut out = BytesMut::new();
        builders::error_response(&mut out, "FATAL", code, msg);
        self.client.write_all(&out).await
    }

    /// Waits for the client's next request (its bytes then are in `c2s`); the session's end
    /// when the client closed, stayed idle past `idle_timeout` (zero: no limit) or was asked
    /// to close.
    async fn wait_for_client(&mut self, idle_timeout: Duration) -> Result<(), EndReason> {
        let mut timer = idle_timer(idle_timeout);
        match std::future::poll_fn(|cx| self.poll_idle(cx, &mut timer)).await {
            Woke::Request => Ok(()),
            woke => Err(Box::pin(self.idle_end(woke)).await),
        }
    }

    /// Why an idle wait that did not bring a request ends the session; tells the client when
    /// there is something to tell.
    async fn idle_end(&mut self, woke: Woke) -> EndReason {
        match woke {
            Woke::Request | Woke::Closed => EndReason::ClientClosed,
            Woke::IdleTimeout => {
                let (code, msg) = (SqlState::ProtocolViolation, "client_idle_timeout");
                let _ = send_error(&mut self.client, "FATAL", code, msg).await;
                EndReason::IdleTimeout
            }
            Woke::Close(why) => {
                let _ = self.send_close(why).await;
                EndReason::CloseRequested
            }
        }
    }

    /// The idle wait: ready when the client sent a request (its bytes are in `c2s`), closed,
    /// stayed idle until `timer` fired, or was asked to close (console, shutdown).
    fn poll_idle(
        &mut self,
        cx: &mut Context<'_>,
        timer: &mut Option<Pin<Box<Sleep>>>,
    ) -> Poll<Woke> {
        loop {
            if let Poll::Ready(why) = self.reg.info.poll_closing(CloseReason::Shutdown, cx) {
                return Poll::Ready(Woke::Close(why));
            }
            match self.client.poll_read_ready(cx) {
                Poll::Ready(Err(_)) => return Poll::Ready(Woke::Closed),
                Poll::Ready(Ok(())) => match self.read_request() {
                    Some(true) => return Poll::Ready(Woke::Request),
                    Some(false) => return Poll::Ready(Woke::Closed),
                    // Readiness was stale: the read cleared it, so wait again.
                    None => continue,
                },
                Poll::Pending => {}
            }
            if let Some(t) = timer.as_mut() {
                if t.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Woke::IdleTimeout);
                }
            }
            return Poll::Pending;
        }
    }

    /// Reads what the client sent after the idle wait woke: `Some(true)` when there is a
    /// request to serve (its bytes are in `c2s`), `Some(false)` when the client closed, `None`
    /// when the read would block.
    fn read_request(&mut self) -> Option<bool> {
        let mut buf = buffers::take();
        match self.client.try_read_buf(&mut buf) {
            Ok(0) => Some(false),
            Ok(_) if buf.first() == Some(&b'X') && buf.len() == 5 => Some(false),
            Ok(_) => {
                if let Some(r) = self.route.as_mut() {
                    r.observe(&buf);
                }
                if let Some(db) = effects::dropped_database(&buf) {
                    self.ctx.close_idle_to(&db);
                }
                Pipes::of(&mut self.pipes).c2s.preload(buf);
                Some(true)
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                buffers::give(buf);
                None
            }
            Err(_) => Some(false),
        }
    }

    /// Folds a run's counters and reported settings into the session.
    fn account(&mut self, fwd: &Forwarder, server: &mut ServerConn) {
        let t = &self.ctx.totals;
        t.queries.fetch_add(fwd.queries, Ordering::Relaxed);
        t.transactions.fetch_add(1, Ordering::Relaxed);
        t.bytes_in.fetch_add(fwd.bytes_in, Ordering::Relaxed);
        t.bytes_out.fetch_add(fwd.bytes_out, Ordering::Relaxed);
        // Settings are followed by reading them back (`settings_track`), not from the
        // flow's tags or the reported values.
        server.prepared.settings_reset = false;
    }

    /// After a transaction that may have changed settings: the client's view and the
    /// server's tag from what the server now has; false when the server could not say.
    async fn follow_settings(&mut self, server: &mut ServerConn) -> bool {
        match settings_track::follow(server, &self.startup).await {
            Ok(view) => {
                self.view = view;
                true
            }
            Err(_) => false,
        }
    }
}
