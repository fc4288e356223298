//! The SQLSTATEs a session tells its client, as a type, and how a server's code maps to them.

use std::fmt;

/// A SQLSTATE the pooler itself sends to a client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SqlState {
    /// 08006: the server connection failed or was lost.
    ConnectionFailure,
    /// 08P01: the client broke the protocol (or a pooler timeout ended the session).
    ProtocolViolation,
    /// 22023: a startup parameter has a bad value.
    InvalidParameterValue,
    /// 28000: the client may not log in (HBA, TLS required, unknown user).
    InvalidAuthorization,
    /// 28P01: wrong password.
    InvalidPassword,
    /// 3D000: no such database.
    InvalidCatalogName,
    /// 42704: an object the server did not find.
    UndefinedObject,
    /// 53300: too many connections or logins.
    TooManyConnections,
    /// 54000: a message exceeds a configured limit.
    ProgramLimitExceeded,
    /// 57P03: the database does not accept connections now.
    CannotConnectNow,
}

impl SqlState {
    /// The five-character code.
    pub fn code(self) -> &'static str {
        match self {
            Self::ConnectionFailure => "08006",
            Self::ProtocolViolation => "08P01",
            Self::InvalidParameterValue => "22023",
            Self::InvalidAuthorization => "28000",
            Self::InvalidPassword => "28P01",
            Self::InvalidCatalogName => "3D000",
            Self::UndefinedObject => "42704",
            Self::TooManyConnections => "53300",
            Self::ProgramLimitExceeded => "54000",
            Self::CannotConnectNow => "57P03",
        }
    }

    /// The state to pass on for a server's (or the server layer's) `code`: codes a client
    /// must be able to tell apart are kept, anything else is a connection failure.
    pub fn from_server(code: &str) -> Self {
        match code {
            "28P01" => Self::InvalidPassword,
            "28000" => Self::InvalidAuthorization,
            "3D000" => Self::InvalidCatalogName,
            "42704" => Self::UndefinedObject,
            "22023" => Self::InvalidParameterValue,
            "53300" => Self::TooManyConnections,
            "57P03" => Self::CannotConnectNow,
            _ => Self::ConnectionFailure,
        }
    }
}

impl fmt::Display for SqlState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

#[cfg(test)]
mod tests {
    use super::SqlState;

    #[test]
    fn server_codes_map_to_themselves_or_connection_failure() {
        for s in [
            SqlState::InvalidPassword,
            SqlState::InvalidAuthorization,
            SqlState::InvalidCatalogName,
            SqlState::UndefinedObject,
            SqlState::InvalidParameterValue,
            SqlState::TooManyConnections,
            SqlState::CannotConnectNow,
        ] {
            assert_eq!(SqlState::from_server(s.code()), s);
        }
        assert_eq!(SqlState::from_server("XX000"), SqlState::ConnectionFailure);
        assert_eq!(SqlState::from_server(""), SqlState::ConnectionFailure);
    }
}
