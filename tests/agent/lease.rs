//! The write lease and failover as a pause, on loopback (harness clusters, the real pooler):
//! idle clients and new logins across a kill -9 failover see no error, a transaction in flight
//! at the crash gets 08006 naming the failover; a pooler whose topology is not renewed holds
//! writes after its lease and resumes when renewals come back; the agent promotes only after
//! a pooler that did not acknowledge the fence has surely lost its lease; a pooler's broken
//! primary connections make the agent probe at once; suspect probes confirm a failure sooner.

use super::*;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

fn app_cluster() -> LocalCluster {
    let spec = ClusterSpec::new(2)
        .user("app", "app-secret")
        .database("app", Some("app"));
    let c = LocalCluster::start(spec).unwrap_or_else(|e| panic!("cluster: {e}"));
    c.nodes()[0]
        .psql(
            "app",
            "create table t(id serial primary key, v int); alter table t owner to app",
        )
        .unwrap();
    c
}

/// The agent's configuration: the cluster, `agent_lines`, and the pooler's sections.
fn agent_text(
    c: &LocalCluster,
    pooler: &Pooler,
    agent_lines: &[&str],
    state: &std::path::Path,
    listen: std::net::SocketAddr,
) -> String {
    let mut spec = AgentSpec::tuned(c, &[100, 100, 100]);
    spec.agent_lines = agent_lines.iter().map(|l| l.to_string()).collect();
    format!(
        "{}\n{}",
        config_text(c, &spec, state, listen),
        pooler.sections
    )
}

fn free_listen() -> std::net::SocketAddr {
    format!(
        "127.0.0.1:{}",
        pgsluice::cluster::ports::free_port().unwrap()
    )
    .parse()
    .unwrap()
}

async fn connect(url: &str) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let (c, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
    tokio::spawn(conn);
    Ok(c)
}

async fn insert(c: &tokio_postgres::Client, v: i64) -> Result<i64, tokio_postgres::Error> {
    let row = c
        .query_one(
            "insert into t(v) values ($1::int8::int) returning id",
            &[&v],
        )
        .await?;
    Ok(i64::from(row.get::<_, i32>(0)))
}

