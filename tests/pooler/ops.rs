//! Operating the pooler process: SIGTERM lets a running transaction commit, SIGHUP changes a
//! pool size under load without client errors, SIGUSR2 hands the listening socket to a new
//! process under a connect-query-disconnect loop with zero errors, and the systemd units pass
//! `systemd-analyze verify`.

use crate::util::{cell, psql_at, rt, scalar, ExtraPooler, Fixture};
use libtest_mimic::Failed;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub const TESTS: &[(&str, crate::Body)] = &[
    ("ops_systemd_units_verify", systemd_units),
    ("ops_sigterm_lets_a_transaction_commit", sigterm_commits),
    (
        "ops_sigterm_session_mode_closes_at_a_boundary",
        sigterm_commits_session,
    ),
    ("ops_reload_pool_size_under_load", reload_under_load),
    ("ops_handover_drops_no_connection", handover),
];

const ADMIN: &str = "admin_users = [\"app\"]\nshutdown_timeout = \"10s\"";

fn signal(pid: u32, s: Signal) {
    kill(Pid::from_raw(pid as i32), s).expect("signal");
}

/// Waits (up to 15 s) until `counter` reaches `n`; returns its value.
fn wait_for_count(counter: &AtomicU64, n: u64) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(15);
    while counter.load(Ordering::Relaxed) < n && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    counter.load(Ordering::Relaxed)
}

