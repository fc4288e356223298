//! Cluster-aware routing against a real primary and two standbys: reads on standbys under
//! `read-only` and `auto`, the lag threshold, read-your-writes, a standby killed, and a
//! promotion by hand. These tests own their clusters (they pause, kill and promote nodes), run
//! one at a time, and leave the shared fixture alone.

use crate::util::{cell, psql_at, rt, scalar, PASSWORD};

use libtest_mimic::Failed;
use pgsluice::cluster::{ClusterSpec, LocalCluster, LocalNode};
use std::collections::HashSet;
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

pub const TESTS: &[(&str, crate::Body)] = &[
    (
        "routing::reads_land_on_standbys_writes_on_the_primary",
        reads_land_on_standbys,
    ),
    (
        "routing::paused_standby_is_skipped_past_the_lag_threshold",
        paused_standby_is_skipped,
    ),
    (
        "routing::read_your_writes_has_no_stale_read",
        read_your_writes,
    ),
    (
        "routing::killed_standby_reads_move_without_error",
        killed_standby,
    ),
    ("routing::manual_promotion_writes_follow", manual_promotion),
];

/// Probe interval of the routing poolers.
const PROBE: Duration = Duration::from_millis(100);
/// `max_replica_lag` of the `auto` database.
const MAX_LAG: &str = "256kB";

/// A cluster with a pooler in front of it, routing to its standbys.
pub struct Routed {
    pub cluster: LocalCluster,
    pooler: Child,
    pub port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for Routed {
    fn drop(&mut self) {
        let _ = self.pooler.kill();
        let _ = self.pooler.wait();
    }
}

/// The shared routing cluster (primary + 2 standbys); every routing test holds the lock.
static SHARED: Mutex<Option<Routed>> = Mutex::new(None);

/// Stops the shared routing cluster (called by `main` after the last test).
pub fn teardown() {
    let taken = SHARED.lock().unwrap_or_else(|e| e.into_inner()).take();
    drop(taken);
}

/// Holds the routing lock without starting the shared cluster (tests with their own cluster).
pub fn serial() -> MutexGuard<'static, Option<Routed>> {
    SHARED.lock().unwrap_or_else(|e| e.into_inner())
}

fn shared() -> MutexGuard<'static, Option<Routed>> {
    let mut g = SHARED.lock().unwrap_or_else(|e| e.into_inner());
    if g.is_none() {
        *g = Some(Routed::start(2, PROBE));
    }
    g
}

impl Routed {
    /// A primary with `standbys` standbys, tables `ryw` and `filler`, and a pooler probing
    /// every `probe` with databases `ro` (policy read-only) and `auto` (policy auto,
    /// read-your-writes, `max_replica_lag`).
    pub fn start(standbys: usize, probe: Duration) -> Routed {
        Self::start_with(standbys, probe, "")
    }

    /// [`Routed::start`] with the pooler's HTTP endpoint on `http` (`""`: none).
    pub fn start_with(standbys: usize, probe: Duration, http: &str) -> Routed {
        let spec = ClusterSpec::new(standbys)
            .user("app", PASSWORD)
            .database("app", Some("app"))
            .conf("max_connections = 60");
        let cluster = LocalCluster::start(spec).expect("cluster starts");
        cluster
            .primary()
            .psql(
                "app",
                "create table ryw(id int primary key, v text); \
                 create table filler(id int, pad text); \
                 create table t(x int); \
                 alter table ryw owner to app; alter table filler owner to app; \
                 alter table t owner to app",
            )
            .expect("tables");
        cluster
            .wait_replicated(Duration::from_secs(10))
            .expect("replicated");
        let dir = tempfile::tempdir().expect("tempdir");
        let port = pgsluice::cluster::ports::free_port().expect("port");
        let config = pooler_config(&cluster, port, probe, http);
        let path = dir.path().join("routing.toml");
        std::fs::write(&path, config).expect("config");
        let log = std::fs::File::create(dir.path().join("pooler.log")).expect("log");
        let pooler = Command::new(env!("CARGO_BIN_EXE_pgsluice"))
            .args(["pooler", "-c"])
            .arg(&path)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("pooler starts");
        let deadline = Instant::now() + Duration::from_secs(10);
        while !pgsluice::cluster::ports::is_listening(port) {
            assert!(Instant::now() < deadline, "routing pooler did not listen");
            std::thread::sleep(Duration::from_millis(20));
        }
        Routed {
            cluster,
            pooler,
            port,
            _dir: dir,
        }
    }

