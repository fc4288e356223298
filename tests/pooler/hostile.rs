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
    (
        "hostile::announced_gigabyte_messages_stay_bounded",
        announced_gigabytes,
    ),
    (
        "hostile::large_bind_to_a_named_statement_streams",
        large_bind_streams,
    ),
    ("hostile::prepared_statement_caps", prepared_statement_caps),
    (
        "hostile::partial_message_times_out",
        partial_message_times_out,
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

/// Logs in as a trusted `app` client over a raw socket; returns the socket after ReadyForQuery.
async fn raw_login(port: u16) -> Result<TcpStream, Failed> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).await?;
    s.write_all(&startup()).await?;
    let mut got = Vec::new();
    let mut b = [0u8; 4096];
    while !got.windows(6).any(|w| w == [b'Z', 0, 0, 0, 5, b'I']) {
        let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut b)).await??;
        assert!(n > 0, "closed during login: {got:?}");
        got.extend_from_slice(&b[..n]);
    }
    Ok(s)
}

/// Everything the pooler sends until it closes the connection (or `within` passes).
async fn read_until_closed(s: &mut TcpStream, within: Duration) -> Vec<u8> {
    let mut got = Vec::new();
    let _ = tokio::time::timeout(within, s.read_to_end(&mut got)).await;
    got
}

/// The pooler's resident set size in KiB (`VmRSS` of /proc/PID/status).
fn rss_kib(pid: u32) -> Result<u64, Failed> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .ok_or("no VmRSS")?;
    let kib = line.split_whitespace().nth(1).ok_or("bad VmRSS")?.parse()?;
    Ok(kib)
}

/// A message header announcing a body of 1 GiB, and the start of the body.
fn gigabyte_header(tag: u8) -> Vec<u8> {
    let mut m = vec![tag];
    m.extend_from_slice(&((1i32 << 30) - 64).to_be_bytes());
    // Parse: statement "s1"; Bind: portal "" and statement "" (then parameters).
    match tag {
        b'P' => m.extend_from_slice(b"s1\0select "),
        _ => m.extend_from_slice(b"\0\0\0\0\0\x01"),
    }
    m
}

