//! The admin console through psql (every SHOW, PAUSE/RESUME holding a query, errors and
//! permissions), stats under pgbench, and `/metrics` validated by promtool.

use crate::util::{cell, psql_at, Fixture, PASSWORD};
use libtest_mimic::Failed;
use std::io::{Read, Write};
use std::process::Command;
use std::time::{Duration, Instant};

pub const TESTS: &[(&str, crate::Body)] = &[
    ("admin_every_show_command", every_show_command),
    ("admin_errors_and_permissions", errors_and_permissions),
    (
        "admin_pause_holds_resume_releases",
        pause_holds_resume_releases,
    ),
    ("admin_stats_move_under_pgbench", stats_move_under_pgbench),
    ("admin_metrics_pass_promtool", metrics_pass_promtool),
];

fn every_show_command(fx: &Fixture) -> Result<(), Failed> {
    for what in [
        "HELP",
        "CONFIG",
        "DATABASES",
        "POOLS",
        "CLIENTS",
        "SERVERS",
        "USERS",
        "STATS",
        "STATS_TOTALS",
        "STATS_AVERAGES",
        "TOTALS",
        "LISTS",
        "VERSION",
        "STATE",
    ] {
        let (ok, out, err) = fx.console("app", &format!("SHOW {what};"));
        assert!(ok, "SHOW {what}: {err}");
        if what == "HELP" {
            assert!(err.contains("SHOW") && err.contains("KILL_CLIENT"), "{err}");
        }
        if what == "VERSION" {
            assert!(out.contains("pgsluice"), "{out}");
        }
    }
    // The pgbouncer alias reaches the same console; PgBouncer's column names are there.
    let (ok, out, err) = psql_at(fx.port, "pgbouncer", "app", &["-c", "SHOW POOLS"]);
    assert!(ok, "{err}");
    let header = out.lines().next().unwrap_or_default();
    for col in [
        "database",
        "user",
        "cl_active",
        "cl_waiting",
        "sv_active",
        "sv_idle",
        "maxwait",
    ] {
        assert!(
            header.split('|').any(|c| c == col),
            "{col} missing in {header}"
        );
    }
    // This console session is listed by SHOW CLIENTS with an id KILL_CLIENT accepts.
    let (_, out, _) = fx.console("app", "SHOW CLIENTS");
    assert!(out.lines().any(|l| l.contains("|pgbouncer|")), "{out}");
    let (ok, out, _) = fx.console("app", "SHOW CONFIG");
    assert!(ok && cell(&out, "shutdown_timeout", "changeable") == Some("yes".into()));
    Ok(())
}

fn errors_and_permissions(fx: &Fixture) -> Result<(), Failed> {
    let (ok, _, err) = fx.console("app", "FROB");
    assert!(!ok && err.contains("SHOW HELP"), "{err}");
    let (ok, _, err) = fx.console("app", "PAUSE nosuchdb");
    assert!(!ok && err.contains("does not exist"), "{err}");
    let (ok, _, err) = fx.console("app", "KILL_CLIENT 999999");
    assert!(!ok && err.contains("no client"), "{err}");
    // stats_users may SHOW but not act.
    let (ok, _, err) = fx.console("md5user", "SHOW STATS");
    assert!(ok, "{err}");
    let (ok, _, err) = fx.console("md5user", "RELOAD");
    assert!(!ok && err.contains("only run SHOW"), "{err}");
    // Other users may not connect to the console at all.
    let (ok, _, err) = fx.console("trusty", "SHOW POOLS");
    assert!(!ok, "{err}");
    // SET changes a reloadable setting; a fixed one is refused.
    let (ok, _, err) = fx.console("app", "SET query_wait_timeout = '7s'");
    assert!(ok, "{err}");
    let (_, out, _) = fx.console("app", "SHOW CONFIG");
    assert_eq!(
        cell(&out, "query_wait_timeout", "value").as_deref(),
        Some("7")
    );
    fx.console("app", "SET query_wait_timeout = '5s'");
    let (ok, _, err) = fx.console("app", "SET listen_port = 1");
    assert!(!ok && err.contains("RELOAD"), "{err}");
    // DISABLE refuses new logins to a database; ENABLE admits them again.
    assert!(fx.console("app", "DISABLE ops").0);
    let (ok, _, err) = fx.psql("ops", "select 1");
    assert!(!ok && err.contains("does not allow connections"), "{err}");
    assert!(fx.console("app", "ENABLE ops").0);
    assert!(fx.psql("ops", "select 1").0);
    for cmd in ["RECONNECT ops", "WAIT_CLOSE ops", "RELOAD"] {
        let (ok, _, err) = fx.console("app", cmd);
        assert!(ok, "{cmd}: {err}");
    }
    Ok(())
}

