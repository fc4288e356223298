//! The sandbox state file (`<dir>/state.json`): where the cluster lives, which ports were
//! chosen, the generated passwords and the background services started, so that `up`, `status`
//! and `down` in later processes act on exactly what an earlier `up` built.

use super::SandboxError;
use crate::cluster::{set_mode, ClusterLayout};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// File name of the state file inside the sandbox directory.
pub const STATE_FILE: &str = "state.json";

/// Ports of the pgsluice services (the nodes' ports are in the cluster layout).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServicePorts {
    /// Pooler listener.
    pub pooler: u16,
    /// Pooler HTTP endpoint (metrics, health, control).
    pub metrics: u16,
    /// Agent HTTP endpoint.
    pub agent: u16,
}

/// A background service `up` started.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceRecord {
    /// Role, the pgsluice subcommand (`pooler`, `agent`).
    pub role: String,
    /// Its pid when last started.
    pub pid: i32,
}

/// `up --agents N` (N > 1): a local etcd and N agents coordinated through it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MultiAgents {
    /// etcd's client port (loopback).
    pub etcd_client_port: u16,
    /// etcd's peer port (loopback).
    pub etcd_peer_port: u16,
    /// Each agent's HTTP port, `agent1` first (the same as `ports.agent`).
    pub agent_ports: Vec<u16>,
}

/// Everything the sandbox knows about itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    /// The sandbox directory (config, state, service logs and pid files).
    pub dir: PathBuf,
    /// The cluster: data directories, ports, credentials.
    pub cluster: ClusterLayout,
    /// Service ports.
    pub ports: ServicePorts,
    /// The application role and database the config serves.
    pub app_user: String,
    /// Its password.
    pub app_password: String,
    /// A role named after the OS user, trusted on loopback, with its own database.
    #[serde(default)]
    pub developer_role: Option<String>,
    /// Services started by `up`.
    #[serde(default)]
    pub services: Vec<ServiceRecord>,
    /// Several agents through a local etcd (`up --agents N`); `None`: one agent, local state.
    #[serde(default)]
    pub multi: Option<MultiAgents>,
}

impl State {
    /// The state file of the sandbox in `dir`.
    pub fn path(dir: &Path) -> PathBuf {
        dir.join(STATE_FILE)
    }

    /// Reads the state of the sandbox in `dir`; `None` if there is none.
    pub fn load(dir: &Path) -> Result<Option<Self>, SandboxError> {
        let path = Self::path(dir);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(SandboxError::io(format!("reading {}", path.display()), e)),
        };
        serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| SandboxError::State {
                path,
                message: e.to_string(),
            })
    }

    /// Writes the state atomically (temp file + rename), readable by its owner only: it holds
    /// passwords.
    pub fn save(&self) -> Result<(), SandboxError> {
        let path = Self::path(&self.dir);
        let tmp = self.dir.join(format!("{STATE_FILE}.tmp"));
        let text = serde_json::to_string_pretty(self).map_err(|e| SandboxError::State {
            path: path.clone(),
            message: e.to_string(),
        })?;
        std::fs::write(&tmp, text + "\n")
            .map_err(|e| SandboxError::io(format!("writing {}", tmp.display()), e))?;
        set_mode(&tmp, 0o600)?;
        std::fs::rename(&tmp, &path)
            .map_err(|e| SandboxError::io(format!("renaming to {}", path.display()), e))
    }

    /// The config file `up` wrote.
    pub fn config_path(&self) -> PathBuf {
        self.dir.join("pgsluice.toml")
    }

    /// The recorded pid of a service.
    pub fn service_pid(&self, role: &str) -> Option<i32> {
        self.services.iter().find(|s| s.role == role).map(|s| s.pid)
    }

    /// Records (or replaces) a service's pid.
    pub fn set_service(&mut self, role: &str, pid: i32) {
        self.services.retain(|s| s.role != role);
        self.services.push(ServiceRecord {
            role: role.to_string(),
            pid,
        });
    }
}