    /// A tokio-postgres client through the pooler to database `db` as `app`.
    pub async fn connect(&self, db: &str) -> tokio_postgres::Client {
        let url = format!(
            "host=127.0.0.1 port={} user=app password={PASSWORD} dbname={db}",
            self.port
        );
        let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
            .await
            .expect("connect through the routing pooler");
        tokio::spawn(conn);
        client
    }

    /// `SHOW NODES` through the console.
    pub fn nodes(&self) -> String {
        let (ok, out, err) = psql_at(self.port, "pgsluice", "app", &["-c", "show nodes"]);
        assert!(ok, "show nodes: {err}");
        out
    }

    /// `SHOW NODES`: `column` of node `node`.
    pub fn node_cell(&self, node: &str, column: &str) -> Option<String> {
        cell(&self.nodes(), node, column)
    }

    /// The pooler's log so far (for failure messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self._dir.path().join("pooler.log")).unwrap_or_default()
    }
}

fn pooler_config(cluster: &LocalCluster, port: u16, probe: Duration, http: &str) -> String {
    let metrics = if http.is_empty() {
        "enabled = false".to_string()
    } else {
        format!("enabled = true\nlisten = \"{http}\"")
    };
    let layout = cluster.layout();
    let mut nodes = String::new();
    for n in cluster.nodes() {
        nodes.push_str(&format!(
            "[[cluster.nodes]]\nname = \"{}\"\nhost = \"127.0.0.1\"\nport = {}\n",
            n.name(),
            n.port()
        ));
    }
    format!(
        r#"
[pooler]
listen_port = {port}
auth_type = "scram-sha-256"
default_pool_size = 4
max_client_conn = 200
query_wait_timeout = "5s"
stats_period = 0
probe_interval = "{probe}ms"
ban_time = "1s"
admin_users = ["app"]
[databases.app]
dbname = "app"
[databases.ro]
dbname = "app"
policy = "read-only"
[databases.auto]
dbname = "app"
policy = "auto"
read_your_writes = "session"
max_replica_lag = "{MAX_LAG}"
[users.app]
password = "{PASSWORD}"
[cluster]
name = "routing"
superuser = "{su}"
superuser_password = "{su_pw}"
{nodes}
[metrics]
{metrics}
"#,
        probe = probe.as_millis(),
        su = layout.superuser,
        su_pw = layout.superuser_password,
    )
}

/// [`scalar`] with the statement and the server's message in the error.
async fn q(c: &tokio_postgres::Client, sql: &str) -> Result<String, Failed> {
    scalar(c, sql).await.map_err(|e| why(sql, e))
}

/// `batch_execute` with the statement and the server's message in the error.
async fn x(c: &tokio_postgres::Client, sql: &str) -> Result<(), Failed> {
    c.batch_execute(sql).await.map_err(|e| why(sql, e))
}

fn why(sql: &str, e: tokio_postgres::Error) -> Failed {
    let detail = e.as_db_error().map(|d| d.message().to_string());
    format!("{sql}: {e} {detail:?}").into()
}

/// The port of the server that ran `sql` (a read that returns `current_setting('port')`).
async fn port_of(c: &tokio_postgres::Client) -> Result<u16, Failed> {
    let p = q(c, "select current_setting('port')").await?;
    Ok(p.parse()?)
}

/// Ports of `n` autocommit reads on `c`.
async fn read_ports(c: &tokio_postgres::Client, n: usize) -> Result<Vec<u16>, Failed> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        out.push(port_of(c).await?);
    }
    Ok(out)
}

