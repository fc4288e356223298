//! What the front door enforces beyond passwords, loaded together from the configuration so
//! that a reload swaps it at once or not at all: the HBA rules (`auth_hba_file`) and the TLS
//! server configuration (`client_tls_*`; certificates are re-read on every reload, sessions
//! already encrypted keep theirs), and the client configuration towards PostgreSQL
//! (`server_tls_*`, for the next server connections).

pub mod client;
pub mod server;

use crate::auth::hba::{Hba, HbaError};
use crate::config::{ClientTlsMode, PoolerConfig};
use std::sync::Arc;

/// Why the front door's files could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum FrontDoorError {
    /// A bad `auth_hba_file`.
    #[error("auth_hba_file: {0}")]
    Hba(#[from] HbaError),
    /// A bad `client_tls_*` file.
    #[error("{0}")]
    Tls(#[from] server::TlsFileError),
}

/// HBA rules and TLS in force.
#[derive(Debug)]
pub struct FrontDoor {
    /// `None`: no `auth_hba_file`, every client may try `auth_type`.
    pub hba: Option<Hba>,
    /// `client_tls_sslmode`.
    pub tls_mode: ClientTlsMode,
    /// `None` when `client_tls_sslmode` is `disable`.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// `server_tls_*`: how new server connections are encrypted.
    pub server_tls: Arc<client::ServerTlsSetup>,
}

impl Default for FrontDoor {
    fn default() -> Self {
        Self {
            hba: None,
            tls_mode: ClientTlsMode::Disable,
            tls: None,
            server_tls: Arc::default(),
        }
    }
}

impl FrontDoor {
    /// Reads the files the configuration names.
    pub fn load(p: &PoolerConfig) -> Result<Self, FrontDoorError> {
        let hba = p.auth_hba_file.as_deref().map(Hba::load).transpose()?;
        let tls = server::server_config(&p.client_tls)?;
        let server_tls = Arc::new(client::client_config(&p.server_tls)?);
        Ok(Self {
            hba,
            tls_mode: p.client_tls.mode,
            tls,
            server_tls,
        })
    }
}
