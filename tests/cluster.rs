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

/// Runs the built binary; returns (success, stdout + stderr).
fn pgsluice(args: &[&str]) -> (bool, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_pgsluice"))
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running pgsluice {args:?}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// The body of a plain HTTP/1.0 GET on loopback.
fn http_get(port: u16, path: &str) -> String {
    use std::io::{Read, Write};
    let fail = |e: std::io::Error| -> String { panic!("GET {path} on port {port}: {e}") };
    let mut s = match std::net::TcpStream::connect(("127.0.0.1", port)) {
        Ok(s) => s,
        Err(e) => return fail(e),
    };
    let request = format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n");
    if let Err(e) = s.set_read_timeout(Some(Duration::from_secs(5))) {
        return fail(e);
    }
    if let Err(e) = s.write_all(request.as_bytes()) {
        return fail(e);
    }
    let mut text = String::new();
    let _ = s.read_to_string(&mut text);
    text
}

/// The status line of an HTTP/1.0 `POST path` with an empty JSON body on loopback.
fn http_post(port: u16, path: &str, secret: Option<&str>) -> String {
    use std::io::{Read, Write};
    let auth = secret.map_or(String::new(), |s| format!("Authorization: Bearer {s}\r\n"));
    let request = format!(
        "POST {path} HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
         {auth}Content-Length: 2\r\n\r\n{{}}"
    );
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port))
        .unwrap_or_else(|e| panic!("POST {path} on port {port}: {e}"));
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    s.write_all(request.as_bytes())
        .unwrap_or_else(|e| panic!("POST {path}: {e}"));
    let mut text = String::new();
    let _ = s.read_to_string(&mut text);
    text.lines().next().unwrap_or_default().to_string()
}

/// Purges the sandbox even when an assertion fails half-way.
struct SandboxGuard(String);

impl Drop for SandboxGuard {
    fn drop(&mut self) {
        let _ = pgsluice(&["sandbox", "down", "--purge", "--dir", &self.0]);
    }
}

#[test]
fn sandbox_up_status_up_again_and_down_purge() {
    let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let dir_path = tmp.path().join("sb");
    let dir = dir_path.to_string_lossy().into_owned();
    let guard = SandboxGuard(dir.clone());

    let (ok, out) = pgsluice(&["sandbox", "up", "--dir", &dir, "--free-ports"]);
    assert!(ok, "{out}");
    assert!(
        out.contains("created") && out.contains("sandbox down"),
        "{out}"
    );
    let state = pgsluice::sandbox::State::load(&dir_path)
        .ok()
        .flatten()
        .unwrap_or_else(|| panic!("no state after up:\n{out}"));
    assert_eq!(state.cluster.nodes.len(), 3);
    assert!(pgsluice::config::load(&state.config_path()).is_ok());
    let cluster = LocalCluster::adopt(&state.cluster).unwrap_or_else(|e| panic!("{e}"));
    let primary = cluster.primary();
    assert_eq!(count(primary, "app", "select current_database()"), "app");

    // Plain psql as the OS user works on the primary's port (the developer role).
    if let Some(role) = &state.developer_role {
        let mut cmd = std::process::Command::new(primary.bin().path("psql"));
        cmd.args(["-h", "127.0.0.1", "-p", &primary.port().to_string()])
            .args(["-U", role, "-d", role, "-XAtc", "select 1"]);
        assert_eq!(
            process::run(&mut cmd, None, None).ok().as_deref(),
            Some("1\n")
        );
    }

    // The printed console command works for the sandbox's user; the metrics URL answers.
    let conninfo = out
        .lines()
        .find(|l| l.contains("admin console:"))
        .and_then(|l| l.split('"').nth(1))
        .unwrap_or_else(|| panic!("no console command printed:\n{out}"));
    assert!(conninfo.contains("dbname=pgsluice"), "{conninfo}");
    let mut cmd = std::process::Command::new(primary.bin().path("psql"));
    cmd.args(["-XAtc", "SHOW VERSION", conninfo]);
    let version = process::run(&mut cmd, None, None).unwrap_or_else(|e| panic!("{e}"));
    assert!(version.starts_with("pgsluice"), "{version}");
    // The pooler offers TLS with the certificate `up` made: the printed URL requires it.
    let pooled = out
        .lines()
        .find(|l| l.contains("through the pooler:"))
        .and_then(|l| l.split('"').nth(1))
        .unwrap_or_else(|| panic!("no pooler URL printed:\n{out}"));
    assert!(pooled.contains("sslmode=require"), "{pooled}");
    let mut cmd = std::process::Command::new(primary.bin().path("psql"));
    cmd.args(["-XAtc", "select 'over tls'", pooled]);
    let got = process::run(&mut cmd, None, None).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(got.trim(), "over tls");
    let url = format!("http://127.0.0.1:{}/metrics", state.ports.metrics);
    assert!(out.contains(&url), "{out}");
    assert!(http_get(state.ports.metrics, "/metrics").contains("pgsluice_clients"));
    // The control plane needs the random secret `up` wrote (mode 0600).
    let secret_path = dir_path.join("control.secret");
    let mode = std::fs::metadata(&secret_path)
        .map(|m| std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o777)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(mode, 0o600);
    let secret = std::fs::read_to_string(&secret_path).unwrap_or_else(|e| panic!("{e}"));
    let secret = secret.trim();
    assert_eq!(secret.len(), 64, "a 32-byte random secret in hex");
    let refused = http_post(state.ports.metrics, "/control/resume", None);
    assert!(refused.contains(" 401 "), "{refused}");
    let accepted = http_post(state.ports.metrics, "/control/resume", Some(secret));
    assert!(accepted.contains(" 200 "), "{accepted}");
    let refused = http_post(state.ports.agent, "/probe", None);
    assert!(refused.contains(" 401 "), "{refused}");
    let accepted = http_post(state.ports.agent, "/probe", Some(secret));
    assert!(accepted.contains(" 200 "), "{accepted}");

    let (ok, out) = pgsluice(&["sandbox", "status", "--dir", &dir]);
    assert!(ok, "{out}");
    assert!(
        out.contains("primary") && out.matches("streaming from").count() == 2,
        "{out}"
    );

    // A plain `up` runs one agent with its state on disk: no etcd.
    assert!(state.multi.is_none() && !out.contains("etcd"), "{out}");

    let (ok, again) = pgsluice(&["sandbox", "up", "--dir", &dir]);
    assert!(ok, "{again}");
    assert!(again.contains("already there") && again.matches("already running").count() >= 3);

    let mut pids: Vec<i32> = cluster.nodes().iter().flat_map(processes_of).collect();
    pids.extend(state.services.iter().map(|s| s.pid));
    let node_ports: Vec<u16> = cluster.nodes().iter().map(LocalNode::port).collect();
    let base = state.cluster.base_dir.clone();
    let (ok, out) = pgsluice(&["sandbox", "down", "--purge", "--dir", &dir]);
    assert!(ok, "{out}");
    assert!(pids.iter().all(|p| !process::alive(*p)), "{pids:?}\n{out}");
    assert!(node_ports.iter().all(|p| !ports::is_listening(*p)));
    assert!(!ports::is_listening(state.ports.pooler));
    assert!(!base.exists() && !dir_path.exists(), "{out}");
    drop(guard);
}

