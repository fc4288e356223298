//! Server connections and the pooler's workers (one current-thread runtime per thread), against
//! a real PostgreSQL: a connection checked out on another worker than the one it was opened on
//! moves its socket to that worker's reactor (it keeps working after the first worker's runtime
//! is gone), and a worker reuses its own connections before another worker's.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use pgsluice::cluster::{ClusterSpec, LocalCluster};
use pgsluice::net::worker;
use pgsluice::pool::{Limit, Pool};
use pgsluice::server::{ConnectSpec, Credential, ServerConn};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::Duration;
use tokio::runtime::Runtime;

type Job = Box<dyn FnOnce(&Runtime) + Send>;

/// A thread marked as worker `index` with a current-thread runtime of its own, as the daemon
/// runs them; the runtime (and its reactor) goes when the worker stops.
struct Worker {
    jobs: Option<mpsc::Sender<Job>>,
    thread: Option<JoinHandle<()>>,
}

impl Worker {
    fn start(index: u16) -> Self {
        let (tx, rx) = mpsc::channel::<Job>();
        let thread = std::thread::spawn(move || {
            worker::enter(index);
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            for job in rx {
                job(&rt);
            }
        });
        Self {
            jobs: Some(tx),
            thread: Some(thread),
        }
    }

    /// Runs `f` on the worker and returns what it returned.
    fn run<T: Send + 'static>(&self, f: impl FnOnce(&Runtime) -> T + Send + 'static) -> T {
        let (tx, rx) = mpsc::channel();
        let job: Job = Box::new(move |rt| {
            let _ = tx.send(f(rt));
        });
        self.jobs.as_ref().unwrap().send(job).unwrap();
        rx.recv().expect("the job panicked")
    }

    fn check_out(&self, pool: &Arc<Pool>) -> Box<ServerConn> {
        let pool = pool.clone();
        self.run(move |rt| rt.block_on(pool.checkout()).expect("check-out"))
    }

    /// Runs `SELECT 1` on `conn` from this worker; the connection's answer.
    fn select_1(&self, mut conn: Box<ServerConn>) -> (Box<ServerConn>, Result<u8, String>) {
        self.run(move |rt| {
            let r = rt.block_on(async {
                let q = conn.control("SELECT 1").await;
                q.map_err(|e| e.to_string()).and_then(|r| match r.error {
                    None => Ok(r.status),
                    Some(e) => Err(format!("{e:?}")),
                })
            });
            (conn, r)
        })
    }

    fn stop(mut self) {
        drop(self.jobs.take());
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
    }
}

fn pool(cluster: &LocalCluster, host: String) -> Arc<Pool> {
    let spec = ConnectSpec {
        node: "primary".into(),
        host,
        port: cluster.primary().port(),
        user: "postgres".into(),
        database: "postgres".into(),
        credential: Credential::Password(cluster.superuser_password().into()),
        connect_timeout: Duration::from_secs(10),
        keepalive: false,
        tls: Default::default(),
    };
    // The settings a configuration with a pool of 4 gives (transaction mode, no check query).
    let config = pgsluice::config::from_str(
        "[databases.postgres]\nhost = \"127.0.0.1\"\npool_size = 4\n",
        "workers.toml",
    )
    .unwrap();
    let db = config.database("postgres").unwrap();
    let settings = pgsluice::backend::Backend::pool_settings(&config, &db, "postgres");
    let (db, user) = (Arc::new(Limit::new(0)), Arc::new(Limit::new(0)));
    Pool::new("postgres", "postgres", spec, settings, db, user)
}

/// Opened on worker 0, released, worker 0's runtime shut down: worker 1 checks the same
/// connection out and uses it. Without the move to worker 1's reactor its socket would still
/// belong to the reactor that is gone, and the query would fail.
fn follows_the_worker(cluster: &LocalCluster, host: String) {
    let pool = pool(cluster, host);
    let first = Worker::start(0);
    let conn = first.check_out(&pool);
    assert_eq!(conn.home, 0);
    let (opened, id) = (conn.stream.is_tls(), conn.id);
    assert!(!opened);
    let (conn, answer) = first.select_1(conn);
    assert_eq!(answer, Ok(b'I'));
    pool.release(conn);
    first.stop();

    let second = Worker::start(1);
    let conn = second.check_out(&pool);
    assert_eq!(conn.id, id, "the idle connection is reused");
    assert_eq!(
        conn.home, 1,
        "checked out on worker 1, its socket moved there"
    );
    let (conn, answer) = second.select_1(conn);
    assert_eq!(answer, Ok(b'I'), "the moved connection answers");
    pool.release(conn);
    assert_eq!(pool.counts(), (1, 1));
    second.stop();
}

#[test]
fn connections_follow_the_worker_that_checks_them_out() {
    let cluster = LocalCluster::start(ClusterSpec::new(0)).unwrap_or_else(|e| panic!("{e}"));
    follows_the_worker(&cluster, "127.0.0.1".into());
    let dir = cluster.primary().socket_dir().display().to_string();
    follows_the_worker(&cluster, dir);

    // Each worker takes its own connection first, whichever came back last.
    let pool = pool(&cluster, "127.0.0.1".into());
    let (w0, w1) = (Worker::start(0), Worker::start(1));
    let mine_1 = w1.check_out(&pool);
    let mine_0 = w0.check_out(&pool);
    let (id_0, id_1) = (mine_0.id, mine_1.id);
    pool.release(mine_1);
    pool.release(mine_0);
    let got_1 = w1.check_out(&pool);
    assert_eq!(
        got_1.id, id_1,
        "worker 1 takes its own, not the last released"
    );
    let got_0 = w0.check_out(&pool);
    assert_eq!(got_0.id, id_0);
    for (w, conn) in [(&w0, got_0), (&w1, got_1)] {
        let (conn, answer) = w.select_1(conn);
        assert_eq!(answer, Ok(b'I'));
        pool.release(conn);
    }
    w0.stop();
    w1.stop();
}