fn multi_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// Default agent timings, synchronous mode, kill -9 of the primary while 8 clients are idle:
/// each runs one insert at a staggered moment of the failover and a new client logs in and
/// inserts every 100 ms; none fails; one transaction in flight at the kill gets 08006 naming
/// the failover; every acknowledged id is on the new primary.
#[test]
fn failover_is_a_pause_for_idle_clients() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let c = app_cluster();
    let dir = tempfile::tempdir().unwrap();
    let pooler = Pooler::start_managed(&c, dir.path(), &[], &["primary_wait_timeout = \"20s\""]);
    let listen = free_listen();
    let state = dir.path().join("state");
    let poolers = format!("poolers = [\"{}\"]", pooler.control_url());
    let lines = [poolers.as_str(), "synchronous_standbys = 1"];
    let a = Agent::start_text(
        &agent_text(&c, &pooler, &lines, &state, listen),
        &state,
        listen,
    );
    assert!(a.wait_event("synchronous_standbys_set", 0, WAIT).is_some());
    let url = pooler.url("app");
    let rt = multi_thread();
    let idle: Vec<tokio_postgres::Client> = rt.block_on(async {
        let mut v = Vec::new();
        for i in 0..8 {
            let cl = connect(&url).await.unwrap();
            insert(&cl, i).await.unwrap();
            v.push(cl);
        }
        v
    });
    let busy = rt.block_on(connect(&url)).unwrap();
    let in_flight = rt.spawn(async move { busy.simple_query("select pg_sleep(30)").await });
    std::thread::sleep(Duration::from_millis(300));
    let killed_ms = unix_ms();
    let killed = Instant::now();
    c.nodes()[0].kill9().unwrap();
    let failed = Arc::new(AtomicU64::new(0));
    let acked = Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut jobs = Vec::new();
    for (i, cl) in idle.into_iter().enumerate() {
        let (failed, acked) = (failed.clone(), acked.clone());
        jobs.push(rt.spawn(async move {
            tokio::time::sleep(Duration::from_millis(500 * i as u64)).await;
            match insert(&cl, 100 + i as i64).await {
                Ok(id) => acked.lock().unwrap().push(id),
                Err(e) => {
                    eprintln!("idle client {i}: {e:?}");
                    failed.fetch_add(1, Ordering::SeqCst);
                }
            }
        }));
    }
    let logins = Arc::new(AtomicU64::new(0));
    for i in 0..50 {
        let (failed, acked, logins, url) =
            (failed.clone(), acked.clone(), logins.clone(), url.clone());
        jobs.push(rt.spawn(async move {
            tokio::time::sleep(Duration::from_millis(100 * i)).await;
            let r = match connect(&url).await {
                Ok(cl) => insert(&cl, 1000 + i as i64).await,
                Err(e) => Err(e),
            };
            logins.fetch_add(1, Ordering::SeqCst);
            match r {
                Ok(id) => acked.lock().unwrap().push(id),
                Err(e) => {
                    eprintln!("new client {i}: {e:?}");
                    failed.fetch_add(1, Ordering::SeqCst);
                }
            }
        }));
    }
    rt.block_on(async {
        for j in jobs {
            j.await.unwrap();
        }
    });
    let paused = killed.elapsed();
    let flight = rt.block_on(in_flight).unwrap();
    let done = a.wait_event("failover_completed", killed_ms, WAIT);
    assert!(done.is_some(), "{:?}", a.events());
    // The pooler answers the fence (`fence_acknowledged`); on a saturated machine it may
    // answer after the control timeout, and the agent then waits out its lease instead.
    let fence = a
        .events()
        .into_iter()
        .find(|e| e.unix_ms >= killed_ms && e.kind.starts_with("fence_"));
    assert!(
        fence.is_some(),
        "{:?}\n{}",
        a.events(),
        pooler.log_tail(400)
    );
    eprintln!("fence: {:?}", fence.map(|e| (e.kind, e.details)));
    let acked = acked.lock().unwrap().clone();
    let new = a.state().topology.primary.unwrap();
    let node = c.node(&new).unwrap();
    let ids = node
        .psql("app", "select string_agg(id::text, ',') from t")
        .unwrap();
    let found: std::collections::HashSet<i64> =
        ids.split(',').filter_map(|s| s.parse().ok()).collect();
    let lost = acked.iter().filter(|id| !found.contains(id)).count();
    eprintln!(
        "kill -9 with idle clients: {} idle transactions + {} logins, {} failed, {} acknowledged, \
         {lost} lost; all done {paused:?} after the kill; in flight: {flight:?}",
        8,
        logins.load(Ordering::SeqCst),
        failed.load(Ordering::SeqCst),
        acked.len()
    );
    assert_eq!(
        failed.load(Ordering::SeqCst),
        0,
        "failed transactions or logins"
    );
    assert_eq!(acked.len(), 58);
    assert_eq!(lost, 0, "acknowledged ids missing on {new}");
    let e = flight.expect_err("the transaction in flight at the kill must fail");
    let db = e.as_db_error().expect("an error from the pooler");
    assert_eq!(db.code().code(), "08006", "{db:?}");
    assert!(db.message().contains("failover"), "{db:?}");
    a.stop();
}