fn wait_exit(p: &mut ExtraPooler, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = p.child.try_wait() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

fn sigterm_commits(fx: &Fixture) -> Result<(), Failed> {
    sigterm_case(fx, "ops_term", "")
}

/// In session mode the forwarder runs until the client leaves; a shutdown must still close
/// an idle session at once and a busy one at the end of its transaction.
fn sigterm_commits_session(fx: &Fixture) -> Result<(), Failed> {
    sigterm_case(fx, "ops_term_session", "pool_mode = \"session\"")
}

fn sigterm_case(fx: &Fixture, table: &str, db_keys: &str) -> Result<(), Failed> {
    let mut p = ExtraPooler::start(fx, ADMIN, db_keys);
    let pg = fx.cluster.primary();
    pg.psql(
        "app",
        &format!("create table if not exists {table} (v int); grant all on {table} to app"),
    )?;
    rt().block_on(async {
        let (busy, conn) = tokio_postgres::connect(&p.url(), tokio_postgres::NoTls).await?;
        tokio::spawn(conn);
        let (idle, conn) = tokio_postgres::connect(&p.url(), tokio_postgres::NoTls).await?;
        let idle_done = tokio::spawn(conn);
        // The idle client has run a query: in session mode it holds a server.
        scalar(&idle, "select 1").await?;
        busy.simple_query(&format!("begin; insert into {table} values (7)"))
            .await
            .map_err(|e| format!("{e:?}"))?;
        signal(p.child.id(), Signal::SIGTERM);
        tokio::time::sleep(Duration::from_millis(300)).await;
        // The idle client was told and closed; the one in a transaction goes on and commits.
        assert!(
            idle.is_closed() || idle_done.is_finished() || scalar(&idle, "select 1").await.is_err()
        );
        let dbg = |e: tokio_postgres::Error| format!("{e:?}");
        busy.simple_query("select pg_sleep(0.3)")
            .await
            .map_err(dbg)?;
        busy.simple_query("commit").await.map_err(dbg)?;
        let next = busy.simple_query("select 1").await;
        assert!(next.is_err(), "the client is closed after its transaction");
        Ok::<_, Failed>(())
    })?;
    assert!(
        wait_exit(&mut p, Duration::from_secs(5)),
        "pooler exited after SIGTERM"
    );
    let n = pg.psql("app", &format!("select count(*) from {table} where v = 7"))?;
    assert_eq!(n.trim(), "1");
    pg.psql("app", &format!("drop table {table}"))?;
    Ok(())
}

fn reload_under_load(fx: &Fixture) -> Result<(), Failed> {
    let p = ExtraPooler::start(fx, ADMIN, "pool_size = 2");
    let stop = Arc::new(AtomicBool::new(false));
    let errors = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicU64::new(0));
    let workers: Vec<_> = (0..6)
        .map(|_| {
            let (url, stop, errors, done) = (p.url(), stop.clone(), errors.clone(), done.clone());
            std::thread::spawn(move || {
                rt().block_on(async {
                    let Ok((c, conn)) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await
                    else {
                        errors.fetch_add(1, Ordering::Relaxed);
                        return;
                    };
                    tokio::spawn(conn);
                    while !stop.load(Ordering::Relaxed) {
                        match c.simple_query("select pg_sleep(0.01)").await {
                            Ok(_) => done.fetch_add(1, Ordering::Relaxed),
                            Err(_) => errors.fetch_add(1, Ordering::Relaxed),
                        };
                    }
                })
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    let text = std::fs::read_to_string(&p.config_path)?;
    std::fs::write(
        &p.config_path,
        text.replace("pool_size = 2", "pool_size = 5"),
    )?;
    signal(p.child.id(), Signal::SIGHUP);
    std::thread::sleep(Duration::from_millis(1500));
    let (_, pools, _) = psql_at(p.port, "pgsluice", "app", &["-c", "SHOW DATABASES"]);
    // An invalid file is refused and the old configuration kept.
    std::fs::write(&p.config_path, "[pooler]\nlisten_port = \"x\"\n")?;
    signal(p.child.id(), Signal::SIGHUP);
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.join().expect("worker");
    }
    assert_eq!(
        cell(&pools, "app", "pool_size").as_deref(),
        Some("5"),
        "{pools}"
    );
    let (_, servers, _) = psql_at(p.port, "pgsluice", "app", &["-c", "SHOW POOLS"]);
    let active: usize = ["sv_active", "sv_idle"]
        .iter()
        .filter_map(|c| cell(&servers, "app", c)?.parse::<usize>().ok())
        .sum();
    let (errors, done) = (errors.load(Ordering::Relaxed), done.load(Ordering::Relaxed));
    assert_eq!(errors, 0, "client errors during reload ({done} queries)");
    assert!(done > 50, "{done} queries");
    assert!(
        active > 2,
        "more than the old pool size in use after reload ({done} queries): {servers}"
    );
    Ok(())
}

fn handover(fx: &Fixture) -> Result<(), Failed> {
    let mut p = ExtraPooler::start(fx, ADMIN, "");
    let old_pid = p.child.id();
    let stop = Arc::new(AtomicBool::new(false));
    let (errors, done) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let first_error = Arc::new(std::sync::Mutex::new(None::<String>));
    let workers: Vec<_> = (0..2)
        .map(|_| {
            let (url, stop, errors, done, first) = (
                p.url(),
                stop.clone(),
                errors.clone(),
                done.clone(),
                first_error.clone(),
            );
            std::thread::spawn(move || {
                rt().block_on(async {
                    while !stop.load(Ordering::Relaxed) {
                        let r = async {
                            let (c, conn) =
                                tokio_postgres::connect(&url, tokio_postgres::NoTls).await?;
                            tokio::spawn(conn);
                            scalar(&c, "select 1").await
                        }
                        .await;
                        match r {
                            Ok(_) => done.fetch_add(1, Ordering::Relaxed),
                            Err(e) => {
                                first.lock().expect("lock").get_or_insert(e.to_string());
                                errors.fetch_add(1, Ordering::Relaxed)
                            }
                        };
                    }
                })
            })
        })
        .collect();
    // The loop runs against the old process, then across the hand-over, then against the new
    // one (each connection logs in with SCRAM: slow in a debug build).
    let before = wait_for_count(&done, 10);
    signal(old_pid, Signal::SIGUSR2);
    let exited = wait_exit(&mut p, Duration::from_secs(15));
    let at_exit = done.load(Ordering::Relaxed);
    let after = wait_for_count(&done, at_exit + 10) - at_exit;
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.join().expect("worker");
    }
    let (ok, state, err) = psql_at(p.port, "pgsluice", "app", &["-c", "SHOW STATE"]);
    let new_pid = cell(&state, "yes", "pid").and_then(|v| v.parse::<i32>().ok());
    if let Some(pid) = new_pid {
        let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
    }
    assert!(exited, "the old process drained and exited");
    assert!(ok, "{err}");
    assert!(new_pid.is_some_and(|n| n as u32 != old_pid), "{state}");
    assert_eq!(
        errors.load(Ordering::Relaxed),
        0,
        "connection errors during the hand-over: {:?}",
        first_error.lock().expect("lock")
    );
    assert!(
        before >= 10 && after >= 10,
        "{before} connections before the hand-over, {after} after the old process exited"
    );
    Ok(())
}

fn systemd_units(_fx: &Fixture) -> Result<(), Failed> {
    let dir = tempfile::tempdir()?;
    let root = env!("CARGO_MANIFEST_DIR");
    for unit in ["pgsluice-pooler.service", "pgsluice-agent.service"] {
        let text = std::fs::read_to_string(format!("{root}/systemd/{unit}"))?;
        let text = text.replace("/usr/bin/pgsluice", env!("CARGO_BIN_EXE_pgsluice"));
        std::fs::write(dir.path().join(unit), text)?;
    }
    let out = std::process::Command::new("systemd-analyze")
        .arg("verify")
        .arg(dir.path().join("pgsluice-pooler.service"))
        .arg(dir.path().join("pgsluice-agent.service"))
        .output()
        .map_err(|e| format!("systemd-analyze (Debian package systemd) is needed: {e}"))?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && !stderr.contains("pgsluice"),
        "{stderr}"
    );
    Ok(())
}
