//! Process plumbing: running a program and turning failure into a [`HarnessError`], and
//! reading `/proc` to tell live processes from zombies and find a postmaster's children.

use super::error::{HarnessError, Result};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// How many stderr lines an error keeps.
const TAIL_LINES: usize = 12;

/// The command line, for messages.
pub fn describe(cmd: &Command) -> String {
    let mut parts = vec![cmd.get_program().to_string_lossy().into_owned()];
    parts.extend(cmd.get_args().map(|a| a.to_string_lossy().into_owned()));
    parts.join(" ")
}

/// The last lines of `text`.
pub fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.trim_end().lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Runs `cmd` to completion, feeding `input` on stdin; returns stdout. On failure the error
/// names the command, its exit status, its stderr tail and `log`.
pub fn run(cmd: &mut Command, input: Option<&str>, log: Option<&Path>) -> Result<String> {
    let shown = describe(cmd);
    let fail = |status: String, stderr: String| HarnessError::Command {
        command: shown.clone(),
        status,
        stderr,
        log: log.map(Path::to_path_buf),
    };
    cmd.stdin(if input.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .map_err(|e| fail(format!("could not start: {e}"), String::new()))?;
    // A writer thread: the program may fill its stdout pipe before reading all of stdin.
    let writer = match (input, child.stdin.take()) {
        (Some(text), Some(mut stdin)) => {
            let text = text.to_string();
            Some(std::thread::spawn(move || stdin.write_all(text.as_bytes())))
        }
        _ => None,
    };
    let out = child
        .wait_with_output()
        .map_err(|e| fail(format!("could not wait: {e}"), String::new()))?;
    if let Some(w) = writer {
        // A broken pipe here means the program exited early; its status tells why.
        let _ = w.join();
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        return Err(fail(out.status.to_string(), tail(&stderr, TAIL_LINES)));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The fields of `/proc/PID/stat` the harness needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcStat {
    /// One-letter state: R, S, D, Z, T, ...
    pub state: char,
    /// Parent pid.
    pub ppid: i32,
    /// Process group.
    pub pgrp: i32,
}

/// Reads `/proc/PID/stat`; `None` when the process does not exist.
pub fn stat(pid: i32) -> Option<ProcStat> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // "pid (comm) S ppid pgrp ...": comm may hold spaces and parentheses.
    let rest = &text[text.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let ppid = fields.next()?.parse().ok()?;
    let pgrp = fields.next()?.parse().ok()?;
    Some(ProcStat { state, ppid, pgrp })
}

/// True when `pid` exists and is not a zombie (a dead child nobody reaped yet).
pub fn alive(pid: i32) -> bool {
    pid > 0 && stat(pid).is_some_and(|s| s.state != 'Z' && s.state != 'X')
}

/// The arguments of a live process (`/proc/PID/cmdline`), empty for zombies.
pub fn cmdline(pid: i32) -> Vec<String> {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|bytes| {
            bytes
                .split(|b| *b == 0)
                .filter(|a| !a.is_empty())
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// Live processes matching a predicate on their stat.
pub fn find(pred: impl Fn(i32, &ProcStat) -> bool) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            stat(*pid).is_some_and(|s| s.state != 'Z' && s.state != 'X' && pred(*pid, &s))
        })
        .collect()
}

/// Sends `sig` to `pid`, ignoring a process that is already gone.
pub fn signal(pid: i32, sig: Signal) {
    if pid > 0 {
        let _ = kill(Pid::from_raw(pid), sig);
    }
}

/// Kills a postmaster and every process it forked, with no window for orphans.
///
/// PostgreSQL's children each call `setsid()`, so the postmaster's process group holds only
/// the postmaster: killing the group is not enough. The postmaster is stopped first (so it
/// forks nothing new), then its children and their groups are killed, then the postmaster.
/// Returns every pid signalled.
pub fn kill_postmaster_tree(pm: i32) -> Vec<i32> {
    if pm <= 1 || !alive(pm) {
        return Vec::new();
    }
    signal(pm, Signal::SIGSTOP);
    let children = find(|_, s| s.ppid == pm);
    for &c in &children {
        let _ = kill(Pid::from_raw(-c), Signal::SIGKILL);
        signal(c, Signal::SIGKILL);
    }
    let _ = kill(Pid::from_raw(-pm), Signal::SIGKILL);
    signal(pm, Signal::SIGKILL);
    let mut all = vec![pm];
    all.extend(children);
    all
}

/// Waits until none of `pids` is alive; false on timeout.
pub fn wait_gone(pids: &[i32], timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if !pids.iter().any(|p| alive(*p)) {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Polls `check` every `every` until it returns `Some`, or gives up after `timeout`.
pub fn poll<T>(
    timeout: Duration,
    every: Duration,
    mut check: impl FnMut() -> Option<T>,
) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(every);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_reads_our_own_process() {
        let me = std::process::id() as i32;
        let s = stat(me).map(|s| s.state);
        assert!(matches!(s, Some('R') | Some('S')), "{s:?}");
        assert!(alive(me));
        assert!(!alive(-1));
    }

    #[test]
    fn failing_commands_name_themselves_and_their_stderr() {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "echo oops >&2; exit 3"]);
        let err = run(&mut cmd, None, Some(Path::new("/x.log")))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            err.contains("sh -c") && err.contains("oops") && err.contains("/x.log"),
            "{err}"
        );
    }

    #[test]
    fn input_goes_to_stdin() {
        let mut cmd = Command::new("cat");
        let out = run(&mut cmd, Some("hello"), None).ok();
        assert_eq!(out.as_deref(), Some("hello"));
    }
}
