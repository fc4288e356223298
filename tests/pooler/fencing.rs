//! Fencing through the backend layer's one way in: a pushed topology that fences the primary
//! and names no new one stops every new transaction from reaching it before the push returns,
//! ends the transaction still open there, and the next topology moves writes to the new primary.

use crate::routing::Routed;
use crate::util::rt;
use libtest_mimic::Failed;
use std::io::{Read, Write};
use std::time::{Duration, Instant};

pub const TESTS: &[(&str, crate::Body)] = &[
    (
        "fencing::fenced_primary_gets_no_new_transaction",
        fenced_primary_gets_no_new_transaction,
    ),
    (
        "fencing::promoted_standby_serves_writes_on_its_spares",
        promoted_standby_serves_writes_on_its_spares,
    ),
];

/// POSTs `body` to the pooler's HTTP endpoint; returns (status code, body).
pub fn post(port: u16, path: &str, body: &str) -> (u16, String) {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect http");
    let auth = format!(
        "Authorization: Bearer {}\r\n",
        crate::routing::CONTROL_SECRET
    );
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\n{auth}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .expect("write");
    let mut out = String::new();
    s.read_to_string(&mut out).expect("read");
    let code = out
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = out.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
    (code, body)
}

/// Server connections of user `app` to database `app` on a node, seen by that node.
fn app_backends(node: &pgsluice::cluster::LocalNode) -> Result<usize, Failed> {
    let n = node.psql(
        "postgres",
        "select count(*) from pg_stat_activity where usename = 'app' and datname = 'app'",
    )?;
    Ok(n.trim().parse()?)
}

fn fenced_primary_gets_no_new_transaction(_: &crate::util::Fixture) -> Result<(), Failed> {
    let _serial = crate::routing::serial();
    let http = pgsluice::cluster::ports::free_port()?;
    let fx = Routed::start_with(1, Duration::from_millis(100), &format!("127.0.0.1:{http}"));
    let (old, new) = (fx.cluster.primary(), &fx.cluster.standbys()[0]);
    let where_ = "select inet_server_port()::text";
    rt().block_on(async {
        // Four clients leave idle pooled connections on the primary; one keeps a
        // transaction open there.
        let mut idle = Vec::new();
        for _ in 0..4 {
            idle.push(fx.connect("app").await);
        }
        let both = futures_util::future::join_all(
            idle.iter()
                .map(|c| async move { c.simple_query("select pg_sleep(0.2)").await }),
        )
        .await;
        assert!(both.iter().all(|r| r.is_ok()), "warm-up queries");
        let open = fx.connect("app").await;
        open.batch_execute("begin; insert into t values (1)")
            .await?;
        assert!(
            app_backends(old)? >= 2,
            "pooled connections exist on the primary"
        );

        let fence = r#"{"epoch": 5, "primary": null, "standbys": [], "fenced": ["node1"]}"#;
        let (code, body) = post(http, "/control/topology", fence);
        assert_eq!(code, 200, "fence push accepted: {body}");

        // Right after the push: the idle pooled connections to node1 are closed, and the
        // open transaction's client was closed with an error naming the fence.
        let err = open
            .simple_query("insert into t values (2)")
            .await
            .expect_err("the transaction open on the fenced node cannot go on");
        let text = format!("{err:?}");
        assert!(
            text.contains("fenced") || open.is_closed(),
            "the open transaction ends with the fence error: {text}"
        );
        let deadline = Instant::now() + Duration::from_secs(3);
        loop {
            let n = app_backends(old)?;
            if n == 0 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{n} pooled connection(s) still on the fenced node\n{}",
                fx.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let committed = old.psql("app", "select count(*) from t where x in (1, 2)")?;
        assert_eq!(
            committed.trim(),
            "0",
            "nothing of the open transaction committed"
        );

        // A new transaction does not reach node1: it waits for a primary.
        let client = idle.pop().expect("client");
        let waiting = tokio::spawn(async move {
            let r = client
                .query_one(where_, &[])
                .await
                .map(|row| row.get::<_, String>(0));
            (r, client)
        });
        tokio::time::sleep(Duration::from_millis(700)).await;
        assert!(!waiting.is_finished(), "a transaction ran with no primary");
        assert_eq!(app_backends(old)?, 0, "nothing reached the fenced node");

        // The agent's next topology names the promoted standby: writes go there.
        assert_eq!(new.psql("postgres", "select pg_promote(true, 60)")?, "t");
        let promote = r#"{"epoch": 6, "primary": "node2", "standbys": [], "fenced": ["node1"]}"#;
        let (code, body) = post(http, "/control/topology", promote);
        assert_eq!(code, 200, "promotion push accepted: {body}");
        let (r, _client) = waiting.await?;
        assert_eq!(
            r.map_err(|e| format!("the waiting transaction failed: {e:?}\n{}", fx.log()))?,
            new.port().to_string(),
            "the waiting transaction ran on the new primary"
        );
        for c in &idle {
            let port: String = c.query_one(where_, &[]).await?.get(0);
            assert_eq!(
                port,
                new.port().to_string(),
                "writes follow the new topology"
            );
        }
        // An older epoch is refused and changes nothing.
        let stale = r#"{"epoch": 4, "primary": "node1", "standbys": [], "fenced": []}"#;
        assert_eq!(
            post(http, "/control/topology", stale).0,
            409,
            "stale epoch refused"
        );
        let port: String = idle[0].query_one(where_, &[]).await?.get(0);
        assert_eq!(port, new.port().to_string());
        assert_eq!(app_backends(old)?, 0, "the fenced node stays unused");
        Ok(())
    })
}

/// Backend pids of user `app` in database `app` on a node.
fn app_pids(node: &pgsluice::cluster::LocalNode) -> Result<Vec<String>, Failed> {
    let out = node.psql(
        "postgres",
        "select pid from pg_stat_activity where usename = 'app' and datname = 'app' order by pid",
    )?;
    Ok(out
        .lines()
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty())
        .collect())
}

