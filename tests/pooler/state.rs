//! Session state and failures: parameter tracking in transaction mode, startup options,
//! cancel, LISTEN/NOTIFY in session mode, clients and servers dying mid-transaction.

use crate::util::{rt, Fixture};
use libtest_mimic::Failed;
use std::time::Duration;

pub const TESTS: &[(&str, crate::Body)] = &[
    (
        "state::timezone_is_tracked_per_client",
        timezone_is_tracked_per_client,
    ),
    (
        "state::startup_options_apply_in_transaction_mode",
        startup_options_apply,
    ),
    (
        "state::cancel_reaches_the_running_query",
        cancel_reaches_the_running_query,
    ),
    (
        "state::discard_all_restores_startup_settings",
        discard_all_restores_startup_settings,
    ),
    (
        "state::listen_notify_in_session_mode",
        listen_notify_in_session_mode,
    ),
    (
        "state::client_killed_mid_transaction_leaves_no_lock",
        client_killed_mid_transaction,
    ),
    (
        "state::server_terminated_mid_query",
        server_terminated_mid_query,
    ),
];

async fn show(c: &tokio_postgres::Client, name: &str) -> Result<String, tokio_postgres::Error> {
    let rows = c.simple_query(&format!("show {name}")).await?;
    for m in rows {
        if let tokio_postgres::SimpleQueryMessage::Row(r) = m {
            return Ok(r.get(0).unwrap_or_default().to_string());
        }
    }
    Ok(String::new())
}

fn timezone_is_tracked_per_client(fx: &Fixture) -> Result<(), Failed> {
    rt().block_on(async {
        // "tiny" has one server connection: both clients must share it.
        let a = fx.connect("tiny").await;
        let b = fx.connect("tiny").await;
        let before = show(&b, "TimeZone").await?;
        a.batch_execute("set TimeZone = 'Pacific/Auckland'").await?;
        for _ in 0..3 {
            assert_eq!(show(&b, "TimeZone").await?, before);
            assert_eq!(show(&a, "TimeZone").await?, "Pacific/Auckland");
        }
        Ok(())
    })
}

fn startup_options_apply(fx: &Fixture) -> Result<(), Failed> {
    rt().block_on(async {
        let url = format!("{} options='-c statement_timeout=4321 -c search_path=pg_catalog,public' application_name=optapp", fx.url("tiny", "app"));
        let (c, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await?;
        tokio::spawn(conn);
        let plain = fx.connect("tiny").await;
        for _ in 0..3 {
            assert_eq!(show(&c, "statement_timeout").await?, "4321ms");
            assert_eq!(show(&c, "search_path").await?, "pg_catalog,public");
            assert_eq!(show(&c, "application_name").await?, "optapp");
            assert_eq!(show(&plain, "statement_timeout").await?, "0");
            assert_eq!(show(&plain, "search_path").await?, "\"$user\", public");
        }
        Ok(())
    })
}

fn cancel_reaches_the_running_query(fx: &Fixture) -> Result<(), Failed> {
    rt().block_on(async {
        let c = fx.connect("app").await;
        crate::util::cancel_while_running(fx, &c, 20).await?;
        let after = crate::util::scalar(&c, "select 1")
            .await
            .map_err(|e| format!("after cancel: {e:?}"))?;
        assert_eq!(after, "1");
        Ok(())
    })
}

fn listen_notify_in_session_mode(fx: &Fixture) -> Result<(), Failed> {
    rt().block_on(async {
        let (listener, mut conn) =
            tokio_postgres::connect(&fx.url("app_session", "app"), tokio_postgres::NoTls).await?;
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut stream = futures_util::stream::poll_fn(move |cx| conn.poll_message(cx));
            use futures_util::StreamExt;
            while let Some(Ok(m)) = stream.next().await {
                if let tokio_postgres::AsyncMessage::Notification(n) = m {
                    let _ = tx.send(n.payload().to_string());
                }
            }
        });
        listener.batch_execute("listen chan").await?;
        let talker = fx.connect("app").await;
        talker.batch_execute("notify chan, 'hello'").await?;
        let got = tokio::time::timeout(Duration::from_secs(5), rx.recv()).await?;
        assert_eq!(got.as_deref(), Some("hello"));
        Ok(())
    })
}

fn client_killed_mid_transaction(fx: &Fixture) -> Result<(), Failed> {
    rt().block_on(async {
        let setup = fx.connect("app").await;
        setup
            .batch_execute("create table if not exists locked_t(x int)")
            .await?;
        {
            let (c, conn) =
                tokio_postgres::connect(&fx.url("app", "app"), tokio_postgres::NoTls).await?;
            let task = tokio::spawn(conn);
            c.batch_execute("begin; lock table locked_t in access exclusive mode")
                .await?;
            task.abort();
            drop(c);
        }
        let other = fx.connect("app").await;
        let ok = tokio::time::timeout(
            Duration::from_secs(5),
            other.batch_execute("begin; lock table locked_t; commit"),
        )
        .await;
        assert!(matches!(ok, Ok(Ok(()))), "lock still held: {ok:?}");
        Ok(())
    })
}

fn server_terminated_mid_query(fx: &Fixture) -> Result<(), Failed> {
    rt().block_on(async {
        let c = fx.connect("app").await;
        c.batch_execute("set application_name = 'victim'").await?;
        let killer = {
            let primary = fx.cluster.primary().conninfo("postgres");
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(400));
                let bin = pgsluice::cluster::PgBin::find(None).expect("bins");
                std::process::Command::new(bin.path("psql"))
                    .args(["-XAtq", "-d", &primary, "-c", "select pg_terminate_backend(pid) from pg_stat_activity where query like 'select pg_sleep(30)%'"])
                    .output()
            })
        };
        let err = c.batch_execute("select pg_sleep(30)").await.expect_err("terminated");
        assert!(err.as_db_error().is_some() || !err.is_closed(), "{err:?}");
        let _ = killer.join();
        // The next transaction works on the same client connection.
        let r = crate::util::scalar(&c, "select 11").await?;
        assert_eq!(r, "11");
        Ok(())
    })
}

fn discard_all_restores_startup_settings(fx: &Fixture) -> Result<(), Failed> {
    rt().block_on(async {
        let url = format!(
            "{} options='-c statement_timeout=2345'",
            fx.url("tiny", "app")
        );
        let (c, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await?;
        tokio::spawn(conn);
        let plain = fx.connect("tiny").await;
        c.batch_execute("set statement_timeout = 999").await?;
        c.batch_execute("discard all").await?;
        // As with PostgreSQL, DISCARD ALL restores the startup-packet value...
        assert_eq!(show(&c, "statement_timeout").await?, "2345ms");
        // ...and another client on the same server connection still sees the default.
        assert_eq!(show(&plain, "statement_timeout").await?, "0");
        assert_eq!(show(&c, "statement_timeout").await?, "2345ms");
        Ok(())
    })
}