/// `sandbox up --agents 3`: a local etcd and three agents, one of which leads; `status` shows
/// them; `down` stops exactly what `up` started.
#[test]
fn sandbox_with_three_agents_through_etcd() {
    if pgsluice::sandbox::multi::etcd_binary().is_none() {
        println!("skipped: no etcd binary on PATH (apt-get install etcd-server)");
        return;
    }
    let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let dir_path = tmp.path().join("sb3");
    let dir = dir_path.to_string_lossy().into_owned();
    let guard = SandboxGuard(dir.clone());
    let up = [
        "sandbox",
        "up",
        "--dir",
        &dir,
        "--free-ports",
        "--agents",
        "3",
    ];
    let (ok, out) = pgsluice(&up);
    assert!(ok, "{out}");
    for key in ["etcd", "agent1", "agent2", "agent3"] {
        assert!(out.contains(&format!("{key:<8} started")), "{key}:\n{out}");
    }
    let state = pgsluice::sandbox::State::load(&dir_path)
        .ok()
        .flatten()
        .unwrap_or_else(|| panic!("no state after up:\n{out}"));
    let m = state.multi.clone().expect("several agents recorded");
    assert_eq!(m.agent_ports.len(), 3);
    for i in 0..3 {
        let path = pgsluice::sandbox::multi::agent_config(&state, i);
        let c = pgsluice::config::load(&path).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.agent.name, format!("agent{}", i + 1));
        assert_eq!(c.agent.listen.port(), m.agent_ports[i]);
    }

    // One leader, two followers, as `sandbox status` and `pgsluice status` tell.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let status = loop {
        let (ok, out) = pgsluice(&["sandbox", "status", "--dir", &dir]);
        assert!(ok, "{out}");
        if out.matches(", leader").count() == 1 && out.matches(", follower").count() == 2 {
            break out;
        }
        assert!(std::time::Instant::now() < deadline, "no leader:\n{out}");
        std::thread::sleep(std::time::Duration::from_millis(500));
    };
    assert!(
        status.contains("etcd     running (pid") && status.contains("pooler   running"),
        "{status}"
    );
    let config = state.config_path().to_string_lossy().into_owned();
    let (ok, out) = pgsluice(&["status", "-c", &config]);
    assert!(
        ok && out.contains("agents: ") && out.contains("leader agent"),
        "{out}"
    );

    // `down` stops exactly what `up` started (etcd included) and keeps the data.
    let state = pgsluice::sandbox::State::load(&dir_path)
        .ok()
        .flatten()
        .unwrap();
    let pids: Vec<i32> = state.services.iter().map(|s| s.pid).collect();
    assert_eq!(pids.len(), 5, "{:?}", state.services);
    let (ok, out) = pgsluice(&["sandbox", "down", "--dir", &dir]);
    assert!(ok, "{out}");
    assert!(pids.iter().all(|p| !process::alive(*p)), "{pids:?}\n{out}");
    assert!(!ports::is_listening(m.etcd_client_port), "{out}");
    for key in ["etcd", "agent1", "agent2", "agent3", "pooler"] {
        assert!(
            out.contains(&format!("stopped {key} (pid")),
            "{key}:\n{out}"
        );
    }
    assert!(dir_path.join("etcd").is_dir());
    drop(guard);
}