/// `pooler.standby_spares`: the pooler keeps connections open on the standby; when the
/// topology names it primary, the first writes run on those very connections (no new server
/// connection), each one at its client's settings, not at what a read left on it.
fn promoted_standby_serves_writes_on_its_spares(_: &crate::util::Fixture) -> Result<(), Failed> {
    let _serial = crate::routing::serial();
    let http = pgsluice::cluster::ports::free_port()?;
    let fx = Routed::start_with(1, Duration::from_millis(100), &format!("127.0.0.1:{http}"));
    let (old, new) = (fx.cluster.primary(), &fx.cluster.standbys()[0]);
    let probe = "select pg_backend_pid()::text, current_setting('work_mem'), \
                 pg_is_in_recovery()::text";
    rt().block_on(async {
        // A client of the read-only database changes a setting and reads on the standby:
        // that standby connection goes back to the read pool tagged with work_mem = 7MB.
        let dirty = fx.connect("ro").await;
        dirty.batch_execute("set work_mem = '7MB'").await?;
        // (Until discovery has seen the standby, reads go to the primary.)
        let deadline = Instant::now() + Duration::from_secs(5);
        let read = loop {
            dirty.batch_execute("begin read only").await?;
            let rows = dirty.simple_query(probe).await?;
            dirty.batch_execute("commit").await?;
            let read = rows_of(&rows);
            assert_eq!(read.len(), 1, "{rows:?}");
            assert_eq!(read[0][1], "7MB");
            if read[0][2] == "true" {
                break read;
            }
            assert!(Instant::now() < deadline, "reads never reached the standby");
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        dirty.batch_execute("insert into t values (1)").await?;

        // The janitor opens the spares (2 by default) on the standby.
        let deadline = Instant::now() + Duration::from_secs(5);
        let spares = loop {
            let pids = app_pids(new)?;
            if pids.len() >= 2 {
                break pids;
            }
            assert!(
                Instant::now() < deadline,
                "no spares on the standby: {pids:?}\n{}",
                fx.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        assert!(spares.contains(&read[0][0]), "the read used a spare");

        let fence = r#"{"epoch": 5, "primary": null, "standbys": [], "fenced": ["node1"]}"#;
        assert_eq!(post(http, "/control/topology", fence).0, 200);
        assert_eq!(new.psql("postgres", "select pg_promote(true, 60)")?, "t");
        let promote = r#"{"epoch": 6, "primary": "node2", "standbys": [], "fenced": ["node1"]}"#;
        assert_eq!(post(http, "/control/topology", promote).0, 200);

        // As many fresh clients as there were spares each hold a write transaction open at
        // once: every one runs on a spare, none on a new connection, and none sees the
        // setting the read left.
        let mut clients = Vec::new();
        for _ in 0..spares.len() {
            clients.push(fx.connect("ro").await);
        }
        let mut served = Vec::new();
        for (i, c) in clients.iter().enumerate() {
            let rows = c
                .simple_query(&format!(
                    "begin; insert into t values ({}); {probe}",
                    10 + i
                ))
                .await?;
            served.extend(rows_of(&rows));
        }
        for c in &clients {
            c.batch_execute("commit").await?;
        }
        let mut pids: Vec<String> = served.iter().map(|r| r[0].clone()).collect();
        pids.sort();
        let mut expected = spares.clone();
        expected.sort();
        assert_eq!(
            pids,
            expected,
            "the first writes ran on the spares: {served:?}\n{}",
            fx.log()
        );
        for r in &served {
            assert_eq!(
                r[1], "4MB",
                "a fresh client sees the default work_mem: {served:?}"
            );
            assert_eq!(r[2], "false", "the new primary is out of recovery");
        }
        // The client that set work_mem keeps it on the new primary.
        let rows = dirty
            .simple_query(&format!("begin; {probe}; commit"))
            .await?;
        assert_eq!(rows_of(&rows)[0][1], "7MB");
        let n = new.psql("app", "select count(*) from t where x = 1 or x >= 10")?;
        assert_eq!(
            n.trim(),
            (1 + spares.len()).to_string(),
            "every write is on node2"
        );
        assert_eq!(app_backends(old)?, 0, "nothing reached the fenced node");
        Ok(())
    })
}

/// The text values of every row of a simple-query answer.
fn rows_of(msgs: &[tokio_postgres::SimpleQueryMessage]) -> Vec<Vec<String>> {
    msgs.iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => Some(
                (0..r.len())
                    .map(|i| r.get(i).unwrap_or("").to_string())
                    .collect(),
            ),
            _ => None,
        })
        .collect()
}
