//! The admin console: the virtual database `pgsluice` (alias `pgbouncer`) spoken over the
//! simple query protocol. Each line is parsed into a [`Command`], executed against the
//! session context, and answered with rows shaped like PgBouncer's console.
//!
//! Layering: the console sits above `session` (it reads the pools, clients and gates) and below
//! `daemon`, which installs it into the session context and implements [`Operations`] (reload,
//! shutdown) for it.

mod control;
mod mem;
mod nodes;
pub mod parse;
mod show;
mod stats;
mod table;

pub use parse::{parse, Command, ParseError, Show, ShutdownMode};
pub use stats::Averages;

use crate::backend::clients::{CloseReason, Registered};
use crate::backend::{Backend, Console, ConsoleLogin};
use crate::config::Config;
use crate::net::frame_io::{read_frame, FrameIoError};
use crate::net::stream::ClientStream;
use crate::proto::{builders, tags::frontend};
use bytes::BytesMut;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Weak};
use std::time::SystemTime;
use tokio::io::AsyncWriteExt;

pub use crate::backend::CONSOLE_DATABASES;

/// Largest console query accepted.
const MAX_QUERY: usize = 64 * 1024;

/// What the daemon does for the console.
pub trait Operations: Send + Sync {
    /// Re-reads the configuration file (and `auth_file`); an invalid one is refused.
    fn reload(&self) -> Result<(), String>;
    /// Puts a changed configuration in force (`SET`), as a reload would.
    fn install(&self, config: Config) -> Result<(), String>;
    /// Begins a shutdown.
    fn shutdown(&self, mode: ShutdownMode);
}

/// An error shown to the console user (the session goes on).
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct AdminError {
    pub code: &'static str,
    pub message: String,
}

impl AdminError {
    fn new(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

impl From<ParseError> for AdminError {
    fn from(e: ParseError) -> Self {
        Self::new("42601", e.to_string())
    }
}

/// The console, shared by every console session.
pub struct Admin {
    pub ctx: Arc<Backend>,
    ops: Arc<dyn Operations>,
    pub started: SystemTime,
    pub averages: Averages,
}

impl Admin {
    /// A console over `ctx`, with `ops` for reload and shutdown.
    pub fn new(ctx: Arc<Backend>, ops: Arc<dyn Operations>) -> Arc<Self> {
        Arc::new(Self {
            ctx,
            ops,
            started: SystemTime::now(),
            averages: Averages::default(),
        })
    }

    /// Runs one command; appends its reply (rows and CommandComplete) to `out`.
    pub async fn execute(
        &self,
        cmd: &Command,
        login: &ConsoleLogin,
        out: &mut BytesMut,
    ) -> Result<(), AdminError> {
        if !login.admin && !cmd.read_only() {
            return Err(AdminError::new(
                "42501",
                format!(
                    "user \"{}\" may only run SHOW commands (stats_users)",
                    login.user
                ),
            ));
        }
        match cmd {
            Command::Show(what) => self.show(*what, out),
            other => self.control(other, out).await,
        }
    }

    /// Serves one console client until it leaves.
    async fn serve_client(
        self: Arc<Self>,
        mut client: ClientStream,
        login: ConsoleLogin,
        registered: Registered,
    ) {
        let mut buf = BytesMut::with_capacity(1024);
        let mut out = BytesMut::with_capacity(4096);
        loop {
            let read = tokio::select! {
                biased;
                r = read_frame(&mut client, &mut buf, MAX_QUERY) => r,
                why = registered.info.closing(CloseReason::Shutdown) => {
                    let (code, msg) = why.error();
                    builders::error_response(&mut out, "FATAL", code, msg);
                    let _ = client.write_all(&out).await;
                    return;
                }
            };
            let frame = match read {
                Ok(f) => f,
                Err(FrameIoError::Closed) => return,
                Err(e) => {
                    builders::error_response(&mut out, "FATAL", "08P01", &e.to_string());
                    let _ = client.write_all(&out).await;
                    return;
                }
            };
            out.clear();
            let shutdown = match frame.tag {
                frontend::QUERY => {
                    let sql = String::from_utf8_lossy(&frame.body);
                    let sql = sql.trim_end_matches('\0');
                    self.answer(sql, &login, &mut out).await
                }
                frontend::TERMINATE => return,
                other => {
                    let msg = format!(
                        "the console speaks only the simple query protocol (got message type {})",
                        other as char
                    );
                    builders::error_response(&mut out, "FATAL", "08P01", &msg);
                    let _ = client.write_all(&out).await;
                    return;
                }
            };
            builders::ready_for_query(&mut out, b'I');
            if client.write_all(&out).await.is_err() {
                return;
            }
            if let Some(mode) = shutdown {
                self.ops.shutdown(mode);
            }
        }
    }

    /// Answers one query string; returns a shutdown to begin once the reply is sent.
    async fn answer(
        &self,
        sql: &str,
        login: &ConsoleLogin,
        out: &mut BytesMut,
    ) -> Option<ShutdownMode> {
        if sql.trim().trim_end_matches(';').trim().is_empty() {
            builders::empty_query_response(out);
            return None;
        }
        let cmd = match parse(sql) {
            Ok(c) => c,
            Err(e) => {
                let e = AdminError::from(e);
                builders::error_response(out, "ERROR", e.code, &e.message);
                return None;
            }
        };
        let mark = out.len();
        match self.execute(&cmd, login, out).await {
            Ok(()) => match cmd {
                Command::Shutdown(mode) => Some(mode),
                _ => None,
            },
            Err(e) => {
                out.truncate(mark);
                builders::error_response(out, "ERROR", e.code, &e.message);
                None
            }
        }
    }
}

/// What the session context holds of the console: a weak handle, so that the daemon owns the
/// console and no reference cycle keeps the context alive.
pub struct ConsoleHandle(pub Weak<Admin>);

impl Console for ConsoleHandle {
    fn serve(
        &self,
        client: ClientStream,
        login: ConsoleLogin,
        registered: Registered,
    ) -> Pin<Box<dyn Future<Output = ()> + Send + 'static>> {
        let admin = self.0.upgrade();
        Box::pin(async move {
            if let Some(a) = admin {
                a.serve_client(client, login, registered).await;
            }
        })
    }
}

/// Formats µs since the epoch as PgBouncer does (`2024-01-31 12:34:56 UTC`); 0 = empty.
pub fn format_time(us: u64) -> String {
    if us == 0 {
        return String::new();
    }
    let secs = us / 1_000_000;
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_format_like_pgbouncer() {
        assert_eq!(format_time(0), "");
        assert_eq!(format_time(1_000_000), "1970-01-01 00:00:01 UTC");
        assert_eq!(
            format_time(1_709_210_096_000_000),
            "2024-02-29 12:34:56 UTC"
        );
    }
}
