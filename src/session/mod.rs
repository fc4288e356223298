//! One task per client: login, then a loop of transactions, each checking a server connection
//! out of the pool, forwarding until the boundary, and giving it back.
//!
//! Client states follow PgBouncer's: login, idle (no server, no buffer), waiting (for a
//! server), active (forwarding).

pub mod buffers;
pub mod cancel;
pub mod ctx;
pub mod effects;
pub mod forward;
pub mod kdf;
pub mod login;
pub mod prepared;
pub mod prepared_flow;
mod route;
mod run;
pub mod sansio;
pub mod settings_track;
pub mod sqlstate;

pub use crate::backend::clients::ClientState;
pub use crate::backend::{auth_cache, clients};
pub use ctx::SessionCtx;
pub use run::{serve, EndReason};
pub use sqlstate::SqlState;

use crate::backend::{Backend, SessionStarter};
use std::sync::Arc;
use tokio_util::task::TaskTracker;

/// The session layer's entry point for the daemon: one task per accepted client.
pub fn starter(backend: Arc<Backend>) -> SessionStarter {
    kdf::init_salt_key(&backend.config().control);
    let ctx = SessionCtx::new(backend);
    Arc::new(move |client, peer, tracker: &TaskTracker| {
        tracker.spawn(serve(ctx.clone(), client, peer));
    })
}

use crate::proto::ProtoError;

/// Why a client's login ended.
#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    /// Something to tell the client before closing: SQLSTATE and message.
    #[error("{message}")]
    Fatal { code: SqlState, message: String },
    /// The server refused the pooler's connection for this client (unknown database, no
    /// CONNECT privilege...): its ErrorResponse body, relayed unchanged.
    #[error("server refused the login")]
    Server(Box<[u8]>),
    #[error("invalid startup packet: {0}")]
    Startup(ProtoError),
    #[error("protocol violation: {0}")]
    Protocol(String),
    #[error("client closed the connection")]
    Gone,
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

impl LoginError {
    /// A FATAL error for the client.
    pub fn fatal(code: SqlState, message: impl Into<String>) -> Self {
        Self::Fatal {
            code,
            message: message.into(),
        }
    }
}
