//! The rustls server configuration the pooler shows clients: certificate chain and key from
//! PEM files, and for `verify-ca` a client-certificate verifier over `client_tls_ca_file`.

use crate::config::{ClientTls, ClientTlsMode};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use std::path::Path;
use std::sync::Arc;

/// Why a TLS file could not be used.
#[derive(Debug, thiserror::Error)]
#[error("{what} {path}: {message}")]
pub struct TlsFileError {
    /// Which key named the file.
    pub what: &'static str,
    /// The file.
    pub path: String,
    /// What is wrong.
    pub message: String,
}

fn err(what: &'static str, path: &Path, message: impl ToString) -> TlsFileError {
    TlsFileError {
        what,
        path: path.display().to_string(),
        message: message.to_string(),
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Reads the certificates of a PEM file (at least one).
pub fn load_certs(
    what: &'static str,
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, TlsFileError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| err(what, path, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| err(what, path, e))?;
    if certs.is_empty() {
        return Err(err(what, path, "no certificate in the file"));
    }
    Ok(certs)
}

/// A root store of the certificates of a PEM file.
pub fn load_roots(what: &'static str, path: &Path) -> Result<RootCertStore, TlsFileError> {
    let mut roots = RootCertStore::empty();
    for cert in load_certs(what, path)? {
        roots.add(cert).map_err(|e| err(what, path, e))?;
    }
    Ok(roots)
}

/// The server configuration for `client_tls_*`; `None` when TLS is disabled.
pub fn server_config(tls: &ClientTls) -> Result<Option<Arc<ServerConfig>>, TlsFileError> {
    if tls.mode == ClientTlsMode::Disable {
        return Ok(None);
    }
    let (Some(cert), Some(key)) = (&tls.cert_file, &tls.key_file) else {
        return Err(err("client_tls_cert_file", Path::new(""), "not set"));
    };
    let chain = load_certs("client_tls_cert_file", cert)?;
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| err("client_tls_key_file", key, e))?;
    let builder = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| err("client_tls_cert_file", cert, e))?;
    let builder = match (&tls.ca_file, tls.mode) {
        (Some(ca), ClientTlsMode::VerifyCa) => {
            let roots = load_roots("client_tls_ca_file", ca)?;
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
                .build()
                .map_err(|e| err("client_tls_ca_file", ca, e))?;
            builder.with_client_cert_verifier(verifier)
        }
        _ => builder.with_no_client_auth(),
    };
    let config = builder
        .with_single_cert(chain, key)
        .map_err(|e| err("client_tls_key_file", cert, e))?;
    Ok(Some(Arc::new(config)))
}
