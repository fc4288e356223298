//! The rustls client configuration the pooler uses towards PostgreSQL (`server_tls_*`): roots
//! from `server_tls_ca_file` for `verify-ca` / `verify-full`, no certificate check for
//! `allow` / `prefer` / `require` (as libpq does without a root certificate), and an optional
//! client certificate. A [`ServerTlsHandle`] shares the setup in force with every connect
//! spec, so a reload applies to the next server connection.

use super::server::{load_certs, load_roots, TlsFileError};
use crate::config::{ServerTls, ServerTlsMode};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{CertificateError, ClientConfig, DigitallySignedStruct, Error, SignatureScheme};
use std::path::Path;
use std::sync::{Arc, RwLock};

/// The `server_tls_*` setup in force: the mode and, unless `disable`, the rustls config.
#[derive(Debug, Clone)]
pub struct ServerTlsSetup {
    pub mode: ServerTlsMode,
    /// `None` when the mode is `disable`.
    pub config: Option<Arc<ClientConfig>>,
    /// `server_allow_cleartext_password`.
    pub allow_cleartext_password: bool,
}

impl Default for ServerTlsSetup {
    fn default() -> Self {
        Self {
            mode: ServerTlsMode::Disable,
            config: None,
            allow_cleartext_password: false,
        }
    }
}

/// The setup in force, shared by the session context and every connect spec.
#[derive(Debug, Clone, Default)]
pub struct ServerTlsHandle(Arc<RwLock<Arc<ServerTlsSetup>>>);

impl ServerTlsHandle {
    /// What the next server connection uses.
    pub fn get(&self) -> Arc<ServerTlsSetup> {
        match self.0.read() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    /// Installs a new setup (start, reload); connections already open keep theirs.
    pub fn set(&self, setup: Arc<ServerTlsSetup>) {
        match self.0.write() {
            Ok(mut g) => *g = setup,
            Err(p) => *p.into_inner() = setup,
        }
    }
}

fn err(what: &'static str, path: &Path, message: impl ToString) -> TlsFileError {
    TlsFileError {
        what,
        path: path.display().to_string(),
        message: message.to_string(),
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Reads the files `server_tls_*` names and builds the rustls client configuration.
pub fn client_config(tls: &ServerTls) -> Result<ServerTlsSetup, TlsFileError> {
    if tls.mode == ServerTlsMode::Disable {
        return Ok(ServerTlsSetup {
            allow_cleartext_password: tls.allow_cleartext_password,
            ..ServerTlsSetup::default()
        });
    }
    let provider = provider();
    let verifier: Arc<dyn ServerCertVerifier> = match (tls.mode, &tls.ca_file) {
        (ServerTlsMode::VerifyCa | ServerTlsMode::VerifyFull, Some(ca)) => {
            let roots = load_roots("server_tls_ca_file", ca)?;
            let webpki =
                WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                    .build()
                    .map_err(|e| err("server_tls_ca_file", ca, e))?;
            if tls.mode == ServerTlsMode::VerifyFull {
                webpki
            } else {
                Arc::new(AnyName(webpki))
            }
        }
        (ServerTlsMode::VerifyCa | ServerTlsMode::VerifyFull, None) => {
            return Err(err("server_tls_ca_file", Path::new(""), "not set"));
        }
        _ => Arc::new(NoCheck(provider.clone())),
    };
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| err("server_tls_ca_file", Path::new(""), e))?
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    let config = match (&tls.cert_file, &tls.key_file) {
        (Some(cert), Some(key)) => {
            let chain: Vec<CertificateDer<'static>> = load_certs("server_tls_cert_file", cert)?;
            let key = PrivateKeyDer::from_pem_file(key)
                .map_err(|e| err("server_tls_key_file", key, e))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| err("server_tls_key_file", cert, e))?
        }
        _ => builder.with_no_client_auth(),
    };
    Ok(ServerTlsSetup {
        mode: tls.mode,
        config: Some(Arc::new(config)),
        allow_cleartext_password: tls.allow_cleartext_password,
    })
}

/// `verify-ca`: the chain must lead to a trusted root; the host name is not checked.
#[derive(Debug)]
struct AnyName(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for AnyName {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// `allow` / `prefer` / `require`: encryption without authentication of the server (the
/// handshake signatures are still checked against the certificate it shows).
#[derive(Debug)]
struct NoCheck(Arc<CryptoProvider>);

impl ServerCertVerifier for NoCheck {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
