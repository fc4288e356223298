//! The control plane's shared secret: read from `[control] secret_file` on every use (so a
//! rewritten file takes effect at once), checked in constant time, sent as a bearer token.
//!
//! The file holds one secret per line (blank lines ignored). Every line is accepted; the first
//! is the one a client sends. Rotation: add the new secret as a second line everywhere, move
//! it first, then remove the old line.

use sha2::{Digest, Sha256};
use std::io::Read;
use std::path::{Path, PathBuf};
use subtle::ConstantTimeEq;

/// The shortest secret accepted, in bytes.
pub const MIN_SECRET_LEN: usize = 16;
/// The largest secret file read.
const MAX_FILE: u64 = 64 * 1024;

/// Why the secret file cannot be used. Never holds the secret itself.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// The file could not be opened or read.
    #[error("control secret file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Group-writable or readable by others.
    #[error("control secret file {path} has mode {mode:o}: allow at most 0640 (chmod 600)")]
    Mode { path: PathBuf, mode: u32 },
    /// No non-blank line, or a line shorter than [`MIN_SECRET_LEN`], or too large a file.
    #[error("control secret file {path}: {what}")]
    Content { path: PathBuf, what: String },
}

/// The secrets in `path`, each at least [`MIN_SECRET_LEN`] bytes.
pub fn read(path: &Path) -> Result<Vec<Vec<u8>>, SecretError> {
    use std::os::unix::fs::PermissionsExt;
    let err = |source| SecretError::Read {
        path: path.to_path_buf(),
        source,
    };
    let content = |what: &str| SecretError::Content {
        path: path.to_path_buf(),
        what: what.into(),
    };
    let file = std::fs::File::open(path).map_err(err)?;
    let meta = file.metadata().map_err(err)?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o027 != 0 {
        return Err(SecretError::Mode {
            path: path.to_path_buf(),
            mode,
        });
    }
    if meta.len() > MAX_FILE {
        return Err(content("larger than 64 KiB"));
    }
    let mut text = String::new();
    file.take(MAX_FILE).read_to_string(&mut text).map_err(err)?;
    let secrets: Vec<Vec<u8>> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(|l| l.as_bytes().to_vec())
        .collect();
    if secrets.is_empty() {
        return Err(content("holds no secret"));
    }
    if secrets.iter().any(|s| s.len() < MIN_SECRET_LEN) {
        return Err(content(&format!(
            "a secret is shorter than {MIN_SECRET_LEN} bytes"
        )));
    }
    Ok(secrets)
}

/// The `Authorization` header value a client sends: `Bearer <first secret>`.
pub fn bearer(path: &Path) -> Result<String, SecretError> {
    let secrets = read(path)?;
    let first = secrets
        .first()
        .map(|s| String::from_utf8_lossy(s).into_owned());
    Ok(format!("Bearer {}", first.unwrap_or_default()))
}

/// Whether `header` (an `Authorization` value) carries one of `secrets`. Every secret is
/// compared, through SHA-256 digests of equal length, without early exit.
pub fn matches(header: &[u8], secrets: &[Vec<u8>]) -> bool {
    let Some(token) = header.strip_prefix(b"Bearer ") else {
        return false;
    };
    let given = Sha256::digest(token);
    let mut ok = subtle::Choice::from(0u8);
    for s in secrets {
        ok |= Sha256::digest(s).ct_eq(&given);
    }
    ok.into()
}

/// Writes a fresh random secret to `path` with mode 0600 (for the sandbox and tests).
pub fn generate(path: &Path) -> std::io::Result<()> {
    use rand::RngCore;
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut raw = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut raw);
    let text: String = raw.iter().map(|b| format!("{b:02x}")).collect();
    let _ = std::fs::remove_file(path);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    writeln!(f, "{text}")
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn file(text: &str, mode: u32) -> tempfile::NamedTempFile {
        let f = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(f.path(), text).unwrap();
        std::fs::set_permissions(f.path(), std::fs::Permissions::from_mode(mode)).unwrap();
        f
    }

    #[test]
    fn every_line_is_accepted_and_the_first_is_sent() {
        let f = file("old-secret-0123456789\n\n  new-secret-0123456789 \n", 0o600);
        let s = read(f.path()).unwrap();
        assert!(matches(b"Bearer old-secret-0123456789", &s));
        assert!(matches(b"Bearer new-secret-0123456789", &s));
        assert!(!matches(b"Bearer new-secret-012345678", &s));
        assert!(!matches(b"Bearer ", &s));
        assert!(!matches(b"old-secret-0123456789", &s));
        assert!(!matches(b"Basic old-secret-0123456789", &s));
        assert_eq!(bearer(f.path()).unwrap(), "Bearer old-secret-0123456789");
    }

    #[test]
    fn loose_modes_short_and_empty_files_are_refused() {
        let f = file("a-long-enough-secret\n", 0o644);
        assert!(matches!(read(f.path()), Err(SecretError::Mode { .. })));
        let f = file("a-long-enough-secret\n", 0o620);
        assert!(matches!(read(f.path()), Err(SecretError::Mode { .. })));
        let f = file("a-long-enough-secret\n", 0o640);
        assert!(read(f.path()).is_ok());
        let f = file("short\n", 0o600);
        assert!(matches!(read(f.path()), Err(SecretError::Content { .. })));
        let f = file("\n \n", 0o600);
        assert!(matches!(read(f.path()), Err(SecretError::Content { .. })));
        assert!(matches!(
            read(Path::new("/nonexistent/secret")),
            Err(SecretError::Read { .. })
        ));
    }

    #[test]
    fn generated_secrets_are_private_and_readable() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s");
        generate(&p).unwrap();
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let s = read(&p).unwrap();
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].len(), 64);
        generate(&p).unwrap();
        assert_ne!(read(&p).unwrap(), s, "a new secret each time");
    }
}
