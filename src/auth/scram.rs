//! SCRAM-SHA-256 (RFC 5802/7677) as PostgreSQL speaks it: stored secrets, the server side
//! ([`ScramServer`]) and the client side ([`ScramClient`], in `scram/client.rs`).
//!
//! PostgreSQL flavour: the username in client-first (`n=`) is ignored (the startup packet
//! named the user), no authorization identity, and no channel binding since we never offer
//! SCRAM-SHA-256-PLUS (`n` and `y` GS2 flags are accepted, `p=` is refused). Passwords go
//! through SASLprep, falling back to the raw password when SASLprep rejects it, as
//! PostgreSQL does.

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::{AuthError, Secret};

mod client;

pub use client::ScramClient;

/// The SASL mechanism name.
pub const SCRAM_SHA_256: &str = "SCRAM-SHA-256";
/// Iteration count of secrets we generate (PostgreSQL's default `scram_iterations`).
pub const DEFAULT_ITERATIONS: u32 = 4096;
/// Salt length of secrets we generate, as PostgreSQL does.
const SALT_LEN: usize = 16;
/// Random bytes in a nonce (base64-encoded to 24 printable characters).
const NONCE_LEN: usize = 18;

type Key = [u8; 32];

/// HMAC-SHA-256 of the concatenation of `parts` under a 32-byte key.
fn hmac(key: &Key, parts: &[&[u8]]) -> Key {
    // RFC 2104 zero-pads keys shorter than the hash block (64 bytes), so giving HMAC the
    // padded block is the same function through an infallible constructor.
    let mut block = [0u8; 64];
    let (head, _) = block.split_at_mut(32);
    head.copy_from_slice(key);
    let mut mac = <Hmac<Sha256> as hmac::digest::KeyInit>::new(&block.into());
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}

fn sha256(data: &[u8]) -> Key {
    Sha256::digest(data).into()
}

/// SASLprep of `password`, or the password itself when SASLprep rejects it.
fn prep(password: &str) -> Cow<'_, str> {
    stringprep::saslprep(password).unwrap_or(Cow::Borrowed(password))
}

fn salted_password(password: &str, salt: &[u8], iterations: u32) -> Key {
    pbkdf2::pbkdf2_hmac_array::<Sha256, 32>(prep(password).as_bytes(), salt, iterations.max(1))
}

/// The 16-byte SCRAM salt of `user` under `key`: HMAC-SHA-256(key, "salt" || user), cut.
#[must_use]
pub fn user_salt(key: &[u8; 32], user: &str) -> Vec<u8> {
    let salt = hmac(key, &[b"salt", user.as_bytes()]);
    salt.get(..SALT_LEN).unwrap_or(&salt).to_vec()
}

/// One PBKDF2 of `iterations` rounds whose result is thrown away: what a login against a
/// stored SCRAM secret or an unknown user spends, so that every SCRAM login costs the same.
pub fn spend_pbkdf2(iterations: u32) {
    std::hint::black_box(salted_password("", b"pgsluice-equal-cost", iterations));
}

/// (ClientKey, ServerKey) derived from a password.
fn password_keys(password: &str, salt: &[u8], iterations: u32) -> (Key, Key) {
    let salted = salted_password(password, salt, iterations);
    (
        hmac(&salted, &[b"Client Key"]),
        hmac(&salted, &[b"Server Key"]),
    )
}

fn xor(a: &Key, b: &Key) -> Key {
    let mut out = *a;
    for (o, x) in out.iter_mut().zip(b) {
        *o ^= x;
    }
    out
}

/// A fresh printable nonce: base64 of 18 random bytes.
fn random_nonce() -> String {
    B64.encode(rand::random::<[u8; NONCE_LEN]>())
}

/// The value of attribute `name` (`name=value`) in `part`.
fn attr<'a>(part: Option<&'a str>, name: char, what: &'static str) -> Result<&'a str, AuthError> {
    part.and_then(|p| p.strip_prefix(name))
        .and_then(|p| p.strip_prefix('='))
        .ok_or(AuthError::Malformed(what))
}

fn utf8(msg: &[u8]) -> Result<&str, AuthError> {
    std::str::from_utf8(msg).map_err(|_| AuthError::Malformed("not UTF-8"))
}

