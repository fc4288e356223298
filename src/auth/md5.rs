//! PostgreSQL MD5 password authentication: the stored hash and the salted challenge response.

use ::md5::{Digest, Md5};
use subtle::ConstantTimeEq;

use super::Secret;

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        for nibble in [b >> 4, b & 0xf] {
            out.push(char::from(
                DIGITS.get(usize::from(nibble)).copied().unwrap_or(b'0'),
            ));
        }
    }
    out
}

/// The stored MD5 secret: `"md5"` + hex(md5(password || user)).
#[must_use]
pub fn md5_hex(password: impl AsRef<[u8]>, user: &str) -> String {
    let mut md5 = Md5::new();
    md5.update(password.as_ref());
    md5.update(user.as_bytes());
    format!("md5{}", hex(&md5.finalize()))
}

/// The response a client sends to AuthenticationMD5Password:
/// `"md5"` + hex(md5(hex_digest || salt)), where `stored` is [`md5_hex`]'s output with or
/// without its `"md5"` prefix.
#[must_use]
pub fn md5_salted(stored: &str, salt: [u8; 4]) -> String {
    let digest = match stored.strip_prefix("md5") {
        Some(rest) if rest.len() == 32 => rest,
        _ => stored,
    };
    let mut md5 = Md5::new();
    md5.update(digest.as_bytes());
    md5.update(salt);
    format!("md5{}", hex(&md5.finalize()))
}

/// Checks a client's MD5 response (the PasswordMessage body without its NUL) against a stored
/// secret, in constant time. A SCRAM secret cannot answer an MD5 challenge: always `false`.
#[must_use]
pub fn verify_md5(secret: &Secret, user: &str, salt: [u8; 4], client_response: &[u8]) -> bool {
    let expected = match secret {
        Secret::Plain(password) => md5_salted(&md5_hex(password, user), salt),
        Secret::Md5(stored) => md5_salted(stored, salt),
        Secret::Scram(_) => return false,
    };
    expected.as_bytes().ct_eq(client_response).into()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn known_hashes() {
        // SELECT 'md5' || md5('passwordpostgres');
        assert_eq!(
            md5_hex("password", "postgres"),
            "md532e12f215ba27cb750c9e093ce4b5127"
        );
        // The 3-way hash as libpq computes it for salt 01 02 03 04.
        let stored = md5_hex("password", "postgres");
        let salted = md5_salted(&stored, [1, 2, 3, 4]);
        assert_eq!(
            salted,
            md5_salted(stored.trim_start_matches("md5"), [1, 2, 3, 4])
        );
        let mut md5 = Md5::new();
        md5.update(b"32e12f215ba27cb750c9e093ce4b5127\x01\x02\x03\x04");
        assert_eq!(salted, format!("md5{}", hex(&md5.finalize())));
        assert_eq!(salted.len(), 35);
    }

    #[test]
    fn verifies_plain_and_md5_secrets() {
        let salt = [9, 8, 7, 6];
        let response = md5_salted(&md5_hex("pw", "bob"), salt);
        let plain = Secret::Plain("pw".into());
        let stored = Secret::Md5(md5_hex("pw", "bob"));
        assert!(verify_md5(&plain, "bob", salt, response.as_bytes()));
        assert!(verify_md5(&stored, "bob", salt, response.as_bytes()));
        assert!(!verify_md5(&stored, "bob", [0; 4], response.as_bytes()));
        assert!(!verify_md5(&plain, "alice", salt, response.as_bytes()));
        assert!(!verify_md5(&plain, "bob", salt, b"md5"));
        assert!(!verify_md5(&plain, "bob", salt, b""));
        let scram = Secret::Scram(crate::auth::scram_secret("pw", b"s", 1));
        assert!(!verify_md5(&scram, "bob", salt, response.as_bytes()));
    }
}