/// Uses its own database: other tests log in to `ops` while it runs.
fn pause_holds_resume_releases(fx: &Fixture) -> Result<(), Failed> {
    let (ok, _, err) = fx.console("app", "PAUSE paused");
    assert!(ok, "{err}");
    let url = fx.url("paused", "app");
    let started = Instant::now();
    let waiter = std::thread::spawn(move || {
        let bin = pgsluice::cluster::PgBin::find(None).expect("pg");
        Command::new(bin.path("psql"))
            .args(["-XAtq", "-c", "select 42", "-d", &url])
            .output()
            .expect("psql")
    });
    // The client logs in (slow under a loaded CI machine), then its query is held.
    let deadline = Instant::now() + Duration::from_secs(10);
    let pools = loop {
        let (_, pools, _) = fx.console("app", "SHOW POOLS");
        if cell(&pools, "paused", "cl_waiting").as_deref() == Some("1") || Instant::now() > deadline
        {
            break pools;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        !waiter.is_finished(),
        "a query ran while the database was paused"
    );
    let (ok, _, err) = fx.console("app", "RESUME paused");
    assert!(ok, "{err}");
    let out = waiter.join().expect("thread");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "42");
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(
        cell(&pools, "paused", "cl_waiting").as_deref(),
        Some("1"),
        "the held client shows as waiting: {pools}"
    );
    let (ok, _, err) = fx.console("app", "RESUME paused");
    assert!(!ok && err.contains("not paused"), "{err}");
    Ok(())
}

fn xacts(fx: &Fixture) -> u64 {
    let (ok, out, err) = fx.console("app", "SHOW STATS_TOTALS");
    assert!(ok, "{err}");
    cell(&out, "ops", "xact_count")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn stats_move_under_pgbench(fx: &Fixture) -> Result<(), Failed> {
    let before = xacts(fx);
    let dir = tempfile::tempdir()?;
    let script = dir.path().join("q.sql");
    std::fs::write(&script, "select 1;\n")?;
    let bin = pgsluice::cluster::PgBin::find(None).expect("pg");
    let out = Command::new(bin.path("pgbench"))
        .args(["-n", "-c", "2", "-t", "100", "-f"])
        .arg(&script)
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &fx.port.to_string(),
            "-U",
            "app",
            "ops",
        ])
        .env("PGPASSWORD", PASSWORD)
        .output()?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let after = xacts(fx);
    assert!(after >= before + 200, "xact_count {before} -> {after}");
    let (_, out, _) = fx.console("app", "SHOW STATS");
    let total: u64 = cell(&out, "ops", "total_query_count")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    assert!(total >= 200, "{out}");
    Ok(())
}

fn metrics_pass_promtool(fx: &Fixture) -> Result<(), Failed> {
    assert!(fx.psql("ops", "select 1").0);
    let mut s = std::net::TcpStream::connect(("127.0.0.1", fx.metrics_port))?;
    s.write_all(b"GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n")?;
    let mut body = String::new();
    s.read_to_string(&mut body)?;
    let text = body
        .split("\r\n\r\n")
        .nth(1)
        .unwrap_or_default()
        .to_string();
    for name in [
        "pgsluice_clients{state=\"idle\"}",
        "pgsluice_servers{",
        "pgsluice_transaction_duration_seconds_bucket{",
        "pgsluice_wait_duration_seconds_count{",
        "pgsluice_transactions_total{database=\"ops\"",
        "pgsluice_errors_total{kind=\"login_failed\"}",
        "pgsluice_pool_size{",
    ] {
        assert!(text.contains(name), "{name} missing:\n{text}");
    }
    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| format!("promtool (Debian package prometheus) is needed: {e}"))?;
    promtool
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())?;
    let out = promtool.wait_with_output()?;
    assert!(
        out.status.success(),
        "promtool: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}