/// Polls `check` every 20 ms until it holds or `within` passes.
async fn eventually<F, Fut>(within: Duration, what: &str, mut check: F) -> Result<(), Failed>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<bool, Failed>>,
{
    let deadline = Instant::now() + within;
    loop {
        if check().await? {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!("not within {within:?}: {what}").into());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn reads_land_on_standbys(_: &crate::util::Fixture) -> Result<(), Failed> {
    let guard = shared();
    let fx = guard.as_ref().ok_or("no routing cluster")?;
    let standby_ports: HashSet<u16> = fx.cluster.standbys().iter().map(|n| n.port()).collect();
    rt().block_on(async {
        let ro = fx.connect("ro").await;
        // read-only policy: plain statements stay on the primary...
        assert_eq!(q(&ro, "select pg_is_in_recovery()").await?, "f");
        // ...declared read-only transactions go to a standby.
        for begin in ["begin read only", "start transaction read only"] {
            x(&ro, begin).await?;
            assert_eq!(q(&ro, "select pg_is_in_recovery()").await?, "t");
            x(&ro, "commit").await?;
        }
        let ro2 = fx.connect("ro").await;
        x(&ro2, "set session characteristics as transaction read only").await?;
        assert_eq!(q(&ro2, "select pg_is_in_recovery()").await?, "t");
        x(
            &ro2,
            "set session characteristics as transaction read write",
        )
        .await?;
        assert_eq!(q(&ro2, "select pg_is_in_recovery()").await?, "f");

        // auto policy: autocommit reads on standbys, spread over both; writes on the primary.
        let auto = fx.connect("auto").await;
        eventually(Duration::from_secs(5), "auto read on a standby", || async {
            Ok(q(&auto, "select pg_is_in_recovery()").await? == "t")
        })
        .await?;
        let ports: HashSet<u16> = read_ports(&auto, 40).await?.into_iter().collect();
        assert_eq!(ports, standby_ports, "reads spread over both standbys only");
        let w = q(
            &auto,
            "insert into t values (1) returning pg_is_in_recovery()",
        )
        .await?;
        assert_eq!(w, "f", "a write runs on the primary");
        // Explicit overrides.
        let forced = "/* pgsluice:primary */ select pg_is_in_recovery()";
        assert_eq!(q(&auto, forced).await?, "f");
        x(&auto, "set pgsluice.route = 'primary'").await?;
        assert_eq!(q(&auto, "select pg_is_in_recovery()").await?, "f");
        x(&auto, "reset pgsluice.route").await?;
        // The console shows what discovery saw.
        let primary = fx.cluster.primary().name();
        assert_eq!(fx.node_cell(primary, "role").as_deref(), Some("primary"));
        assert_eq!(fx.node_cell(primary, "writer").as_deref(), Some("1"));
        for n in fx.cluster.standbys() {
            assert_eq!(fx.node_cell(n.name(), "role").as_deref(), Some("standby"));
            assert_eq!(fx.node_cell(n.name(), "health").as_deref(), Some("ok"));
            assert!(fx.node_cell(n.name(), "lag_bytes").is_some());
        }
        let ro3 = fx.connect("ro").await;
        x(&ro3, "set pgsluice.route = replica").await?;
        assert_eq!(q(&ro3, "select pg_is_in_recovery()").await?, "t");
        Ok(())
    })
}

/// Resumes replay on a standby when dropped (a failed test leaves no paused node behind).
struct Resume<'a>(&'a LocalNode);

impl Drop for Resume<'_> {
    fn drop(&mut self) {
        let _ = self.0.psql("postgres", "select pg_wal_replay_resume()");
    }
}

