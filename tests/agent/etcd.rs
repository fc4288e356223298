//! Several agents coordinated through a real etcd on loopback: the store's fencing, auth, and
//! three agent processes managing a primary and two standbys (leader cut off from etcd, leader
//! killed, primary killed with an agent down, etcd stopped and back), a pooler following the
//! topology key in etcd.

use super::util::*;
use pgsluice::agent::events::Event;
use pgsluice::agent::lease::{membership, AgentInfo};
use pgsluice::agent::store::{Persisted, StateStore, StoreError};
use pgsluice::agent::store_etcd::EtcdStore;
use pgsluice::cluster::{ports, ClusterSpec, LocalCluster};
use pgsluice::etcd::{EtcdClient, EtcdSettings};
use pgsluice::topology::Topology;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The lease TTL the scenarios use.
const TTL_S: u64 = 3;

/// A single-member etcd on free loopback ports, killed (by PID) when dropped.
struct Etcd {
    dir: PathBuf,
    client_port: u16,
    peer_port: u16,
    child: Option<Child>,
}

impl Etcd {
    fn start(dir: &Path) -> Etcd {
        let mut e = Etcd::not_started(dir);
        e.run();
        e
    }

    /// Ports and directory chosen, nothing running yet (see [`Etcd::run`]).
    fn not_started(dir: &Path) -> Etcd {
        Etcd {
            dir: dir.join("etcd"),
            client_port: ports::free_port().unwrap(),
            peer_port: ports::free_port().unwrap(),
            child: None,
        }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.client_port)
    }

    /// Starts (or restarts, same data) the member and waits until it answers.
    fn run(&mut self) {
        let (c, p) = (self.url(), format!("http://127.0.0.1:{}", self.peer_port));
        let log = std::fs::File::create(self.dir.with_extension("log")).unwrap();
        let child = Command::new("etcd")
            .args(["--name", "t", "--data-dir"])
            .arg(&self.dir)
            .args(["--listen-client-urls", &c, "--advertise-client-urls", &c])
            .args([
                "--listen-peer-urls",
                &p,
                "--initial-advertise-peer-urls",
                &p,
            ])
            .args(["--initial-cluster", &format!("t={p}")])
            .args(["--initial-cluster-state", "new"])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("etcd (apt-get install etcd-server)");
        self.child = Some(child);
        let client = EtcdClient::new(settings(&[self.url()]));
        let rt = rt();
        poll(Duration::from_secs(10), || {
            rt.block_on(client.get("/ping")).ok().map(|_| ())
        })
        .expect("etcd answers");
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        self.kill();
    }
}

