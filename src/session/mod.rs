//! One task per client: login, then a loop of transactions, each checking a server connection
//! out of the pool, forwarding until the boundary, and giving it back.
//!
//! Client states follow PgBouncer's: login, idle (no server, no buffer), waiting (for a
//! server), active (forwarding).

pub mod auth_cache;
pub mod buffers;
pub mod cancel;
pub mod clients;
pub mod ctx;
pub mod forward;
pub mod login;
pub mod prepared;
pub mod prepared_flow;
mod route;
mod run;
pub mod writer;

pub use ctx::SessionCtx;
pub use run::serve;

use crate::proto::ProtoError;

/// Why a client's login ended.
#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    /// Something to tell the client before closing: SQLSTATE and message.
    #[error("{message}")]
    Fatal { code: &'static str, message: String },
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
    pub fn fatal(code: &'static str, message: impl Into<String>) -> Self {
        Self::Fatal {
            code,
            message: message.into(),
        }
    }
}

/// Client state, as the console shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum ClientState {
    Login,
    Idle,
    Waiting,
    Active,
}
