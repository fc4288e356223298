//! The sandbox's own TLS certificate: self-signed for `localhost` and `127.0.0.1`, made once
//! by `up` so that the pooler offers TLS (`client_tls_sslmode = "prefer"`) out of the box.

use super::SandboxError;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// Where the certificate and key of the sandbox in `dir` live.
pub fn paths(dir: &Path) -> (PathBuf, PathBuf) {
    let tls = dir.join("tls");
    (tls.join("server.pem"), tls.join("server.key"))
}

/// Writes a self-signed certificate and its key (mode 0600) unless both exist already.
///
/// # Errors
/// Key generation or a file write failed.
pub fn ensure_cert(dir: &Path) -> Result<(), SandboxError> {
    let (cert_path, key_path) = paths(dir);
    if cert_path.is_file() && key_path.is_file() {
        return Ok(());
    }
    let gen = |e: rcgen::Error| {
        SandboxError::io(
            "generating the TLS certificate",
            std::io::Error::other(e.to_string()),
        )
    };
    let key = rcgen::KeyPair::generate().map_err(gen)?;
    let mut params =
        rcgen::CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
            .map_err(gen)?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "pgsluice sandbox");
    let cert = params.self_signed(&key).map_err(gen)?;
    let write = |path: &Path, text: String, mode: u32| {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| SandboxError::io(format!("creating {}", parent.display()), e))?;
        }
        std::fs::write(path, text)
            .and_then(|()| std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)))
            .map_err(|e| SandboxError::io(format!("writing {}", path.display()), e))
    };
    write(&key_path, key.serialize_pem(), 0o600)?;
    write(&cert_path, cert.pem(), 0o644)
}
