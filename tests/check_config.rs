//! `pgsluice check-config` run as a program: every problem of a file on its own line, each
//! followed by the key's doc line and default from the key table; a good file prints `ok`.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::process::Command;

fn check(text: &str) -> (bool, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("pgsluice.toml");
    std::fs::write(&path, text).expect("write");
    let out = Command::new(env!("CARGO_BIN_EXE_pgsluice"))
        .args(["check-config", "-c"])
        .arg(&path)
        .output()
        .expect("run pgsluice");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into(),
    )
}

#[test]
fn every_problem_is_listed_with_its_keys_doc_line() {
    let (ok, out) = check(
        "[pooler]\nlisten_port = 70000\npool_mode = \"sometimes\"\n\
         [databases.app]\nhost = \"h\"\npool_size = 0\n",
    );
    assert!(!ok, "{out}");
    let lines: Vec<&str> = out.lines().collect();
    let expected = [
        (
            "pooler.listen_port: 70000 is not a port (ports are 1..=65535)",
            "    pooler.listen_port: TCP port clients connect to (default: 6432)",
        ),
        (
            "pooler.pool_mode: \"sometimes\" is not a pool mode (one of session, transaction, statement)",
            "    pooler.pool_mode: how long a client keeps a server connection (default: \"transaction\")",
        ),
        (
            "databases.app.pool_size: 0 is out of range (use 1..=100000)",
            "    databases.*.pool_size: server connections per user (default: pooler.default_pool_size)",
        ),
    ];
    assert_eq!(lines.len(), expected.len() * 2, "{out}");
    for (problem, doc) in expected {
        let at = lines.iter().position(|l| *l == problem);
        let at = at.unwrap_or_else(|| panic!("missing {problem:?} in\n{out}"));
        assert_eq!(lines.get(at + 1).copied(), Some(doc), "{out}");
    }
}

#[test]
fn a_good_file_prints_ok() {
    let (ok, out) = check("[databases.app]\nhost = \"127.0.0.1\"\n");
    assert!(ok && out.trim() == "ok", "{out}");
}

#[test]
fn a_syntax_error_names_the_unknown_key_without_a_doc_line() {
    let (ok, out) = check("[pooler]\nlisten_prot = 1\n");
    assert!(!ok && out.contains("listen_prot"), "{out}");
    assert!(!out.contains("    pooler."), "{out}");
}
