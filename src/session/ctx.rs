//! What sessions alone share: the cancel-key map and the prepared-statement registry, beside
//! a handle to the [`Backend`] (configuration, cluster truth, pools, clients, gate).
//!
//! `SessionCtx` dereferences to its backend, so session code reads `ctx.config_ref()`,
//! `ctx.pools` or `ctx.gate` directly; the layers above the session (console, metrics,
//! daemon) hold the backend itself and never this type.

use crate::backend::Backend;
use crate::session::cancel::CancelMap;
use std::ops::Deref;
use std::sync::Arc;

pub use crate::backend::{Console, ConsoleLogin, DbGate, Gate, Totals, CONSOLE_DATABASES};

/// Shared state of the pooler's sessions.
pub struct SessionCtx {
    backend: Arc<Backend>,
    pub cancels: Arc<CancelMap>,
    /// Named prepared statements of every client, and their counters.
    pub prepared: Arc<crate::session::prepared::Registry>,
}

impl SessionCtx {
    /// The session context over `backend`.
    pub fn new(backend: Arc<Backend>) -> Arc<Self> {
        Arc::new(Self {
            backend,
            cancels: Arc::default(),
            prepared: Arc::default(),
        })
    }

    /// The backend handle.
    pub fn backend(&self) -> &Arc<Backend> {
        &self.backend
    }
}

impl Deref for SessionCtx {
    type Target = Backend;

    fn deref(&self) -> &Backend {
        &self.backend
    }
}
