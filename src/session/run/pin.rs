//! Session-scoped state in transaction and statement modes (`session_features`): after a
//! transaction whose tags or text say such state may have appeared or gone (see
//! [`crate::session::effects`]), the server is asked what it holds; with `pin` the client
//! keeps that server connection while anything is held, with `error` the state is dropped and
//! the client's next request fails with an error naming it, with `ignore` nothing is done.

use super::Session;
use crate::config::SessionFeatures;
use crate::pool::Pool;
use crate::server::{features, ServerConn};
use crate::session::effects;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tracing::info;

/// A pinned client: counted in its pool's `pinned` while this lives.
pub(super) struct Pinned {
    pool: Arc<Pool>,
    /// [`features`] flags held.
    pub held: u8,
}

impl Drop for Pinned {
    fn drop(&mut self) {
        self.pool.stats.pinned.fetch_sub(1, Ordering::Relaxed);
    }
}

/// What to do with the server at a boundary.
pub(super) enum Keep {
    /// Hand it back to the pool (after the usual boundary steps).
    Release,
    /// Keep it for this client's next transaction.
    Pin,
    /// Close it (its state could not be read or undone).
    Close,
}

impl Session {
    /// The pool's `session_features` (the database's, else the pooler's).
    fn session_features(&self) -> SessionFeatures {
        let config = self.ctx.config();
        config
            .database(&self.pool.database)
            .map_or(config.pooler.session_features, |d| d.session_features)
    }

    /// Decides at a transaction boundary whether session-scoped state keeps the server.
    pub(super) async fn session_state(&mut self, server: &mut ServerConn, fx: u8) -> Keep {
        let before = self.pin.as_ref().map_or(0, |p| p.held);
        if fx & (effects::STATE | effects::LOAD) == 0 {
            return if before != 0 {
                Keep::Pin
            } else {
                Keep::Release
            };
        }
        let policy = self.session_features();
        if policy == SessionFeatures::Ignore {
            return Keep::Release;
        }
        let mut held = before & features::LOADED;
        if fx & effects::LOAD != 0 {
            held |= features::LOADED;
        }
        match server.session_features().await {
            Ok(h) => held |= h,
            Err(_) => return Keep::Close,
        }
        if policy == SessionFeatures::Error {
            return self.refuse_features(server, held).await;
        }
        self.set_pin(held, before);
        if held != 0 {
            Keep::Pin
        } else {
            Keep::Release
        }
    }

    fn set_pin(&mut self, held: u8, before: u8) {
        match (before, held) {
            (0, 0) => {}
            (0, _) => {
                super::client_span(&self.reg.info).in_scope(|| {
                    info!(features = %features::names(held), "client pinned to its server connection")
                });
                self.pool.stats.pinned.fetch_add(1, Ordering::Relaxed);
                self.pin = Some(Box::new(Pinned {
                    pool: self.pool.clone(),
                    held,
                }));
            }
            (_, 0) => {
                super::client_span(&self.reg.info)
                    .in_scope(|| info!("client unpinned: no session-scoped state left"));
                self.pin = None;
            }
            (_, _) => {
                if let Some(p) = self.pin.as_mut() {
                    p.held = held;
                }
            }
        }
    }

    /// `session_features = "error"`: drops what the client created and fails its next request.
    async fn refuse_features(&mut self, server: &mut ServerConn, held: u8) -> Keep {
        if held == 0 {
            return Keep::Release;
        }
        let names = features::names(held);
        self.refusal = Some(
            format!(
                "{names} cannot be used in {} pooling mode (session_features = \"error\"); \
                 it was undone",
                self.pool.settings().mode.as_str()
            )
            .into(),
        );
        super::client_span(&self.reg.info)
            .in_scope(|| info!(features = %names, "session-scoped state refused and undone"));
        if held & features::LOADED != 0 {
            return Keep::Close;
        }
        match server.drop_session_features().await {
            Ok(()) => Keep::Release,
            Err(_) => Keep::Close,
        }
    }
}
