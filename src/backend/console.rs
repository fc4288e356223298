//! The admin console as the session layer sees it: a trait the daemon installs (the console
//! sits above the session layer), and the database names that reach it.

use super::clients::Registered;
use crate::net::stream::ClientStream;
use std::future::Future;
use std::pin::Pin;

/// Database names that reach the admin console (`pgbouncer` for existing scripts and tools).
pub const CONSOLE_DATABASES: [&str; 2] = ["pgsluice", "pgbouncer"];

/// The admin console, installed by the daemon (the console sits above the session layer).
pub trait Console: Send + Sync {
    /// Serves a logged-in console client until it leaves.
    fn serve(
        &self,
        client: ClientStream,
        login: ConsoleLogin,
        registered: Registered,
    ) -> Pin<Box<dyn Future<Output = ()> + Send + 'static>>;
}

/// A client logged in to the console database.
#[derive(Debug, Clone)]
pub struct ConsoleLogin {
    pub user: String,
    /// Admin users may run every command; stats users only SHOW.
    pub admin: bool,
}
