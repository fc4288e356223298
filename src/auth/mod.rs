//! Sans-IO authentication: secrets, MD5 and SCRAM-SHA-256 exchanges, the `auth_file` format.
//!
//! Nothing here reads a socket: the session feeds message bodies in and writes what comes
//! out, so every exchange is unit-tested without a network.
//!
//! | file | job |
//! |---|---|
//! | `mod.rs` | [`AuthError`], [`Secret`] (what we know of a user's password), [`verify_password`] |
//! | [`hba`] | `pg_hba.conf`-syntax rules (`auth_hba_file`): parser and first-match lookup |
//! | [`md5`] | PostgreSQL's MD5 password hashing and the salted challenge check |
//! | [`scram`] | SCRAM-SHA-256 server ([`ScramServer`]) and client ([`ScramClient`]), [`ScramSecret`] |
//! | [`userlist`] | PgBouncer's `auth_file` (`"user" "secret"` lines) |
//!
//! SCRAM pass-through: after a client authenticates to [`ScramServer`] with a stored secret,
//! [`ScramServer::client_key`] holds the ClientKey recovered from its proof; with the secret's
//! ServerKey, [`ScramClient::from_client_key`] logs in to a PostgreSQL server that stores the
//! same secret, without the pooler ever knowing the password.
//!
//! PBKDF2 (plaintext secrets and [`ScramClient::new`]) costs a few milliseconds at 4096
//! iterations: callers on an async runtime may want `spawn_blocking` for it.

use std::fmt;

use subtle::ConstantTimeEq;

pub mod hba;
pub mod md5;
pub mod scram;
pub mod userlist;

pub use self::md5::{md5_hex, md5_salted, verify_md5};
pub use scram::{
    scram_secret, spend_pbkdf2, user_salt, ScramClient, ScramSecret, ScramServer, SCRAM_SHA_256,
};
pub use userlist::{parse_userlist, UserlistError};

/// Why an authentication exchange failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// The peer's SCRAM message does not follow RFC 5802.
    #[error("malformed SCRAM message: {0}")]
    Malformed(&'static str),
    /// The client asked for channel binding (`p=`), which needs SCRAM-SHA-256-PLUS.
    #[error("channel binding is not supported: SCRAM-SHA-256-PLUS was not offered")]
    ChannelBindingUnsupported,
    /// The peer used a SCRAM feature PostgreSQL does not support.
    #[error("unsupported SCRAM feature: {0}")]
    Unsupported(&'static str),
    /// The nonce does not extend (server-first) or repeat (client-final) the expected one.
    #[error("SCRAM nonce mismatch")]
    NonceMismatch,
    /// The server sent an iteration count below 1 or above the client's bound.
    #[error("invalid SCRAM iteration count (accepted: 1 to 100000)")]
    InvalidIterations,
    /// The client's proof (or MD5 response, or password) is wrong.
    #[error("password authentication failed")]
    AuthenticationFailed,
    /// The server's signature is wrong: it does not know the password.
    #[error("SCRAM server signature mismatch")]
    ServerSignatureMismatch,
    /// The server ended the SCRAM exchange with `e=<reason>`.
    #[error("server rejected SCRAM authentication: {0}")]
    ServerError(String),
    /// A step of the exchange was called out of order, or after a failure.
    #[error("SCRAM exchange step out of order")]
    OutOfOrder,
    /// A stored secret is not in PostgreSQL's text form.
    #[error("invalid SCRAM secret: {0}")]
    InvalidSecret(&'static str),
    /// SCRAM cannot be done from an MD5 secret.
    #[error("an MD5 secret cannot be used for SCRAM authentication")]
    Md5SecretForScram,
}

/// What the pooler knows of a user's password, as `pg_authid.rolpassword` or an `auth_file`
/// holds it. `Debug` never shows the secret itself.
#[derive(Clone, PartialEq, Eq)]
pub enum Secret {
    /// The password in clear.
    Plain(String),
    /// `"md5"` followed by 32 lowercase hex digits of md5(password || user).
    Md5(String),
    /// A SCRAM-SHA-256 verifier.
    Scram(ScramSecret),
}

impl Secret {
    /// Recognizes a stored secret the way PostgreSQL does: `md5` + 32 lowercase hex digits is
    /// MD5, a well-formed `SCRAM-SHA-256$<iter>:<salt>$<StoredKey>:<ServerKey>` is SCRAM, and
    /// anything else (a malformed SCRAM secret included) is a plaintext password.
    #[must_use]
    pub fn parse(s: &str) -> Self {
        if is_md5_secret(s) {
            Self::Md5(s.to_owned())
        } else if let Ok(scram) = ScramSecret::parse(s) {
            Self::Scram(scram)
        } else {
            Self::Plain(s.to_owned())
        }
    }

    /// `"plain"`, `"md5"` or `"scram-sha-256"`, for logs and errors.
    #[must_use]
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Plain(_) => "plain",
            Self::Md5(_) => "md5",
            Self::Scram(_) => "scram-sha-256",
        }
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret::{}(<redacted>)", self.kind())
    }
}