/// A pooler under an agent with `topology_lease = 1s`: the agent stops, so nothing renews its
/// topology; a transaction already open finishes, new ones are held from at most a lease after
/// the agent's last renewal, and fail after `primary_wait_timeout` with a message naming the
/// lease; the agent back, writes resume without a failover.
#[test]
fn a_pooler_without_renewals_holds_writes_then_resumes() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let c = app_cluster();
    let dir = tempfile::tempdir().unwrap();
    let lease = "topology_lease = \"1s\"";
    let pooler = Pooler::start_managed(
        &c,
        dir.path(),
        &[lease],
        &["primary_wait_timeout = \"500ms\""],
    );
    let listen = free_listen();
    let state = dir.path().join("state");
    let poolers = format!("poolers = [\"{}\"]", pooler.control_url());
    let text = agent_text(&c, &pooler, &[poolers.as_str(), lease], &state, listen);
    let a = Agent::start_text(&text, &state, listen);
    assert!(a.wait_event("topology_adopted", 0, WAIT).is_some());
    let url = pooler.url("app");
    let rt = multi_thread();
    let ok_once = poll(WAIT, || {
        rt.block_on(async { insert(&connect(&url).await.ok()?, 1).await.ok() })
    });
    assert!(ok_once.is_some(), "no write through the pooler");
    let open = rt.block_on(connect(&url)).unwrap();
    rt.block_on(open.batch_execute("begin; insert into t(v) values (2)"))
        .unwrap();
    let stopped = Instant::now();
    a.stop();
    // Writes go on until the lease runs out, then are held and fail.
    let first_refusal = poll(Duration::from_secs(10), || {
        let r = rt.block_on(async { insert(&connect(&url).await?, 3).await });
        match r {
            Ok(_) => None,
            Err(e) => Some((stopped.elapsed(), e)),
        }
    });
    let (after, e) = first_refusal.expect("writes never stopped");
    let msg = e
        .as_db_error()
        .map_or(e.to_string(), |d| d.message().to_string());
    eprintln!("agent stopped: writes refused after {after:?}: {msg}");
    assert!(msg.contains("lease"), "{msg}");
    // Lease (1 s from the last renewal, which precedes the stop) + the wait (0.5 s) + slack.
    assert!(after < Duration::from_millis(2500), "{after:?}");
    assert!(after >= Duration::from_millis(500), "{after:?}");
    // The transaction open before the expiry still commits.
    rt.block_on(open.batch_execute("insert into t(v) values (4); commit"))
        .unwrap();
    let restarted = Instant::now();
    let a = Agent::start_text(&text, &state, listen);
    let resumed = poll(WAIT, || {
        rt.block_on(async { insert(&connect(&url).await.ok()?, 5).await.ok() })
    });
    eprintln!(
        "agent restarted: writes resumed after {:?}",
        restarted.elapsed()
    );
    assert!(resumed.is_some(), "writes did not resume");
    assert_eq!(a.state().topology.primary.as_deref(), Some("node1"));
    a.stop();
}

/// The agent lists a pooler that never answers (a socket nobody accepts on): after the kill it
/// records `fence_lease_wait` naming it, and promotes only once that pooler's lease has surely
/// run out (more than `topology_lease` after the fence push).
#[test]
fn the_agent_waits_out_the_lease_of_a_silent_pooler() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let c = app_cluster();
    let dir = tempfile::tempdir().unwrap();
    let lease = "topology_lease = \"1500ms\"";
    let pooler = Pooler::start_managed(&c, dir.path(), &[lease], &[]);
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_url = format!("http://{}", silent.local_addr().unwrap());
    let listen = free_listen();
    let state = dir.path().join("state");
    let poolers = format!("poolers = [\"{}\", \"{silent_url}\"]", pooler.control_url());
    let text = agent_text(&c, &pooler, &[poolers.as_str(), lease], &state, listen);
    let a = Agent::start_text(&text, &state, listen);
    assert!(a.wait_event("topology_adopted", 0, WAIT).is_some());
    std::thread::sleep(Duration::from_secs(1));
    let killed_ms = unix_ms();
    c.nodes()[0].kill9().unwrap();
    let promoted = a.wait_event("promoted", killed_ms, WAIT);
    let events = a.events();
    // Recorded before the fence push (`fenced` is recorded once the push returned).
    let fenced = events
        .iter()
        .find(|e| e.kind == "failover_decided" && e.unix_ms >= killed_ms);
    let waited = events
        .iter()
        .find(|e| e.kind == "fence_lease_wait" && e.unix_ms >= killed_ms);
    let (Some(promoted), Some(fenced), Some(waited)) = (promoted, fenced, waited) else {
        panic!("{events:?}");
    };
    assert!(waited.details.contains(&silent_url), "{waited:?}");
    assert!(
        !waited.details.contains(&pooler.control_url()),
        "{waited:?}"
    );
    let gap = promoted.unix_ms - fenced.unix_ms;
    eprintln!(
        "silent pooler: promoted {gap} ms after the decision ({})",
        waited.details
    );
    // The bound is L x 1.02 + 50 ms from the fence push's start.
    assert!(gap >= 1500, "promoted {gap} ms after the fence");
    assert!(gap < 5000, "promoted {gap} ms after the fence");
    drop(silent);
    a.stop();
}

