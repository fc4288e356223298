//! Helpers for the agent tests: an in-process agent, a cuttable TCP proxy, SQL over TCP.

use pgsluice::agent::events::Event;
use pgsluice::agent::store::{tail_events, Persisted};
use pgsluice::cluster::{ports, LocalCluster, LocalNode};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio_util::sync::CancellationToken;

/// Milliseconds since the Unix epoch.
pub fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Agent settings for a test.
pub struct AgentSpec {
    /// Per node: (name, port the agent uses, priority).
    pub nodes: Vec<(String, u16, u32)>,
    /// `[agent]` lines.
    pub agent_lines: Vec<String>,
}

impl AgentSpec {
    /// Tuned settings (200 ms probes, threshold 3 within 2 s) for every node of `cluster`.
    pub fn tuned(cluster: &LocalCluster, priorities: &[u32]) -> AgentSpec {
        AgentSpec {
            nodes: cluster
                .nodes()
                .iter()
                .zip(priorities)
                .map(|(n, p)| (n.name().to_string(), n.port(), *p))
                .collect(),
            agent_lines: vec![
                "probe_interval = \"200ms\"".into(),
                "probe_timeout = \"1s\"".into(),
                "failure_threshold = 3".into(),
                "failure_window = \"2s\"".into(),
            ],
        }
    }
}

/// An agent running in this process on its own runtime thread.
pub struct Agent {
    pub state_dir: PathBuf,
    pub listen: SocketAddr,
    stop: CancellationToken,
    thread: Option<JoinHandle<()>>,
}

/// The configuration text for `spec` on `cluster`.
pub fn config_text(
    cluster: &LocalCluster,
    spec: &AgentSpec,
    state_dir: &Path,
    listen: SocketAddr,
) -> String {
    let layout = cluster.layout();
    let mut s = format!(
        "[cluster]\nname = \"test\"\npg_bindir = \"{}\"\nsuperuser = \"{}\"\nsuperuser_password = \"{}\"\n\
         replication_user = \"{}\"\nreplication_password = \"{}\"\n",
        layout.bindir.display(),
        layout.superuser,
        layout.superuser_password,
        layout.replication_user,
        layout.replication_password
    );
    for (name, port, prio) in &spec.nodes {
        let data_dir = cluster
            .node(name)
            .map(|n| n.data_dir().to_path_buf())
            .unwrap_or_default();
        s.push_str(&format!(
            "[[cluster.nodes]]\nname = \"{name}\"\nhost = \"127.0.0.1\"\nport = {port}\n\
             data_dir = \"{}\"\npriority = {prio}\n",
            data_dir.display()
        ));
    }
    s.push_str(&format!(
        "[control]\nsecret_file = \"{}\"\n[agent]\nstate_dir = \"{}\"\nlisten = \"{listen}\"\n{}\n",
        secret_file().display(),
        state_dir.display(),
        spec.agent_lines.join("\n")
    ));
    s
}

/// The control-plane secret every agent and pooler of this test binary shares (mode 0600).
pub fn secret_file() -> &'static Path {
    static FILE: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();
    FILE.get_or_init(|| {
        let p = Path::new(env!("CARGO_TARGET_TMPDIR")).join("agent-tests-control.secret");
        pgsluice::net::secret::generate(&p).unwrap();
        p
    })
}

impl Agent {
    /// Starts an agent for `spec` with its state in `state_dir`.
    pub fn start(cluster: &LocalCluster, spec: &AgentSpec, state_dir: &Path) -> Agent {
        let port = ports::free_port().unwrap();
        let listen: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let text = config_text(cluster, spec, state_dir, listen);
        // Kept beside the state directory (`<state_dir>.toml`) for the command line.
        let _ = std::fs::write(state_dir.with_extension("toml"), &text);
        Agent::start_text(&text, state_dir, listen)
    }

