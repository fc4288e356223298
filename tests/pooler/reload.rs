//! Reload under load through the backend layer's configuration snapshot: 64 pgbench clients
//! run while the pool size is reloaded back and forth; no client sees an error, and new
//! transactions use the new size.

use crate::util::{cell, psql_at, ExtraPooler, Fixture, PASSWORD};
use libtest_mimic::Failed;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

pub const TESTS: &[(&str, crate::Body)] = &[(
    "reload::sixty_four_pgbench_clients_through_reloads",
    reload_under_pgbench,
)];

/// Server connections of the pool `app` as the pooler counts them (SHOW POOLS).
fn app_servers(p: &ExtraPooler) -> usize {
    let (_, pools, _) = psql_at(p.port, "pgsluice", "app", &["-c", "SHOW POOLS"]);
    ["sv_active", "sv_idle", "sv_used", "sv_tested", "sv_login"]
        .iter()
        .filter_map(|c| cell(&pools, "app", c)?.parse::<usize>().ok())
        .sum()
}

fn reload_under_pgbench(fx: &Fixture) -> Result<(), Failed> {
    let p = ExtraPooler::start(
        fx,
        // Trust: 64 SCRAM logins in a debug build on a loaded machine would eat the run.
        "admin_users = [\"app\"]\nmax_client_conn = 200\nauth_type = \"trust\"",
        "pool_size = 4",
    );
    let dir = tempfile::tempdir()?;
    let script = dir.path().join("q.sql");
    std::fs::write(&script, "select pg_sleep(0.002);\n")?;
    let bin = pgsluice::cluster::PgBin::find(None).expect("pg");
    let bench = Command::new(bin.path("pgbench"))
        .args(["-n", "-c", "64", "-j", "4", "-T", "8", "-f"])
        .arg(&script)
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &p.port.to_string(),
            "-U",
            "app",
            "app",
        ])
        .env("PGPASSWORD", PASSWORD)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    std::thread::sleep(Duration::from_millis(1500));
    let base = std::fs::read_to_string(&p.config_path)?;
    let sized = |n: usize| base.replace("pool_size = 4", &format!("pool_size = {n}"));
    let hup = || kill(Pid::from_raw(p.child.id() as i32), Signal::SIGHUP);
    let peak_at_4 = app_servers(&p);
    // Six reloads, alternating sizes, while the clients run.
    for n in [12, 4, 12, 4, 12, 12] {
        std::fs::write(&p.config_path, sized(n))?;
        hup()?;
        std::thread::sleep(Duration::from_millis(400));
    }
    // The last size (12) holds for new transactions: more than 4 server connections serve.
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut peak = 0;
    while Instant::now() < deadline && peak <= 4 {
        peak = peak.max(app_servers(&p));
        std::thread::sleep(Duration::from_millis(50));
    }
    let (_, dbs, _) = psql_at(p.port, "pgsluice", "app", &["-c", "SHOW DATABASES"]);
    let out = bench.wait_with_output()?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "pgbench saw an error during reloads:\n{stdout}\n{stderr}"
    );
    assert!(
        !stderr.contains("aborted") && !stderr.contains("ERROR"),
        "{stderr}"
    );
    let tx: u64 = stdout
        .lines()
        .find_map(|l| l.strip_prefix("number of transactions actually processed: "))
        .and_then(|v| v.split('/').next()?.trim().parse().ok())
        .unwrap_or(0);
    assert!(tx > 500, "pgbench ran {tx} transactions:\n{stdout}");
    assert!(
        peak_at_4 <= 4,
        "{peak_at_4} server connections at pool_size 4"
    );
    assert!(
        peak > 4,
        "new transactions did not use the reloaded pool_size 12 (peak {peak})"
    );
    assert_eq!(
        cell(&dbs, "app", "pool_size").as_deref(),
        Some("12"),
        "{dbs}"
    );
    Ok(())
}
