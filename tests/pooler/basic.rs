//! Everyday use through the pooler: psql and tokio-postgres in each pool mode.

use crate::util::{rt, Fixture};
use libtest_mimic::Failed;

pub const TESTS: &[(&str, crate::Body)] = &[
    ("basic::psql_in_every_mode", psql_in_every_mode),
    (
        "basic::tokio_postgres_simple_and_extended",
        tokio_postgres_simple_and_extended,
    ),
    ("basic::copy_in_and_out", copy_in_and_out),
    ("basic::large_rows_and_results", large_rows_and_results),
    (
        "basic::errors_and_rollback_in_transactions",
        errors_and_rollback_in_transactions,
    ),
    (
        "basic::statement_mode_refuses_transactions",
        statement_mode_refuses_transactions,
    ),
    ("basic::pgbench_in_every_mode", pgbench_in_every_mode),
    (
        "basic::server_over_a_unix_socket",
        server_over_a_unix_socket,
    ),
];

/// `host` naming a directory reaches the server over its Unix socket (the server sees no
/// client address), and a cancel request travels the same way.
fn server_over_a_unix_socket(fx: &Fixture) -> Result<(), Failed> {
    rt().block_on(async {
        let c = fx.connect("local").await;
        let over_unix = crate::util::scalar(&c, "select inet_client_addr() is null").await?;
        assert_eq!(
            over_unix, "t",
            "the pooler's server connection is not a Unix socket"
        );
        assert_eq!(
            crate::util::scalar(&c, "select current_database()").await?,
            "app"
        );
        crate::util::cancel_while_running(fx, &c, 19).await
    })
}

fn psql_in_every_mode(fx: &Fixture) -> Result<(), Failed> {
    for db in ["app", "app_session", "app_statement"] {
        let (ok, out, err) = fx.psql(db, "select 40 + 2");
        assert!(ok, "{db}: {err}");
        assert_eq!(out, "42", "{db}");
    }
    Ok(())
}

fn tokio_postgres_simple_and_extended(fx: &Fixture) -> Result<(), Failed> {
    rt().block_on(async {
        let c = fx.connect("app_session").await;
        let rows = c.simple_query("select 1; select 2").await?;
        assert_eq!(rows.len(), 6, "{rows:?}");
        let row = c.query_one("select $1::int + 1", &[&41i32]).await?;
        assert_eq!(row.get::<_, i32>(0), 42);
        for i in 0..50i32 {
            let r = c.query_one("select $1::int", &[&i]).await?;
            assert_eq!(r.get::<_, i32>(0), i);
        }
        Ok(())
    })
}

fn copy_in_and_out(fx: &Fixture) -> Result<(), Failed> {
    use futures_util::SinkExt;
    use futures_util::StreamExt;
    rt().block_on(async {
        let r: Result<(), tokio_postgres::Error> = async {
            let c = fx.connect("app").await;
            c.batch_execute("drop table if exists copy_t; create table copy_t(id int, v text)")
                .await?;
            let sink = c.copy_in("copy copy_t from stdin (format text)").await?;
            futures_util::pin_mut!(sink);
            let mut data = String::new();
            for i in 0..5000 {
                data.push_str(&format!("{i}\tvalue-{i}\n"));
            }
            sink.send(bytes::Bytes::from(data)).await?;
            let n = sink.finish().await?;
            assert_eq!(n, 5000);
            let stream = c.copy_out("copy copy_t to stdout").await?;
            futures_util::pin_mut!(stream);
            let mut total = 0;
            while let Some(chunk) = stream.next().await {
                total += chunk?.len();
            }
            assert!(total > 50_000, "{total}");
            let r = crate::util::scalar(&c, "select count(*) from copy_t").await?;
            assert_eq!(r, "5000");
            Ok(())
        }
        .await;
        r.map_err(|e| Failed::from(format!("{e:?}")))
    })
}

fn large_rows_and_results(fx: &Fixture) -> Result<(), Failed> {
    rt().block_on(async {
        let c = fx.connect("app_session").await;
        let r = c
            .query_one("select repeat('x', 8 * 1024 * 1024)", &[])
            .await?;
        assert_eq!(r.get::<_, String>(0).len(), 8 * 1024 * 1024);
        let rows = c
            .query(
                "select g, md5(g::text) from generate_series(1, 200000) g",
                &[],
            )
            .await?;
        assert_eq!(rows.len(), 200_000);
        let e = c.simple_query("").await?;
        assert!(
            e.iter()
                .all(|m| !matches!(m, tokio_postgres::SimpleQueryMessage::Row(_))),
            "{e:?}"
        );
        Ok(())
    })
}

fn errors_and_rollback_in_transactions(fx: &Fixture) -> Result<(), Failed> {
    rt().block_on(async {
        let c = fx.connect("app").await;
        c.batch_execute("begin").await?;
        assert!(c.batch_execute("select 1/0").await.is_err());
        let err = c
            .batch_execute("select 1")
            .await
            .expect_err("aborted transaction");
        assert_eq!(
            err.code(),
            Some(&tokio_postgres::error::SqlState::IN_FAILED_SQL_TRANSACTION)
        );
        c.batch_execute("rollback").await?;
        let r = crate::util::scalar(&c, "select 7").await?;
        assert_eq!(r, "7");
        Ok(())
    })
}

fn statement_mode_refuses_transactions(fx: &Fixture) -> Result<(), Failed> {
    let (ok, out, _) = fx.psql("app_statement", "select 5");
    assert!(ok && out == "5");
    let (ok, _, err) = fx.psql_many("app_statement", &["begin", "select 1", "commit"]);
    assert!(!ok, "multi-statement transaction accepted");
    assert!(
        err.contains("transaction blocks not allowed in statement pooling mode"),
        "{err}"
    );
    Ok(())
}

fn pgbench_in_every_mode(fx: &Fixture) -> Result<(), Failed> {
    let bin = pgsluice::cluster::PgBin::find(None)?;
    let url = |db: &str| fx.url(db, "app");
    let init = std::process::Command::new(bin.path("pgbench"))
        .args(["-i", "-q", "-s", "1", &url("app")])
        .output()?;
    assert!(
        init.status.success(),
        "{}",
        String::from_utf8_lossy(&init.stderr)
    );
    for (db, mode) in [
        ("app", "simple"),
        ("app", "extended"),
        ("app_session", "simple"),
        ("app_statement", "extended"),
    ] {
        let clients = if db == "app_session" { "4" } else { "12" };
        let out = std::process::Command::new(bin.path("pgbench"))
            .args(["-n", "-S", "-M", mode, "-c", clients, "-t", "200", &url(db)])
            .output()?;
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{db} {mode}: {text} {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(text.contains("number of failed transactions: 0"), "{text}");
    }
    let tpcb = std::process::Command::new(bin.path("pgbench"))
        .args(["-n", "-c", "8", "-t", "100", &url("app")])
        .output()?;
    assert!(
        tpcb.status.success(),
        "{}",
        String::from_utf8_lossy(&tpcb.stderr)
    );
    Ok(())
}