    /// Starts an agent from configuration text.
    pub fn start_text(text: &str, state_dir: &Path, listen: SocketAddr) -> Agent {
        let cfg =
            pgsluice::config::from_str(text, "test").unwrap_or_else(|e| panic!("{e}\n{text}"));
        let stop = CancellationToken::new();
        let (s, dir) = (stop.clone(), state_dir.to_path_buf());
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let store = pgsluice::agent::store::LocalStore::open_exclusive(&dir).unwrap();
                if let Err(e) = pgsluice::agent::run::run(&cfg, store, s).await {
                    eprintln!("agent stopped with an error: {e}");
                }
            });
        });
        Agent {
            state_dir: state_dir.to_path_buf(),
            listen,
            stop,
            thread: Some(thread),
        }
    }

    /// Every recorded event.
    pub fn events(&self) -> Vec<Event> {
        tail_events(&self.state_dir, 0)
            .map(|(e, _)| e)
            .unwrap_or_default()
    }

    /// Waits for an event of `kind` recorded at or after `since_ms`.
    pub fn wait_event(&self, kind: &str, since_ms: u64, timeout: Duration) -> Option<Event> {
        poll(timeout, || {
            self.events()
                .into_iter()
                .find(|e| e.kind == kind && e.unix_ms >= since_ms)
        })
    }

    /// The persisted state.
    pub fn state(&self) -> Persisted {
        let text = std::fs::read_to_string(self.state_dir.join("state.json")).unwrap_or_default();
        serde_json::from_str(&text).unwrap_or_default()
    }

    /// Stops the agent and waits for its thread.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        self.stop.cancel();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Polls `f` every 20 ms until it returns something or `timeout` passes.
pub fn poll<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// psql on `node`, panicking with the log tail on error.
pub fn sql(node: &LocalNode, q: &str) -> String {
    node.psql("postgres", q)
        .unwrap_or_else(|e| panic!("{}: {e}\n{}", node.name(), node.log_tail(30)))
}

/// Whether `q` runs on `node` (over TCP, within 1 s).
pub fn try_sql(node: &LocalNode, q: &str) -> bool {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let conninfo = node.conninfo("postgres");
    rt.block_on(async {
        let fut = async {
            let (client, conn) = tokio_postgres::connect(&conninfo, tokio_postgres::NoTls).await?;
            tokio::spawn(conn);
            client.batch_execute(q).await
        };
        matches!(
            tokio::time::timeout(Duration::from_secs(1), fut).await,
            Ok(Ok(()))
        )
    })
}

/// Port of the upstream `node` streams from, if it streams.
pub fn upstream_port(node: &LocalNode) -> Option<u16> {
    node.psql(
        "postgres",
        "select sender_port from pg_stat_wal_receiver where status = 'streaming'",
    )
    .ok()
    .and_then(|s| s.trim().parse().ok())
}

/// A TCP proxy to a port that a test can cut: existing connections are shut down and new ones
/// are closed at once.
pub struct Proxy {
    pub port: u16,
    cut: Arc<AtomicBool>,
    conns: Arc<Mutex<Vec<TcpStream>>>,
}

impl Proxy {
    /// Forwards a free port to `upstream`.
    pub fn start(upstream: u16) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let cut = Arc::new(AtomicBool::new(false));
        let conns = Arc::new(Mutex::new(Vec::new()));
        let (c, k) = (cut.clone(), conns.clone());
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                if c.load(Ordering::SeqCst) {
                    continue;
                }
                let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)) else {
                    continue;
                };
                let mut list = k.lock().unwrap();
                list.push(client.try_clone().unwrap());
                list.push(server.try_clone().unwrap());
                pipe(client.try_clone().unwrap(), server.try_clone().unwrap());
                pipe(server, client);
            }
        });
        Proxy { port, cut, conns }
    }

    /// Cuts every connection, now and later.
    pub fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
        for s in self.conns.lock().unwrap().drain(..) {
            let _ = s.shutdown(std::net::Shutdown::Both);
        }
    }
}

fn pipe(mut from: TcpStream, mut to: TcpStream) {
    std::thread::spawn(move || {
        let mut buf = [0u8; 16384];
        loop {
            match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if to.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            }
        }
        let _ = to.shutdown(std::net::Shutdown::Both);
    });
}

