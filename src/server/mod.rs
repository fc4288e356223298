//! A server connection: connect and authenticate, parameter state, and the slow-path queries
//! (parameter sync, reset, rollback, health check) run between client transactions.

pub mod connect;
pub mod features;
pub mod lookup;
pub mod params;
pub mod prepared;
pub mod promoted;
pub mod reset;
pub mod stream;

pub use connect::{connect, ConnectSpec, Credential};
pub use params::ParamSet;
pub use stream::ServerStream;

use crate::net::frame_io::{read_frame, FrameIoError};
use crate::proto::{builders, tags::backend, views, ProtoError};
use bytes::BytesMut;
use std::sync::Arc;
use std::time::Instant;
use tokio::io::AsyncWriteExt;

/// Largest message accepted while the pooler itself talks to a server (not forwarding).
const CONTROL_MAX: usize = 1 << 24;

/// Why a server connection could not be opened or used.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot reach server {node}: {source}")]
    Io {
        node: String,
        #[source]
        source: std::io::Error,
    },
    #[error("timed out connecting to server {node}")]
    Timeout { node: String },
    #[error("server {node} closed the connection")]
    Closed { node: String },
    #[error("protocol error from server {node}: {message}")]
    Protocol { node: String, message: String },
    /// The server answered with an ErrorResponse: relay its code and text.
    #[error("{message}")]
    Postgres {
        node: String,
        severity: String,
        code: String,
        message: String,
        /// The ErrorResponse body as the server sent it (every field, for relaying).
        body: Box<[u8]>,
    },
    /// TLS towards the server failed or was refused (`server_tls_sslmode`).
    #[error("TLS to server {node}: {message}")]
    Tls { node: String, message: String },
    #[error("no password to log in to server {node} as user {user:?}")]
    NoPassword { node: String, user: String },
    /// The server asked for the password in clear text over a connection without TLS.
    #[error(
        "server {node} asks for a cleartext password over a connection without TLS: refused \
         (use TLS towards the server, or set server_allow_cleartext_password = true)"
    )]
    CleartextRefused { node: String },
}

impl ServerError {
    fn proto(spec: &ConnectSpec, e: ProtoError) -> Self {
        Self::Protocol {
            node: spec.node.to_string(),
            message: e.to_string(),
        }
    }

    fn from_frame(spec: &ConnectSpec, e: FrameIoError) -> Self {
        from_frame_err(&spec.node, e)
    }

    fn postgres(spec: &ConnectSpec, body: &[u8]) -> Self {
        postgres_error(&spec.node, body)
    }

    /// SQLSTATE to show a client for this failure.
    pub fn sqlstate(&self) -> &str {
        match self {
            Self::Postgres { code, .. } => code,
            Self::NoPassword { .. } | Self::CleartextRefused { .. } => "28000",
            _ => "08006",
        }
    }
}

fn from_frame_err(node: &str, e: FrameIoError) -> ServerError {
    match e {
        FrameIoError::Io(source) => ServerError::Io {
            node: node.to_string(),
            source,
        },
        FrameIoError::Closed => ServerError::Closed {
            node: node.to_string(),
        },
        FrameIoError::Proto(p) => ServerError::Protocol {
            node: node.to_string(),
            message: p.to_string(),
        },
    }
}

fn postgres_error(node: &str, body: &[u8]) -> ServerError {
    let fields = views::ErrorFields::new(body).ok();
    let fields = fields.as_ref();
    ServerError::Postgres {
        node: node.to_string(),
        severity: fields
            .and_then(|f| f.severity())
            .unwrap_or("FATAL")
            .to_string(),
        code: fields
            .and_then(|f| f.sqlstate())
            .unwrap_or("08006")
            .to_string(),
        message: fields
            .and_then(|f| f.message())
            .unwrap_or("server error")
            .to_string(),
        body: body.into(),
    }
}