/// Every quoting function of `pgsluice::quote` against PostgreSQL itself: a value quoted for
/// postgresql.conf, for a conninfo string and as a SQL literal reads back unchanged.
#[test]
fn quoted_values_read_back_unchanged() {
    use pgsluice::quote::{conf_value, conninfo_value, sql_literal};
    let cluster = LocalCluster::start(ClusterSpec::new(0)).unwrap_or_else(|e| panic!("{e}"));
    let node = cluster.primary();
    let values = [
        "plain",
        "it's",
        r"a\b",
        r"password='a\'b' host=x",
        "",
        r"\\'\'",
    ];
    let conf = node.data_dir().join("postgresql.conf");
    for (i, v) in values.iter().enumerate() {
        pgsluice::cluster::conf::set_in_file(&conf, &format!("pgsluice.q{i}"), &conf_value(v))
            .unwrap_or_else(|e| panic!("{e}"));
    }
    node.stop().unwrap_or_else(|e| panic!("{e}"));
    node.start()
        .unwrap_or_else(|e| panic!("{e}\n{}", node.log_tail(20)));
    for (i, v) in values.iter().enumerate() {
        let sql = format!(
            "select current_setting('pgsluice.q{i}') = {}",
            sql_literal(v)
        );
        assert_eq!(count(node, "postgres", &sql), "t", "conf value {v:?}");
        let sql = format!("select {}", sql_literal(v));
        assert_eq!(count(node, "postgres", &sql), *v, "SQL literal {v:?}");
        let db = format!("dbname=postgres application_name={}", conninfo_value(v));
        let sql = format!(
            "select current_setting('application_name') = {}",
            sql_literal(v)
        );
        assert_eq!(count(node, &db, &sql), "t", "conninfo value {v:?}");
    }
}

/// The prober the agent and discovery share, against a primary and a standby: the status
/// statement reads each role and position; a kept connection is reused and replaced when the
/// node's target changes; an unreachable node is an error.
#[test]
fn shared_prober_reads_roles_and_keeps_connections() {
    use pgsluice::probe::{self, Conns, NodeStatus, Target, STATUS_SQL};
    use std::sync::Arc;
    let cluster = LocalCluster::start(ClusterSpec::new(1)).unwrap_or_else(|e| panic!("{e}"));
    let layout = cluster.layout();
    let target = |n: &LocalNode, app: &'static str| Target {
        name: n.name().to_string(),
        host: "127.0.0.1".into(),
        port: n.port(),
        user: layout.superuser.clone(),
        password: Some(layout.superuser_password.clone()),
        dbname: "postgres".into(),
        application_name: app,
    };
    let (primary, standby) = (cluster.primary(), &cluster.standbys()[0]);
    assert!(standby.wait_streaming(WAIT).is_ok());
    let dead_port = ports::free_port().unwrap_or_else(|e| panic!("{e}"));
    let mut dead = target(primary, "probe-test");
    dead.name = "dead".into();
    dead.port = dead_port;
    let targets = [
        target(primary, "probe-test"),
        target(standby, "probe-test"),
        dead,
    ];
    let rt = tokio::runtime::Runtime::new().unwrap_or_else(|e| panic!("{e}"));
    rt.block_on(async {
        let conns = Arc::new(Conns::default());
        let answers = probe::round(&targets, &conns, STATUS_SQL, WAIT).await;
        let status = |i: usize| {
            let a = answers[i].as_ref().unwrap_or_else(|e| panic!("{e}"));
            NodeStatus::parse(&a.rows[0]).unwrap_or_else(|| panic!("no row"))
        };
        let (p, s) = (status(0), status(1));
        assert_eq!((p.in_recovery, s.in_recovery), (Some(false), Some(true)));
        assert!(p.insert_lsn.is_some() && p.current_lsn.is_some() && s.insert_lsn.is_none());
        assert!(p.readable_position() >= s.readable_position());
        assert!(
            s.replay_lsn.is_some() && s.readable_position() == s.replay_lsn.unwrap_or_default()
        );
        assert!(answers[2].is_err(), "a node nobody listens for is an error");

        let first = conns
            .get(&targets[0], WAIT)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let again = conns
            .get(&targets[0], WAIT)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(Arc::ptr_eq(&first, &again), "a kept connection is reused");
        let renamed = target(primary, "probe-test-2");
        let other = conns
            .get(&renamed, WAIT)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(
            !Arc::ptr_eq(&first, &other),
            "a changed target gets a new connection"
        );
        let app = conns
            .scalar(&renamed, "select current_setting('application_name')", WAIT)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(app.as_deref(), Some("probe-test-2"));
    });
}
