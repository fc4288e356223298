//! Operations on a node's data directory on this host: pg_ctl, pg_rewind, pg_basebackup,
//! pg_controldata and configuration files, run as the data directory's owner (as root through
//! `runuser`, via the cluster harness's [`RunAs`]). Blocking programs run on the blocking pool.
//! Passwords reach pg_rewind and pg_basebackup through a private `PGPASSFILE`, never argv.

use crate::cluster::{conf, passfile, process, HarnessError, PassFile, PgBin, RunAs};
use crate::config::{ClusterConfig, NodeConfig};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Settings the agent owns in `postgresql.auto.conf` of a node it (re)configures.
pub const MANAGED_KEYS: [&str; 3] = [
    "primary_conninfo",
    "primary_slot_name",
    "default_transaction_read_only",
];

/// Why a local operation failed.
#[derive(Debug, thiserror::Error)]
pub enum LocalError {
    /// The node has no `data_dir` in the configuration.
    #[error("node {0} has no data_dir in the configuration: local operations are impossible")]
    NoDataDir(String),
    /// A program or file operation failed.
    #[error(transparent)]
    Harness(#[from] HarnessError),
    /// The blocking task was lost.
    #[error("background task failed: {0}")]
    Join(String),
}

/// One local node: its data directory, binaries and owner.
#[derive(Debug, Clone)]
pub struct LocalPg {
    /// Node name.
    pub name: String,
    /// Data directory.
    pub data_dir: PathBuf,
    /// Server log used by `start` (beside the data directory: `<data_dir>.log`).
    pub log_file: PathBuf,
    bin: PgBin,
    run_as: RunAs,
}

impl LocalPg {
    /// The local handle for `node`, or why there is none.
    pub fn of(cluster: &ClusterConfig, node: &NodeConfig) -> Result<LocalPg, LocalError> {
        let data_dir = node
            .data_dir
            .clone()
            .ok_or_else(|| LocalError::NoDataDir(node.name.clone()))?;
        Ok(LocalPg {
            name: node.name.clone(),
            log_file: data_dir.with_extension("log"),
            data_dir,
            bin: match cluster.pg_bindir.as_deref() {
                Some(dir) => PgBin::at(dir)?,
                None => PgBin::find(None)?,
            },
            run_as: RunAs::detect(node.os_user.as_deref())?,
        })
    }

    fn cmd(&self, program: &str) -> std::process::Command {
        self.run_as.command(self.bin.path(program))
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(LocalPg) -> Result<T, LocalError> + Send + 'static,
    ) -> Result<T, LocalError> {
        let me = self.clone();
        tokio::task::spawn_blocking(move || f(me))
            .await
            .map_err(|e| LocalError::Join(e.to_string()))?
    }

    /// Whether a postmaster runs on the data directory: the pid in `postmaster.pid` is alive
    /// (zombies count as dead) and is a `postgres` process. Cheap: no program is run.
    pub async fn is_running(&self) -> bool {
        let Ok(text) = std::fs::read_to_string(self.data_dir.join("postmaster.pid")) else {
            return false;
        };
        let Some(pid) = text
            .lines()
            .next()
            .and_then(|l| l.trim().parse::<i32>().ok())
        else {
            return false;
        };
        let is_postgres = process::cmdline(pid)
            .first()
            .and_then(|a| Path::new(a).file_name().map(|f| f == "postgres"))
            .unwrap_or(false);
        is_postgres && process::alive(pid)
    }

    /// `pg_ctl stop -m MODE -w` bounded by `timeout` (no-op when already stopped).
    pub async fn stop(&self, mode: &'static str, timeout: Duration) -> Result<(), LocalError> {
        if !self.is_running().await {
            return Ok(());
        }
        self.blocking(move |me| {
            let mut cmd = me.cmd("pg_ctl");
            let secs = timeout.as_secs().max(1).to_string();
            cmd.args(["stop", "-w", "-s", "-t", &secs, "-m", mode, "-D"])
                .arg(&me.data_dir);
            process::run(&mut cmd, None, None)?;
            Ok(())
        })
        .await
    }

