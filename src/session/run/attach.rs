//! Checking a server out for a client's transaction: routing, waiting for a primary during a
//! failover, and refusing a transaction that cannot run.

use super::{send_error, EndReason, Session};
use crate::pool::PoolError;
use crate::proto::{builders, tags::status};
use crate::server::{ServerConn, ServerError};
use crate::session::forward::Pipe;
use crate::session::sqlstate::SqlState;
use bytes::BytesMut;
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;

impl Session {
    /// Checks a server out and brings its settings in line with this client's.
    ///
    /// On a cluster database whose primary cannot be reached, the transaction waits (up to
    /// `primary_wait_timeout`) for discovery or the agent to name a reachable primary, so that
    /// a client idle at a failover sees a delay rather than an error; past that, a routed
    /// session gets an ERROR for this transaction and keeps its connection.
    pub(super) async fn attach(&mut self) -> Result<Box<ServerConn>, EndReason> {
        let mut primary_deadline = None;
        loop {
            if let Some(msg) = self.refusal.take() {
                Box::pin(self.refuse_batch(SqlState::FeatureNotSupported, &msg)).await?;
            }
            if let Some(msg) = self.route.as_mut().and_then(|r| r.broken.take()) {
                Box::pin(self.refuse_batch(SqlState::ConnectionFailure, &msg)).await?;
            }
            while let Some(r) = self.route.as_mut() {
                match r.choose(&self.ctx) {
                    Ok(pool) => {
                        self.pool = pool;
                        break;
                    }
                    Err(msg) => {
                        Box::pin(self.refuse_batch(SqlState::CannotConnectNow, msg)).await?
                    }
                }
            }
            if self.route.as_ref().is_none_or(|r| r.on_replica.is_none()) {
                if let Err(why) = self.await_writer().await {
                    let msg = format!("no usable primary after primary_wait_timeout: {why}");
                    if self.route.is_some() {
                        Box::pin(self.refuse_batch(SqlState::ConnectionFailure, &msg)).await?;
                        continue;
                    }
                    let _ =
                        send_error(&mut self.client, "FATAL", SqlState::ConnectionFailure, &msg)
                            .await;
                    return Err(EndReason::NoServer);
                }
            }
            let e = match self.pool.checkout().await {
                Ok(mut server) => match server.sync_params(&self.view).await {
                    Ok(_) => return Ok(server),
                    Err(ServerError::Postgres { message, .. }) if self.view != self.startup => {
                        // The server refuses a setting the client made (a role dropped
                        // since...): the client is told, and goes on with its startup ones.
                        self.pool.close(server);
                        self.view = self.startup.clone();
                        let msg = format!("session settings could not be restored: {message}");
                        Box::pin(self.refuse_batch(SqlState::ConnectionFailure, &msg)).await?;
                        continue;
                    }
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
                super::client_span(&self.reg.info)
                    .in_scope(|| r.replica_failed(&self.ctx, e.to_string()));
                continue;
            }
            let unreachable = |s: &ServerError| {
                let code = s.sqlstate();
                code.starts_with("08") || code.starts_with("57P")
            };
            if matches!(&e, PoolError::Server(s) if unreachable(s)) && self.cluster {
                // The primary refused or dropped a new connection: the agent probes now.
                self.ctx.primary_trouble.notify_one();
            }
            if self.awaits_primary(&e, &mut primary_deadline) {
                let probe = self.ctx.config().pooler.probe_interval;
                let pause =
                    (probe / 2).clamp(Duration::from_millis(10), Duration::from_millis(250));
                self.ctx.writer.nap(pause).await;
                continue;
            }
            let (code, msg) = match &e {
                PoolError::WaitTimeout => {
                    (SqlState::ProtocolViolation, "query_wait_timeout".into())
                }
                PoolError::Server(s) => (SqlState::from_server(s.sqlstate()), s.to_string()),
                PoolError::Closed => (
                    SqlState::ConnectionFailure,
                    "database is being shut down".to_string(),
                ),
                PoolError::NoTarget => (SqlState::ConnectionFailure, e.to_string()),
            };
            if self.route.is_some() && matches!(e, PoolError::Server(_)) {
                primary_deadline = None;
                Box::pin(self.refuse_batch(code, &msg)).await?;
                continue;
            }
            let _ = send_error(&mut self.client, "FATAL", code, &msg).await;
            return Err(EndReason::NoServer);
        }
    }

    /// Waits (up to `primary_wait_timeout`) until writes may go to a cluster database's
    /// primary: the topology names an unfenced one and, under an agent, its lease is fresh.
    async fn await_writer(&self) -> Result<(), &'static str> {
        if !self.cluster {
            return Ok(());
        }
        let w = &self.ctx.writer;
        let lease = self.ctx.config_ref().write_lease();
        if w.blocked(lease, Instant::now()).is_none() {
            return Ok(());
        }
        let wait = self.ctx.config_ref().pooler.primary_wait_timeout;
        w.wait(Instant::now() + wait, |now| w.blocked(lease, now))
            .await
    }

    /// Whether a failed check-out from a cluster database's primary should wait for a new
    /// primary: the node is unreachable (SQLSTATE class 08 or 57P) or fenced with no primary
    /// named yet, and the wait that `deadline` tracks has not run out.
    fn awaits_primary(&self, e: &PoolError, deadline: &mut Option<Instant>) -> bool {
        match e {
            PoolError::NoTarget => {}
            PoolError::Server(s)
                if s.sqlstate().starts_with("08") || s.sqlstate().starts_with("57P") => {}
            _ => return false,
        }
        let config = self.ctx.config();
        let cluster = config
            .database(&self.pool.database)
            .is_some_and(|d| d.backend == crate::config::Backend::Cluster);
        let until =
            *deadline.get_or_insert_with(|| Instant::now() + config.pooler.primary_wait_timeout);
        cluster && Instant::now() < until
    }

    /// Answers a transaction that cannot run (a read no standby can serve under
    /// `replica_fallback = "error"`, an unreachable primary): an ERROR and a ReadyForQuery for
    /// each Query/Sync of the batch, which is dropped; then waits for the client's next
    /// transaction.
    async fn refuse_batch(&mut self, code: SqlState, msg: &str) -> Result<(), EndReason> {
        let ends = self.route.as_ref().map_or(1, |r| r.ends().max(1));
        let mut out = BytesMut::new();
        builders::error_response(&mut out, "ERROR", code.code(), msg);
        for _ in 0..ends {
            builders::ready_for_query(&mut out, status::IDLE);
        }
        if let Some(pipes) = self.pipes.as_deref_mut() {
            pipes.c2s = Pipe::default();
        }
        if self.client.write_all(&out).await.is_err() {
            return Err(EndReason::ClientClosed);
        }
        self.wait_for_client(Duration::ZERO).await
    }
}
