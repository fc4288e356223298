//! Soak: consecutive kill -9 failovers under a write load through the pooler, the old primary
//! rejoined (pg_rewind) before the next one, synchronous mode (ANY 1), tuned settings.
//!
//! Checked: every acknowledged id is on the final primary (0 acknowledged writes lost); at no
//! sample (every 20 ms, each node asked over its own connection) were two nodes writable (out
//! of recovery, not read-only); each acknowledgement names its node and the timeline it wrote
//! on, and the writes went to one new timeline per failover, one node per timeline, never to
//! an older timeline once a newer one took writes (two primaries behind the pooler would break
//! one of these). Per-run timings are printed.
//!
//! ```text
//! cargo test --test soak -- --nocapture                                  # 3 failovers (CI)
//! SOAK_FAILOVERS=20 cargo test --release --test soak -- --nocapture      # the full soak
//! ```

#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

#[path = "shared/acked.rs"]
mod acked;
#[path = "agent/util.rs"]
mod util;

use acked::{check, ids_on, Load, LoadSpec, Rec};
use pgsluice::agent::ops::{OpRequest, Outcome};
use pgsluice::cluster::{ClusterSpec, LocalCluster};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use util::{config_text, secret_file, Agent, AgentSpec, Pooler};

const WAIT: Duration = Duration::from_secs(60);