    /// `pg_ctl start -w` with the log beside the data directory.
    pub async fn start(&self, timeout: Duration) -> Result<(), LocalError> {
        self.blocking(move |me| {
            let mut cmd = me.cmd("pg_ctl");
            let secs = timeout.as_secs().max(1).to_string();
            cmd.args(["start", "-w", "-s", "-t", &secs, "-D"])
                .arg(&me.data_dir)
                .arg("-l")
                .arg(&me.log_file);
            process::run(&mut cmd, None, Some(&me.log_file))?;
            Ok(())
        })
        .await
    }

    /// `pg_controldata` as key -> value.
    pub async fn controldata(&self) -> Result<BTreeMap<String, String>, LocalError> {
        self.blocking(|me| {
            let mut cmd = me.cmd("pg_controldata");
            cmd.arg("-D").arg(&me.data_dir);
            let out = process::run(&mut cmd, None, None)?;
            Ok(out
                .lines()
                .filter_map(|l| l.split_once(':'))
                .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
                .collect())
        })
        .await
    }

    /// The `pg_rewind` command from `source` (a conninfo without password), and the password
    /// file it reads the password from: the password is never on the command line.
    pub fn rewind_command(
        &self,
        source: &str,
        password: Option<&str>,
    ) -> Result<(std::process::Command, Option<PassFile>), LocalError> {
        let mut cmd = self.cmd("pg_rewind");
        cmd.arg(format!("--target-pgdata={}", self.data_dir.display()))
            .arg(format!("--source-server={source}"))
            .arg("--progress")
            .arg("--no-sync");
        let pass = passfile::for_password(&self.run_as, password)?;
        if let Some(p) = &pass {
            p.apply(&mut cmd);
        }
        Ok((cmd, pass))
    }

    /// `pg_rewind` from `source` (a superuser conninfo without password, and the password);
    /// returns its output (stdout + stderr).
    pub async fn rewind(&self, source: (String, Option<String>)) -> Result<String, LocalError> {
        self.blocking(move |me| {
            let (mut cmd, _pass) = me.rewind_command(&source.0, source.1.as_deref())?;
            let out = cmd
                .output()
                .map_err(|e| HarnessError::io("starting pg_rewind", e))?;
            let text = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            if out.status.success() {
                Ok(text)
            } else {
                Err(HarnessError::Command {
                    command: "pg_rewind".into(),
                    status: out.status.to_string(),
                    stderr: process::tail(&text, 12),
                    log: None,
                }
                .into())
            }
        })
        .await
    }

    /// The `pg_basebackup` command cloning `source` (a conninfo without password), and the
    /// password file it reads the password from: the password is never on the command line.
    pub fn clone_command(
        &self,
        source: &str,
        password: Option<&str>,
    ) -> Result<(std::process::Command, Option<PassFile>), LocalError> {
        let mut cmd = self.cmd("pg_basebackup");
        cmd.arg("-D").arg(&self.data_dir).args([
            "-d",
            source,
            "-X",
            "stream",
            "-c",
            "fast",
            "--no-sync",
        ]);
        let pass = passfile::for_password(&self.run_as, password)?;
        if let Some(p) = &pass {
            p.apply(&mut cmd);
        }
        Ok((cmd, pass))
    }

    /// Moves the data directory aside (`<data_dir>.old-<unix time>`) and clones `source`
    /// (a replication conninfo without password, and the password) into it with
    /// `pg_basebackup -X stream -c fast`.
    pub async fn clone_from(
        &self,
        source: (String, Option<String>),
    ) -> Result<Option<PathBuf>, LocalError> {
        self.blocking(move |me| {
            let mut aside = None;
            if me.data_dir.exists() {
                let secs = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs());
                let to = PathBuf::from(format!("{}.old-{secs}", me.data_dir.display()));
                std::fs::rename(&me.data_dir, &to).map_err(|e| {
                    HarnessError::io(format!("moving {} aside", me.data_dir.display()), e)
                })?;
                aside = Some(to);
            }
            if let Some(parent) = me.data_dir.parent() {
                std::fs::create_dir_all(parent)
                    .map_err(|e| HarnessError::io(format!("creating {}", parent.display()), e))?;
            }
            let (mut cmd, _pass) = me.clone_command(&source.0, source.1.as_deref())?;
            process::run(&mut cmd, None, None)?;
            Ok(aside)
        })
        .await
    }

