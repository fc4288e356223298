//! The agent's log output when stderr is a file: text without ANSI escapes, and with
//! `[agent] log_format = "json"` one JSON object per line with `kind`, `node` and `epoch` on
//! its event lines. The agent needs no reachable node to start and log.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Starts an agent with `format`, waits for its start event, stops it with SIGTERM and
/// returns what it wrote on stderr.
fn agent_log(format: &str) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let port = pgsluice::cluster::ports::free_port().unwrap();
    let config = format!(
        "[cluster]\n[[cluster.nodes]]\nname = \"n1\"\nhost = \"127.0.0.1\"\nport = 1\n\
         [agent]\nstate_dir = \"{}\"\nlisten = \"127.0.0.1:{port}\"\nlog_format = \"{format}\"\n",
        dir.path().join("state").display()
    );
    let path = dir.path().join("agent.toml");
    std::fs::write(&path, config).unwrap();
    let log = dir.path().join("agent.log");
    let mut child = Command::new(env!("CARGO_BIN_EXE_pgsluice"))
        .args(["agent", "-c"])
        .arg(&path)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !std::fs::read_to_string(&log)
        .unwrap()
        .contains("agent_started")
    {
        assert!(Instant::now() < deadline, "the agent did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the agent did not stop on SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    std::fs::read(&log).unwrap()
}

#[test]
fn agent_text_log_to_a_file_has_no_colour() {
    let log = agent_log("text");
    let text = String::from_utf8_lossy(&log);
    assert!(
        !log.contains(&0x1b),
        "an ANSI escape in a log written to a file:\n{text}"
    );
    for want in ["kind=agent_started", "epoch=0", "kind=agent_stopped"] {
        assert!(text.contains(want), "no {want:?} in:\n{text}");
    }
}

#[test]
fn agent_json_log_lines_parse_with_fields() {
    let log = agent_log("json");
    let text = String::from_utf8_lossy(&log);
    let mut kinds = Vec::new();
    for line in text.lines().filter(|l| !l.is_empty()) {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}"));
        for key in ["timestamp", "level", "target", "message"] {
            assert!(v.get(key).is_some(), "no {key:?} in {line}");
        }
        if let Some(kind) = v.get("kind").and_then(|k| k.as_str()) {
            assert!(v["node"].is_string() && v["epoch"].is_number(), "{line}");
            kinds.push(kind.to_string());
        }
    }
    assert!(
        kinds.iter().any(|k| k == "agent_started"),
        "{kinds:?}\n{text}"
    );
    assert!(
        kinds.iter().any(|k| k == "agent_stopped"),
        "{kinds:?}\n{text}"
    );
}