/// Ten clients each announce a 1 GiB message (five a named Parse, which must be read whole,
/// five a Bind, which streams) and send 8 MB of it: the pooler's RSS grows by less than
/// 20 MB, each Parse is refused naming the setting, and another client is served meanwhile.
fn announced_gigabytes(fx: &Fixture) -> Result<(), Failed> {
    let dir = tempfile::tempdir()?;
    let keys = trust_app_hba(dir.path())?;
    let p = ExtraPooler::start(fx, &keys, "");
    let (port, pid) = (p.port, p.child.id());
    rt().block_on(async {
        select_one(port).await?;
        let before = rss_kib(pid)?;
        let mut tasks = Vec::new();
        for i in 0..10 {
            let tag = if i % 2 == 0 { b'P' } else { b'B' };
            tasks.push(tokio::spawn(async move {
                let mut s = raw_login(port).await?;
                s.write_all(&gigabyte_header(tag)).await?;
                let chunk = vec![b'x'; 64 * 1024];
                for _ in 0..128 {
                    if s.write_all(&chunk).await.is_err() {
                        break;
                    }
                }
                // A Parse is refused at once; a Bind streams on to the server, which waits
                // for the rest of it.
                let wait = if tag == b'P' { 10 } else { 1 };
                let got = read_until_closed(&mut s, Duration::from_secs(wait)).await;
                Ok::<_, Failed>((tag, got))
            }));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        let served = select_one(port).await?;
        assert!(served < Duration::from_secs(2), "served in {served:?}");
        let mut peak = before;
        for t in tasks {
            peak = peak.max(rss_kib(pid)?);
            let (tag, got) = t.await??;
            let text = String::from_utf8_lossy(&got);
            if tag == b'P' {
                assert_eq!(got.first(), Some(&b'E'), "{text:?}");
                assert!(text.contains("54000"), "{text:?}");
                assert!(text.contains("max_inspected_message"), "{text:?}");
            } else {
                assert!(got.is_empty(), "the streamed Bind was answered: {text:?}");
            }
        }
        peak = peak.max(rss_kib(pid)?);
        eprintln!("pooler VmRSS: {before} KiB before, {peak} KiB at most during 10 x 8 MB");
        assert!(peak < before + 20 * 1024, "RSS {before} -> {peak} KiB");
        select_one(port).await?;
        Ok(())
    })
}

/// A Bind larger than max_inspected_message to a named (pooler-renamed) statement streams
/// through and runs: a 3 MB parameter with the 1 MB default, and a 40 kB one under a 16 kB limit.
fn large_bind_streams(fx: &Fixture) -> Result<(), Failed> {
    let dir = tempfile::tempdir()?;
    let hba = trust_app_hba(dir.path())?;
    for (limit, size) in [("", 3 << 20), ("max_inspected_message = \"16kB\"", 40_000)] {
        let p = ExtraPooler::start(fx, &format!("{hba}\n{limit}"), "");
        rt().block_on(async {
            let url = format!("host=127.0.0.1 port={} user=app dbname=app", p.port);
            let (c, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await?;
            tokio::spawn(conn);
            let stmt = c.prepare("select length($1::bytea)::int8").await?;
            for round in 0..3 {
                let blob = vec![round as u8; size];
                let row = c.query_one(&stmt, &[&blob]).await?;
                assert_eq!(row.get::<_, i64>(0), size as i64, "limit {limit:?}");
            }
            Ok::<_, Failed>(())
        })?;
    }
    Ok(())
}

/// Beyond max_client_prepared_statements (per client) and max_tracked_prepared_statements
/// (distinct, over all clients) a Parse gets ERROR 54000 naming the setting; the session
/// goes on, and a statement another client already prepared is still shared.
fn prepared_statement_caps(fx: &Fixture) -> Result<(), Failed> {
    let dir = tempfile::tempdir()?;
    let keys = format!(
        "{}\nmax_client_prepared_statements = 4\nmax_tracked_prepared_statements = 5",
        trust_app_hba(dir.path())?
    );
    let p = ExtraPooler::start(fx, &keys, "");
    rt().block_on(async {
        let url = format!("host=127.0.0.1 port={} user=app dbname=app", p.port);
        let (a, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await?;
        tokio::spawn(conn);
        let (b, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await?;
        tokio::spawn(conn);
        let refused = |r: Result<tokio_postgres::Statement, tokio_postgres::Error>, key: &str| {
            let e = r.err().ok_or("the Parse was accepted")?;
            let db = e.as_db_error().ok_or("not a server error")?;
            assert_eq!(db.code().code(), "54000");
            assert!(db.message().contains(key), "{}", db.message());
            Ok::<_, Failed>(())
        };
        // Kept alive: tokio-postgres closes a statement when it is dropped.
        let mut held = Vec::new();
        for i in 1..=4 {
            let s = a.prepare(&format!("select {i}")).await?;
            assert_eq!(a.query_one(&s, &[]).await?.get::<_, i32>(0), i);
            held.push(s);
        }
        refused(
            a.prepare("select 5").await,
            "max_client_prepared_statements = 4",
        )?;
        assert_eq!(crate::util::scalar(&a, "select 42").await?, "42");
        let s = b.prepare("select 6").await?;
        assert_eq!(b.query_one(&s, &[]).await?.get::<_, i32>(0), 6);
        refused(
            b.prepare("select 7").await,
            "max_tracked_prepared_statements = 5",
        )?;
        let shared = b.prepare("select 2").await?;
        assert_eq!(b.query_one(&shared, &[]).await?.get::<_, i32>(0), 2);
        // A client's Close gives its place back.
        drop(held);
        assert_eq!(crate::util::scalar(&a, "select 1").await?, "1");
        let s = a.prepare("select 5").await?;
        assert_eq!(a.query_one(&s, &[]).await?.get::<_, i32>(0), 5);
        drop(s);
        Ok(())
    })
}

/// A client holding the only server sends part of a message (1 to 4 bytes, or a header and
/// part of the body) and stops: after client_message_timeout it gets FATAL, its server is
/// closed, and a waiting client is served.
fn partial_message_times_out(fx: &Fixture) -> Result<(), Failed> {
    let dir = tempfile::tempdir()?;
    let keys = format!(
        "{}\ndefault_pool_size = 1\nclient_message_timeout = \"400ms\"\nquery_wait_timeout = \"20s\"",
        trust_app_hba(dir.path())?
    );
    let p = ExtraPooler::start(fx, &keys, "");
    let port = p.port;
    let query = b"Q\0\0\0\x0dselect 1\0";
    let partials: Vec<&[u8]> = vec![&query[..1], &query[..3], &query[..5], &query[..9]];
    rt().block_on(async {
        for part in partials {
            let mut stalled = raw_login(port).await?;
            stalled.write_all(part).await?;
            tokio::time::sleep(Duration::from_millis(50)).await;
            let waited = select_one(port).await?;
            assert!(
                waited >= Duration::from_millis(250) && waited < Duration::from_secs(3),
                "{} bytes: the next client waited {waited:?}",
                part.len()
            );
            let got = read_until_closed(&mut stalled, Duration::from_secs(3)).await;
            let text = String::from_utf8_lossy(&got);
            assert!(text.contains("client_message_timeout"), "{text:?}");
        }
        Ok::<_, Failed>(())
    })?;
    let row = wait_pool(port, "app", Duration::from_secs(5), |(a, _, _)| a == 0);
    assert!(matches!(row, Some((0, _, 0))), "{row:?}");
    Ok(())
}
