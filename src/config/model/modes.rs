//! The configuration's enumerated choices: pool mode, session features, auth type, client TLS
//! mode, with their spellings.

/// How long a client keeps a server connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PoolMode {
    /// For the whole client session; `server_reset_query` on release.
    Session,
    /// Until the transaction ends (ReadyForQuery 'I').
    Transaction,
    /// Until each statement ends; multi-statement transactions refused.
    Statement,
}

impl PoolMode {
    /// Parses the configuration spelling.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "session" => Some(Self::Session),
            "transaction" => Some(Self::Transaction),
            "statement" => Some(Self::Statement),
            _ => None,
        }
    }

    /// The configuration spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Session => "session",
            Self::Transaction => "transaction",
            Self::Statement => "statement",
        }
    }
}

/// What transaction and statement modes do when a client creates session-scoped state (LISTEN,
/// temporary objects, session advisory locks, WITH HOLD cursors, SQL-level PREPARE, LOAD).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionFeatures {
    /// Keep the client on its server connection while the state exists.
    Pin,
    /// Undo the state and fail the client's next request with an error naming the feature.
    Error,
    /// Do nothing: the state stays on the server connection, which serves other clients.
    Ignore,
}

impl SessionFeatures {
    /// Parses the configuration spelling.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "pin" => Some(Self::Pin),
            "error" => Some(Self::Error),
            "ignore" => Some(Self::Ignore),
            _ => None,
        }
    }

    /// The configuration spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pin => "pin",
            Self::Error => "error",
            Self::Ignore => "ignore",
        }
    }
}

/// How clients prove who they are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthType {
    /// No password asked.
    Trust,
    /// MD5 challenge (works with plain and md5 secrets).
    Md5,
    /// SCRAM-SHA-256 (works with plain and SCRAM secrets).
    ScramSha256,
}

impl AuthType {
    /// Parses the configuration spelling.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "trust" => Some(Self::Trust),
            "md5" => Some(Self::Md5),
            "scram-sha-256" => Some(Self::ScramSha256),
            _ => None,
        }
    }

    /// The configuration spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Trust => "trust",
            Self::Md5 => "md5",
            Self::ScramSha256 => "scram-sha-256",
        }
    }
}

/// `client_tls_sslmode`: what the pooler asks of clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientTlsMode {
    /// SSLRequest answered 'N'.
    Disable,
    /// TLS when the client asks; plain text too.
    Allow,
    /// Same as `allow` on the server side (the client decides).
    Prefer,
    /// TCP clients must use TLS (Unix sockets need not).
    Require,
    /// `require`, and the client must show a certificate signed by `client_tls_ca_file`.
    VerifyCa,
}