/// An authenticated server session that is idle between client transactions.
pub struct ServerConn {
    pub stream: ServerStream,
    /// Bytes read but not yet forwarded; empty whenever the connection is idle.
    pub buf: BytesMut,
    pub node: Arc<str>,
    pub id: u64,
    /// Backend pid and secret, for cancel requests.
    pub key: (i32, i32),
    /// The settings this session has changed from the pool's baseline (`source = 'session'`).
    pub params: Arc<ParamSet>,
    /// Every ParameterStatus the server sent at login (what a new client is shown).
    pub startup_params: Arc<Vec<(String, String)>>,
    pub created: Instant,
    pub last_used: Instant,
    /// Named statements the pooler prepared here (transaction and statement modes).
    pub prepared: prepared::ServerStatements,
    /// The last startup settings adopted here and what they read back as (`adopt`): a login
    /// with the same settings on a connection still tagged with them needs no query.
    pub adopted: Option<(Arc<ParamSet>, Arc<ParamSet>)>,
    /// The pool capacity this connection holds while checked out (unset while idle in a pool
    /// or outside pools): dropping the connection gives it back (see [`crate::pool::Slot`]).
    pub slot: Option<crate::pool::Slot>,
    /// The worker whose reactor the socket is registered with ([`crate::net::worker`]); a
    /// check-out on another worker moves it there ([`ServerStream::rebind`]).
    pub home: u16,
    /// Opened on a standby that was promoted since: before its first use by the pool it now
    /// belongs to, it must show the server out of recovery ([`ServerConn::out_of_recovery`]).
    pub recovery_check: bool,
}

impl std::fmt::Debug for ServerConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerConn")
            .field("node", &self.node)
            .field("id", &self.id)
            .field("pid", &self.key.0)
            .finish()
    }
}

/// What a control query produced.
#[derive(Debug, Default)]
pub struct ControlResult {
    /// Transaction status of the final ReadyForQuery.
    pub status: u8,
    /// ParameterStatus messages seen.
    pub reported: Vec<(String, String)>,
    /// The first error, if any.
    pub error: Option<ServerError>,
}

impl ServerConn {
    /// Writes `bytes` and flushes them (over TLS, out of rustls' buffer too).
    pub async fn send(&mut self, bytes: &[u8]) -> Result<(), ServerError> {
        let io = |source| ServerError::Io {
            node: self.node.to_string(),
            source,
        };
        self.stream.write_all(bytes).await.map_err(io)?;
        self.stream.flush().await.map_err(io)
    }

    /// Runs `sql` with the simple protocol and reads until ReadyForQuery, swallowing results.
    pub async fn control(&mut self, sql: &str) -> Result<ControlResult, ServerError> {
        let mut out = BytesMut::with_capacity(sql.len() + 8);
        builders::query(&mut out, sql);
        self.send(&out).await?;
        let mut result = ControlResult::default();
        loop {
            let f = read_frame(&mut self.stream, &mut self.buf, CONTROL_MAX)
                .await
                .map_err(|e| from_frame_err(&self.node, e))?;
            match f.tag {
                backend::READY_FOR_QUERY => {
                    result.status = views::ready_for_query(&f.body).unwrap_or(b'I');
                    return Ok(result);
                }
                backend::PARAMETER_STATUS => {
                    if let Ok((k, v)) = views::parameter_status(&f.body) {
                        result.reported.push((k.to_string(), v.to_string()));
                    }
                }
                backend::ERROR_RESPONSE if result.error.is_none() => {
                    result.error = Some(postgres_error(&self.node, &f.body));
                }
                backend::COPY_IN_RESPONSE => {
                    let mut fail = BytesMut::new();
                    fail_copy(&mut fail);
                    self.send(&fail).await?;
                }
                _ => {}
            }
        }
    }

    /// Deallocates every prepared statement (a client's SQL-level `PREPARE` does not outlive
    /// its transaction in transaction and statement modes) and forgets the pooler's own.
    pub async fn deallocate_all(&mut self) -> Result<(), ServerError> {
        let r = self.control("DEALLOCATE ALL").await?;
        self.prepared.clear();
        match r.error {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Brings the tracked settings in line with `want`; returns the server's spelling of them.
    pub async fn sync_params(
        &mut self,
        want: &Arc<ParamSet>,
    ) -> Result<Vec<(String, String)>, ServerError> {
        if Arc::ptr_eq(&self.params, want) {
            return Ok(Vec::new());
        }
        let mut sql = String::new();
        params::sync_sql(&self.params, want, &mut sql);
        if sql.is_empty() {
            self.params = want.clone();
            return Ok(Vec::new());
        }
        // Boxed: rare, and its future would otherwise sit in every check-out's.
        let r = Box::pin(self.control(&sql)).await?;
        if let Some(e) = r.error {
            return Err(e);
        }
        self.params = want.clone();
        Ok(r.reported)
    }

    /// Whether the connection has nothing unexpected to say (no data, no EOF) right now.
    ///
    /// Costs no system call when the reactor has seen no event for the socket.
    pub fn is_quiet(&mut self) -> bool {
        self.buf.is_empty() && self.stream.is_quiet()
    }
}

fn fail_copy(buf: &mut BytesMut) {
    use bytes::BufMut;
    buf.put_u8(b'f');
    let msg = b"COPY not allowed here\0";
    buf.put_i32(4 + msg.len() as i32);
    buf.put_slice(msg);
}
