//! Forwarding one transaction under `query_timeout` and `idle_transaction_timeout`, and
//! stopping a session-mode run at a boundary when a close is requested.

use super::Session;
use crate::net::stream::ClientStream;
use crate::proto::tags::status;
use crate::server::ServerConn;
use crate::session::cancel::CancelTarget;
use crate::session::clients::CloseReason;
use crate::session::forward::{Forwarder, Outcome, Pipe};
use std::time::{Duration, Instant};

impl Session {
    /// Forwards one transaction (see [`Self::forward_once`]). In session mode the forwarder
    /// runs until the client leaves; a close request (shutdown, removed database) makes it
    /// stop at the session's next transaction boundary instead, where it is reset and closed.
    pub(super) async fn forward(
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
