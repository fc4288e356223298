//! The pgsluice daemons the sandbox runs in the background, as a table: each is started only
//! when the binary supports its role, detached, with a pid file and a log in the sandbox
//! directory, and only ever signalled after checking the pid still runs that role.

use super::SandboxError;
use crate::cluster::process;
use nix::sys::signal::Signal;
use std::fs::OpenOptions;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

/// A background role of the pgsluice binary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Service {
    /// The subcommand, run as `pgsluice <role> -c <config>`.
    pub role: &'static str,
    /// What it is, for messages.
    pub what: &'static str,
}

/// The services `up` starts, in order (the pooler first: the agent pushes topology to it).
pub const SERVICES: &[Service] = &[
    Service {
        role: "pooler",
        what: "connection pooler",
    },
    Service {
        role: "agent",
        what: "replication manager",
    },
];

/// How long a freshly started service must survive to count as started.
const SETTLE: Duration = Duration::from_millis(500);
/// How long a service gets to exit after SIGTERM before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// `<dir>/<role>.pid`
pub fn pid_file(dir: &Path, role: &str) -> PathBuf {
    dir.join(format!("{role}.pid"))
}

/// `<dir>/<role>.log`
pub fn log_file(dir: &Path, role: &str) -> PathBuf {
    dir.join(format!("{role}.log"))
}

/// True when this binary has the role (`<exe> <role> --help` succeeds).
pub fn supported(exe: &Path, role: &str) -> bool {
    Command::new(exe)
        .args([role, "--help"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// True when `pid` is alive and runs `<something> <role> ... <config> ...`: a recycled pid
/// or someone else's process is never ours.
pub fn belongs(pid: i32, role: &str, config: &Path) -> bool {
    if !process::alive(pid) {
        return false;
    }
    let args = process::cmdline(pid);
    let config = config.to_string_lossy();
    args.get(1).is_some_and(|a| a == role) && args.iter().skip(2).any(|a| *a == config)
}

/// True when `pid` is alive and runs `program` (its file name) with `arg` among its
/// arguments: how the sandbox recognises a process that is not a pgsluice role (etcd).
pub fn runs(pid: i32, program: &str, arg: &str) -> bool {
    if !process::alive(pid) {
        return false;
    }
    let args = process::cmdline(pid);
    let name = args
        .first()
        .map(|a| Path::new(a).file_name().unwrap_or_default().to_owned());
    name.is_some_and(|n| n == program) && args.iter().skip(1).any(|a| a == arg)
}

/// The pid of the running service, from the state record or its pid file, if it is ours.
pub fn running_pid(dir: &Path, role: &str, config: &Path, recorded: Option<i32>) -> Option<i32> {
    running_pid_by(dir, role, recorded, |pid| belongs(pid, role, config))
}

/// The pid of the running process recorded as `key` (state record or `<key>.pid`) that passes
/// `ours`.
pub fn running_pid_by(
    dir: &Path,
    key: &str,
    recorded: Option<i32>,
    ours: impl Fn(i32) -> bool,
) -> Option<i32> {
    let from_file = std::fs::read_to_string(pid_file(dir, key))
        .ok()
        .and_then(|t| t.trim().parse::<i32>().ok());
    [recorded, from_file]
        .into_iter()
        .flatten()
        .find(|pid| ours(*pid))
}

/// Starts `<exe> <role> -c <config>` detached (own process group, stdin closed, output to its
/// log) and writes its pid file. Fails with the log's tail if it exits at once.
pub fn start(exe: &Path, dir: &Path, role: &str, config: &Path) -> Result<i32, SandboxError> {
    start_as(exe, dir, role, role, config)
}

/// [`start`] with the pid and log files named after `key` (several agents share a role).
pub fn start_as(
    exe: &Path,
    dir: &Path,
    key: &str,
    role: &str,
    config: &Path,
) -> Result<i32, SandboxError> {
    let mut cmd = Command::new(exe);
    cmd.arg(role).arg("-c").arg(config).env("NO_COLOR", "1");
    spawn(dir, key, cmd)
}

/// Starts `cmd` detached (own process group, in `dir`, stdin closed, output to `<key>.log`)
/// and writes `<key>.pid`. Fails with the log's tail if it exits at once.
pub fn spawn(dir: &Path, key: &str, mut cmd: Command) -> Result<i32, SandboxError> {
    let log = log_file(dir, key);
    let open = |what: &str| {
        OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .map_err(|e| SandboxError::io(format!("{what} {}", log.display()), e))
    };
    let mut child = cmd
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(open("opening")?)
        .stderr(open("opening")?)
        .process_group(0)
        .spawn()
        .map_err(|e| SandboxError::io(format!("starting {key}"), e))?;
    let pid = child.id() as i32;
    std::thread::sleep(SETTLE);
    if let Ok(Some(status)) = child.try_wait() {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        return Err(SandboxError::Service {
            role: key.to_string(),
            message: format!(
                "exited at once ({status}); {}:\n{}",
                log.display(),
                process::tail(&text, 10)
            ),
        });
    }
    let file = pid_file(dir, key);
    std::fs::write(&file, format!("{pid}\n"))
        .map_err(|e| SandboxError::io(format!("writing {}", file.display()), e))?;
    Ok(pid)
}

/// Stops a service that is ours: SIGTERM, then SIGKILL after a grace period. Returns false
/// (and signals nothing) when `pid` does not run that role with that config.
pub fn stop(pid: i32, role: &str, config: &Path) -> bool {
    stop_by(pid, |p| belongs(p, role, config))
}

/// [`stop`] for any process recognised by `ours`.
pub fn stop_by(pid: i32, ours: impl Fn(i32) -> bool) -> bool {
    if !ours(pid) {
        return false;
    }
    process::signal(pid, Signal::SIGTERM);
    if !process::wait_gone(&[pid], STOP_GRACE) && ours(pid) {
        process::signal(pid, Signal::SIGKILL);
        process::wait_gone(&[pid], Duration::from_secs(5));
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_process_running_something_else_is_not_ours() {
        let me = std::process::id() as i32;
        assert!(!belongs(me, "pooler", Path::new("/nowhere/pgsluice.toml")));
        assert!(!belongs(-5, "pooler", Path::new("/x")));
    }

    #[test]
    fn a_missing_binary_supports_nothing() {
        assert!(!supported(Path::new("/nonexistent/pgsluice"), "pooler"));
    }
}
