//! Resource safety under hostile clients and faults (issue 15): no leaked server slot, bounded
//! memory per client, no server held by a partial message. Each test runs a pooler of its own.

use crate::util::{cell, psql_at, rt, ExtraPooler, Fixture};
use libtest_mimic::Failed;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub const TESTS: &[(&str, crate::Body)] = &[
    ("hostile::resets_mid_login_leak_no_slot", resets_mid_login),
    (
        "hostile::login_timeout_during_connect_frees_the_slot",
        login_timeout_connect,
    ),
];

/// An HBA file: database `app` trusts local TCP clients (so that a startup packet alone gets a
/// server), everything else (the console) needs a password.
fn trust_app_hba(dir: &std::path::Path) -> Result<String, Failed> {
    let hba = dir.join("hba.conf");
    std::fs::write(
        &hba,
        "host app all 127.0.0.1/32 trust\nhost all all 127.0.0.1/32 scram-sha-256\n",
    )?;
    Ok(format!(
        "auth_hba_file = \"{}\"\nadmin_users = [\"app\"]\nlog_connections = false\nlog_disconnections = false",
        hba.display()
    ))
}

/// `SHOW POOLS` values for database `db` and user `app`: (sv_active, sv_idle, sv_login).
fn pool_row(port: u16, db: &str) -> Option<(usize, usize, usize)> {
    let (ok, out, _) = psql_at(port, "pgbouncer", "app", &["-c", "SHOW POOLS"]);
    if !ok {
        return None;
    }
    let get = |col: &str| cell(&out, db, col).and_then(|v| v.parse().ok());
    Some((get("sv_active")?, get("sv_idle")?, get("sv_login")?))
}

/// Waits until `SHOW POOLS` for `db` satisfies `ok`; the last row seen.
fn wait_pool(
    port: u16,
    db: &str,
    within: Duration,
    ok: impl Fn((usize, usize, usize)) -> bool,
) -> Option<(usize, usize, usize)> {
    let deadline = Instant::now() + within;
    loop {
        let row = pool_row(port, db);
        if row.is_some_and(&ok) || Instant::now() > deadline {
            return row;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn startup() -> Vec<u8> {
    pgsluice::proto::startup::startup_message(&[("user", "app"), ("database", "app")]).to_vec()
}

/// Connects, sends a startup packet, waits `after`, then resets the connection (SO_LINGER 0).
async fn reset_after_startup(port: u16, after: Duration) -> std::io::Result<()> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).await?;
    socket2::SockRef::from(&s).set_linger(Some(Duration::ZERO))?;
    s.write_all(&startup()).await?;
    tokio::time::sleep(after).await;
    drop(s);
    Ok(())
}

/// A trusted client's `select 1` through the pooler, timed.
async fn select_one(port: u16) -> Result<Duration, Failed> {
    let started = Instant::now();
    let url = format!("host=127.0.0.1 port={port} user=app dbname=app");
    let (c, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await?;
    tokio::spawn(conn);
    let v = crate::util::scalar(&c, "select 1").await?;
    assert_eq!(v, "1");
    Ok(started.elapsed())
}

/// 1,000 clients send a startup packet and reset the connection, some at once, some while
/// their login waits for one of the pool's two servers: afterwards no server is active and
/// the next query answers at once.
fn resets_mid_login(fx: &Fixture) -> Result<(), Failed> {
    let dir = tempfile::tempdir()?;
    let keys = format!(
        "{}\ndefault_pool_size = 2\nquery_wait_timeout = \"60s\"",
        trust_app_hba(dir.path())?
    );
    let p = ExtraPooler::start(fx, &keys, "");
    let port = p.port;
    rt().block_on(async {
        select_one(port).await?;
        let mut tasks = Vec::new();
        for i in 0..1000u64 {
            // 0 to 9 ms: some resets land before the pooler read the packet, most while
            // the login waits for a server or is being greeted.
            let after = Duration::from_millis(i % 10);
            tasks.push(tokio::spawn(reset_after_startup(port, after)));
        }
        for t in tasks {
            t.await??;
        }
        Ok::<_, Failed>(())
    })?;
    let row = wait_pool(
        port,
        "app",
        Duration::from_secs(30),
        |(active, _, login)| active == 0 && login == 0,
    );
    assert!(
        matches!(row, Some((0, idle, 0)) if idle <= 2),
        "SHOW POOLS (sv_active, sv_idle, sv_login) after the resets: {row:?}"
    );
    let took = rt().block_on(select_one(port))?;
    assert!(took < Duration::from_secs(2), "next query took {took:?}");
    Ok(())
}

/// Logins whose server connect hangs are ended by `client_login_timeout`; the slots their
/// connects took are given back (SHOW POOLS: nothing active, nothing logging in).
fn login_timeout_connect(fx: &Fixture) -> Result<(), Failed> {
    let dir = tempfile::tempdir()?;
    // A server that accepts connections and never answers.
    let hole = std::net::TcpListener::bind("127.0.0.1:0")?;
    let hole_port = hole.local_addr()?.port();
    let held = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let keep = held.clone();
    std::thread::spawn(move || {
        for s in hole.incoming().flatten() {
            if let Ok(mut v) = keep.lock() {
                v.push(s);
            }
        }
    });
    let hba = trust_app_hba(dir.path())?;
    let keys = format!("{hba}\ndefault_pool_size = 2\nclient_login_timeout = \"300ms\"");
    let db =
        format!("[databases.hole]\nhost = \"127.0.0.1\"\nport = {hole_port}\ndbname = \"app\"\n");
    let hba_path = dir.path().join("hba.conf");
    std::fs::write(
        &hba_path,
        "host app all 127.0.0.1/32 trust\nhost hole all 127.0.0.1/32 trust\n\
         host all all 127.0.0.1/32 scram-sha-256\n",
    )?;
    let p = ExtraPooler::start(fx, &keys, &db);
    rt().block_on(async {
        for _ in 0..6 {
            let mut s = TcpStream::connect(("127.0.0.1", p.port)).await?;
            let hello =
                pgsluice::proto::startup::startup_message(&[("user", "app"), ("database", "hole")]);
            s.write_all(&hello).await?;
            let mut got = Vec::new();
            let read = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut got)).await;
            assert!(read.is_ok(), "the login was not ended");
            let text = String::from_utf8_lossy(&got);
            assert!(text.contains("client_login_timeout"), "{text:?}");
        }
        Ok::<_, Failed>(())
    })?;
    let row = wait_pool(p.port, "hole", Duration::from_secs(5), |r| r == (0, 0, 0));
    assert_eq!(row, Some((0, 0, 0)), "SHOW POOLS for the hole");
    // The pool was not dead: its slots were free for each new login (6 logins, 2 slots),
    // which the hole saw as 6 connects.
    let seen = held.lock().map(|v| v.len()).unwrap_or(0);
    assert_eq!(seen, 6, "connects reaching the hole");
    // And a working database next to it is unaffected.
    rt().block_on(select_one(p.port))?;
    Ok(())
}
