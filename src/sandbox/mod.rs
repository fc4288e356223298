//! The local sandbox behind `pgsluice sandbox up | status | down`: a persistent primary + 2
//! standbys built with [`crate::cluster`], a matching `pgsluice.toml`, and the pgsluice daemons
//! the binary supports, all recorded in a state file so later commands act on exactly them.
//!
//! The sandbox directory (`--dir`, default `.sandbox`) keeps the config, the state file and the
//! daemons' logs and pid files. The data directories live in [`data_base`]: under `/tmp` when
//! running as root (the `postgres` user must reach them), else inside the sandbox directory.
//!
//! | file | job |
//! |---|---|
//! | `state` | the state file: cluster layout, ports, passwords, service pids |
//! | `config_file` | renders `pgsluice.toml` from the state |
//! | `services` | the daemon table; start detached, check a pid is ours, stop |
//! | `up` | build a new sandbox, or start again what is down |
//! | `down` | status, stop, purge |
//! | `multi` | `up --agents N`: a local etcd and N agents, each with its own config |

mod config_file;
mod down;
pub mod multi;
pub mod services;
pub mod state;
pub mod tls;
mod up;

pub use down::{down, status, DownReport, NodeStatus, ServiceStatus, StatusReport};
pub use state::{MultiAgents, ServicePorts, State};
pub use up::{up, NodeAction, ServiceOutcome, UpOptions, UpReport};

use crate::cluster::HarnessError;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

/// Default sandbox directory, relative to the current directory.
pub const DEFAULT_DIR: &str = ".sandbox";
/// Ports used when free: nodes, then pooler, metrics, agent.
pub const DEFAULT_NODE_PORTS: [u16; 3] = [5432, 5433, 5434];
/// Default pooler, metrics and agent ports.
pub const DEFAULT_SERVICE_PORTS: ServicePorts = ServicePorts {
    pooler: 6432,
    metrics: 9930,
    agent: 9931,
};

/// Why a sandbox command failed.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// A file-system operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done, naming the path.
        what: String,
        #[source]
        source: std::io::Error,
    },
    /// Building, starting or stopping the cluster failed.
    #[error(transparent)]
    Harness(#[from] HarnessError),
    /// The generated configuration does not validate (a bug in the sandbox).
    #[error("generated configuration is invalid: {0}")]
    Config(#[from] crate::config::ConfigError),
    /// The state file is unreadable.
    #[error("{}: {message}", .path.display())]
    State {
        /// The state file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// Something in the way that the sandbox will not remove by itself.
    #[error("{message}")]
    Blocked {
        /// What and how to resolve it.
        message: String,
    },
    /// A daemon would not start.
    #[error("{role}: {message}")]
    Service {
        /// The role.
        role: String,
        /// Why.
        message: String,
    },
}

impl SandboxError {
    /// An I/O error with what was being done.
    pub fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        Self::Io {
            what: what.into(),
            source,
        }
    }
}

/// The absolute form of a sandbox directory.
pub fn absolute_dir(dir: &Path) -> Result<PathBuf, SandboxError> {
    std::path::absolute(dir)
        .map_err(|e| SandboxError::io(format!("resolving {}", dir.display()), e))
}

/// Where the data directories of the sandbox in `dir` (absolute) go: as root
/// `/tmp/pgsluice-sandbox-<hash of dir>` (reachable by the `postgres` user wherever `dir` is),
/// else `<dir>/cluster`.
pub fn data_base(dir: &Path) -> PathBuf {
    if nix::unistd::Uid::effective().is_root() {
        let digest = Sha256::digest(dir.as_os_str().as_encoded_bytes());
        let hex: String = digest.iter().take(6).map(|b| format!("{b:02x}")).collect();
        PathBuf::from(format!("/tmp/pgsluice-sandbox-{hex}"))
    } else {
        dir.join("cluster")
    }
}
