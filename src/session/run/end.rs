//! Why a session ended, as logged at disconnection.

use std::fmt;

/// Why a client's session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndReason {
    /// The client closed its connection (Terminate or end of stream).
    ClientClosed,
    /// `KILL_CLIENT` or `KILL db` from the console.
    Killed,
    /// The server's node was fenced (or stopped being the primary) mid-transaction.
    Fenced,
    /// A close request from the console or a shutdown, honoured at a boundary.
    CloseRequested,
    /// `client_idle_timeout` ran out.
    IdleTimeout,
    /// No server connection could be had for the client's transaction.
    NoServer,
    /// A transaction block was opened in statement pooling mode.
    TransactionInStatementMode,
    /// The server connection was lost where the client could not go on.
    ServerLost,
    /// `query_timeout` or `idle_transaction_timeout` ran out.
    Timeout,
    /// The client broke the protocol.
    ProtocolViolation,
}

impl EndReason {
    /// The words logged for this reason.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ClientClosed => "client closed",
            Self::Killed => "killed by the console",
            Self::Fenced => "server node fenced",
            Self::CloseRequested => "closed by the console or a shutdown",
            Self::IdleTimeout => "client_idle_timeout",
            Self::NoServer => "no server connection",
            Self::TransactionInStatementMode => "transaction in statement mode",
            Self::ServerLost => "server connection lost",
            Self::Timeout => "timeout",
            Self::ProtocolViolation => "protocol violation",
        }
    }
}

impl fmt::Display for EndReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
