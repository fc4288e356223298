//! Failover benchmark: kill -9 the primary N times under a write load through the pooler, and
//! switch over M times; per run: detection, promotion, topology published, first write through
//! the pooler, client errors, acknowledged writes lost, and the throughput of the first two
//! seconds after promotion relative to the new primary's level 2-4 s after it. Medians at the
//! end.
//!
//! ```text
//! cargo bench --bench failover -- [--runs N] [--switchovers M] [--defaults] [--sync] [--cold]
//!     [--no-spares]
//! ```
//! Tuned settings by default (probe_interval 200ms, threshold 3 within 2s, suspect probes
//! every 50ms); `--defaults` uses the shipped ones (1s, 3 within 10s). `--sync` turns on
//! synchronous mode (ANY 1). Warm failover is on (`hot_set_interval = "2s"`) unless `--cold`;
//! the pooler keeps its default `standby_spares` unless `--no-spares`.
//! The pooler shares the agent's file (`agent.listen`, `agent.poolers`): it holds the write
//! lease and tells the agent at once when its primary connections break.

#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

#[path = "../tests/agent/util.rs"]
mod util;

use pgsluice::agent::ops::{OpRequest, Outcome};
use pgsluice::cluster::{ClusterSpec, LocalCluster};
use std::time::{Duration, Instant};
use util::*;

const WAIT: Duration = Duration::from_secs(30);

struct Args {
    runs: usize,
    switchovers: usize,
    defaults: bool,
    sync: bool,
    cold: bool,
    spares: bool,
}

fn args() -> Args {
    let mut a = Args {
        runs: 5,
        switchovers: 3,
        defaults: false,
        sync: false,
        cold: false,
        spares: true,
    };
    let mut it = std::env::args().skip(1);
    while let Some(x) = it.next() {
        match x.as_str() {
            "--runs" => a.runs = it.next().and_then(|v| v.parse().ok()).unwrap_or(a.runs),
            "--switchovers" => {
                a.switchovers = it
                    .next()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(a.switchovers)
            }
            "--defaults" => a.defaults = true,
            "--sync" => a.sync = true,
            "--cold" => a.cold = true,
            "--no-spares" => a.spares = false,
            _ => {} // `cargo bench` adds --bench
        }
    }
    a
}

fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn main() {
    let a = args();
    let spec = ClusterSpec::new(2)
        .user("app", "app-secret")
        .database("app", Some("app"));
    let c = LocalCluster::start(spec).expect("cluster");
    c.primary()
        .psql(
            "app",
            "create table t(id serial primary key, v int); alter table t owner to app",
        )
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let listen = format!(
        "127.0.0.1:{}",
        pgsluice::cluster::ports::free_port().unwrap()
    )
    .parse()
    .unwrap();
    let spares: &[&str] = if a.spares {
        &[]
    } else {
        &["standby_spares = 0"]
    };
    let pooler = Pooler::start_beside(&c, dir.path(), listen, &[], spares);
    let mut aspec = AgentSpec::tuned(&c, &[100, 100, 100]);
    if a.defaults {
        aspec.agent_lines.clear();
    } else {
        aspec
            .agent_lines
            .push("suspect_probe_interval = \"50ms\"".into());
    }
    aspec
        .agent_lines
        .push(format!("poolers = [\"{}\"]", pooler.control_url()));
    if a.sync {
        aspec.agent_lines.push("synchronous_standbys = 1".into());
    }
    let warm = if a.cold { "0" } else { "2s" };
    aspec
        .agent_lines
        .push(format!("hot_set_interval = \"{warm}\""));
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
    println!(
        "settings: {}, {}, warm failover {}, standby spares {}",
        if a.defaults { "defaults" } else { "tuned" },
        if a.sync {
            "synchronous ANY 1"
        } else {
            "asynchronous"
        },
        if a.cold { "off" } else { "on" },
        if a.spares { "on" } else { "off" }
    );
    println!("run  detect_ms  promoted_ms  published_ms  first_write_ms  tput_s0  tput_s1  steady_tps  errors  lost  acked_during_kill");
    let mut cols: [Vec<f64>; 6] = Default::default();
    for run in 1..=a.runs {
        std::thread::sleep(Duration::from_millis(500));
        let primary = agent.state().topology.primary.expect("a primary");
        let node = c.node(&primary).unwrap().clone();
        let rows_before = count(&c, &primary);
        let load = ClientLoad::start(pooler.url("app"), 4);
        std::thread::sleep(Duration::from_secs(2));
        let (ms, at) = (unix_ms(), Instant::now());
        node.kill9().unwrap();
        let dead = Instant::now();
        let done = agent
            .wait_event("failover_completed", ms, WAIT)
            .expect("failover");
        std::thread::sleep(Duration::from_millis(4500));
        let stats = load.stop();
        let ev = |k: &str| {
            agent
                .wait_event(k, ms, WAIT)
                .map_or(f64::NAN, |e| (e.unix_ms - ms) as f64)
        };
        let orphans = ClientLoad::acked_during(&stats, at, dead);
        let first = ClientLoad::resumed_after(&stats, at, dead)
            .map_or(f64::NAN, |d| d.as_secs_f64() * 1000.0);
        let new = agent.state().topology.primary.unwrap();
        let lost = stats
            .ok
            .saturating_sub(count(&c, &new).saturating_sub(rows_before));
        let promoted = ev("promoted");
        let (steady, rel) = throughput(&stats, at, promoted);
        let row = [
            ev("failover_decided"),
            promoted,
            (done.unix_ms - ms) as f64,
            first,
            rel[0],
            rel[1],
        ];
        println!(
            "{run:>3}  {:>9.0}  {:>11.0}  {:>12.0}  {:>14.0}  {:>7.2}  {:>7.2}  {steady:>10.0}  {:>6}  {:>4}  {orphans:>17}",
            row[0], row[1], row[2], row[3], row[4], row[5], stats.errors, lost
        );
        if std::env::var_os("FAILOVER_BENCH_DEBUG").is_some() {
            let errs: Vec<_> = stats
                .per_client
                .iter()
                .map(|s| {
                    s.iter()
                        .filter(|(_, ok)| !ok)
                        .map(|(t, _)| t.saturating_duration_since(at).as_millis())
                        .take(3)
                        .collect::<Vec<_>>()
                })
                .collect();
            println!(
                "     first errors {:?} at (ms after kill) {errs:?}",
                stats.first_errors
            );
            let p = at + Duration::from_millis(promoted as u64);
            let per: Vec<usize> = (0..25)
                .map(|i| {
                    let from = p + Duration::from_millis(100 * i);
                    let to = from + Duration::from_millis(100);
                    stats
                        .ok_at
                        .iter()
                        .filter(|t| **t >= from && **t < to)
                        .count()
                })
                .collect();
            println!("     commits per 100 ms from the promotion: {per:?}");
        }
        for (c, v) in cols.iter_mut().zip(row) {
            c.push(v);
        }
        let req = OpRequest::Rejoin {
            node: primary.clone(),
            dry_run: false,
        };
        let rep = block_on(pgsluice::agent::client::op(
            agent.listen,
            Some(secret_file()),
            &req,
            WAIT * 4,
        ))
        .unwrap();
        assert_eq!(rep.outcome, Outcome::Done, "{rep:?}");
    }
    println!(
        "median {:>9.0}  {:>11.0}  {:>12.0}  {:>14.0}  {:>7.2}  {:>7.2}",
        median(cols[0].clone()),
        median(cols[1].clone()),
        median(cols[2].clone()),
        median(cols[3].clone()),
        median(cols[4].clone()),
        median(cols[5].clone())
    );
    println!("switchover  total_ms  longest_tx_ms  commits  errors");
    for run in 1..=a.switchovers {
        std::thread::sleep(Duration::from_millis(500));
        let st = agent.state().topology;
        let to = st
            .standbys
            .iter()
            .find(|s| !st.is_fenced(s))
            .cloned()
            .expect("a standby");
        let load = ClientLoad::start(pooler.url("app"), 4);
        std::thread::sleep(Duration::from_millis(800));
        let at = Instant::now();
        let req = OpRequest::Switchover { to, dry_run: false };
        let rep = block_on(pgsluice::agent::client::op(
            agent.listen,
            Some(secret_file()),
            &req,
            WAIT * 4,
        ))
        .unwrap();
        let took = at.elapsed().as_millis();
        std::thread::sleep(Duration::from_millis(800));
        let stats = load.stop();
        assert_eq!(rep.outcome, Outcome::Done, "{rep:?}");
        println!(
            "{run:>10}  {took:>8}  {:>13}  {:>7}  {:>6}",
            stats.max_ms, stats.ok, stats.errors
        );
    }
}

/// Throughput of the seconds `[p, p + 1 s)` and `[p + 1 s, p + 2 s)` after the promotion
/// `p` (`promoted_ms` after the kill at `at`), relative to the new primary's own level over
/// `[p + 2 s, p + 4 s)`; and that level (commits per second).
fn throughput(stats: &LoadStats, at: Instant, promoted_ms: f64) -> (f64, [f64; 2]) {
    let count = |from: Instant, to: Instant| {
        stats
            .ok_at
            .iter()
            .filter(|t| **t >= from && **t < to)
            .count() as f64
    };
    if !promoted_ms.is_finite() {
        return (f64::NAN, [f64::NAN; 2]);
    }
    let second = Duration::from_secs(1);
    let p = at + Duration::from_millis(promoted_ms as u64);
    let steady = count(p + 2 * second, p + 4 * second) / 2.0;
    if steady == 0.0 {
        return (steady, [f64::NAN; 2]);
    }
    let rel = [
        count(p, p + second) / steady,
        count(p + second, p + 2 * second) / steady,
    ];
    (steady, rel)
}

/// Rows in the load's table on `node` (only the load writes it, so acknowledged commits minus
/// the rows a run added are the acknowledged writes lost).
fn count(c: &LocalCluster, node: &str) -> u64 {
    let n = c.node(node).unwrap();
    n.psql("app", "select count(*) from t")
        .unwrap()
        .parse()
        .unwrap()
}

fn block_on<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}
