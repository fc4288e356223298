//! The client side of SCRAM-SHA-256, for the pooler's logins to PostgreSQL servers, from a
//! password or (pass-through) from a ClientKey recovered by [`super::ScramServer`].

use std::fmt;

use base64::Engine as _;
use subtle::ConstantTimeEq;

use super::{attr, decode_key, hmac, password_keys, random_nonce, sha256, utf8, xor, Key, B64};
use crate::auth::AuthError;

/// The largest iteration count accepted from a server: PostgreSQL's default is 4096; a server
/// (or a man in the middle) asking for more would make every pooler login burn CPU.
pub const MAX_SERVER_ITERATIONS: u32 = 100_000;

/// What the client proves it knows.
#[derive(Clone)]
enum Credentials {
    /// The password: keys are derived once the server sends salt and iterations.
    Password(String),
    /// ClientKey and ServerKey of the server's secret: salt and iterations are not needed.
    Keys { client_key: Key, server_key: Key },
}

/// Where a [`ScramClient`] is in the exchange.
enum ClientState {
    /// client-first not produced yet.
    Initial,
    /// Sent client-first, waiting for server-first.
    SentFirst { client_first_bare: String },
    /// Sent client-final, waiting for server-final with this signature.
    SentFinal { server_signature: Key },
    /// The server proved it knows the secret too.
    Done,
    /// A step failed; the exchange is over.
    Failed,
}

/// The client side of a SCRAM-SHA-256 exchange, for one login.
///
/// Send [`ScramClient::client_first`] in SASLInitialResponse, feed the
/// AuthenticationSASLContinue data to [`ScramClient::handle_server_first`] and send its result
/// in SASLResponse, then feed the AuthenticationSASLFinal data to
/// [`ScramClient::handle_server_final`]. Any error ends the exchange.
pub struct ScramClient {
    credentials: Credentials,
    /// `n=` value; PostgreSQL clients leave it empty (the startup packet names the user).
    user: String,
    nonce: String,
    state: ClientState,
}

impl fmt::Debug for ScramClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.credentials {
            Credentials::Password(_) => "password",
            Credentials::Keys { .. } => "client key",
        };
        f.debug_struct("ScramClient")
            .field("credentials", &kind)
            .field("done", &self.is_done())
            .finish_non_exhaustive()
    }
}

impl ScramClient {
    /// A client that knows the password (this runs PBKDF2 in
    /// [`ScramClient::handle_server_first`]).
    #[must_use]
    pub fn new(password: &str) -> Self {
        Self::with_nonce(
            Credentials::Password(password.to_owned()),
            "",
            random_nonce(),
        )
    }

    /// A pass-through client: proves knowledge of `client_key` (from
    /// [`super::ScramServer::client_key`]) and checks the server with `server_key` (from the
    /// same stored secret). The server must hold that very secret (same salt and iterations).
    #[must_use]
    pub fn from_client_key(client_key: [u8; 32], server_key: [u8; 32]) -> Self {
        Self::with_nonce(
            Credentials::Keys {
                client_key,
                server_key,
            },
            "",
            random_nonce(),
        )
    }

    fn with_nonce(credentials: Credentials, user: &str, nonce: String) -> Self {
        Self {
            credentials,
            user: user.to_owned(),
            nonce,
            state: ClientState::Initial,
        }
    }

    /// client-first-message, the data of SASLInitialResponse (restarts the exchange).
    #[must_use]
    pub fn client_first(&mut self) -> Vec<u8> {
        let client_first_bare = format!("n={},r={}", self.user, self.nonce);
        let msg = format!("n,,{client_first_bare}").into_bytes();
        self.state = ClientState::SentFirst { client_first_bare };
        msg
    }

    /// Handles server-first-message (AuthenticationSASLContinue data) and returns
    /// client-final-message with the proof.
    ///
    /// # Errors
    /// A malformed message, a nonce that does not extend ours, an iteration count below 1 or
    /// above [`MAX_SERVER_ITERATIONS`], a mandatory extension, or a call out of order.
    pub fn handle_server_first(&mut self, msg: &[u8]) -> Result<Vec<u8>, AuthError> {
        let ClientState::SentFirst { client_first_bare } =
            std::mem::replace(&mut self.state, ClientState::Failed)
        else {
            return Err(AuthError::OutOfOrder);
        };
        let server_first = utf8(msg)?;
        let mut attrs = server_first.split(',');
        let first = attrs.next();
        if first.is_some_and(|a| a.starts_with("m=")) {
            return Err(AuthError::Unsupported("mandatory extension"));
        }
        let nonce = attr(first, 'r', "nonce")?;
        if nonce.len() <= self.nonce.len() || !nonce.starts_with(&self.nonce) {
            return Err(AuthError::NonceMismatch);
        }
        let salt = B64
            .decode(attr(attrs.next(), 's', "salt")?)
            .map_err(|_| AuthError::Malformed("salt"))?;
        let iterations = attr(attrs.next(), 'i', "iteration count")?
            .parse::<u32>()
            .map_err(|_| AuthError::InvalidIterations)?;
        if !(1..=MAX_SERVER_ITERATIONS).contains(&iterations) {
            return Err(AuthError::InvalidIterations);
        }
        let (client_key, server_key) = match &self.credentials {
            Credentials::Password(password) => password_keys(password, &salt, iterations),
            Credentials::Keys {
                client_key,
                server_key,
            } => (*client_key, *server_key),
        };
        let without_proof = format!("c=biws,r={nonce}");
        let auth_message = [
            client_first_bare.as_bytes(),
            b",",
            server_first.as_bytes(),
            b",",
            without_proof.as_bytes(),
        ];
        let client_signature = hmac(&sha256(&client_key), &auth_message);
        let proof = xor(&client_key, &client_signature);
        self.state = ClientState::SentFinal {
            server_signature: hmac(&server_key, &auth_message),
        };
        Ok(format!("{without_proof},p={}", B64.encode(proof)).into_bytes())
    }

    /// Handles server-final-message (AuthenticationSASLFinal data), checking the server's
    /// signature in constant time.
    ///
    /// # Errors
    /// [`AuthError::ServerError`] when the server sent `e=...`,
    /// [`AuthError::ServerSignatureMismatch`] for a wrong signature, a malformed message, or a
    /// call out of order.
    pub fn handle_server_final(&mut self, msg: &[u8]) -> Result<(), AuthError> {
        let ClientState::SentFinal { server_signature } =
            std::mem::replace(&mut self.state, ClientState::Failed)
        else {
            return Err(AuthError::OutOfOrder);
        };
        let msg = utf8(msg)?;
        let first = msg.split(',').next();
        if let Ok(reason) = attr(first, 'e', "server error") {
            return Err(AuthError::ServerError(reason.to_owned()));
        }
        let verifier = decode_key(attr(first, 'v', "verifier")?, "verifier")?;
        if !bool::from(verifier.ct_eq(&server_signature)) {
            return Err(AuthError::ServerSignatureMismatch);
        }
        self.state = ClientState::Done;
        Ok(())
    }

    /// Whether the exchange completed and the server was verified.
    #[must_use]
    pub fn is_done(&self) -> bool {
        matches!(self.state, ClientState::Done)
    }
}

#[cfg(test)]
impl ScramClient {
    /// A client with a fixed user and nonce, for test vectors.
    pub(super) fn for_test(password: &str, user: &str, nonce: &str) -> Self {
        Self::with_nonce(
            Credentials::Password(password.to_owned()),
            user,
            nonce.to_owned(),
        )
    }
}
