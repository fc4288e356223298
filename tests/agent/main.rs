//! Integration tests of the replication manager against real PostgreSQL clusters (harness):
//! no failover when only the agent is cut off, kill -9 failover with timing, the old primary
//! fenced then rejoined, election by LSN over priority, restart recovery, switchover; warm
//! failover (`warm.rs`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod etcd;
mod lease;
mod util;
mod warm;

use pgsluice::agent::ops::{OpRequest, Outcome};
use pgsluice::cluster::{ClusterSpec, LocalCluster};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use util::*;

/// The scenarios measure time: run them one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

const WAIT: Duration = Duration::from_secs(20);

fn cluster() -> LocalCluster {
    LocalCluster::start(ClusterSpec::new(2)).unwrap_or_else(|e| panic!("cluster: {e}"))
}

fn block_on<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

#[test]
fn failover_chain() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let c = cluster();
    let dir = tempfile::tempdir().unwrap();
    let (n1, n2, n3) = (
        c.nodes()[0].clone(),
        c.nodes()[1].clone(),
        c.nodes()[2].clone(),
    );
    sql(&n1, "create table t(id serial primary key, v int)");
    sql(
        &n1,
        "insert into t(v) select g from generate_series(1, 100) g",
    );

    // 1. The agent alone cut off from the primary (through a proxy) while standbys stream: no failover.
    {
        let proxy = Proxy::start(n1.port());
        let mut spec = AgentSpec::tuned(&c, &[300, 200, 100]);
        spec.nodes[0].1 = proxy.port;
        let a = Agent::start(&c, &spec, &dir.path().join("cut"));
        assert!(
            a.wait_event("topology_adopted", 0, WAIT).is_some(),
            "{:?}",
            a.events()
        );
        let cut_at = unix_ms();
        proxy.cut();
        let veto = a.wait_event("failover_vetoed", cut_at, Duration::from_secs(5));
        assert!(veto.is_some(), "no veto: {:?}", a.events());
        std::thread::sleep(Duration::from_secs(1));
        assert!(
            !a.events().iter().any(|e| e.kind == "failover_decided"),
            "{:?}",
            a.events()
        );
        assert_eq!(sql(&n1, "select pg_is_in_recovery()"), "f");
        assert_eq!(a.state().topology.primary.as_deref(), Some("node1"));
        a.stop();
    }

    // 2. kill -9 of the primary's whole process tree: node2 (priority 200, same LSN as node3) wins.
    let a = Agent::start(
        &c,
        &AgentSpec::tuned(&c, &[300, 200, 100]),
        &dir.path().join("main"),
    );
    assert!(
        a.wait_event("topology_adopted", 0, WAIT).is_some(),
        "{:?}",
        a.events()
    );
    c.wait_replicated(WAIT).unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let killed_ms = unix_ms();
    let killed = Instant::now();
    n1.kill9().unwrap();
    let first_write = poll(WAIT, || {
        [&n2, &n3]
            .into_iter()
            .find(|n| try_sql(n, "insert into t(v) values (-1)"))
            .map(|n| (n.name().to_string(), killed.elapsed()))
    });
    let (winner, took) =
        first_write.unwrap_or_else(|| panic!("no write succeeded: {:?}", a.events()));
    let done = a
        .wait_event("failover_completed", killed_ms, WAIT)
        .expect("failover_completed");
    let decided = a
        .wait_event("failover_decided", killed_ms, WAIT)
        .expect("failover_decided");
    let promoted = a.wait_event("promoted", killed_ms, WAIT).expect("promoted");
    eprintln!(
        "kill -9 -> decided {} ms, promoted {} ms, topology published {} ms, first write {} ms",
        decided.unix_ms - killed_ms,
        promoted.unix_ms - killed_ms,
        done.unix_ms - killed_ms,
        took.as_millis()
    );
    for e in a.events().iter().filter(|e| e.unix_ms >= killed_ms) {
        eprintln!("+{:>5} ms {}", e.unix_ms - killed_ms, e.line());
    }
    eprintln!("{}", n2.log_tail(15));
    assert_eq!(winner, "node2");
    assert!(
        took < Duration::from_secs(2),
        "tuned failover took {took:?}"
    );
    assert_eq!(sql(&n2, "select count(*) from t where v > 0"), "100");
    let follows = poll(WAIT, || {
        (upstream_port(&n3) == Some(n2.port())).then_some(())
    });
    assert!(
        follows.is_some(),
        "node3 does not follow node2: {:?}",
        a.events()
    );
    let st = a.state();
    assert_eq!(st.topology.primary.as_deref(), Some("node2"));
    assert!(st.topology.is_fenced("node1"));
    assert!(st.inflight.is_none());

    // 3. The old primary restarted: fenced, soft-fenced, never primary in the topology.
    let back = unix_ms();
    n1.start().unwrap();
    assert!(
        a.wait_event("unexpected_primary", back, WAIT).is_some(),
        "{:?}",
        a.events()
    );
    let ro = poll(WAIT, || {
        (sql(&n1, "show default_transaction_read_only") == "on").then_some(())
    });
    assert!(ro.is_some(), "node1 not soft-fenced");
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(a.state().topology.primary.as_deref(), Some("node2"));
    assert!(a.state().topology.is_fenced("node1"));

    // 4. `rejoin` (through the running agent) makes it a streaming standby of node2.
    let req = OpRequest::Rejoin {
        node: "node1".into(),
        dry_run: false,
    };
    let rep = block_on(pgsluice::agent::client::op(
        a.listen,
        Some(secret_file()),
        &req,
        Duration::from_secs(120),
    ))
    .unwrap();
    eprintln!("{}", rep.lines.join("\n"));
    assert_eq!(rep.outcome, Outcome::Done, "{rep:?}");
    assert_eq!(sql(&n1, "select pg_is_in_recovery()"), "t");
    assert_eq!(upstream_port(&n1), Some(n2.port()));
    assert_eq!(sql(&n1, "show default_transaction_read_only"), "off");
    assert!(!a.state().topology.is_fenced("node1"));

    // 5. Two candidates at different LSNs: node1 (priority 300) stops receiving, node3 (100) is
    //    ahead when node2 dies: node3 wins.
    sql(&n1, "alter system set primary_conninfo = ''");
    sql(&n1, "select pg_reload_conf()");
    poll(WAIT, || upstream_port(&n1).is_none().then_some(())).expect("node1 still streams");
    sql(
        &n2,
        "insert into t(v) select g from generate_series(101, 200) g",
    );
    let lsn = sql(&n2, "select pg_current_wal_lsn()");
    n3.wait_replayed(&lsn, WAIT).unwrap();
    let killed_ms = unix_ms();
    n2.kill9().unwrap();
    let done = a.wait_event("failover_completed", killed_ms, WAIT);
    assert!(done.is_some(), "{:?}", a.events());
    assert_eq!(
        a.state().topology.primary.as_deref(),
        Some("node3"),
        "{:?}",
        a.events()
    );
    assert_eq!(sql(&n3, "select count(*) from t where v > 0"), "200");
    let follows = poll(WAIT, || {
        (upstream_port(&n1) == Some(n3.port())).then_some(())
    });
    assert!(follows.is_some(), "node1 does not follow node3");
    n1.wait_replayed(&sql(&n3, "select pg_current_wal_lsn()"), WAIT)
        .unwrap();
    assert_eq!(sql(&n1, "select count(*) from t where v > 0"), "200");
    a.stop();

    // 6. With no agent running, `pgsluice clone` runs locally (holding the state lock): a new
    //    configured node4 cloned from node3, streaming, registered in the topology.
    let port4 = pgsluice::cluster::ports::free_port().unwrap();
    let dir4 = c.base_dir().join("node4");
    let text = std::fs::read_to_string(dir.path().join("main.toml")).unwrap();
    let text = text.replace(
        "[agent]",
        &format!(
            "[[cluster.nodes]]\nname = \"node4\"\nhost = \"127.0.0.1\"\nport = {port4}\n\
             data_dir = \"{}\"\n[agent]",
            dir4.display()
        ),
    );
    let cfg4 = dir.path().join("clone.toml");
    std::fs::write(&cfg4, text).unwrap();
    let (code, out) = cli(
        &["clone", "--from", "node3", "--name", "node4", "-c"],
        &cfg4,
    );
    let stop4 = || {
        let run_as = pgsluice::cluster::RunAs::detect(None).unwrap();
        let mut cmd = run_as.command(n1.bin().path("pg_ctl"));
        cmd.args(["stop", "-m", "immediate", "-D"]).arg(&dir4);
        let _ = cmd.output();
    };
    if code != 0 {
        stop4();
        panic!("clone failed: {out}");
    }
    let st: pgsluice::agent::store::Persisted =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("main/state.json")).unwrap())
            .unwrap();
    stop4();
    assert!(out.contains("node4 streams from node3"), "{out}");
    assert!(
        st.topology.standbys.contains(&"node4".to_string()),
        "{st:?}"
    );
}

