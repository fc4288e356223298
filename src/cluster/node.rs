//! One local PostgreSQL server: start, stop, kill -9, promote, and run SQL through psql.
//!
//! A `LocalNode` is a handle: cloning it or dropping it does not touch the server. The
//! [`super::LocalCluster`] that created the node stops it on drop.

use super::bins::PgBin;
use super::error::{HarnessError, Result};
use super::process;
use super::runas::RunAs;
use crate::quote::conninfo_value;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How long `pg_ctl` may take to start, stop or promote a server.
const PG_CTL_TIMEOUT_SECS: u32 = 60;
/// How often waits re-check.
const POLL: Duration = Duration::from_millis(50);

/// `pg_ctl stop` modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopMode {
    /// Wait for clients to disconnect.
    Smart,
    /// Disconnect clients, shut down cleanly.
    Fast,
    /// Abort without a shutdown checkpoint (crash recovery at next start).
    Immediate,
}

impl StopMode {
    fn as_str(self) -> &'static str {
        match self {
            Self::Smart => "smart",
            Self::Fast => "fast",
            Self::Immediate => "immediate",
        }
    }
}

/// A PostgreSQL server on 127.0.0.1 with its own data directory.
#[derive(Debug, Clone)]
pub struct LocalNode {
    pub(crate) name: String,
    pub(crate) port: u16,
    pub(crate) data_dir: PathBuf,
    pub(crate) socket_dir: PathBuf,
    pub(crate) log_file: PathBuf,
    pub(crate) superuser: String,
    pub(crate) password: Option<String>,
    pub(crate) bin: PgBin,
    pub(crate) run_as: RunAs,
}

impl LocalNode {
    /// The node's name (also its `application_name` and replication slot).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// TCP port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The data directory.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// Directory of the unix socket (`.s.PGSQL.<port>`), private to the cluster.
    pub fn socket_dir(&self) -> &Path {
        &self.socket_dir
    }

    /// The server log.
    pub fn log_file(&self) -> &Path {
        &self.log_file
    }

    /// The superuser name.
    pub fn superuser(&self) -> &str {
        &self.superuser
    }

    /// The binaries and OS user the node runs with.
    pub fn bin(&self) -> &PgBin {
        &self.bin
    }

    /// Who runs the server programs.
    pub fn run_as(&self) -> &RunAs {
        &self.run_as
    }

    /// libpq conninfo for the superuser over TCP, password included when set.
    pub fn conninfo(&self, db: &str) -> String {
        self.conninfo_as(&self.superuser, self.password.as_deref(), db)
    }

    /// libpq conninfo for any role over TCP.
    pub fn conninfo_as(&self, user: &str, password: Option<&str>, db: &str) -> String {
        let mut s = format!(
            "host=127.0.0.1 port={} user={} dbname={}",
            self.port,
            conninfo_value(user),
            conninfo_value(db)
        );
        if let Some(p) = password {
            s.push_str(&format!(" password={}", conninfo_value(p)));
        }
        s
    }

    /// The postmaster's pid, if it runs (from `postmaster.pid`, checked against `/proc`).
    pub fn pid(&self) -> Option<i32> {
        let text = std::fs::read_to_string(self.data_dir.join("postmaster.pid")).ok()?;
        let pid: i32 = text.lines().next()?.trim().parse().ok()?;
        let argv0 = process::cmdline(pid).into_iter().next()?;
        let is_postgres = Path::new(&argv0).file_name()? == "postgres";
        (is_postgres && process::alive(pid)).then_some(pid)
    }

    /// True when the postmaster process is alive.
    pub fn is_running(&self) -> bool {
        self.pid().is_some()
    }

    fn pg_ctl(&self, args: &[&str]) -> Result<String> {
        let mut cmd = self.run_as.command(self.bin.path("pg_ctl"));
        cmd.args(args).arg("-D").arg(&self.data_dir);
        process::run(&mut cmd, None, Some(&self.log_file))
    }

    /// Starts the server and waits until it accepts connections (a no-op if it runs).
    pub fn start(&self) -> Result<()> {
        if self.is_running() {
            return Ok(());
        }
        self.remove_stale_locks();
        let timeout = PG_CTL_TIMEOUT_SECS.to_string();
        let mut cmd = self.run_as.command(self.bin.path("pg_ctl"));
        cmd.args(["start", "-w", "-s", "-t", &timeout, "-D"])
            .arg(&self.data_dir)
            .arg("-l")
            .arg(&self.log_file);
        process::run(&mut cmd, None, Some(&self.log_file))?;
        self.wait_ready(Duration::from_secs(PG_CTL_TIMEOUT_SECS.into()))
    }

