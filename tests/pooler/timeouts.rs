//! Timeouts and the Unix-socket listener, each on a pooler of its own.

use crate::util::{rt, ExtraPooler, Fixture};
use libtest_mimic::Failed;
use std::time::{Duration, Instant};

pub const TESTS: &[(&str, crate::Body)] = &[
    ("timeouts::unix_socket_listener", unix_socket_listener),
    ("timeouts::query_timeout_cancels", query_timeout_cancels),
    (
        "timeouts::idle_transaction_timeout_closes",
        idle_transaction_timeout_closes,
    ),
    (
        "timeouts::client_idle_timeout_closes",
        client_idle_timeout_closes,
    ),
];

fn unix_socket_listener(fx: &Fixture) -> Result<(), Failed> {
    let p = ExtraPooler::start(fx, "unix_socket_dir = \"{dir}\"", "");
    let socket = p.dir().join(format!(".s.PGSQL.{}", p.port));
    assert!(socket.exists(), "{socket:?} missing");
    let bin = pgsluice::cluster::PgBin::find(None)?;
    let out = std::process::Command::new(bin.path("psql"))
        .env("PGPASSWORD", crate::util::PASSWORD)
        .args(["-XAtq", "-h"])
        .arg(p.dir())
        .args([
            "-p",
            &p.port.to_string(),
            "-U",
            "app",
            "-d",
            "app",
            "-c",
            "select 'via unix'",
        ])
        .output()?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "via unix");
    drop(p);
    assert!(!socket.exists(), "socket file left behind");
    Ok(())
}

async fn client(url: &str) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let (c, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
    tokio::spawn(conn);
    Ok(c)
}

fn query_timeout_cancels(fx: &Fixture) -> Result<(), Failed> {
    let p = ExtraPooler::start(fx, "query_timeout = \"400ms\"", "");
    rt().block_on(async {
        let c = client(&p.url()).await?;
        let started = Instant::now();
        let err = c
            .batch_execute("select pg_sleep(10)")
            .await
            .expect_err("cancelled");
        assert_eq!(
            err.code(),
            Some(&tokio_postgres::error::SqlState::QUERY_CANCELED),
            "{err:?}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{:?}",
            started.elapsed()
        );
        // A short query is untouched, and the client goes on.
        c.batch_execute("select pg_sleep(0.1)").await?;
        Ok(())
    })
}

fn idle_transaction_timeout_closes(fx: &Fixture) -> Result<(), Failed> {
    let p = ExtraPooler::start(fx, "idle_transaction_timeout = \"300ms\"", "");
    rt().block_on(async {
        let c = client(&p.url()).await?;
        c.batch_execute("begin; select 1").await?;
        tokio::time::sleep(Duration::from_millis(1200)).await;
        assert!(
            c.batch_execute("select 1").await.is_err(),
            "idle transaction survived"
        );
        // Outside a transaction, idling is fine.
        let d = client(&p.url()).await?;
        d.batch_execute("select 1").await?;
        tokio::time::sleep(Duration::from_millis(800)).await;
        d.batch_execute("select 1").await?;
        Ok(())
    })
}

fn client_idle_timeout_closes(fx: &Fixture) -> Result<(), Failed> {
    let p = ExtraPooler::start(fx, "client_idle_timeout = \"300ms\"", "");
    rt().block_on(async {
        let c = client(&p.url()).await?;
        c.batch_execute("select 1").await?;
        tokio::time::sleep(Duration::from_millis(1000)).await;
        assert!(
            c.batch_execute("select 1").await.is_err(),
            "idle client survived"
        );
        Ok(())
    })
}