fn paused_standby_is_skipped(_: &crate::util::Fixture) -> Result<(), Failed> {
    let guard = shared();
    let fx = guard.as_ref().ok_or("no routing cluster")?;
    let (paused, other) = (&fx.cluster.standbys()[0], &fx.cluster.standbys()[1]);
    rt().block_on(async {
        let c = fx.connect("auto").await;
        eventually(
            Duration::from_secs(5),
            "reads on the first standby",
            || async { Ok(read_ports(&c, 10).await?.contains(&paused.port())) },
        )
        .await?;
        paused.psql("postgres", "select pg_wal_replay_pause()")?;
        let _resume = Resume(paused);
        // About 2.5 MB of WAL: far past the 256 kB threshold.
        fx.cluster.primary().psql(
            "app",
            "insert into filler select g, repeat('x', 500) from generate_series(1, 4000) g",
        )?;
        eventually(
            Duration::from_secs(5),
            "reads only on the standby that keeps up",
            || async {
                let ports = read_ports(&c, 10).await?;
                Ok(ports.iter().all(|p| *p == other.port()))
            },
        )
        .await?;
        let ports = read_ports(&c, 40).await?;
        assert!(
            ports.iter().all(|p| *p == other.port()),
            "reads only on the standby that keeps up ({}): {ports:?}\n{}",
            other.port(),
            fx.nodes()
        );
        paused.psql("postgres", "select pg_wal_replay_resume()")?;
        eventually(
            Duration::from_secs(5),
            "resumed standby reads again",
            || async { Ok(read_ports(&c, 10).await?.contains(&paused.port())) },
        )
        .await
    })
}

/// Clients, iterations per client, of the read-your-writes test.
const RYW_CLIENTS: usize = 4;
const RYW_ITERATIONS: usize = 2_500;

