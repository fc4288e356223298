//! What the front door enforces beyond passwords, loaded together from the configuration so
//! that a reload swaps it at once or not at all: the HBA rules (`auth_hba_file`).

use crate::auth::hba::{Hba, HbaError};
use crate::config::PoolerConfig;

/// Why the front door's files could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum FrontDoorError {
    /// A bad `auth_hba_file`.
    #[error("auth_hba_file: {0}")]
    Hba(#[from] HbaError),
}

/// HBA rules in force.
#[derive(Debug, Default)]
pub struct FrontDoor {
    /// `None`: no `auth_hba_file`, every client may try `auth_type`.
    pub hba: Option<Hba>,
}

impl FrontDoor {
    /// Reads the files the configuration names.
    pub fn load(p: &PoolerConfig) -> Result<Self, FrontDoorError> {
        let hba = p.auth_hba_file.as_deref().map(Hba::load).transpose()?;
        Ok(Self { hba })
    }
}