    /// A lock file left by a killed postmaster whose pid is now a zombie would make the new
    /// postmaster refuse to start (`kill(pid, 0)` succeeds on zombies): remove such files.
    fn remove_stale_locks(&self) {
        let socket_lock = self.socket_dir.join(format!(".s.PGSQL.{}.lock", self.port));
        for file in [self.data_dir.join("postmaster.pid"), socket_lock] {
            let pid = std::fs::read_to_string(&file)
                .ok()
                .and_then(|t| t.lines().next()?.trim().parse::<i32>().ok());
            if pid.is_some_and(|p| !process::alive(p)) {
                let _ = std::fs::remove_file(&file);
            }
        }
    }

    /// Stops the server with `pg_ctl -m fast` (a no-op if it is down).
    pub fn stop(&self) -> Result<()> {
        self.stop_with(StopMode::Fast)
    }

    /// Stops the server in the given mode and waits for it to exit.
    pub fn stop_with(&self, mode: StopMode) -> Result<()> {
        if !self.is_running() {
            return Ok(());
        }
        let timeout = PG_CTL_TIMEOUT_SECS.to_string();
        self.pg_ctl(&["stop", "-w", "-s", "-t", &timeout, "-m", mode.as_str()])?;
        Ok(())
    }

    /// SIGKILLs the postmaster and every process it forked (its children each run in their own
    /// session, so the postmaster's group alone would leave orphan backends answering clients).
    /// Returns the pids killed; errors if one is still alive after 5 s.
    pub fn kill9(&self) -> Result<Vec<i32>> {
        let Some(pm) = self.pid() else {
            return Ok(Vec::new());
        };
        let pids = process::kill_postmaster_tree(pm);
        if process::wait_gone(&pids, Duration::from_secs(5)) {
            Ok(pids)
        } else {
            Err(HarnessError::Timeout {
                what: format!("{}: processes {pids:?} to die after SIGKILL", self.name),
                secs: 5.0,
                log: Some(self.log_file.clone()),
            })
        }
    }

    /// Promotes a standby (`pg_ctl promote -w`): returns once it accepts writes.
    pub fn promote(&self) -> Result<()> {
        let timeout = PG_CTL_TIMEOUT_SECS.to_string();
        self.pg_ctl(&["promote", "-w", "-s", "-t", &timeout])?;
        Ok(())
    }

    /// Runs SQL through `psql -XAtq -v ON_ERROR_STOP=1` as the superuser over the private unix
    /// socket; statements run one by one (so `CREATE DATABASE` works). Returns stdout trimmed:
    /// one line per row, columns separated by `|`.
    pub fn psql(&self, db: &str, sql: &str) -> Result<String> {
        let mut cmd = RunAs::current().command(self.bin.path("psql"));
        cmd.args(["-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1", "-h"])
            .arg(&self.socket_dir)
            .args(["-p", &self.port.to_string(), "-U", &self.superuser])
            .args(["-d", db, "-f", "-"]);
        let out = process::run(&mut cmd, Some(sql), Some(&self.log_file))?;
        Ok(out.trim().to_string())
    }

    /// `pg_is_in_recovery()`: true on a standby.
    pub fn is_in_recovery(&self) -> Result<bool> {
        Ok(self.psql("postgres", "select pg_is_in_recovery()")? == "t")
    }

    /// Waits until the server answers `select 1`.
    pub fn wait_ready(&self, timeout: Duration) -> Result<()> {
        self.wait_for(timeout, "to accept connections", || {
            self.psql("postgres", "select 1").is_ok_and(|o| o == "1")
        })
    }

    /// Waits until the WAL receiver streams (`pg_stat_wal_receiver.status = 'streaming'`).
    pub fn wait_streaming(&self, timeout: Duration) -> Result<()> {
        self.wait_for(timeout, "to stream from its primary", || {
            self.psql("postgres", "select status from pg_stat_wal_receiver")
                .is_ok_and(|o| o == "streaming")
        })
    }

    /// Waits until this node has replayed WAL up to `lsn` (e.g. a primary's
    /// `pg_current_wal_lsn()`).
    pub fn wait_replayed(&self, lsn: &str, timeout: Duration) -> Result<()> {
        let sql = format!(
            "select coalesce(pg_last_wal_replay_lsn() >= {}::pg_lsn, false)",
            crate::quote::sql_literal(lsn)
        );
        self.wait_for(timeout, &format!("to replay up to {lsn}"), || {
            self.psql("postgres", &sql).is_ok_and(|o| o == "t")
        })
    }

    fn wait_for(&self, timeout: Duration, what: &str, mut ok: impl FnMut() -> bool) -> Result<()> {
        process::poll(timeout, POLL, || ok().then_some(())).ok_or_else(|| HarnessError::Timeout {
            what: format!("{} {what}", self.name),
            secs: timeout.as_secs_f64(),
            log: Some(self.log_file.clone()),
        })
    }

    /// The last `lines` lines of the server log (empty if unreadable).
    pub fn log_tail(&self, lines: usize) -> String {
        std::fs::read_to_string(&self.log_file)
            .map(|t| process::tail(&t, lines))
            .unwrap_or_default()
    }
}