/// A pooler's broken primary connections make the agent probe at once (`POST /probe` with the
/// control secret, docs/failover.md section 11): with a 10 s probe interval and a threshold of
/// one failed probe, a kill -9 about one second after the agent's last round is decided
/// within 3 s, while the agent's own next round is about 9 s away.
#[test]
fn a_poolers_notice_makes_the_agent_probe_at_once() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let c = app_cluster();
    let dir = tempfile::tempdir().unwrap();
    let listen = free_listen();
    let pooler = Pooler::start_beside(&c, dir.path(), listen, &[], &[]);
    let state = dir.path().join("state");
    let poolers = format!("poolers = [\"{}\"]", pooler.control_url());
    let lines = [
        poolers.as_str(),
        "probe_interval = \"10s\"",
        "failure_threshold = 1",
        "failure_window = \"10s\"",
    ];
    let a = Agent::start_text(
        &agent_text(&c, &pooler, &lines, &state, listen),
        &state,
        listen,
    );
    let adopted = a.wait_event("topology_adopted", 0, WAIT).expect("adopted");
    let rt = multi_thread();
    let busy = rt.block_on(connect(&pooler.url("app"))).unwrap();
    rt.block_on(insert(&busy, 1)).unwrap();
    let in_flight = rt.spawn(async move { busy.simple_query("select pg_sleep(30)").await });
    let since = unix_ms() - adopted.unix_ms;
    assert!(
        since < 5000,
        "the setup took {since} ms after the agent's round"
    );
    std::thread::sleep(Duration::from_millis(300));
    let killed_ms = unix_ms();
    c.nodes()[0].kill9().unwrap();
    let decided = a.wait_event("failover_decided", killed_ms, Duration::from_secs(5));
    let after = decided.map(|e| e.unix_ms - killed_ms);
    assert!(
        after.is_some_and(|ms| ms < 3000),
        "decided {after:?} ms after the kill\n{}",
        pooler.log_tail(20)
    );
    let r = rt.block_on(in_flight).unwrap();
    assert!(r.is_err(), "the transaction in flight at the kill failed");
}

/// `suspect_probe_interval`: once a probe of the primary failed, the agent confirms at that
/// pace rather than every `probe_interval`: with probes every 2 s, three failures needed and
/// suspect probes every 50 ms, the decision follows the first failed probe within 1 s (at the
/// plain pace it would take 4 s).
#[test]
fn suspect_probes_confirm_a_failure_sooner() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let c = cluster();
    let dir = tempfile::tempdir().unwrap();
    let spec = AgentSpec {
        nodes: AgentSpec::tuned(&c, &[100, 100, 100]).nodes,
        agent_lines: vec![
            "probe_interval = \"2s\"".into(),
            "suspect_probe_interval = \"50ms\"".into(),
            "failure_threshold = 3".into(),
            "failure_window = \"4s\"".into(),
        ],
    };
    let a = Agent::start(&c, &spec, &dir.path().join("state"));
    a.wait_event("topology_adopted", 0, WAIT).expect("adopted");
    let killed_ms = unix_ms();
    c.nodes()[0].kill9().unwrap();
    let failed = a.wait_event("primary_probe_failed", killed_ms, WAIT);
    let decided = a.wait_event("failover_decided", killed_ms, WAIT);
    let (Some(failed), Some(decided)) = (failed, decided) else {
        panic!("no failure decided: {:?}", a.events());
    };
    let confirm = decided.unix_ms - failed.unix_ms;
    assert!(
        confirm < 1000,
        "decided {confirm} ms after the first failed probe"
    );
}
