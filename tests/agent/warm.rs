//! Warm failover against a real primary and standby (shared_buffers 32MB, a few MB of data):
//! the captured hot set is the blocks actually hot on the primary; warming skips a dropped and
//! a rewritten table and keeps to its rate; the agent warms a cold standby above 90%; a
//! switchover waits for warmth; a promotion ends with a catch-up pass.

use super::util::*;
use super::{block_on, SERIAL};
use pgsluice::agent::hotset::{self, HotSet};
use pgsluice::agent::ops::{OpRequest, Outcome};
use pgsluice::agent::prewarm::{self, DbConns};
use pgsluice::agent::sql::Target;
use pgsluice::cluster::{ClusterSpec, LocalCluster, LocalNode};
use pgsluice::config::PrewarmMode;
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(30);

fn target(c: &LocalCluster, n: &LocalNode) -> Target {
    let l = c.layout();
    Target {
        name: n.name().to_string(),
        host: "127.0.0.1".into(),
        port: n.port(),
        user: l.superuser.clone(),
        password: Some(l.superuser_password.clone()),
        dbname: "postgres".into(),
        application_name: pgsluice::agent::sql::APPLICATION_NAME,
    }
}

fn app(n: &LocalNode, q: &str) -> String {
    n.psql("app", q)
        .unwrap_or_else(|e| panic!("{}: {e}\n{}", n.name(), n.log_tail(20)))
}

/// (relfilenode, blocks) of `table` in `app`.
fn file_of(n: &LocalNode, table: &str) -> (u32, u32) {
    let v = app(
        n,
        &format!(
            "select pg_relation_filenode('{table}') || ' ' || pg_relation_size('{table}') / 8192"
        ),
    );
    let mut it = v.split(' ').map(|x| x.parse::<u32>().unwrap());
    (it.next().unwrap(), it.next().unwrap())
}

/// Distinct blocks of relfilenode `rfn` resident in `n`'s shared_buffers.
fn resident_blocks(n: &LocalNode, rfn: u32) -> u32 {
    app(
        n,
        &format!(
            "select count(distinct relblocknumber) from pg_buffercache \
             where relfilenode = {rfn} and relforknumber = 0"
        ),
    )
    .parse()
    .unwrap()
}

fn capture(c: &LocalCluster, n: &LocalNode, k: u8, budget: u64) -> HotSet {
    let t = target(c, n);
    block_on(async {
        let client = t.connect(Duration::from_secs(5)).await.unwrap();
        hotset::capture(&client, &t, k, budget, Duration::from_secs(10))
            .await
            .unwrap()
    })
}

/// Empties `s`'s shared_buffers: a checkpoint on the primary `p` and a restartpoint on `s`
/// first, so that the restart replays nothing (no full-page images) into them.
fn cold_standby(c: &LocalCluster, p: &LocalNode, s: &LocalNode) {
    app(p, "checkpoint");
    c.wait_replicated(WAIT).unwrap();
    restart(s);
    s.wait_streaming(WAIT).unwrap();
}

/// Restarts `n` with empty shared_buffers (a standby first makes a restartpoint, so that
/// nothing is replayed into them at start).
fn restart(n: &LocalNode) {
    app(n, "checkpoint");
    n.stop().unwrap();
    n.start().unwrap();
}

fn read_hot(n: &LocalNode, tables: &[&str], times: usize) {
    for _ in 0..times {
        for t in tables {
            app(n, &format!("select sum(length(pad)) from {t}"));
        }
    }
}