fn decode_key(b64: &str, what: &'static str) -> Result<Key, AuthError> {
    let bytes = B64.decode(b64).map_err(|_| AuthError::Malformed(what))?;
    Key::try_from(bytes.as_slice()).map_err(|_| AuthError::Malformed(what))
}

/// A SCRAM-SHA-256 verifier as PostgreSQL stores it in `pg_authid.rolpassword`.
///
/// `Display` and [`FromStr`] use the text form
/// `SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>` (base64 fields). `Debug` hides
/// the keys.
#[derive(Clone, PartialEq, Eq)]
pub struct ScramSecret {
    /// PBKDF2 iteration count, at least 1.
    pub iterations: u32,
    /// PBKDF2 salt.
    pub salt: Vec<u8>,
    /// SHA-256(ClientKey): checks a client's proof.
    pub stored_key: [u8; 32],
    /// HMAC(SaltedPassword, "Server Key"): signs the server-final message.
    pub server_key: [u8; 32],
}

/// Derives the SCRAM-SHA-256 secret of `password` (an `iterations` of 0 counts as 1).
#[must_use]
pub fn scram_secret(password: &str, salt: &[u8], iterations: u32) -> ScramSecret {
    let (client_key, server_key) = password_keys(password, salt, iterations);
    ScramSecret {
        iterations: iterations.max(1),
        salt: salt.to_vec(),
        stored_key: sha256(&client_key),
        server_key,
    }
}

impl ScramSecret {
    /// Derives a secret for `password` with a random 16-byte salt and 4096 iterations, as
    /// PostgreSQL's `password_encryption = scram-sha-256` does.
    #[must_use]
    pub fn generate(password: &str) -> Self {
        scram_secret(
            password,
            &rand::random::<[u8; SALT_LEN]>(),
            DEFAULT_ITERATIONS,
        )
    }

    /// Parses PostgreSQL's text form.
    ///
    /// # Errors
    /// [`AuthError::InvalidSecret`] naming the bad part.
    pub fn parse(s: &str) -> Result<Self, AuthError> {
        let rest = s
            .strip_prefix("SCRAM-SHA-256$")
            .ok_or(AuthError::InvalidSecret("not SCRAM-SHA-256"))?;
        let (params, keys) = rest
            .split_once('$')
            .ok_or(AuthError::InvalidSecret("missing keys"))?;
        let (iterations, salt) = params
            .split_once(':')
            .ok_or(AuthError::InvalidSecret("missing salt"))?;
        let (stored_key, server_key) = keys
            .split_once(':')
            .ok_or(AuthError::InvalidSecret("missing server key"))?;
        let iterations = iterations
            .parse::<u32>()
            .ok()
            .filter(|&i| i >= 1)
            .ok_or(AuthError::InvalidSecret("iterations"))?;
        let salt = B64
            .decode(salt)
            .ok()
            .filter(|s| !s.is_empty())
            .ok_or(AuthError::InvalidSecret("salt"))?;
        let key = |k: &str, what| decode_key(k, what).map_err(|_| AuthError::InvalidSecret(what));
        Ok(Self {
            iterations,
            salt,
            stored_key: key(stored_key, "stored key")?,
            server_key: key(server_key, "server key")?,
        })
    }

    /// Whether `password` derives this secret (constant-time comparison of StoredKey).
    #[must_use]
    pub fn verify_password(&self, password: &str) -> bool {
        let (client_key, _) = password_keys(password, &self.salt, self.iterations);
        sha256(&client_key).ct_eq(&self.stored_key).into()
    }
}

impl FromStr for ScramSecret {
    type Err = AuthError;

    fn from_str(s: &str) -> Result<Self, AuthError> {
        Self::parse(s)
    }
}

impl fmt::Display for ScramSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "SCRAM-SHA-256${}:{}${}:{}",
            self.iterations,
            B64.encode(&self.salt),
            B64.encode(self.stored_key),
            B64.encode(self.server_key)
        )
    }
}

impl fmt::Debug for ScramSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScramSecret")
            .field("iterations", &self.iterations)
            .field("keys", &"<redacted>")
            .finish_non_exhaustive()
    }
}

