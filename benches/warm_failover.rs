//! Warm-failover benchmark: read throughput and shared-buffer hit ratio of the new primary,
//! second by second for 35 s after a kill -9 failover, with warm failover on and off in the
//! same run (interleaved), through the pooler.
//!
//! ```text
//! cargo bench --bench warm_failover -- [--runs N] [--scale S] [--clients C] [--out DIR]
//! python3 benches/warm_failover_plot.py DIR/warm_failover.csv DIR/warm_failover.png
//! ```
//! Data: pgbench at scale S (50 = 755 MB) with shared_buffers 256MB; readers select random rows
//! of the first fifth of pgbench_accounts, one writer updates ~50 rows/s. Nodes share one host
//! and one OS page cache: before each kill the candidate standby's own relation files are
//! dropped from it (posix_fadvise DONTNEED, never a global drop_caches), as on separate hosts.

#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

#[path = "../tests/agent/util.rs"]
mod util;

use pgsluice::agent::hotset;
use pgsluice::agent::ops::{OpRequest, Outcome};
use pgsluice::agent::sql::Target;
use pgsluice::cluster::{ClusterSpec, LocalCluster, LocalNode};
use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use util::*;

const WAIT: Duration = Duration::from_secs(60);
/// Throughput is counted in buckets of this many ms.
const BUCKET_MS: u64 = 100;
const AFTER_S: usize = 36;

struct Args {
    runs: usize,
    scale: u32,
    clients: usize,
    out: std::path::PathBuf,
}