fn is_md5_secret(s: &str) -> bool {
    s.len() == 35
        && s.starts_with("md5")
        && s.bytes()
            .skip(3)
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Checks a password a client sent in clear (AuthenticationCleartextPassword) against a
/// stored secret of any kind, comparing in constant time.
#[must_use]
pub fn verify_password(secret: &Secret, user: &str, password: &[u8]) -> bool {
    match secret {
        Secret::Plain(plain) => plain.as_bytes().ct_eq(password).into(),
        Secret::Md5(stored) => md5_hex(password, user)
            .as_bytes()
            .ct_eq(stored.as_bytes())
            .into(),
        Secret::Scram(scram) => match std::str::from_utf8(password) {
            Ok(password) => scram.verify_password(password),
            Err(_) => false,
        },
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn parses_secret_kinds() {
        let md5 = "md5a3556571e93b0d20722ba62be61e8c2d";
        assert_eq!(Secret::parse(md5), Secret::Md5(md5.into()));
        assert_eq!(
            Secret::parse("md5A3556571E93B0D20722BA62BE61E8C2D").kind(),
            "plain"
        );
        assert_eq!(Secret::parse("md5short").kind(), "plain");
        assert_eq!(Secret::parse("hunter2"), Secret::Plain("hunter2".into()));
        let scram = scram_secret("pencil", b"0123456789abcdef", 4096).to_string();
        assert_eq!(Secret::parse(&scram).kind(), "scram-sha-256");
        assert_eq!(Secret::parse("SCRAM-SHA-256$4096:xx$yy:zz").kind(), "plain");
        assert_eq!(Secret::parse(""), Secret::Plain(String::new()));
    }

    #[test]
    fn debug_redacts() {
        for s in ["hunter2", "md5a3556571e93b0d20722ba62be61e8c2d"] {
            let shown = format!("{:?}", Secret::parse(s));
            assert!(!shown.contains(s), "{shown}");
            assert!(shown.contains("redacted"));
        }
        let scram = scram_secret("pencil", b"salt", 4096);
        let shown = format!("{:?}", Secret::Scram(scram.clone()));
        assert!(!shown.contains(&scram.to_string()));
    }

    #[test]
    fn verifies_cleartext_against_every_kind() {
        let secrets = [
            Secret::Plain("pw".into()),
            Secret::Md5(md5_hex("pw", "bob")),
            Secret::Scram(scram_secret("pw", b"salt", 16)),
        ];
        for secret in &secrets {
            assert!(verify_password(secret, "bob", b"pw"), "{secret:?}");
            assert!(!verify_password(secret, "bob", b"pw2"), "{secret:?}");
            assert!(!verify_password(secret, "bob", b""), "{secret:?}");
        }
        assert!(!verify_password(&secrets[1], "alice", b"pw"));
        assert!(!verify_password(&secrets[2], "bob", b"\xff"));
    }
}