#[test]
fn soak_kill9_failovers_with_rejoin() {
    let failovers: usize = std::env::var("SOAK_FAILOVERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let started = Instant::now();
    let spec = ClusterSpec::new(2)
        .user("app", "app-secret")
        .database("app", Some("app"));
    let c = LocalCluster::start(spec).expect("cluster");
    c.primary()
        .psql(
            "app",
            "create table t(id bigint primary key, pooler text); alter table t owner to app",
        )
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let listen = format!(
        "127.0.0.1:{}",
        pgsluice::cluster::ports::free_port().unwrap()
    )
    .parse()
    .unwrap();
    let pooler = Pooler::start_beside(&c, dir.path(), listen, &[], &[]);
    let mut aspec = AgentSpec::tuned(&c, &[100, 100, 100]);
    aspec.agent_lines.extend([
        "suspect_probe_interval = \"50ms\"".to_string(),
        "synchronous_standbys = 1".to_string(),
        format!("poolers = [\"{}\"]", pooler.control_url()),
    ]);
    let state = dir.path().join("state");
    let text = format!(
        "{}\n{}",
        config_text(&c, &aspec, &state, listen),
        pooler.sections
    );
    let agent = Agent::start_text(&text, &state, listen);
    agent
        .wait_event("topology_adopted", 0, WAIT)
        .expect("adopted");
    // Synchronous mode first: a commit acknowledged before it is set may be lost by design.
    let sync = util::poll(WAIT, || {
        let v = c
            .primary()
            .psql("postgres", "show synchronous_standby_names");
        v.is_ok_and(|v| v.starts_with("ANY")).then_some(())
    });
    assert!(
        sync.is_some(),
        "the agent never set synchronous_standby_names"
    );

    let monitor = Monitor::start(&c);
    let ids = Arc::new(AtomicI64::new(1));
    let load = Load::start(
        &LoadSpec {
            netns: None,
            pooler: "p1".into(),
            url: pooler.url("app"),
            // The node and the timeline it wrote on (each promotion starts a new one).
            server: "inet_server_port()::text || '/' || \
                     substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8)"
                .into(),
            pause: Duration::from_millis(5),
        },
        4,
        ids,
    );
    std::thread::sleep(Duration::from_secs(1));
    println!("run  killed  promoted  detect_ms  promoted_ms  published_ms  first_write_ms  rejoin_ms  acks  errors");
    for run in 1..=failovers {
        let old = agent.state().topology.primary.expect("a primary");
        let node = c.node(&old).unwrap().clone();
        let ms = acked::unix_ms();
        let killed = node.kill9().unwrap();
        let done = agent.wait_event("failover_completed", ms, WAIT);
        let done =
            done.unwrap_or_else(|| panic!("run {run}: no failover\n{}", pooler.log_tail(30)));
        let new = agent.state().topology.primary.expect("a new primary");
        let new_port = c.node(&new).unwrap().port().to_string();
        let first = util::poll(WAIT, || {
            load.records().iter().find_map(|r| match r {
                Rec::Ack { server, ms: at, .. } if port(server) == new_port && *at > ms => {
                    Some(*at)
                }
                _ => None,
            })
        })
        .unwrap_or_else(|| panic!("run {run}: no write on {new}\n{}", pooler.log_tail(30)));
        let ev = |k: &str| {
            agent
                .wait_event(k, ms, WAIT)
                .map_or(-1, |e| (e.unix_ms - ms) as i64)
        };
        let (detect, promoted) = (ev("failover_decided"), ev("promoted"));
        // The killed postmaster must be reaped (not a zombie) before pg_rewind's single-user
        // run looks at its lock file.
        let gone = util::poll(Duration::from_secs(20), || {
            (!killed
                .iter()
                .any(|p| std::path::Path::new(&format!("/proc/{p}")).exists()))
            .then_some(())
        });
        assert!(gone.is_some(), "run {run}: {killed:?} not reaped");
        let rejoin_at = Instant::now();
        let req = OpRequest::Rejoin {
            node: old.clone(),
            dry_run: false,
        };
        let rep = block_on(pgsluice::agent::client::op(
            agent.listen,
            Some(secret_file()),
            &req,
            WAIT * 2,
        ))
        .unwrap();
        assert_eq!(rep.outcome, Outcome::Done, "run {run}: rejoin {rep:?}");
        let rejoin = rejoin_at.elapsed().as_millis();
        let recs = load.records();
        let window = |r: &&Rec| match r {
            Rec::Ack { ms: at, .. } | Rec::Err { ms: at, .. } => *at > ms,
        };
        let acks = recs
            .iter()
            .filter(window)
            .filter(|r| matches!(r, Rec::Ack { .. }))
            .count();
        let errors = recs
            .iter()
            .filter(window)
            .filter(|r| matches!(r, Rec::Err { .. }))
            .count();
        println!(
            "{run:>3}  {old:>6}  {new:>8}  {detect:>9}  {promoted:>11}  {:>12}  {:>14}  {rejoin:>9}  {acks:>4}  {errors:>6}",
            done.unix_ms - ms,
            first - ms
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    let recs = load.stop();
    let writable = monitor.stop();
    let last = agent.state().topology.primary.expect("a primary");
    let checked = check(&recs, &ids_on(c.node(&last).unwrap()), None);
    let (timelines, shared, late) = timeline_check(&recs);
    println!(
        "soak: {failovers} failovers in {:.0} s; {} acknowledged ids, {} client errors, {} missing \
         on the final primary {last}; {} samples with two writable nodes out of {}; writes \
         on {timelines} timelines, {shared} written by two nodes, {late} sent after a later \
         timeline took writes",
        started.elapsed().as_secs_f64(),
        checked.acked,
        checked.errors,
        checked.missing,
        writable.0,
        writable.1,
    );
    assert_eq!(checked.missing, 0, "acknowledged writes lost");
    assert_eq!(writable.0, 0, "two writable nodes at once");
    assert!(writable.1 > 0, "the monitor took no sample");
    assert_eq!(shared, 0, "two nodes wrote on one timeline");
    assert_eq!(
        late, 0,
        "writes on an older timeline after a newer one took writes"
    );
    assert_eq!(timelines, failovers + 1, "one timeline per failover");
}

#[test]
fn the_timeline_check_sees_two_primaries() {
    let ack = |server: &str, sent, ms| Rec::Ack {
        id: 0,
        server: server.into(),
        ms,
        sent,
    };
    // A write sent before the new timeline took writes may be acknowledged after (slow client).
    let clean = [
        ack("1/00000001", 0, 10),
        ack("2/00000002", 20, 30),
        ack("1/00000001", 5, 40),
    ];
    assert_eq!(timeline_check(&clean), (2, 0, 0));
    let late = [
        ack("1/00000001", 0, 10),
        ack("2/00000002", 20, 30),
        ack("1/00000001", 35, 40),
    ];
    assert_eq!(timeline_check(&late), (2, 0, 1));
    let shared = [ack("2/00000002", 0, 10), ack("3/00000002", 0, 10)];
    assert_eq!(timeline_check(&shared), (1, 1, 0));
}

/// The node (port) of an acknowledgement's `server` (`port/timeline`).
fn port(server: &str) -> &str {
    server.split('/').next().unwrap_or(server)
}

/// What the acknowledgements say about the primaries behind the pooler: (timelines written
/// on, timelines written on by more than one node, acknowledgements on a timeline whose
/// statement was sent after a write on a later timeline had been acknowledged). Two writable
/// primaries behind the pooler would show as a timeline with two nodes (two standbys promoted
/// from the same one) or as writes on an older timeline after the newer one took writes.
/// Robust to clients' scheduling delays: a commit happened within `sent..=ms`.
fn timeline_check(recs: &[Rec]) -> (usize, usize, usize) {
    use std::collections::{BTreeMap, BTreeSet};
    let mut nodes: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    let mut first_ack: BTreeMap<&str, u64> = BTreeMap::new();
    let acks: Vec<(&str, u64, u64)> = recs
        .iter()
        .filter_map(|r| match r {
            Rec::Ack {
                server, ms, sent, ..
            } => {
                let (node, tl) = server.split_once('/').unwrap_or((server, ""));
                nodes.entry(tl).or_default().insert(node);
                let f = first_ack.entry(tl).or_insert(*ms);
                *f = (*f).min(*ms);
                Some((tl, *sent, *ms))
            }
            Rec::Err { .. } => None,
        })
        .collect();
    let shared = nodes.values().filter(|n| n.len() > 1).count();
    // Timeline names are fixed-width hexadecimal: their order is the timelines' order.
    let late = acks
        .iter()
        .filter(|(tl, sent, _)| {
            first_ack
                .range::<&str, _>((std::ops::Bound::Excluded(*tl), std::ops::Bound::Unbounded))
                .any(|(_, newer)| sent > newer)
        })
        .count();
    (nodes.len(), shared, late)
}

/// Asks every node every 20 ms, each over its own connection, whether it takes writes.
struct Monitor {
    stop: Arc<AtomicBool>,
    /// Samples with two or more writable nodes.
    double: Arc<AtomicU64>,
    samples: Arc<AtomicU64>,
    thread: std::thread::JoinHandle<()>,
}

impl Monitor {
    fn start(c: &LocalCluster) -> Monitor {
        let urls: Vec<String> = c.nodes().iter().map(|n| n.conninfo("postgres")).collect();
        let stop = Arc::new(AtomicBool::new(false));
        let (double, samples) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
        let (s, d, n) = (stop.clone(), double.clone(), samples.clone());
        let thread = std::thread::spawn(move || {
            block_on(async move {
                let mut conns: Vec<Option<tokio_postgres::Client>> =
                    urls.iter().map(|_| None).collect();
                while !s.load(Ordering::SeqCst) {
                    let mut writable = 0;
                    for (url, conn) in urls.iter().zip(conns.iter_mut()) {
                        if takes_writes(url, conn).await {
                            writable += 1;
                        }
                    }
                    n.fetch_add(1, Ordering::Relaxed);
                    if writable > 1 {
                        d.fetch_add(1, Ordering::Relaxed);
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            })
        });
        Monitor {
            stop,
            double,
            samples,
            thread,
        }
    }

    /// (samples with two writable nodes, samples).
    fn stop(self) -> (u64, u64) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = self.thread.join();
        (
            self.double.load(Ordering::Relaxed),
            self.samples.load(Ordering::Relaxed),
        )
    }
}

/// Whether the node at `url` answers as out of recovery and not read-only (within 200 ms).
async fn takes_writes(url: &str, conn: &mut Option<tokio_postgres::Client>) -> bool {
    let bound = Duration::from_millis(200);
    if conn.as_ref().is_none_or(|c| c.is_closed()) {
        *conn =
            match tokio::time::timeout(bound, tokio_postgres::connect(url, tokio_postgres::NoTls))
                .await
            {
                Ok(Ok((c, task))) => {
                    tokio::spawn(task);
                    Some(c)
                }
                _ => None,
            };
    }
    let Some(c) = conn.as_ref() else { return false };
    let q = "select (not pg_is_in_recovery() \
             and current_setting('default_transaction_read_only') = 'off')::text";
    match tokio::time::timeout(bound, c.simple_query(q)).await {
        Ok(Ok(msgs)) => msgs.iter().any(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0) == Some("true"),
            _ => false,
        }),
        _ => {
            *conn = None;
            false
        }
    }
}

fn block_on<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}