fn settings(endpoints: &[String]) -> EtcdSettings {
    EtcdSettings {
        endpoints: endpoints.to_vec(),
        auth: None,
        timeout: Duration::from_secs(1),
    }
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn me(name: &str) -> AgentInfo {
    AgentInfo {
        name: name.into(),
        listen: "127.0.0.1:1".into(),
        started_unix_ms: 0,
    }
}

fn topo(epoch: u64, primary: &str) -> Persisted {
    Persisted {
        topology: Topology {
            epoch,
            primary: Some(primary.into()),
            ..Topology::default()
        },
        inflight: None,
    }
}

/// The store alone: one leader among two, only it writes, the epoch is compared and swapped,
/// a resigned leader is replaced at once and can no longer write.
#[test]
fn etcd_store_lease_and_fencing() {
    let dir = tempfile::tempdir().unwrap();
    let etcd = Etcd::start(dir.path());
    rt().block_on(async {
        let ttl = Duration::from_secs(2);
        let s = settings(&[etcd.url()]);
        let a = EtcdStore::open(s.clone(), "/t/", me("a"), ttl);
        tokio::time::sleep(Duration::from_millis(300)).await;
        let b = EtcdStore::open(s.clone(), "/t/", me("b"), ttl);
        tokio::time::sleep(Duration::from_millis(700)).await;
        assert!(a.may_act() && !b.may_act(), "a started first and leads");
        a.save(0, &topo(1, "n1")).await.unwrap();
        assert!(matches!(
            b.save(1, &topo(2, "n2")).await,
            Err(StoreError::NotLeader(_))
        ));
        assert!(matches!(
            a.save(0, &topo(2, "n2")).await,
            Err(StoreError::EpochMoved { found: 1, .. })
        ));
        a.append_event(&Event::now("x", None, "", 1)).await.unwrap();
        let m = membership(a.client(), "/t/").await.unwrap();
        assert_eq!(m.agents.len(), 2);
        assert_eq!(m.leader.map(|l| l.name).as_deref(), Some("a"));
        assert!(m.lease_ttl_left.is_some());
        // a resigns (clean stop): b leads within one tick, a can no longer write.
        let t = Instant::now();
        a.release().await;
        while !b.may_act() {
            assert!(t.elapsed() < Duration::from_secs(2), "b did not take over");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(a.save(1, &topo(2, "n3")).await.is_err());
        b.save(1, &topo(2, "n2")).await.unwrap();
        assert_eq!(b.load().await.unwrap().topology.epoch, 2);
        let (events, next) = b.events(0).await.unwrap();
        assert_eq!(events[0].agent.as_deref(), Some("a"));
        assert!(b.events(next).await.unwrap().0.is_empty());
    });
}

/// Several endpoints: a request that cannot reach the first (nothing listens there) is
/// answered by the next; with every endpoint down the error says etcd is unreachable. One
/// client used from two runtimes in turn (as the CLI does) opens a new connection when the
/// first one's runtime is gone.
#[test]
fn etcd_client_tries_the_next_endpoint() {
    let dir = tempfile::tempdir().unwrap();
    let mut etcd = Etcd::start(dir.path());
    let dead = format!("http://127.0.0.1:{}", ports::free_port().unwrap());
    let client = EtcdClient::new(settings(&[dead.clone(), etcd.url()]));
    rt().block_on(async {
        client.put("/k", b"v1", 0).await.unwrap();
        assert_eq!(client.get("/k").await.unwrap().0.unwrap().value, b"v1");
    });
    // A second runtime: the connection kept from the first one is dead; it is replaced.
    let (kv, _) = rt().block_on(client.get("/k")).unwrap();
    assert_eq!(kv.unwrap().value, b"v1");
    etcd.kill();
    let e = rt().block_on(client.get("/k")).unwrap_err();
    assert!(
        matches!(e, pgsluice::etcd::EtcdError::Unreachable(_)),
        "{e:?}"
    );
}

/// Authentication: with a user and password the client works; without, etcd refuses.
#[test]
fn etcd_client_authenticates() {
    let dir = tempfile::tempdir().unwrap();
    let etcd = Etcd::start(dir.path());
    let ctl = |args: &[&str]| {
        let out = Command::new("etcdctl")
            .env("ETCDCTL_API", "3")
            .args(["--endpoints", &etcd.url()])
            .args(args)
            .output()
            .expect("etcdctl (apt-get install etcd-client)");
        assert!(out.status.success(), "{out:?}");
    };
    ctl(&["user", "add", "root:rootpw"]);
    ctl(&["auth", "enable"]);
    rt().block_on(async {
        let anon = EtcdClient::new(settings(&[etcd.url()]));
        assert!(anon.put("/k", b"v", 0).await.is_err());
        let mut s = settings(&[etcd.url()]);
        s.auth = Some(("root".into(), "rootpw".into()));
        let c = EtcdClient::new(s);
        c.put("/k", b"v", 0).await.unwrap();
        assert_eq!(c.get("/k").await.unwrap().0.unwrap().value, b"v");
    });
}

/// An agent process (`pgsluice agent`) with the etcd store; killed with SIGKILL when dropped.
struct AgentProc {
    name: String,
    listen: SocketAddr,
    child: Child,
}

impl AgentProc {
    fn start(c: &LocalCluster, dir: &Path, name: &str, endpoint: &str) -> AgentProc {
        Self::start_with(c, dir, name, endpoint, &[])
    }

    /// Started with `extra` lines in its `[agent]` section.
    fn start_with(
        c: &LocalCluster,
        dir: &Path,
        name: &str,
        endpoint: &str,
        extra: &[&str],
    ) -> AgentProc {
        let port = ports::free_port().unwrap();
        let listen: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let mut spec = AgentSpec::tuned(c, &[100, 100, 100]);
        spec.agent_lines.extend(etcd_lines(endpoint));
        spec.agent_lines.extend(extra.iter().map(|l| l.to_string()));
        spec.agent_lines.push(format!("name = \"{name}\""));
        let text = config_text(c, &spec, &dir.join(name), listen);
        let path = dir.join(format!("{name}.toml"));
        std::fs::write(&path, text).unwrap();
        let log = std::fs::File::create(dir.join(format!("{name}.log"))).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_pgsluice"))
            .args(["agent", "-c"])
            .arg(&path)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        AgentProc {
            name: name.into(),
            listen,
            child,
        }
    }

    /// Its `/status`.
    fn status(&self) -> Option<pgsluice::agent::run::Status> {
        let addr = self.listen;
        let timeout = Duration::from_secs(1);
        rt().block_on(pgsluice::agent::client::status(
            addr,
            Some(secret_file()),
            timeout,
        ))
        .ok()
    }

    /// The decision phase its `/status` reports (`follower` when it does not act).
    fn phase(&self) -> Option<String> {
        let s = rt()
            .block_on(pgsluice::agent::client::status(
                self.listen,
                Some(secret_file()),
                Duration::from_secs(1),
            ))
            .ok()?;
        s.decision.get("phase")?.as_str().map(str::to_string)
    }
}

impl Drop for AgentProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn etcd_lines(endpoint: &str) -> Vec<String> {
    vec![
        "state_store = \"etcd\"".into(),
        format!("etcd_endpoints = [\"{endpoint}\"]"),
        "etcd_prefix = \"/it/\"".into(),
        format!("lease_ttl = \"{TTL_S}s\""),
    ]
}

/// Events recorded in etcd since `since_ms`.
fn events(etcd: &Etcd, since_ms: u64) -> Vec<Event> {
    let store = EtcdStore::read_only(settings(&[etcd.url()]), "/it/");
    let all = rt().block_on(store.events(0)).map(|e| e.0);
    all.unwrap_or_default()
        .into_iter()
        .filter(|e| e.unix_ms >= since_ms)
        .collect()
}

fn wait_event(etcd: &Etcd, kind: &str, since_ms: u64, timeout: Duration) -> Option<Event> {
    poll(timeout, || {
        events(etcd, since_ms).into_iter().find(|e| e.kind == kind)
    })
}

fn leader(etcd: &Etcd) -> Option<String> {
    let client = EtcdClient::new(settings(&[etcd.url()]));
    let m = rt().block_on(membership(&client, "/it/")).ok()?;
    m.leader.map(|l| l.name)
}

/// A pooler whose configuration names the etcd store: it follows the topology key.
fn pooler(c: &LocalCluster, dir: &Path, etcd: &Etcd) -> (Child, u16, u16) {
    let (port, http) = (ports::free_port().unwrap(), ports::free_port().unwrap());
    let mut spec = AgentSpec::tuned(c, &[100, 100, 100]);
    spec.agent_lines.extend(etcd_lines(&etcd.url()));
    let listen: SocketAddr = "127.0.0.1:9".parse().unwrap();
    let text = format!(
        "{}\n[pooler]\nlisten_port = {port}\nauth_type = \"scram-sha-256\"\ndefault_pool_size = 4\n\
         query_wait_timeout = \"30s\"\nstats_period = 0\n[databases.app]\ndbname = \"app\"\n\
         [users.app]\npassword = \"app-secret\"\n[metrics]\nlisten = \"127.0.0.1:{http}\"\n",
        config_text(c, &spec, &dir.join("pooler-state"), listen)
    );
    std::fs::write(dir.join("pooler.toml"), text).unwrap();
    let log = std::fs::File::create(dir.join("pooler.log")).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_pgsluice"))
        .args(["pooler", "-c"])
        .arg(dir.join("pooler.toml"))
        .env("RUST_LOG", "info")
        .stderr(log)
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    poll(Duration::from_secs(10), || {
        ports::is_listening(port).then_some(())
    })
    .unwrap();
    (child, port, http)
}

/// The topology the pooler holds.
fn pooler_topology(http: u16) -> Topology {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", http)).unwrap();
    use std::io::{Read, Write};
    write!(s, "GET /control/topology HTTP/1.0\r\nHost: x\r\n\r\n").unwrap();
    let mut text = String::new();
    let _ = s.read_to_string(&mut text);
    let body = text.split("\r\n\r\n").nth(1).unwrap_or("{}");
    serde_json::from_str(body).unwrap_or_default()
}

fn primaries(c: &LocalCluster) -> Vec<String> {
    c.nodes()
        .iter()
        .filter(|n| try_sql(n, "select 1") && sql(n, "select pg_is_in_recovery()") == "f")
        .map(|n| n.name().to_string())
        .collect()
}

#[test]
fn three_agents_through_etcd() {
    let _serial = super::SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let spec = ClusterSpec::new(2)
        .user("app", "app-secret")
        .database("app", Some("app"));
    let c = LocalCluster::start(spec).unwrap_or_else(|e| panic!("cluster: {e}"));
    let n1 = c.nodes()[0].clone();
    n1.psql(
        "app",
        "create table t(id serial primary key, v int); alter table t owner to app",
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mut etcd = Etcd::start(d);
    let ttl = Duration::from_secs(TTL_S);
    let (mut pooler_child, pooler_port, http) = pooler(&c, d, &etcd);

    // 1. a1 (reaching etcd through a proxy) leads; the pooler gets epoch 1 from etcd alone.
    let proxy = Proxy::start(etcd.client_port);
    let a1 = AgentProc::start(&c, d, "a1", &format!("http://127.0.0.1:{}", proxy.port));
    let adopted = wait_event(&etcd, "topology_adopted", 0, Duration::from_secs(15));
    assert!(adopted.is_some(), "{:?}", events(&etcd, 0));
    assert_eq!(leader(&etcd).as_deref(), Some("a1"));
    let mut agents = vec![
        AgentProc::start(&c, d, "a2", &etcd.url()),
        AgentProc::start(&c, d, "a3", &etcd.url()),
    ];
    let t = poll(Duration::from_secs(5), || {
        Some(pooler_topology(http)).filter(|t| t.epoch == 1)
    });
    assert_eq!(t.and_then(|t| t.primary).as_deref(), Some("node1"));
    poll(Duration::from_secs(5), || {
        (agents
            .iter()
            .all(|a| a.phase().as_deref() == Some("follower")))
        .then_some(())
    })
    .expect("a2 and a3 follow");

    // 2. a1 cut off from etcd: it stops acting at once; another takes over within the TTL.
    let cut = Instant::now();
    let cut_ms = unix_ms();
    proxy.cut();
    poll(Duration::from_secs(2), || {
        (a1.phase().as_deref() == Some("follower")).then_some(())
    })
    .expect("a1 stops acting");
    let stopped = cut.elapsed();
    let took = wait_event(&etcd, "leadership_acquired", cut_ms, ttl * 2).expect("takeover");
    let takeover = Duration::from_millis(took.unix_ms - cut_ms);
    println!(
        "cut off: a1 stopped acting after {stopped:?}, {} took over after {takeover:?}",
        took.agent.as_deref().unwrap_or("?")
    );
    assert!(stopped < Duration::from_millis(1500), "{stopped:?}");
    assert!(takeover < ttl + Duration::from_secs(2), "{takeover:?}");
    drop(a1);
    drop(proxy);

    // 3. The leader killed (SIGKILL): the other takes over within the TTL.
    let lead = leader(&etcd).unwrap();
    let killed_ms = unix_ms();
    agents.retain(|a| a.name != lead); // dropping it kills it
    let took = wait_event(&etcd, "leadership_acquired", killed_ms, ttl * 2).expect("takeover");
    let takeover = Duration::from_millis(took.unix_ms - killed_ms);
    println!(
        "leader {lead} killed: {} took over after {takeover:?}",
        took.agent.as_deref().unwrap_or("?")
    );
    assert!(takeover < ttl + Duration::from_secs(2), "{takeover:?}");

    // 4. The primary killed while two of the three agents are down, a fresh agent racing the
    //    leader: exactly one promotion, and the pooler learns it from etcd.
    agents.push(AgentProc::start(&c, d, "a4", &etcd.url()));
    std::thread::sleep(Duration::from_secs(1));
    let killed_ms = unix_ms();
    n1.kill9().unwrap();
    let done = wait_event(
        &etcd,
        "failover_completed",
        killed_ms,
        Duration::from_secs(20),
    );
    assert!(done.is_some(), "{:#?}", events(&etcd, killed_ms));
    std::thread::sleep(Duration::from_secs(1));
    let promoted: Vec<_> = events(&etcd, killed_ms)
        .into_iter()
        .filter(|e| e.kind == "promoted")
        .collect();
    assert_eq!(promoted.len(), 1, "{promoted:#?}");
    let new_primary = primaries(&c);
    assert_eq!(new_primary.len(), 1, "{new_primary:?}");
    let epoch = poll(Duration::from_secs(5), || {
        let t = pooler_topology(http);
        (t.primary.as_ref() == Some(&new_primary[0])).then_some(t.epoch)
    })
    .expect("pooler follows the new primary");

    // 5. etcd stopped: nobody acts, nobody is demoted, clients keep writing through the pooler.
    let url = format!("host=127.0.0.1 port={pooler_port} user=app password=app-secret dbname=app");
    let load = ClientLoad::start(url, 2);
    std::thread::sleep(Duration::from_millis(500));
    etcd.kill();
    std::thread::sleep(ttl * 2 + Duration::from_secs(1));
    let follow = || {
        agents
            .iter()
            .all(|a| a.phase().as_deref() == Some("follower"))
    };
    if poll(Duration::from_secs(3), || follow().then_some(())).is_none() {
        let phases: Vec<_> = agents.iter().map(|a| (&a.name, a.phase())).collect();
        for a in &agents {
            let log = std::fs::read_to_string(d.join(format!("{}.log", a.name))).unwrap();
            let tail: Vec<_> = log.lines().rev().take(15).collect();
            eprintln!(
                "--- {}:\n{}",
                a.name,
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
        panic!("agents act without etcd: {phases:?}");
    }
    // A probe can time out on a loaded machine: a demotion would last, a slow probe does not.
    let same = poll(Duration::from_secs(10), || {
        (primaries(&c) == new_primary).then_some(())
    });
    assert!(
        same.is_some(),
        "primary changed while etcd was down: {:?}",
        primaries(&c)
    );
    assert_eq!(pooler_topology(http).epoch, epoch);
    let stats = load.stop();
    println!(
        "etcd down {:?}: {} commits, {} errors",
        ttl * 2,
        stats.ok,
        stats.errors
    );
    assert_eq!(stats.errors, 0, "{:?}", stats.first_errors);
    assert!(stats.ok > 10);

    // 6. etcd back: a leader acts again, same primary.
    let back_ms = unix_ms();
    etcd.run();
    let took = wait_event(&etcd, "leadership_acquired", back_ms, ttl * 3);
    assert!(took.is_some(), "{:#?}", events(&etcd, back_ms));
    let same = poll(Duration::from_secs(10), || {
        (primaries(&c) == new_primary).then_some(())
    });
    assert!(
        same.is_some(),
        "primary changed after etcd came back: {:?}",
        primaries(&c)
    );
    assert_eq!(pooler_topology(http).primary, Some(new_primary[0].clone()));
    let _ = pooler_child.kill();
    let _ = pooler_child.wait();
}

/// Agents started before etcd keep running as followers and take charge once it answers;
/// only the leader captures and warms, it saves the hot set in etcd, and the next leader
/// starts from that hot set.
#[test]
fn agents_wait_for_etcd_and_only_the_leader_warms() {
    let _serial = super::SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let spec = ClusterSpec::new(1)
        .database("app", None)
        .conf("shared_buffers = 32MB");
    let c = LocalCluster::start(spec).unwrap_or_else(|e| panic!("cluster: {e}"));
    let n1 = c.nodes()[0].clone();
    n1.psql(
        "app",
        "create table hot(id int primary key, pad text); \
         insert into hot select g, repeat('x', 100) from generate_series(1, 20000) g",
    )
    .unwrap();
    for _ in 0..4 {
        n1.psql("app", "select count(*) from hot").unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mut etcd = Etcd::not_started(d);
    let warm = ["hot_set_interval = \"1s\""];
    let mut agents = vec![
        AgentProc::start_with(&c, d, "w1", &etcd.url(), &warm),
        AgentProc::start_with(&c, d, "w2", &etcd.url(), &warm),
    ];

    // 1. No etcd: both keep running, following (probing, answering /status), logging.
    std::thread::sleep(Duration::from_secs(3));
    for a in &mut agents {
        assert!(a.child.try_wait().unwrap().is_none(), "{} exited", a.name);
        let st = a.status().expect("follower answers");
        assert_eq!(st.decision["phase"], "follower");
        assert_eq!(st.nodes.len(), 2, "{} probes the nodes", a.name);
        let log = std::fs::read_to_string(d.join(format!("{}.log", a.name))).unwrap();
        assert!(log.contains("etcd request failed"), "{log}");
    }

    // 2. etcd starts: one leads, both record their start; the leader saves the hot set.
    etcd.run();
    let took = wait_event(&etcd, "leadership_acquired", 0, Duration::from_secs(10));
    assert!(took.is_some(), "{:#?}", events(&etcd, 0));
    poll(Duration::from_secs(5), || {
        let ev = events(&etcd, 0);
        let started = |n: &str| {
            ev.iter()
                .any(|e| e.kind == "agent_started" && e.agent.as_deref() == Some(n))
        };
        (started("w1") && started("w2")).then_some(())
    })
    .expect("both agents record agent_started");
    let store = EtcdStore::read_only(settings(&[etcd.url()]), "/it/");
    let hot = poll(Duration::from_secs(15), || {
        let doc = rt().block_on(store.get_doc("hotset")).ok()??;
        pgsluice::agent::hotset::HotSetDoc::decode(&doc).filter(|h| !h.blocks.is_empty())
    })
    .expect("the leader saves the hot set in etcd");
    assert_eq!(hot.source, "node1");
    let lead = leader(&etcd).unwrap();
    let warmth = |a: &AgentProc| a.status().map(|s| s.warmth).unwrap_or_default();
    let (leading, following): (Vec<_>, Vec<_>) = agents.iter().partition(|a| a.name == lead);
    poll(Duration::from_secs(15), || {
        warmth(leading[0]).contains_key("node2").then_some(())
    })
    .expect("the leader measures and warms node2");
    assert!(warmth(following[0]).is_empty(), "a follower warms");

    // 3. The leader killed: the next one starts from the saved hot set.
    let killed_ms = unix_ms();
    agents.retain(|a| a.name != lead);
    let took = wait_event(
        &etcd,
        "leadership_acquired",
        killed_ms,
        Duration::from_secs(10),
    )
    .expect("takeover");
    println!("takeover: {}", took.details);
    assert!(took.details.contains("hot set restored"), "{took:?}");
    assert!(took.details.contains("captured on node1"), "{took:?}");
}
