//! What cluster to build ([`ClusterSpec`]) and how a built one is laid out on disk
//! ([`ClusterLayout`], serializable so a persistent cluster can be adopted again later).

use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::time::Duration;

/// A database created on the primary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatabaseSpec {
    /// Database name.
    pub name: String,
    /// Owning role (one of [`ClusterSpec::users`]), or the superuser.
    pub owner: Option<String>,
}

impl From<&str> for DatabaseSpec {
    fn from(name: &str) -> Self {
        Self {
            name: name.to_string(),
            owner: None,
        }
    }
}

/// The cluster to build: a primary plus `standbys` streaming standbys.
#[derive(Debug, Clone)]
pub struct ClusterSpec {
    /// Number of streaming standbys.
    pub standbys: usize,
    /// Persistent base directory; `None` = a temporary directory removed on drop.
    pub dir: Option<PathBuf>,
    /// PostgreSQL bin directory; `None` = search (see [`super::PgBin::find`]).
    pub bindir: Option<PathBuf>,
    /// OS user owning the data when running as root (default `postgres`).
    pub os_user: Option<String>,
    /// Superuser role (initdb `-U`).
    pub superuser: String,
    /// Its password (TCP connections use SCRAM; the unix socket trusts).
    pub superuser_password: String,
    /// Role the standbys stream with.
    pub replication_user: String,
    /// Its password.
    pub replication_password: String,
    /// Extra login roles `(name, password)`.
    pub users: Vec<(String, String)>,
    /// Databases created on the primary (each gets pg_buffercache and pg_prewarm).
    pub databases: Vec<DatabaseSpec>,
    /// Extra postgresql.conf lines, appended last.
    pub extra_conf: Vec<String>,
    /// Extra pg_hba.conf lines, placed before the harness's own (first match wins).
    pub extra_hba: Vec<String>,
    /// Preferred ports by node index (primary first); busy or missing ones become free ports.
    pub ports: Vec<u16>,
    /// `shared_buffers`.
    pub shared_buffers: String,
    /// `fsync` (off makes test clusters faster; data does not survive an OS crash).
    pub fsync: bool,
    /// initdb `--data-checksums` (otherwise `wal_log_hints = on`; both let pg_rewind work).
    pub data_checksums: bool,
    /// How long a node may take to start, and a standby to stream.
    pub timeout: Duration,
}

impl Default for ClusterSpec {
    fn default() -> Self {
        Self {
            standbys: 2,
            dir: None,
            bindir: None,
            os_user: None,
            superuser: "postgres".to_string(),
            superuser_password: "postgres-secret".to_string(),
            replication_user: "replicator".to_string(),
            replication_password: "replicator-secret".to_string(),
            users: Vec::new(),
            databases: Vec::new(),
            extra_conf: Vec::new(),
            extra_hba: Vec::new(),
            ports: Vec::new(),
            shared_buffers: "32MB".to_string(),
            fsync: false,
            data_checksums: false,
            timeout: Duration::from_secs(60),
        }
    }
}

impl ClusterSpec {
    /// A temporary cluster with `standbys` standbys and the test defaults.
    pub fn new(standbys: usize) -> Self {
        Self {
            standbys,
            ..Self::default()
        }
    }

    /// Adds a login role.
    pub fn user(mut self, name: &str, password: &str) -> Self {
        self.users.push((name.to_string(), password.to_string()));
        self
    }

    /// Adds a database, optionally owned by one of the roles.
    pub fn database(mut self, name: &str, owner: Option<&str>) -> Self {
        self.databases.push(DatabaseSpec {
            name: name.to_string(),
            owner: owner.map(str::to_string),
        });
        self
    }

    /// Adds a postgresql.conf line such as `max_connections = 200`.
    pub fn conf(mut self, line: &str) -> Self {
        self.extra_conf.push(line.to_string());
        self
    }
}

/// Where one node lives.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeLayout {
    /// Node name.
    pub name: String,
    /// TCP port on 127.0.0.1.
    pub port: u16,
    /// Data directory.
    pub data_dir: PathBuf,
    /// Unix socket directory.
    pub socket_dir: PathBuf,
    /// Server log.
    pub log_file: PathBuf,
}

/// Everything needed to manage a built cluster again from another process.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterLayout {
    /// Base directory holding data directories, logs and the socket directory.
    pub base_dir: PathBuf,
    /// PostgreSQL bin directory used.
    pub bindir: PathBuf,
    /// OS user the servers run as (when built as root).
    pub os_user: Option<String>,
    /// Superuser role.
    pub superuser: String,
    /// Its password.
    pub superuser_password: String,
    /// Replication role.
    pub replication_user: String,
    /// Its password.
    pub replication_password: String,
    /// The nodes; the first was built as the primary.
    pub nodes: Vec<NodeLayout>,
}