fn read_your_writes(_: &crate::util::Fixture) -> Result<(), Failed> {
    let guard = shared();
    let fx = guard.as_ref().ok_or("no routing cluster")?;
    let slowed = &fx.cluster.standbys()[0];
    let primary_port = fx.cluster.primary().port();
    let _resume = Resume(slowed);
    rt().block_on(async {
        fx.cluster.primary().psql("app", "truncate ryw")?;
        // Replay on one standby is paused 30 ms out of every 40 ms.
        let (toggler, conn) =
            tokio_postgres::connect(&slowed.conninfo("postgres"), tokio_postgres::NoTls).await?;
        tokio::spawn(conn);
        let stop = tokio_util::sync::CancellationToken::new();
        let toggling = tokio::spawn({
            let stop = stop.clone();
            async move {
                while !stop.is_cancelled() {
                    toggler
                        .batch_execute("select pg_wal_replay_pause()")
                        .await?;
                    tokio::time::sleep(Duration::from_millis(30)).await;
                    toggler
                        .batch_execute("select pg_wal_replay_resume()")
                        .await?;
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                Ok::<_, tokio_postgres::Error>(())
            }
        });
        let mut tasks = Vec::new();
        for k in 0..RYW_CLIENTS {
            let c = fx.connect("auto").await;
            tasks.push(tokio::spawn(async move {
                let (mut stale, mut on_standby) = (0usize, 0usize);
                for i in 0..RYW_ITERATIONS {
                    let id = k * RYW_ITERATIONS + i;
                    x(&c, &format!("insert into ryw values ({id}, 'v{id}')")).await?;
                    if i % 5 == 4 {
                        // Give the fence time to resolve, so that reads reach the standbys.
                        tokio::time::sleep(PROBE * 2).await;
                    }
                    let sql = format!("select v, current_setting('port') from ryw where id = {id}");
                    let rows = c.simple_query(&sql).await?;
                    let row = rows.iter().find_map(|m| match m {
                        tokio_postgres::SimpleQueryMessage::Row(r) => Some(r),
                        _ => None,
                    });
                    match row {
                        None => stale += 1,
                        Some(r) => {
                            if r.get(1) != Some(primary_port.to_string().as_str()) {
                                on_standby += 1;
                            }
                        }
                    }
                }
                Ok::<_, Failed>((stale, on_standby))
            }));
        }
        let (mut stale, mut on_standby) = (0, 0);
        for t in tasks {
            let (s, o) = t.await??;
            stale += s;
            on_standby += o;
        }
        stop.cancel();
        toggling.await??;
        assert_eq!(
            stale,
            0,
            "stale reads out of {}",
            RYW_CLIENTS * RYW_ITERATIONS
        );
        // Reads after a pause must have reached standbys, or the test proves nothing.
        assert!(
            on_standby >= RYW_CLIENTS * RYW_ITERATIONS / 10,
            "only {on_standby} reads ran on standbys"
        );
        Ok(())
    })
}

fn killed_standby(_: &crate::util::Fixture) -> Result<(), Failed> {
    let guard = shared();
    let fx = guard.as_ref().ok_or("no routing cluster")?;
    let (victim, other) = (&fx.cluster.standbys()[1], &fx.cluster.standbys()[0]);
    rt().block_on(async {
        let mut clients = Vec::new();
        for _ in 0..4 {
            clients.push(fx.connect("auto").await);
        }
        // Every client has read on the victim before it dies (its pool holds connections).
        for c in &clients {
            eventually(Duration::from_secs(5), "a read on the victim", || async {
                Ok(read_ports(c, 4).await?.contains(&victim.port()))
            })
            .await?;
        }
        // A client mid-transaction on the victim.
        let mid = fx.connect("ro").await;
        eventually(
            Duration::from_secs(5),
            "a transaction on the victim",
            || async {
                x(&mid, "begin read only").await?;
                if port_of(&mid).await? == victim.port() {
                    return Ok(true);
                }
                x(&mid, "commit").await?;
                Ok(false)
            },
        )
        .await?;
        victim.kill9()?;
        assert!(q(&mid, "select 1").await.is_err(), "mid-transaction error");
        // ...goes on with its next transaction.
        x(&mid, "begin read only").await?;
        assert_eq!(port_of(&mid).await?, other.port());
        x(&mid, "commit").await?;
        for c in &clients {
            let ports = read_ports(c, 25).await.map_err(|e| {
                format!("a read failed after the standby died: {e:?}\n{}", fx.log())
            })?;
            assert!(!ports.contains(&victim.port()));
        }
        let health = fx.node_cell(victim.name(), "health");
        assert!(
            matches!(health.as_deref(), Some("down" | "banned")),
            "{health:?}"
        );
        // The survivors serve the reads once the dead node is banned.
        let ports = read_ports(&clients[0], 20).await?;
        assert!(ports.contains(&other.port()), "reads moved to {ports:?}");
        victim.start()?;
        victim.wait_streaming(Duration::from_secs(20))?;
        eventually(
            Duration::from_secs(10),
            "restarted standby reads again",
            || async { Ok(read_ports(&clients[0], 10).await?.contains(&victim.port())) },
        )
        .await
    })
}

/// Probe interval of the promotion test's pooler.
const PROMOTION_PROBE: Duration = Duration::from_millis(500);

fn manual_promotion(_: &crate::util::Fixture) -> Result<(), Failed> {
    // Its own cluster (the promotion cannot be undone); the lock keeps the load down.
    let _serial = shared();
    let fx = Routed::start(2, PROMOTION_PROBE);
    let (old, new) = (fx.cluster.primary(), &fx.cluster.standbys()[0]);
    let insert = |v: u32| format!("insert into t values ({v}) returning current_setting('port')");
    rt().block_on(async {
        let writer = fx.connect("auto").await;
        let other = fx.connect("auto").await;
        assert_eq!(q(&writer, &insert(1)).await?, old.port().to_string());
        old.stop()?;
        // An idle client writes while there is no primary: the write waits for one (up to
        // query_wait_timeout) instead of failing, and the client keeps its connection.
        let waiting = tokio::spawn(async move {
            let r = q(&writer, &insert(2)).await;
            (r, Instant::now())
        });
        tokio::time::sleep(PROMOTION_PROBE).await;
        assert_eq!(new.psql("postgres", "select pg_promote(true, 60)")?, "t");
        let t0 = Instant::now();
        let (r, done) = waiting.await?;
        let port = r.map_err(|e| format!("the waiting write failed: {e:?}\n{}", fx.log()))?;
        assert_eq!(
            port,
            new.port().to_string(),
            "the write ran on the new primary"
        );
        let followed = done.saturating_duration_since(t0);
        assert!(
            followed <= PROMOTION_PROBE * 2,
            "writes followed after {followed:?}, more than two probe intervals"
        );
        // Another idle client and a new one write there too.
        assert_eq!(q(&other, &insert(3)).await?, new.port().to_string());
        let fresh = fx.connect("auto").await;
        assert_eq!(q(&fresh, &insert(4)).await?, new.port().to_string());
        Ok(())
    })
}
