//! Integration tests of the cluster harness and `pgsluice sandbox` against real PostgreSQL.

use pgsluice::cluster::{ports, process, ClusterSpec, LocalCluster, LocalNode};
use std::path::PathBuf;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(30);

/// Every live process of a node: the postmaster and its children.
fn processes_of(node: &LocalNode) -> Vec<i32> {
    let Some(pm) = node.pid() else {
        return Vec::new();
    };
    let mut all = process::find(|_, s| s.ppid == pm);
    all.push(pm);
    all
}

fn count(node: &LocalNode, db: &str, sql: &str) -> String {
    node.psql(db, sql)
        .unwrap_or_else(|e| panic!("{}: {e}\n{}", node.name(), node.log_tail(20)))
}

#[test]
fn primary_and_two_standbys_replicate_restart_and_leave_nothing_behind() {
    let spec = ClusterSpec::new(2)
        .user("app", "app-secret")
        .database("app", Some("app"));
    let cluster = LocalCluster::start(spec).unwrap_or_else(|e| panic!("start: {e}"));
    let primary = cluster.primary().clone();
    assert_eq!(cluster.nodes().len(), 3);
    assert_eq!(primary.is_in_recovery().ok(), Some(false));
    for s in cluster.standbys() {
        assert_eq!(s.is_in_recovery().ok(), Some(true), "{}", s.name());
        assert!(s.wait_streaming(WAIT).is_ok());
    }
    let apps = count(
        &primary,
        "postgres",
        "select string_agg(application_name, ',' order by application_name) from pg_stat_replication",
    );
    assert_eq!(apps, "node2,node3");

    // Written on the primary as the app role over TCP (SCRAM), read back on both standbys.
    let app = primary.conninfo_as("app", Some("app-secret"), "app");
    let mut cmd = std::process::Command::new(primary.bin().path("psql"));
    cmd.args([&app, "-XAtq", "-v", "ON_ERROR_STOP=1", "-c"])
        .arg("create table t(x int); insert into t values (1)");
    assert!(process::run(&mut cmd, None, None).is_ok(), "psql over TCP");
    cluster
        .wait_replicated(WAIT)
        .unwrap_or_else(|e| panic!("{e}"));
    for s in cluster.standbys() {
        assert_eq!(count(s, "app", "select sum(x) from t"), "1", "{}", s.name());
        let ext =
            "select count(*) from pg_extension where extname in ('pg_buffercache','pg_prewarm')";
        assert_eq!(count(s, "app", ext), "2");
    }

    // A standby stopped and started again catches up.
    let node3 = cluster.standbys()[1].clone();
    assert!(node3.stop().is_ok() && !node3.is_running());
    count(&primary, "app", "insert into t values (2)");
    assert!(node3.start().is_ok() && node3.wait_streaming(WAIT).is_ok());
    cluster
        .wait_replicated(WAIT)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(count(&node3, "app", "select sum(x) from t"), "3");

    // kill9 leaves no process of that server, and the node starts again afterwards.
    let node2 = cluster.standbys()[0].clone();
    let before = processes_of(&node2);
    assert!(before.len() > 1, "postmaster and children: {before:?}");
    let killed = node2.kill9().unwrap_or_else(|e| panic!("{e}"));
    assert!(before
        .iter()
        .all(|p| killed.contains(p) && !process::alive(*p)));
    assert!(!node2.is_running() && !ports::is_listening(node2.port()));
    node2
        .start()
        .unwrap_or_else(|e| panic!("restart after kill9: {e}"));
    assert!(node2.wait_streaming(WAIT).is_ok());

    // After drop: no process, no listening port, no directory.
    let pids: Vec<i32> = cluster.nodes().iter().flat_map(processes_of).collect();
    let node_ports: Vec<u16> = cluster.nodes().iter().map(LocalNode::port).collect();
    let base: PathBuf = cluster.base_dir().to_path_buf();
    drop(cluster);
    assert!(pids.iter().all(|p| !process::alive(*p)), "{pids:?}");
    assert!(node_ports.iter().all(|p| !ports::is_listening(*p)));
    assert!(!base.exists());
}

#[test]
fn two_clusters_start_concurrently_and_a_panic_still_stops_them() {
    let start = || LocalCluster::start(ClusterSpec::new(0));
    let a = std::thread::spawn(start);
    let b = std::thread::spawn(start);
    let (a, b) = match (a.join(), b.join()) {
        (Ok(Ok(a)), Ok(Ok(b))) => (a, b),
        other => panic!("{other:?}"),
    };
    assert_ne!(a.primary().port(), b.primary().port());
    assert_ne!(a.base_dir(), b.base_dir());
    assert_eq!(count(a.primary(), "postgres", "select 1"), "1");
    assert_eq!(count(b.primary(), "postgres", "select 1"), "1");

    // A panicking test unwinds through the cluster's Drop.
    let pids = processes_of(b.primary());
    let port = b.primary().port();
    let unwound = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
        let _owned = b;
        panic!("a failing test");
    }));
    assert!(unwound.is_err());
    assert!(pids.iter().all(|p| !process::alive(*p)), "{pids:?}");
    assert!(!ports::is_listening(port));
    assert!(a.primary().is_running());
}
