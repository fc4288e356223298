//! Fencing through the backend layer's one way in: a pushed topology that fences the primary
//! and names no new one stops every new transaction from reaching it before the push returns,
//! ends the transaction still open there, and the next topology moves writes to the new primary.

use crate::routing::Routed;
use crate::util::rt;
use libtest_mimic::Failed;
use std::io::{Read, Write};
use std::time::{Duration, Instant};

pub const TESTS: &[(&str, crate::Body)] = &[(
    "fencing::fenced_primary_gets_no_new_transaction",
    fenced_primary_gets_no_new_transaction,
)];

/// POSTs `body` to the pooler's HTTP endpoint; returns (status code, body).
pub fn post(port: u16, path: &str, body: &str) -> (u16, String) {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect http");
    let secret = std::env::var("PGSLUICE_TEST_CONTROL_SECRET").unwrap_or_default();
    let auth = if secret.is_empty() {
        String::new()
    } else {
        format!("Authorization: Bearer {secret}\r\n")
    };
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