/// Client loop through the real pooler during a switchover: zero errors, nothing lost.
#[test]
fn switchover_through_the_pooler_without_client_errors() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let spec = ClusterSpec::new(2)
        .user("app", "app-secret")
        .database("app", Some("app"));
    let c = LocalCluster::start(spec).unwrap_or_else(|e| panic!("cluster: {e}"));
    let (n1, n2, n3) = (
        c.nodes()[0].clone(),
        c.nodes()[1].clone(),
        c.nodes()[2].clone(),
    );
    n1.psql(
        "app",
        "create table t(id serial primary key, v int); alter table t owner to app",
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let pooler = Pooler::start(&c, dir.path());
    let mut aspec = AgentSpec::tuned(&c, &[100, 100, 100]);
    aspec
        .agent_lines
        .push(format!("poolers = [\"{}\"]", pooler.control_url()));
    let listen = format!(
        "127.0.0.1:{}",
        pgsluice::cluster::ports::free_port().unwrap()
    )
    .parse()
    .unwrap();
    let state = dir.path().join("state");
    let text = format!(
        "{}\n{}",
        config_text(&c, &aspec, &state, listen),
        pooler.sections
    );
    let a = Agent::start_text(&text, &state, listen);
    assert!(
        a.wait_event("topology_adopted", 0, WAIT).is_some(),
        "{:?}",
        a.events()
    );

    // The command line against the running agent: status, dry runs with their exit codes.
    let cfg_path = dir.path().join("agent.toml");
    std::fs::write(&cfg_path, &text).unwrap();
    a.wait_event("synchronous_standbys_set", 0, Duration::from_millis(600));
    let (code, out) = cli(&["status", "-c"], &cfg_path);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("agent decision: ") && out.contains("node3"),
        "{out}"
    );
    let (code, out) = cli(
        &["switchover", "--to", "node2", "--dry-run", "-c"],
        &cfg_path,
    );
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("switchover: DryRun") && !out.contains("check NO"),
        "{out}"
    );
    let (code, out) = cli(&["failover", "--dry-run", "-c"], &cfg_path);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("check NO  primary node1 is down"), "{out}");
    let (code, out) = cli(&["switchover", "--to", "node1", "-c"], &cfg_path);
    assert_eq!(code, 1, "{out}");

    let load = ClientLoad::start(pooler.url("app"), 4);
    std::thread::sleep(Duration::from_secs(1));
    let req = OpRequest::Switchover {
        to: "node2".into(),
        dry_run: false,
    };
    let rep = block_on(pgsluice::agent::client::op(
        a.listen,
        Some(secret_file()),
        &req,
        Duration::from_secs(120),
    ))
    .unwrap();
    eprintln!("{}", rep.lines.join("\n"));
    std::thread::sleep(Duration::from_secs(1));
    let stats = load.stop();
    eprintln!(
        "switchover under load: {} commits, {} errors, longest transaction {} ms; first errors {:?}",
        stats.ok, stats.errors, stats.max_ms, stats.first_errors
    );
    assert_eq!(rep.outcome, Outcome::Done, "{rep:?}");
    assert_eq!(a.state().topology.primary.as_deref(), Some("node2"));
    assert_eq!(sql(&n1, "select pg_is_in_recovery()"), "t");
    assert_eq!(upstream_port(&n1), Some(n2.port()));
    let follows = poll(WAIT, || {
        (upstream_port(&n3) == Some(n2.port())).then_some(())
    });
    assert!(follows.is_some(), "node3 does not follow node2");
    let rows: u64 = n2
        .psql("app", "select count(*) from t")
        .unwrap()
        .parse()
        .unwrap();
    assert!(stats.ok > 0);
    assert_eq!(rows, stats.ok, "acknowledged writes lost");
    assert_eq!(stats.errors, 0, "client errors: {:?}", stats.first_errors);
    let (code, out) = cli(&["events", "-c"], &cfg_path);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("switchover_completed"), "{out}");
    a.stop();
}