#[test]
fn warm_failover() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let c = LocalCluster::start(
        ClusterSpec::new(1)
            .database("app", None)
            .conf("shared_buffers = 32MB"),
    )
    .unwrap_or_else(|e| panic!("cluster: {e}"));
    let (p, s) = (c.primary().clone(), c.standbys()[0].clone());
    for (t, rows) in [
        ("hot", 30000),
        ("cold", 40000),
        ("doomed", 3000),
        ("rewritten", 3000),
    ] {
        app(
            &p,
            &format!(
                "create table {t}(id int primary key, pad text); \
                 insert into {t} select g, repeat('x', 100) from generate_series(1, {rows}) g"
            ),
        );
    }
    app(&p, "checkpoint");
    // A fresh primary: hot tables read four times, the cold one once.
    restart(&p);
    read_hot(&p, &["hot", "doomed", "rewritten"], 4);
    read_hot(&p, &["cold"], 1);
    c.wait_replicated(WAIT).unwrap();

    // 1. The hot set is the hot tables' blocks, every one of them, and nothing of the cold one.
    let db: u32 = app(&p, "select oid from pg_database where datname = 'app'")
        .parse()
        .unwrap();
    let hot = capture(&c, &p, 2, 4096);
    let count = |rfn: u32| {
        hot.blocks
            .iter()
            .filter(|b| b.rfn == rfn && b.db == db)
            .count() as u32
    };
    let (hot_rfn, hot_len) = file_of(&p, "hot");
    let (cold_rfn, cold_len) = file_of(&p, "cold");
    assert!(hot_len > 400 && cold_len > 500, "{hot_len} {cold_len}");
    assert_eq!(count(hot_rfn), hot_len, "every block of hot");
    assert_eq!(count(cold_rfn), 0, "nothing of cold (read once)");
    assert_eq!(hot.databases.get(&db).map(String::as_str), Some("app"));
    println!(
        "hot set: {} blocks, captured in {:?}",
        hot.blocks.len(),
        hot.took
    );
    let small = capture(&c, &p, 2, 100);
    assert_eq!(small.blocks.len(), 100, "the budget caps the set");

    // 2. A cold standby; the hot set then loses a dropped and a rewritten table.
    cold_standby(&c, &p, &s);
    let st = target(&c, &s);
    let conns = DbConns::default();
    let resident = block_on(async {
        let client = st.connect(Duration::from_secs(5)).await.unwrap();
        hotset::resident(&client, &st, &hot, Duration::from_secs(10))
            .await
            .unwrap()
    });
    let before = hotset::warmth(&hot.blocks, &resident);
    assert!(before < 0.2, "restarted standby already holds {before}");
    let (doomed, _) = file_of(&p, "doomed");
    let (rewritten, _) = file_of(&p, "rewritten");
    let gone = hot
        .blocks
        .iter()
        .filter(|b| b.rfn == doomed || b.rfn == rewritten)
        .count() as u64;
    assert!(gone > 50, "{gone}");
    app(&p, "drop table doomed; vacuum full rewritten");
    c.wait_replicated(WAIT).unwrap();

    // 3. Warming the whole set at 4 MB/s skips what is gone, loads the rest, keeps to the rate.
    let rate = 4u64 << 20;
    let started = Instant::now();
    let rep = block_on(prewarm::warm(
        &conns,
        &st,
        &hot,
        &hot.blocks,
        PrewarmMode::Buffer,
        Some(rate),
    ))
    .unwrap();
    let took = started.elapsed();
    println!(
        "warmed {} blocks ({} stale) in {took:?}: {rep:?}",
        rep.loaded, rep.stale
    );
    assert_eq!(rep.failed, 0, "{rep:?}");
    // The two tables, plus the few blocks of other files the DDL replaced (catalog indexes).
    assert!(
        rep.stale >= gone && rep.stale <= gone + 16,
        "{gone} {rep:?}"
    );
    assert_eq!(rep.loaded + rep.stale, hot.blocks.len() as u64, "{rep:?}");
    let ideal = Duration::from_secs_f64((rep.loaded * 8192) as f64 / rate as f64);
    assert!(
        ideal > Duration::from_millis(800),
        "too little to time: {ideal:?}"
    );
    assert!(
        took >= ideal.mul_f64(0.9),
        "{took:?} faster than the rate ({ideal:?})"
    );
    assert!(
        took <= ideal * 2 + Duration::from_secs(2),
        "{took:?} vs {ideal:?}"
    );
    assert_eq!(
        resident_blocks(&s, hot_rfn),
        hot_len,
        "all of hot on the standby"
    );

    // 4. The agent warms a cold standby above 90% and shows it in /status.
    cold_standby(&c, &p, &s);
    assert!(
        resident_blocks(&s, hot_rfn) * 5 < hot_len,
        "standby not cold"
    );
    let dir = tempfile::tempdir().unwrap();
    let mut spec = AgentSpec::tuned(&c, &[100, 100]);
    spec.agent_lines.extend([
        "hot_set_interval = \"1s\"".to_string(),
        "prewarm_rate = 32".to_string(),
        "switchover_warmth = 0.95".to_string(),
    ]);
    let a = Agent::start(&c, &spec, &dir.path().join("state"));
    a.wait_event("topology_adopted", 0, WAIT).expect("adopted");
    let warm = |node: &str| {
        block_on(pgsluice::agent::client::status(
            a.listen,
            Some(secret_file()),
            Duration::from_secs(2),
        ))
        .ok()
        .and_then(|st| st.warmth.get(node).copied())
    };
    let w = poll(WAIT, || warm("node2").filter(|w| *w >= 0.9));
    assert!(w.is_some(), "node2 warmth stays {:?}", warm("node2"));
    assert!(resident_blocks(&s, hot_rfn) * 10 >= hot_len * 9);

    // 5. A switchover waits for warmth and ends with a catch-up pass on the new primary.
    let ms = unix_ms();
    let req = OpRequest::Switchover {
        to: "node2".into(),
        dry_run: false,
    };
    let rep = block_on(pgsluice::agent::client::op(
        a.listen,
        Some(secret_file()),
        &req,
        WAIT * 2,
    ))
    .unwrap();
    assert_eq!(rep.outcome, Outcome::Done, "{rep:?}");
    assert!(
        rep.lines
            .iter()
            .any(|l| l.contains("of node1's hot set (wanted 95%")),
        "{rep:?}"
    );
    let ev = a.wait_event("warm_catch_up", ms, WAIT).expect("catch-up");
    assert_eq!(ev.node.as_deref(), Some("node2"));

    // 6. The restarted old primary gets warm; kill -9 the new primary: catch-up on node1.
    read_hot(&s, &["hot"], 3);
    let w = poll(WAIT, || warm("node1").filter(|w| *w >= 0.9));
    assert!(w.is_some(), "node1 warmth stays {:?}", warm("node1"));
    let ms = unix_ms();
    s.kill9().unwrap();
    a.wait_event("failover_completed", ms, WAIT)
        .expect("failover");
    let ev = a.wait_event("warm_catch_up", ms, WAIT).expect("catch-up");
    assert_eq!(ev.node.as_deref(), Some("node1"));
    assert!(ev.details.contains("loaded"), "{ev:?}");
    println!("catch-up: {}", ev.details);
    let decided = a.wait_event("failover_decided", ms, WAIT).expect("decided");
    assert!(decided.details.contains("warmth"), "{decided:?}");
    a.stop();
}
