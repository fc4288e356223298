//! The pooler's workers (`workers = 2`: two threads, a current-thread runtime each): clients
//! are dealt out to both, and with fewer server connections than clients the connections move
//! between workers on every hand-over without a query going astray.

use crate::util::{rt, ExtraPooler, Fixture};
use libtest_mimic::Failed;

pub const TESTS: &[(&str, crate::Body)] = &[(
    "workers::clients_are_dealt_to_both_workers",
    clients_are_dealt_to_both_workers,
)];

/// (CPU time in ns, times scheduled) of each of `pid`'s threads named `name`, summed.
fn thread_runs(pid: u32, name: &str) -> (u64, u64) {
    let mut sum = (0, 0);
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).expect("task dir");
    for t in tasks.flatten() {
        let comm = std::fs::read_to_string(t.path().join("comm")).unwrap_or_default();
        if comm.trim_end() != name {
            continue;
        }
        let stat = std::fs::read_to_string(t.path().join("schedstat")).unwrap_or_default();
        let fields: Vec<u64> = stat
            .split_whitespace()
            .filter_map(|f| f.parse().ok())
            .collect();
        if let [run_ns, _, slices] = fields[..] {
            sum = (sum.0 + run_ns, sum.1 + slices);
        }
    }
    sum
}

/// 300 queries on each of `urls` at once, each answer checked against what the client asked.
fn run_clients(urls: Vec<String>) -> Result<(), Failed> {
    rt().block_on(async {
        let mut clients = Vec::new();
        for (n, url) in (0i32..).zip(urls) {
            let (c, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await?;
            tokio::spawn(conn);
            clients.push(tokio::spawn(async move {
                for i in 0..300i32 {
                    let v = n * 1000 + i;
                    let row = c.query_one("select $1::int", &[&v]).await?;
                    assert_eq!(row.get::<_, i32>(0), v, "client {n} got another answer");
                }
                Ok::<_, tokio_postgres::Error>(())
            }));
        }
        for c in clients {
            c.await??;
        }
        Ok(())
    })
}

/// Asserts that each worker ran at least `least` more times than at `before`.
fn ran_since(pid: u32, before: [(u64, u64); 2], least: u64, what: &str) -> [(u64, u64); 2] {
    let after = [
        thread_runs(pid, "pgsluice"),
        thread_runs(pid, "pgsluice-w1"),
    ];
    for (w, (b, a)) in before.iter().zip(&after).enumerate() {
        let ran = a.1 - b.1;
        assert!(
            ran >= least,
            "worker {w} ran {ran} times for {what}: clients not dealt to it"
        );
    }
    after
}

/// Four TCP clients, two server connections, two workers: every answer is the client's own,
/// and both worker threads did the work (each ran hundreds of times while the clients ran).
/// Then two clients over the Unix socket: one lands on each worker.
fn clients_are_dealt_to_both_workers(fx: &Fixture) -> Result<(), Failed> {
    let p = ExtraPooler::start(
        fx,
        "workers = 2\nunix_socket_dir = \"{dir}\"",
        "pool_size = 2",
    );
    let pid = p.child.id();
    let before = [
        thread_runs(pid, "pgsluice"),
        thread_runs(pid, "pgsluice-w1"),
    ];
    assert!(before[1].1 > 0, "no thread named pgsluice-w1 in the pooler");
    run_clients(vec![p.url(); 4])?;
    let before = ran_since(pid, before, 300, "1,200 queries of four TCP clients");
    let unix = format!(
        "host={} port={} user=app password={} dbname=app",
        p.dir().display(),
        p.port,
        crate::util::PASSWORD
    );
    run_clients(vec![unix; 2])?;
    ran_since(pid, before, 300, "300 queries of its Unix-socket client");
    Ok(())
}
