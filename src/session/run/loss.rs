//! Giving a server back when its client leaves, and telling a client its server is gone.

use super::{send_error, Session};
use crate::config::PoolMode;
use crate::proto::{builders, tags::status};
use crate::server::ServerConn;
use crate::session::forward::Forwarder;
use crate::session::sqlstate::SqlState;
use crate::session::{effects, settings_track};
use bytes::BytesMut;
use tokio::io::AsyncWriteExt;

impl Session {
    /// Gives a server back after the client left, clean or not: reset (bounded by
    /// `server_connect_timeout`) or closed, never handed on dirty.
    pub(super) async fn end_server(
        &mut self,
        mut server: Box<ServerConn>,
        tx_status: u8,
        clean: bool,
        fx: u8,
    ) {
        if !clean {
            self.pool.close(server);
            return;
        }
        let settings = self.pool.settings();
        let session = settings.mode == PoolMode::Session;
        if !session && self.pin.take().is_some() {
            // Session-scoped state (temporary tables, LISTEN...) is never handed on.
            self.pool.close(server);
            return;
        }
        let touched = session || fx & effects::SETTINGS != 0;
        // A tracked run (named statements on) ends clean only outside an extended batch.
        let tracked = self.ctx.config().pooler.max_prepared_statements > 0;
        let idle = tx_status == status::IDLE && !server.prepared.sql_prepared;
        if !session && idle && tracked && !touched {
            self.pool.release(server);
            return;
        }
        let reset = if session {
            settings.reset_query.as_str()
        } else {
            ""
        };
        let bound = self.ctx.config().pooler.server_connect_timeout;
        let left = tokio::time::timeout(bound, settings_track::leave(&mut server, reset, touched));
        match left.await {
            Ok(Ok(())) => self.pool.release(server),
            _ => self.pool.close(server),
        }
    }

    /// Tells the client its server is gone; true if the client may go on.
    pub(super) async fn server_lost(
        &mut self,
        fwd: &Forwarder,
        fatal_sent: bool,
        mode: PoolMode,
    ) -> bool {
        // What the server already answered reaches the client; the rest goes with the pair.
        if let Some(pipes) = self.pipes.as_deref_mut() {
            let _ = Forwarder::flush_to_client(&mut self.client, &mut pipes.s2c).await;
        }
        self.pipes = None;
        if self.cluster && self.pool.role() == "primary" {
            self.ctx.primary_trouble.notify_one();
        }
        let node = self.pool.spec().node.clone();
        let msg = format!(
            "server connection to node {node} lost during the transaction (server crash or \
             failover): it did not complete; the next transaction waits for a usable primary"
        );
        if let Some(r) = self.route.as_mut().filter(|_| fwd.outstanding == 0) {
            if mode != PoolMode::Session && !fatal_sent {
                // Idle in a transaction on a node that died: the client's next batch gets
                // the error, and the client goes on (see `attach`).
                r.broken = Some(msg);
                return true;
            }
        }
        let code = SqlState::ConnectionFailure;
        if mode == PoolMode::Session || fwd.outstanding == 0 {
            if !fatal_sent {
                let _ = send_error(&mut self.client, "FATAL", code, &msg).await;
            }
            return false;
        }
        let mut out = BytesMut::new();
        if !fatal_sent {
            builders::error_response(&mut out, "ERROR", code.code(), &msg);
        }
        for _ in 0..fwd.outstanding.max(1) {
            builders::ready_for_query(&mut out, status::IDLE);
        }
        self.client.write_all(&out).await.is_ok()
    }
}