/// Where a [`ScramServer`] is in the exchange.
enum ServerState {
    /// Waiting for client-first.
    Initial,
    /// Sent server-first, waiting for client-final.
    SentFirst {
        gs2_header: &'static str,
        client_first_bare: String,
        server_first: String,
        nonce: String,
    },
    /// The client proved it knows the password.
    Done { client_key: Key },
    /// A step failed; the exchange is over.
    Failed,
}

/// The server side of a SCRAM-SHA-256 exchange, for one client login.
///
/// Feed it the SASLInitialResponse data ([`ScramServer::client_first`]), send back the
/// result in AuthenticationSASLContinue, feed it the SASLResponse data
/// ([`ScramServer::client_final`]) and send back the result in AuthenticationSASLFinal.
/// Any error ends the exchange.
pub struct ScramServer {
    secret: ScramSecret,
    /// A stand-in for an unknown user: the exchange runs but never succeeds.
    mock: bool,
    server_nonce: String,
    state: ServerState,
}

impl fmt::Debug for ScramServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScramServer")
            .field("secret", &self.secret)
            .field("done", &self.client_key().is_some())
            .finish_non_exhaustive()
    }
}

impl ScramServer {
    /// Authenticates against a stored SCRAM secret (the only way to get a ClientKey usable
    /// for pass-through).
    #[must_use]
    pub fn new(secret: &ScramSecret) -> Self {
        Self::with_nonce(secret.clone(), random_nonce())
    }

    fn with_nonce(secret: ScramSecret, server_nonce: String) -> Self {
        Self {
            secret,
            mock: false,
            server_nonce,
            state: ServerState::Initial,
        }
    }

    /// Authenticates against a plaintext password, deriving a secret with a random salt and
    /// 4096 iterations (this runs PBKDF2).
    #[must_use]
    pub fn from_password(password: &str) -> Self {
        Self::new(&ScramSecret::generate(password))
    }

    /// Authenticates against any secret that can do SCRAM.
    ///
    /// # Errors
    /// [`AuthError::Md5SecretForScram`] for an MD5 secret.
    pub fn for_secret(secret: &Secret) -> Result<Self, AuthError> {
        match secret {
            Secret::Plain(password) => Ok(Self::from_password(password)),
            Secret::Scram(scram) => Ok(Self::new(scram)),
            Secret::Md5(_) => Err(AuthError::Md5SecretForScram),
        }
    }

    /// Authenticates against a plaintext password with the salt [`user_salt`] derives for
    /// `user` from `salt_key`: the same salt at every attempt, of the same shape as a mock's
    /// (this runs PBKDF2).
    #[must_use]
    pub fn from_password_for(password: &str, user: &str, salt_key: &[u8; 32]) -> Self {
        Self::new(&scram_secret(
            password,
            &user_salt(salt_key, user),
            DEFAULT_ITERATIONS,
        ))
    }

    /// A stand-in for a user that does not exist (or has no secret SCRAM can use), so that a
    /// client cannot tell unknown users from wrong passwords: the salt is [`user_salt`] of
    /// `user` under `salt_key` (stable across attempts, as for plain-password users), the
    /// iteration count the default, and the proof is always refused.
    #[must_use]
    pub fn mock(user: &str, salt_key: &[u8; 32]) -> Self {
        let secret = ScramSecret {
            iterations: DEFAULT_ITERATIONS,
            salt: user_salt(salt_key, user),
            stored_key: rand::random(),
            server_key: rand::random(),
        };
        Self {
            mock: true,
            ..Self::new(&secret)
        }
    }

    /// Handles client-first-message (the SASLInitialResponse data) and returns
    /// server-first-message.
    ///
    /// # Errors
    /// A malformed message, channel binding requested, an authorization identity or a
    /// mandatory extension, or a call out of order.
    pub fn client_first(&mut self, msg: &[u8]) -> Result<Vec<u8>, AuthError> {
        if !matches!(self.state, ServerState::Initial) {
            self.state = ServerState::Failed;
            return Err(AuthError::OutOfOrder);
        }
        self.state = ServerState::Failed;
        let first = parse_client_first(utf8(msg)?)?;
        let nonce = format!("{}{}", first.nonce, self.server_nonce);
        let server_first = format!(
            "r={nonce},s={},i={}",
            B64.encode(&self.secret.salt),
            self.secret.iterations
        );
        let reply = server_first.clone().into_bytes();
        self.state = ServerState::SentFirst {
            gs2_header: first.gs2_header,
            client_first_bare: first.bare.to_owned(),
            server_first,
            nonce,
        };
        Ok(reply)
    }