/// The real pooler (`pgsluice pooler`) in front of a cluster database `app`.
pub struct Pooler {
    pub port: u16,
    pub http_port: u16,
    /// The `[pooler]`, `[databases]`, `[users]`, `[metrics]` sections (for the shared config).
    pub sections: String,
    log: PathBuf,
    child: std::process::Child,
}

impl Pooler {
    /// Starts it with a configuration in `dir` describing `cluster`.
    pub fn start(cluster: &LocalCluster, dir: &Path) -> Pooler {
        Pooler::start_with(cluster, dir, None, &[], None)
    }

    /// Starts one under an agent: its file lists its own control URL in `agent.poolers`
    /// (so the write lease applies), with `agent_lines` (e.g. `topology_lease`) and
    /// `pooler_lines` (e.g. `primary_wait_timeout`).
    pub fn start_managed(
        cluster: &LocalCluster,
        dir: &Path,
        agent_lines: &[&str],
        pooler_lines: &[&str],
    ) -> Pooler {
        Pooler::start_with(cluster, dir, Some(agent_lines), pooler_lines, None)
    }

    /// Starts one under the agent that will listen on `agent`: as [`Pooler::start_managed`],
    /// and its file names that address in `agent.listen`, as a shared file would, so that its
    /// notices (broken primary connections) reach the agent.
    pub fn start_beside(
        cluster: &LocalCluster,
        dir: &Path,
        agent: SocketAddr,
        agent_lines: &[&str],
        pooler_lines: &[&str],
    ) -> Pooler {
        Pooler::start_with(cluster, dir, Some(agent_lines), pooler_lines, Some(agent))
    }

    fn start_with(
        cluster: &LocalCluster,
        dir: &Path,
        managed: Option<&[&str]>,
        pooler_lines: &[&str],
        agent: Option<SocketAddr>,
    ) -> Pooler {
        let port = ports::free_port().unwrap();
        let http_port = ports::free_port().unwrap();
        let sections = format!(
            "[pooler]\nlisten_port = {port}\nauth_type = \"scram-sha-256\"\ndefault_pool_size = 8\n\
             query_wait_timeout = \"30s\"\nserver_check_delay = \"1s\"\nstats_period = 0\n{}\n\
             [databases.app]\ndbname = \"app\"\n[users.app]\npassword = \"app-secret\"\n\
             [metrics]\nlisten = \"127.0.0.1:{http_port}\"\n",
            pooler_lines.join("\n")
        );
        let mut spec = AgentSpec::tuned(cluster, &[100, 100, 100]);
        if let Some(lines) = managed {
            spec.agent_lines = lines.iter().map(|l| l.to_string()).collect();
            spec.agent_lines
                .push(format!("poolers = [\"http://127.0.0.1:{http_port}\"]"));
        }
        let state = dir.join("pooler-state");
        let listen: SocketAddr = match agent {
            Some(a) => a,
            None => format!("127.0.0.1:{}", ports::free_port().unwrap())
                .parse()
                .unwrap(),
        };
        let text = format!(
            "{}\n{sections}",
            config_text(cluster, &spec, &state, listen)
        );
        let path = dir.join("pooler.toml");
        std::fs::write(&path, text).unwrap();
        let log = std::fs::File::create(dir.join("pooler.log")).unwrap();
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_pgsluice"))
            .args(["pooler", "-c"])
            .arg(&path)
            .env("RUST_LOG", "info")
            .stdout(std::process::Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        poll(Duration::from_secs(10), || {
            ports::is_listening(port).then_some(())
        })
        .expect("pooler listens");
        Pooler {
            port,
            http_port,
            sections,
            log: dir.join("pooler.log"),
            child,
        }
    }

    /// The last `n` lines of its log.
    pub fn log_tail(&self, n: usize) -> String {
        let t = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = t.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// Its control base URL.
    pub fn control_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.http_port)
    }

    /// A conninfo through the pooler.
    pub fn url(&self, db: &str) -> String {
        format!(
            "host=127.0.0.1 port={} user=app password=app-secret dbname={db}",
            self.port
        )
    }
}

