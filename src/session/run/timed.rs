//! Forwarding one transaction under `query_timeout` and `idle_transaction_timeout`, and
//! stopping a session-mode run at a boundary when a close is requested.

use super::Session;
use crate::net::stream::ClientStream;
use crate::proto::tags::status;
use crate::server::ServerConn;
use crate::session::cancel::CancelSlot;
use crate::session::clients::CloseReason;
use crate::session::forward::{Forwarder, Outcome, Pipe, Pipes};
use std::time::{Duration, Instant};

impl Session {
    /// Forwards one transaction (see [`Self::forward_once`]). In session mode the forwarder
    /// runs until the client leaves; a close request (shutdown, removed database) makes it
    /// stop at the session's next transaction boundary instead, where it is reset and closed.
    pub(super) async fn forward(
        &mut self,
        fwd: &mut Forwarder,
        server: &mut ServerConn,
        config: &crate::config::Config,
    ) -> std::io::Result<Outcome> {
        if !fwd.release_at_boundary && !fwd.statement_mode {
            let info = self.reg.info.clone();
            // `Forwarder::run` is cancellation safe (it is re-entered on every timeout tick).
            tokio::select! {
                biased;
                r = Box::pin(self.forward_once(fwd, server, config)) => return r,
                _ = info.closing(CloseReason::Drain) => fwd.release_at_boundary = true,
            }
        }
        self.forward_once(fwd, server, config).await
    }

    /// Forwards one transaction, enforcing `query_timeout` (cancel, then close after twice the
    /// timeout) and `idle_transaction_timeout` (close) when they are set. They are checked on a
    /// tick of a quarter of the shorter one, so they fire within 25% of their value; with
    /// neither set no timer is armed. `client_message_timeout` needs none: the forwarder stamps
    /// a stall on the client's entry and the janitor closes it (`daemon::janitor`).
    async fn forward_once(
        &mut self,
        fwd: &mut Forwarder,
        server: &mut ServerConn,
        config: &crate::config::Config,
    ) -> std::io::Result<Outcome> {
        let p = &config.pooler;
        let limits = Timeouts {
            query: p.query_timeout,
            idle_transaction: p.idle_transaction_timeout,
        };
        let pipes = Pipes::of(&mut self.pipes);
        let (client, c2s, s2c) = (&mut self.client, &mut pipes.c2s, &mut pipes.s2c);
        if limits.shortest().is_none() {
            return fwd.run(client, &mut server.stream, c2s, s2c).await;
        }
        forward_timed(fwd, client, server, (c2s, s2c), &self.key.slot, limits).await
    }
}

/// The timeouts of a forwarding run (zero = off).
#[derive(Clone, Copy)]
struct Timeouts {
    query: Duration,
    idle_transaction: Duration,
}

impl Timeouts {
    fn shortest(&self) -> Option<Duration> {
        [self.query, self.idle_transaction]
            .into_iter()
            .filter(|d| !d.is_zero())
            .min()
    }
}

fn timed_out(what: &'static str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::TimedOut, what)
}

/// [`Session::forward`] with timeouts: ticks at a quarter of the shortest timeout.
async fn forward_timed(
    fwd: &mut Forwarder,
    client: &mut ClientStream,
    server: &mut ServerConn,
    (c2s, s2c): (&mut Pipe, &mut Pipe),
    slot: &CancelSlot,
    t: Timeouts,
) -> std::io::Result<Outcome> {
    let shortest = t.shortest().unwrap_or(Duration::from_secs(1));
    let tick = (shortest / 4).max(Duration::from_millis(10));
    let snapshot = |f: &Forwarder| (f.queries, f.bytes_in, f.bytes_out);
    let mut last = snapshot(fwd);
    let now = Instant::now();
    let (mut idle_since, mut query_since) = (now, now);
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
        let qt = t.query;
        if !qt.is_zero() && fwd.outstanding > 0 {
            let running = query_since.elapsed();
            if running >= qt * 2 {
                return Err(timed_out("query_timeout"));
            }
            if running >= qt && !cancelled {
                cancelled = true;
                if let Some(target) = slot.target() {
                    target.send().await;
                }
            }
        }
        if !t.idle_transaction.is_zero()
            && fwd.outstanding == 0
            && fwd.status != status::IDLE
            && idle_since.elapsed() >= t.idle_transaction
        {
            return Err(timed_out("idle transaction timeout"));
        }
    }
}