fn args() -> Args {
    let mut a = Args {
        runs: 3,
        scale: 50,
        clients: 8,
        out: "target/warm_failover".into(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(x) = it.next() {
        let mut num = |d: usize| it.next().and_then(|v| v.parse().ok()).unwrap_or(d);
        match x.as_str() {
            "--runs" => a.runs = num(a.runs),
            "--scale" => a.scale = num(a.scale as usize) as u32,
            "--clients" => a.clients = num(a.clients),
            "--out" => a.out = it.next().unwrap().into(),
            _ => {} // `cargo bench` adds --bench
        }
    }
    a
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Readers (random rows of the first fifth of pgbench_accounts) and one writer, counting
/// successful reads in `BUCKET_MS` buckets since `t0`.
struct Load {
    stop: Arc<AtomicBool>,
    buckets: Arc<Vec<AtomicU64>>,
    t0: Instant,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Load {
    fn start(url: String, clients: usize, hot_rows: u64) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let buckets: Arc<Vec<AtomicU64>> =
            Arc::new((0..20_000).map(|_| AtomicU64::new(0)).collect());
        let t0 = Instant::now();
        let mut threads = Vec::new();
        for i in 0..=clients {
            let (url, stop, buckets) = (url.clone(), stop.clone(), buckets.clone());
            let writer = i == clients;
            threads.push(std::thread::spawn(move || {
                rt().block_on(client(url, stop, buckets, t0, writer, hot_rows, i as u64))
            }));
        }
        Load {
            stop,
            buckets,
            t0,
            threads,
        }
    }

    /// Reads per second in `[at + i, at + i + 1)` for i in 0..n.
    fn per_second(&self, at: Instant, n: usize) -> Vec<f64> {
        let start = at.saturating_duration_since(self.t0).as_millis() as u64 / BUCKET_MS;
        let per = 1000 / BUCKET_MS;
        (0..n as u64)
            .map(|i| {
                (0..per)
                    .map(|j| {
                        let k = (start + i * per + j) as usize;
                        self.buckets.get(k).map_or(0, |b| b.load(Ordering::Relaxed))
                    })
                    .sum::<u64>() as f64
            })
            .collect()
    }

    fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads {
            let _ = t.join();
        }
    }
}

async fn client(
    url: String,
    stop: Arc<AtomicBool>,
    buckets: Arc<Vec<AtomicU64>>,
    t0: Instant,
    writer: bool,
    hot_rows: u64,
    seed: u64,
) {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    while !stop.load(Ordering::Relaxed) {
        let Ok((c, conn)) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        tokio::spawn(conn);
        while !stop.load(Ordering::Relaxed) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let aid = 1 + x % hot_rows;
            let sql = if writer {
                format!("update pgbench_accounts set abalance = abalance + 1 where aid = {aid}")
            } else {
                format!("select abalance from pgbench_accounts where aid = {aid}")
            };
            if c.simple_query(&sql).await.is_err() {
                break;
            }
            if writer {
                tokio::time::sleep(Duration::from_millis(20)).await;
            } else {
                let k = (t0.elapsed().as_millis() as u64 / BUCKET_MS) as usize;
                if let Some(b) = buckets.get(k) {
                    b.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// (when, blks_hit, blks_read) of database `app` on a node, sampled every 100 ms.
struct Sampler {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<Vec<(Instant, u64, u64)>>,
}

impl Sampler {
    fn start(node: &LocalNode) -> Sampler {
        let stop = Arc::new(AtomicBool::new(false));
        let (s, url) = (stop.clone(), node.conninfo("app"));
        let thread = std::thread::spawn(move || {
            rt().block_on(async move {
                let mut out = Vec::new();
                while !s.load(Ordering::Relaxed) {
                    if let Ok((c, conn)) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await {
                        tokio::spawn(conn);
                        while !s.load(Ordering::Relaxed) {
                            let q = "select blks_hit, blks_read from pg_stat_database where datname = 'app'";
                            let Ok(row) = c.query_one(q, &[]).await else { break };
                            let (h, r): (i64, i64) = (row.get(0), row.get(1));
                            out.push((Instant::now(), h as u64, r as u64));
                            tokio::time::sleep(Duration::from_millis(100)).await;
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                out
            })
        });
        Sampler { stop, thread }
    }

    /// Hit ratio per second in `[at + i, at + i + 1)`.
    fn per_second(self, at: Instant, n: usize) -> Vec<f64> {
        self.stop.store(true, Ordering::Relaxed);
        let s = self.thread.join().unwrap();
        let near = |t: Instant| {
            s.iter()
                .min_by_key(|x| if x.0 > t { x.0 - t } else { t - x.0 })
        };
        (0..n)
            .map(|i| {
                let a = near(at + Duration::from_secs(i as u64));
                let b = near(at + Duration::from_secs(i as u64 + 1));
                match (a, b) {
                    (Some(a), Some(b)) if b.1 + b.2 > a.1 + a.2 => {
                        (b.1 - a.1) as f64 / ((b.1 - a.1) + (b.2 - a.2)) as f64
                    }
                    _ => f64::NAN,
                }
            })
            .collect()
    }
}

/// posix_fadvise(DONTNEED) on every file under the node's `base/`: its relation files leave
/// the OS page cache (what a separate host would not have cached).
fn drop_page_cache(node: &LocalNode) -> u64 {
    fn walk(dir: &std::path::Path, n: &mut u64) {
        let Ok(rd) = std::fs::read_dir(dir) else {
            return;
        };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(&p, n);
            } else if let Ok(f) = std::fs::File::open(&p) {
                use std::os::fd::AsRawFd;
                let adv = nix::fcntl::PosixFadviseAdvice::POSIX_FADV_DONTNEED;
                if nix::fcntl::posix_fadvise(f.as_raw_fd(), 0, 0, adv).is_ok() {
                    *n += 1;
                }
            }
        }
    }
    let mut n = 0;
    walk(&node.data_dir().join("base"), &mut n);
    n
}

/// Share of the primary's hot set (usagecount >= 2) resident on `standby`.
fn warmth(c: &LocalCluster, primary: &LocalNode, standby: &LocalNode) -> f64 {
    let l = c.layout();
    let t = |n: &LocalNode| Target {
        name: n.name().into(),
        host: "127.0.0.1".into(),
        port: n.port(),
        user: l.superuser.clone(),
        password: Some(l.superuser_password.clone()),
        dbname: "postgres".into(),
        application_name: pgsluice::agent::sql::APPLICATION_NAME,
    };
    let (p, s) = (t(primary), t(standby));
    rt().block_on(async {
        let pc = p.connect(WAIT).await.ok()?;
        let sc = s.connect(WAIT).await.ok()?;
        let hot = hotset::capture(&pc, &p, 2, 1 << 30, WAIT).await.ok()?;
        let res = hotset::resident(&sc, &s, &hot, WAIT).await.ok()?;
        Some(hotset::warmth(&hot.blocks, &res))
    })
    .unwrap_or(f64::NAN)
}

struct RunResult {
    mode: &'static str,
    warmth: f64,
    rel: Vec<f64>,
    hit: Vec<f64>,
    promote_ms: u64,
}

fn setup(a: &Args) -> LocalCluster {
    let spec = ClusterSpec::new(1)
        .user("app", "app-secret")
        .database("app", Some("app"))
        .conf("shared_buffers = 256MB")
        .conf("max_wal_size = 4GB")
        .conf("checkpoint_timeout = 30min")
        .conf("max_connections = 200");
    let c = LocalCluster::start(spec).expect("cluster");
    let p = c.primary();
    let t = Instant::now();
    let out = std::process::Command::new(p.bin().path("pgbench"))
        .args(["-i", "-q", "-s", &a.scale.to_string(), "-d"])
        .arg(p.conninfo_as("app", Some("app-secret"), "app"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    c.wait_replicated(Duration::from_secs(600)).unwrap();
    println!("pgbench -i -s {} in {:?}", a.scale, t.elapsed());
    c
}

fn main() {
    let a = args();
    std::fs::create_dir_all(&a.out).unwrap();
    let c = setup(&a);
    let hot_rows = u64::from(a.scale) * 100_000 / 5;
    let dir = tempfile::tempdir().unwrap();
    let pooler = Pooler::start(&c, dir.path());
    let state = dir.path().join("state");
    let mut results = Vec::new();
    for run in 0..a.runs * 2 {
        let mode = if run % 2 == 0 { "warm" } else { "cold" };
        let mut spec = AgentSpec::tuned(&c, &[100, 100]);
        spec.agent_lines
            .push(format!("poolers = [\"{}\"]", pooler.control_url()));
        let interval = if mode == "warm" { "2s" } else { "0" };
        spec.agent_lines
            .push(format!("hot_set_interval = \"{interval}\""));
        let listen = format!(
            "127.0.0.1:{}",
            pgsluice::cluster::ports::free_port().unwrap()
        );
        let text = format!(
            "{}\n{}",
            config_text(&c, &spec, &state, listen.parse().unwrap()),
            pooler.sections
        );
        let agent = Agent::start_text(&text, &state, listen.parse().unwrap());
        agent.wait_event("agent_started", 0, WAIT).expect("agent");
        results.push(one_run(&c, &agent, &pooler, &a, hot_rows, mode));
        let r = results.last().unwrap();
        println!(
            "{mode} run {}: warmth {:.2} at kill; promoted {} ms after kill; throughput s0 {:.2} s1 {:.2}; hit s0 {:.3} s1 {:.3}",
            run / 2 + 1, r.warmth, r.promote_ms, r.rel[0], r.rel[1], r.hit[0], r.hit[1]
        );
        agent.stop();
    }
    report(&a, &results);
}

fn one_run(
    c: &LocalCluster,
    agent: &Agent,
    pooler: &Pooler,
    a: &Args,
    hot_rows: u64,
    mode: &'static str,
) -> RunResult {
    let name = poll(WAIT, || agent.state().topology.primary).expect("a primary");
    let primary = c.node(&name).unwrap().clone();
    let standby = c
        .nodes()
        .iter()
        .find(|n| n.name() != primary.name())
        .unwrap()
        .clone();
    let load = Load::start(pooler.url("app"), a.clients, hot_rows);
    std::thread::sleep(Duration::from_secs(25));
    let sampler = Sampler::start(&standby);
    let w = warmth(c, &primary, &standby);
    drop_page_cache(&standby);
    let ms = unix_ms();
    let killed = Instant::now();
    primary.kill9().unwrap();
    let promoted = agent.wait_event("promoted", ms, WAIT).expect("promoted");
    let promote_ms = promoted.unix_ms.saturating_sub(ms);
    let at = killed + Duration::from_millis(promote_ms);
    std::thread::sleep(
        (at + Duration::from_secs(AFTER_S as u64 + 1)).saturating_duration_since(Instant::now()),
    );
    let tput = load.per_second(at, AFTER_S);
    load.stop();
    let hit = sampler.per_second(at, AFTER_S);
    let steady = tput[25..35].iter().sum::<f64>() / 10.0;
    let rel = tput.iter().map(|t| t / steady).collect();
    let req = OpRequest::Rejoin {
        node: primary.name().to_string(),
        dry_run: false,
    };
    let rep = rt()
        .block_on(pgsluice::agent::client::op(
            agent.listen,
            Some(secret_file()),
            &req,
            WAIT * 4,
        ))
        .unwrap();
    assert_eq!(rep.outcome, Outcome::Done, "{rep:?}");
    RunResult {
        mode,
        warmth: w,
        rel,
        hit,
        promote_ms,
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.retain(|x| !x.is_nan());
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn report(a: &Args, results: &[RunResult]) {
    let path = a.out.join("warm_failover.csv");
    let mut f = std::fs::File::create(&path).unwrap();
    writeln!(
        f,
        "mode,run,second,throughput_rel,hit_ratio,warmth_at_kill,promote_ms"
    )
    .unwrap();
    for (i, r) in results.iter().enumerate() {
        for s in 0..AFTER_S {
            writeln!(
                f,
                "{},{},{s},{:.4},{:.4},{:.4},{}",
                r.mode,
                i / 2 + 1,
                r.rel[s],
                r.hit[s],
                r.warmth,
                r.promote_ms
            )
            .unwrap();
        }
    }
    println!(
        "\nper-second medians after promotion (throughput relative to seconds 25-35; hit ratio)"
    );
    println!("mode  warmth  s0_tput s1_tput s2_tput s5_tput  90%_at_s  s0_hit s1_hit s2_hit");
    for mode in ["cold", "warm"] {
        let rs: Vec<&RunResult> = results.iter().filter(|r| r.mode == mode).collect();
        let m = |f: &dyn Fn(&RunResult) -> f64| median(rs.iter().map(|r| f(r)).collect());
        let reach = |r: &RunResult| {
            (0..AFTER_S)
                .find(|&s| r.rel[s..].iter().take(3).all(|x| *x >= 0.9))
                .map_or(f64::NAN, |s| s as f64)
        };
        println!(
            "{mode}  {:>6.2}  {:>7.2} {:>7.2} {:>7.2} {:>7.2}  {:>8.0}  {:>6.3} {:>6.3} {:>6.3}",
            m(&|r| r.warmth),
            m(&|r| r.rel[0]),
            m(&|r| r.rel[1]),
            m(&|r| r.rel[2]),
            m(&|r| r.rel[5]),
            m(&reach),
            m(&|r| r.hit[0]),
            m(&|r| r.hit[1]),
            m(&|r| r.hit[2])
        );
    }
    println!("\nCSV: {}", path.display());
}