/// Runs the pgsluice binary with `args` followed by `config`; exit code and stdout + stderr.
fn cli(args: &[&str], config: &std::path::Path) -> (i32, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_pgsluice"))
        .args(args)
        .arg(config)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

/// Default timing settings in synchronous mode (ANY 1), kill -9 under a write load through the
/// pooler: writes resume within 10 s and no acknowledged write is lost (the whole process tree
/// is killed, so no orphan backend acknowledges a commit after the fault).
/// Then an agent restarted with a failover left in flight before promotion rolls it back, and
/// one left at promotion with the candidate already promoted finishes it.
#[test]
fn defaults_sync_kill_under_load_and_restart_recovery() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let spec = ClusterSpec::new(2)
        .user("app", "app-secret")
        .database("app", Some("app"));
    let c = LocalCluster::start(spec).unwrap_or_else(|e| panic!("cluster: {e}"));
    let (n1, n2, n3) = (
        c.nodes()[0].clone(),
        c.nodes()[1].clone(),
        c.nodes()[2].clone(),
    );
    n1.psql(
        "app",
        "create table t(id serial primary key, v int); alter table t owner to app",
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let pooler = Pooler::start(&c, dir.path());
    let mut aspec = AgentSpec::tuned(&c, &[100, 100, 100]);
    aspec.agent_lines = vec![
        format!("poolers = [\"{}\"]", pooler.control_url()),
        "synchronous_standbys = 1".into(),
    ];
    let listen = format!(
        "127.0.0.1:{}",
        pgsluice::cluster::ports::free_port().unwrap()
    )
    .parse()
    .unwrap();
    let state = dir.path().join("state");
    let text = format!(
        "{}\n{}",
        config_text(&c, &aspec, &state, listen),
        pooler.sections
    );
    let a = Agent::start_text(&text, &state, listen);
    assert!(
        a.wait_event("topology_adopted", 0, WAIT).is_some(),
        "{:?}",
        a.events()
    );
    assert!(
        a.wait_event("synchronous_standbys_set", 0, WAIT).is_some(),
        "{:?}",
        a.events()
    );
    assert_eq!(
        sql(&n1, "show synchronous_standby_names"),
        "ANY 1 (\"node2\", \"node3\")"
    );

    let load = ClientLoad::start(pooler.url("app"), 4);
    std::thread::sleep(Duration::from_secs(1));
    let killed_ms = unix_ms();
    let killed = Instant::now();
    n1.kill9().unwrap();
    let dead = Instant::now();
    let done = a.wait_event("failover_completed", killed_ms, WAIT);
    assert!(done.is_some(), "{:?}", a.events());
    std::thread::sleep(Duration::from_secs(2));
    assert!(load.running());
    let stats = load.stop();
    let first = ClientLoad::resumed_after(&stats, killed, dead);
    let orphans = ClientLoad::acked_during(&stats, killed, dead);
    let decided = a.wait_event("failover_decided", killed_ms, WAIT).unwrap();
    eprintln!(
        "defaults: kill -9 -> decided {} ms, topology published {} ms, first write through the pooler {:?}; \
         {} commits, {} client errors",
        decided.unix_ms - killed_ms,
        done.map_or(0, |d| d.unix_ms - killed_ms),
        first,
        stats.ok,
        stats.errors
    );
    for e in a.events().iter().filter(|e| e.unix_ms >= killed_ms) {
        eprintln!("+{:>5} ms {}", e.unix_ms - killed_ms, e.line());
    }
    let first = first.expect("no write after the failover");
    assert!(
        first < Duration::from_secs(10),
        "default failover took {first:?}"
    );
    let new = a.state().topology.primary.unwrap();
    let node = if new == "node2" { &n2 } else { &n3 };
    let rows: u64 = node
        .psql("app", "select count(*) from t")
        .unwrap()
        .parse()
        .unwrap();
    eprintln!(
        "acknowledged {} rows ({orphans} while the primary's processes were being killed), \
         {rows} on the new primary",
        stats.ok
    );
    assert!(
        rows >= stats.ok,
        "acknowledged writes lost: {} acknowledged, {rows} found",
        stats.ok
    );
    a.stop();

    // A failover recorded in flight before promotion while the primary is healthy: rolled back.
    let mut st: pgsluice::agent::store::Persisted =
        serde_json::from_str(&std::fs::read_to_string(state.join("state.json")).unwrap()).unwrap();
    let other = if new == "node2" { "node3" } else { "node2" };
    let base = st.topology.clone();
    st.topology = pgsluice::agent::actions::fenced_topology(&base, Some(&new));
    st.inflight = Some(pgsluice::agent::store::InFlight {
        op: "failover".into(),
        old_primary: Some(new.clone()),
        candidate: other.into(),
        followers: vec![],
        step: pgsluice::agent::store::Step::StopOld,
        base_epoch: base.epoch,
        started_unix_ms: unix_ms(),
    });
    std::fs::write(state.join("state.json"), serde_json::to_vec(&st).unwrap()).unwrap();
    let restarted = unix_ms();
    let a = Agent::start_text(&text, &state, listen);
    let rolled = a.wait_event("failover_rolled_back", restarted, WAIT);
    assert!(rolled.is_some(), "{:?}", a.events());
    let after = a.state();
    assert!(after.inflight.is_none());
    assert_eq!(after.topology.primary.as_deref(), Some(new.as_str()));
    assert!(!after.topology.is_fenced(&new));
    assert_eq!(after.topology.epoch, base.epoch + 2);
    assert_eq!(
        node.psql("postgres", "select pg_is_in_recovery()").unwrap(),
        "f"
    );
    std::thread::sleep(Duration::from_millis(600));
    assert!(!a
        .events()
        .iter()
        .any(|e| e.kind == "failover_decided" && e.unix_ms >= restarted));
    a.stop();

    // A failover recorded at the promotion step whose candidate was already promoted:
    // finished (old primary fenced and stopped, topology published), not done twice.
    let cand = if new == "node2" { &n3 } else { &n2 };
    cand.promote().unwrap();
    let mut st: pgsluice::agent::store::Persisted =
        serde_json::from_str(&std::fs::read_to_string(state.join("state.json")).unwrap()).unwrap();
    let base = st.topology.clone();
    st.topology = pgsluice::agent::actions::fenced_topology(&base, Some(&new));
    st.inflight = Some(pgsluice::agent::store::InFlight {
        op: "failover".into(),
        old_primary: Some(new.clone()),
        candidate: cand.name().into(),
        followers: vec![],
        step: pgsluice::agent::store::Step::Promote,
        base_epoch: base.epoch,
        started_unix_ms: unix_ms(),
    });
    std::fs::write(state.join("state.json"), serde_json::to_vec(&st).unwrap()).unwrap();
    let restarted = unix_ms();
    let a = Agent::start_text(&text, &state, listen);
    let done = a.wait_event("failover_completed", restarted, WAIT);
    assert!(done.is_some(), "{:?}", a.events());
    let after = a.state();
    assert_eq!(after.topology.primary.as_deref(), Some(cand.name()));
    assert!(after.topology.is_fenced(&new));
    assert_eq!(after.topology.epoch, base.epoch + 2);
    assert!(!node.is_running(), "the old primary was not stopped");
    let promotions = a
        .events()
        .iter()
        .filter(|e| e.kind == "failover_completed" && e.unix_ms >= restarted)
        .count();
    assert_eq!(promotions, 1);
    a.stop();
}