    /// Handles client-final-message (the SASLResponse data), verifies the proof and returns
    /// server-final-message.
    ///
    /// # Errors
    /// [`AuthError::AuthenticationFailed`] for a wrong proof; a malformed message, a wrong
    /// nonce or channel binding, or a call out of order.
    pub fn client_final(&mut self, msg: &[u8]) -> Result<Vec<u8>, AuthError> {
        let ServerState::SentFirst {
            gs2_header,
            client_first_bare,
            server_first,
            nonce,
        } = std::mem::replace(&mut self.state, ServerState::Failed)
        else {
            return Err(AuthError::OutOfOrder);
        };
        let msg = utf8(msg)?;
        let (without_proof, proof) = msg
            .rsplit_once(",p=")
            .ok_or(AuthError::Malformed("client-final without proof"))?;
        let mut attrs = without_proof.split(',');
        let cbind = attr(attrs.next(), 'c', "channel binding")?;
        if B64.decode(cbind).ok().as_deref() != Some(gs2_header.as_bytes()) {
            return Err(AuthError::Malformed("channel binding does not match"));
        }
        if attr(attrs.next(), 'r', "nonce")? != nonce {
            return Err(AuthError::NonceMismatch);
        }
        let proof = decode_key(proof, "proof")?;
        let auth_message = [
            client_first_bare.as_bytes(),
            b",",
            server_first.as_bytes(),
            b",",
            without_proof.as_bytes(),
        ];
        let client_signature = hmac(&self.secret.stored_key, &auth_message);
        let client_key = xor(&proof, &client_signature);
        let valid: bool = sha256(&client_key).ct_eq(&self.secret.stored_key).into();
        if !valid || self.mock {
            return Err(AuthError::AuthenticationFailed);
        }
        let server_signature = hmac(&self.secret.server_key, &auth_message);
        self.state = ServerState::Done { client_key };
        Ok(format!("v={}", B64.encode(server_signature)).into_bytes())
    }

    /// The ClientKey the client proved it has, once [`ScramServer::client_final`] succeeded.
    /// With the secret's ServerKey it logs in to a server holding the same secret
    /// ([`ScramClient::from_client_key`]).
    #[must_use]
    pub fn client_key(&self) -> Option<[u8; 32]> {
        match self.state {
            ServerState::Done { client_key } => Some(client_key),
            _ => None,
        }
    }

    /// The secret this exchange checks against.
    #[must_use]
    pub fn secret(&self) -> &ScramSecret {
        &self.secret
    }
}

/// The parts of client-first-message the server uses.
struct ClientFirst<'a> {
    gs2_header: &'static str,
    bare: &'a str,
    nonce: &'a str,
}

fn parse_client_first(msg: &str) -> Result<ClientFirst<'_>, AuthError> {
    let mut parts = msg.splitn(3, ',');
    let gs2_header = match parts.next() {
        Some("n") => "n,,",
        Some("y") => "y,,",
        Some(flag) if flag.starts_with("p=") => return Err(AuthError::ChannelBindingUnsupported),
        _ => return Err(AuthError::Malformed("GS2 channel binding flag")),
    };
    match parts.next() {
        Some("") => {}
        Some(authzid) if authzid.starts_with("a=") => {
            return Err(AuthError::Unsupported("authorization identity"))
        }
        _ => return Err(AuthError::Malformed("GS2 header")),
    }
    let bare = parts
        .next()
        .ok_or(AuthError::Malformed("client-first without a message"))?;
    let mut attrs = bare.split(',');
    let first = attrs.next();
    if first.is_some_and(|a| a.starts_with("m=")) {
        return Err(AuthError::Unsupported("mandatory extension"));
    }
    // The user was named in the startup packet; PostgreSQL clients send `n=`.
    attr(first, 'n', "username")?;
    let nonce = attr(attrs.next(), 'r', "nonce")?;
    if nonce.is_empty() || !nonce.bytes().all(|b| (0x21..=0x7e).contains(&b)) {
        return Err(AuthError::Malformed("nonce"));
    }
    Ok(ClientFirst {
        gs2_header,
        bare,
        nonce,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
