//! Giving a server back when its client leaves, and telling a client its server is gone.

use super::{send_error, Session};
use crate::config::PoolMode;
use crate::proto::{builders, tags::status};
use crate::server::params::ParamSet;
use crate::server::ServerConn;
use crate::session::forward::{Forwarder, Pipe};
use crate::session::sqlstate::SqlState;
use bytes::BytesMut;
use tokio::io::AsyncWriteExt;

impl Session {
    /// Gives a server back after the client left, clean or not.
    pub(super) async fn end_server(&mut self, mut server: ServerConn, tx_status: u8, clean: bool) {
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
    pub(super) async fn server_lost(
        &mut self,
        fwd: &Forwarder,
        fatal_sent: bool,
        mode: PoolMode,
    ) -> bool {
        let _ = Forwarder::flush_to_client(&mut self.client, &mut self.s2c).await;
        self.s2c = Pipe::default();
        self.c2s = Pipe::default();
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