impl Drop for Pooler {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What a client load saw.
#[derive(Debug, Default, Clone)]
pub struct LoadStats {
    pub ok: u64,
    /// When each commit was acknowledged.
    pub ok_at: Vec<Instant>,
    /// When each error happened.
    pub err_at: Vec<Instant>,
    /// Per client, its results in order: (when, ok).
    pub per_client: Vec<Vec<(Instant, bool)>>,
    pub errors: u64,
    pub max_ms: u128,
    pub first_errors: Vec<String>,
}

/// Clients inserting one row per autocommit transaction (simple protocol, like pgbench
/// `-M simple`), reconnecting after an error.
pub struct ClientLoad {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<LoadStats>>,
}

impl ClientLoad {
    /// Starts `clients` clients on `url`.
    pub fn start(url: String, clients: usize) -> ClientLoad {
        let stop = Arc::new(AtomicBool::new(false));
        let threads = (0..clients)
            .map(|_| {
                let (url, stop) = (url.clone(), stop.clone());
                std::thread::spawn(move || client_loop(&url, &stop))
            })
            .collect();
        ClientLoad { stop, threads }
    }

    /// The first commit acknowledged after `dead` (the moment every process of the killed
    /// primary is gone), as a delay from `t` (the start of the fault).
    pub fn resumed_after(stats: &LoadStats, t: Instant, dead: Instant) -> Option<Duration> {
        stats
            .ok_at
            .iter()
            .filter(|o| **o > dead)
            .min()
            .map(|o| *o - t)
    }

    /// Commits acknowledged between the start of the fault and the death of its last process
    /// (orphan backends): with asynchronous standbys these may be lost.
    pub fn acked_during(stats: &LoadStats, t: Instant, dead: Instant) -> usize {
        stats
            .ok_at
            .iter()
            .filter(|o| **o >= t && **o <= dead)
            .count()
    }

    /// Whether the clients still run.
    pub fn running(&self) -> bool {
        !self.stop.load(Ordering::SeqCst)
    }

    /// Stops the clients and sums what they saw.
    pub fn stop(self) -> LoadStats {
        self.stop.store(true, Ordering::SeqCst);
        let mut total = LoadStats::default();
        for t in self.threads {
            let s = t.join().unwrap_or_default();
            total.ok += s.ok;
            total.ok_at.extend(s.ok_at);
            total.err_at.extend(s.err_at);
            total.per_client.extend(s.per_client);
            total.errors += s.errors;
            total.max_ms = total.max_ms.max(s.max_ms);
            total
                .first_errors
                .extend(s.first_errors.into_iter().take(2));
        }
        total
    }
}

fn client_loop(url: &str, stop: &AtomicBool) -> LoadStats {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut stats = LoadStats::default();
        let mut seq = Vec::new();
        let mut client = None;
        while !stop.load(Ordering::SeqCst) {
            let started = Instant::now();
            if client.is_none() {
                match tokio_postgres::connect(url, tokio_postgres::NoTls).await {
                    Ok((c, conn)) => {
                        tokio::spawn(conn);
                        client = Some(c);
                    }
                    Err(e) => {
                        stats.errors += 1;
                        stats.err_at.push(Instant::now());
                        seq.push((Instant::now(), false));
                        stats.first_errors.push(format!("connect: {e}"));
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                }
            }
            let Some(c) = client.as_ref() else { continue };
            match c.simple_query("insert into t(v) values (1)").await {
                Ok(_) => {
                    stats.ok += 1;
                    stats.ok_at.push(Instant::now());
                    seq.push((Instant::now(), true));
                }
                Err(e) => {
                    stats.errors += 1;
                    stats.err_at.push(Instant::now());
                    seq.push((Instant::now(), false));
                    if stats.first_errors.len() < 3 {
                        let why = e
                            .as_db_error()
                            .map_or(e.to_string(), |d| d.message().to_string());
                        stats.first_errors.push(why);
                    }
                    client = None;
                }
            }
            stats.max_ms = stats.max_ms.max(started.elapsed().as_millis());
        }
        stats.per_client.push(seq);
        stats
    })
}