    /// Reads a file of the data directory (as root or the owner: root can read anything).
    pub fn read(&self, file: &str) -> Result<String, LocalError> {
        let path = self.data_dir.join(file);
        std::fs::read_to_string(&path)
            .map_err(|e| HarnessError::io(format!("reading {}", path.display()), e).into())
    }

    /// Writes a file of the data directory, owned by the data owner, mode 0600.
    pub fn write(&self, file: &str, text: &str) -> Result<(), LocalError> {
        Ok(self
            .run_as
            .write_file(&self.data_dir.join(file), text, 0o600)?)
    }

    /// Configures the node as a standby of `conninfo` using `slot`: rewrites the managed keys
    /// of `postgresql.auto.conf` (dropping the soft fence), sets `port`, creates `standby.signal`.
    pub fn make_standby(&self, port: u16, conninfo: &str, slot: &str) -> Result<(), LocalError> {
        let auto = self.read("postgresql.auto.conf").unwrap_or_default();
        let mut text: String = auto
            .lines()
            .filter(|l| !MANAGED_KEYS.iter().any(|k| is_setting(l, k)) && !is_setting(l, "port"))
            .map(|l| format!("{l}\n"))
            .collect();
        text = conf::set_in_text(&text, "port", &port.to_string());
        text = conf::set_in_text(
            &text,
            "primary_conninfo",
            &crate::quote::conf_value(conninfo),
        );
        text = conf::set_in_text(&text, "primary_slot_name", &crate::quote::conf_value(slot));
        self.write("postgresql.auto.conf", &text)?;
        self.write("standby.signal", "")
    }
}

fn is_setting(line: &str, key: &str) -> bool {
    let t = line.trim_start();
    !t.starts_with('#')
        && t.strip_prefix(key)
            .is_some_and(|rest| rest.trim_start().starts_with('='))
}

/// Config files pg_rewind overwrites with the source's copies (pitfall 3): saved before, put back after.
pub const CONFIG_FILES: [&str; 4] = [
    "postgresql.conf",
    "postgresql.auto.conf",
    "pg_hba.conf",
    "pg_ident.conf",
];

/// The data directory's path as given, for messages.
pub fn shown(p: &Path) -> String {
    p.display().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[allow(clippy::unwrap_used)]
    fn passwords_are_never_on_the_command_line() {
        let dir = tempfile::tempdir().unwrap();
        let pg = LocalPg {
            name: "n1".into(),
            data_dir: dir.path().join("data"),
            log_file: dir.path().join("data.log"),
            bin: PgBin::at(Path::new("/usr/lib/postgresql/15/bin"))
                .or_else(|_| PgBin::find(None))
                .unwrap(),
            run_as: RunAs::current(),
        };
        let secret = "very-secret-pw";
        let source = "host=127.0.0.1 port=5432 user=postgres dbname=postgres";
        for (cmd, pass) in [
            pg.rewind_command(source, Some(secret)).unwrap(),
            pg.clone_command(source, Some(secret)).unwrap(),
        ] {
            let argv: Vec<String> = std::iter::once(cmd.get_program())
                .chain(cmd.get_args())
                .map(|a| a.to_string_lossy().into_owned())
                .collect();
            assert!(!argv.iter().any(|a| a.contains(secret)), "{argv:?}");
            assert!(argv.iter().any(|a| a.contains(source)), "{argv:?}");
            let pass = pass.unwrap();
            let env: Vec<_> = cmd.get_envs().filter(|(_, v)| v.is_some()).collect();
            assert_eq!(env.len(), 1, "only PGPASSFILE is set: {env:?}");
            assert_eq!(env[0].0, "PGPASSFILE");
            let text = std::fs::read_to_string(pass.path()).unwrap();
            assert!(text.contains(secret));
        }
        let (cmd, pass) = pg.clone_command(source, None).unwrap();
        assert!(pass.is_none());
        assert!(cmd.get_envs().all(|(_, v)| v.is_none()));
    }

    #[test]
    fn managed_settings_are_recognised() {
        assert!(is_setting("primary_conninfo = 'x'", "primary_conninfo"));
        assert!(is_setting("  port=5", "port"));
        assert!(!is_setting("# port = 5", "port"));
        assert!(!is_setting("portal = 5", "port"));
    }
}
