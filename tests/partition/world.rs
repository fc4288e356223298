//! Processes of the partition tests, each started inside its member's namespace (PostgreSQL
//! as its OS user, etcd members, the agent, the poolers), and the client load: threads that
//! enter a client namespace (`setns`) and insert unique ids through a pooler, recording which
//! node acknowledged each id and when.

use super::net::Net;
use pgsluice::cluster::LocalNode;
use std::path::Path;
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch (the agent's events use the same clock).
pub fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// A process started by the test; killed (by its pid) when dropped.
pub struct Proc {
    child: Child,
    /// How it is stopped: SIGQUIT for PostgreSQL (immediate shutdown, no orphan backends).
    stop: nix::sys::signal::Signal,
}

impl Proc {
    fn spawn(name: &str, mut cmd: std::process::Command, log: &Path) -> Proc {
        let log = std::fs::File::create(log).unwrap();
        let child = cmd
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {name}: {e}"));
        Proc {
            child,
            stop: nix::sys::signal::Signal::SIGKILL,
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, self.stop);
        let _ = self.child.wait();
    }
}

/// Moves `node` (stopped) into `member`'s namespace: it listens on the member's address;
/// a standby streams from `upstream` (address, port) there.
pub fn start_pg(
    net: &Net,
    member: &str,
    node: &LocalNode,
    upstream: Option<(String, u16)>,
    replication: (&str, &str),
) -> Proc {
    let data = node.data_dir();
    let conf = data.join("postgresql.conf");
    let mut text = std::fs::read_to_string(&conf).unwrap();
    text.push_str(&format!(
        "\n# partition test\nlisten_addresses = '{}'\nwal_receiver_timeout = '2s'\n",
        net.addr(member)
    ));
    std::fs::write(&conf, text).unwrap();
    if let Some((host, port)) = upstream {
        let auto = data.join("postgresql.auto.conf");
        let mut text = std::fs::read_to_string(&auto).unwrap_or_default();
        text.push_str(&format!(
            "primary_conninfo = 'host={host} port={port} user={} password={} application_name={}'\n",
            replication.0,
            replication.1,
            node.name()
        ));
        std::fs::write(&auto, text).unwrap();
    }
    let hba = data.join("pg_hba.conf");
    let text = std::fs::read_to_string(&hba).unwrap();
    std::fs::write(
        &hba,
        format!(
            "host all all 10.77.0.0/16 scram-sha-256\n\
             host replication all 10.77.0.0/16 scram-sha-256\n{text}"
        ),
    )
    .unwrap();
    let mut cmd = net.command(member, "setpriv");
    let user = node.run_as().user().unwrap_or("postgres").to_string();
    cmd.args(["--reuid", &user, "--regid", &user, "--init-groups"])
        .arg(node.bin().path("postgres"))
        .arg("-D")
        .arg(data);
    let mut p = Proc::spawn(
        node.name(),
        cmd,
        &node.log_file().with_extension("netns.log"),
    );
    p.stop = nix::sys::signal::Signal::SIGQUIT;
    p
}

/// Three etcd members, one per namespace in `members`.
pub fn start_etcd(net: &Net, members: &[&str], dir: &Path) -> Vec<Proc> {
    let peers: Vec<String> = members
        .iter()
        .map(|m| format!("{m}=http://{}:2380", net.addr(m)))
        .collect();
    members
        .iter()
        .map(|m| {
            let (c, p) = (
                format!("http://{}:2379", net.addr(m)),
                format!("http://{}:2380", net.addr(m)),
            );
            let mut cmd = net.command(m, "etcd");
            cmd.args(["--name", m, "--data-dir"])
                .arg(dir.join(m))
                .args(["--listen-client-urls", &c, "--advertise-client-urls", &c])
                .args([
                    "--listen-peer-urls",
                    &p,
                    "--initial-advertise-peer-urls",
                    &p,
                ])
                .args(["--initial-cluster", &peers.join(",")])
                .args(["--initial-cluster-state", "new"])
                .args(["--heartbeat-interval", "100", "--election-timeout", "1000"]);
            Proc::spawn(m, cmd, &dir.join(format!("{m}.log")))
        })
        .collect()
}

/// `pgsluice <role> -c <config>` inside `member`'s namespace.
pub fn start_pgsluice(net: &Net, member: &str, role: &str, config: &Path, log: &Path) -> Proc {
    let mut cmd = net.command(member, env!("CARGO_BIN_EXE_pgsluice"));
    cmd.args([role, "-c"]).arg(config).env("RUST_LOG", "info");
    Proc::spawn(member, cmd, log)
}

/// Runs `pgsluice <args> -c <config>` inside `member`'s namespace; its stdout.
pub fn pgsluice_out(net: &Net, member: &str, args: &[&str], config: &Path) -> String {
    let out = net
        .command(member, env!("CARGO_BIN_EXE_pgsluice"))
        .args(args)
        .arg("-c")
        .arg(config)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// One outcome seen by a client.
#[derive(Debug, Clone)]
pub enum Rec {
    /// `id` committed, acknowledged by the node at `server`, at `ms`.
    Ack { id: i64, server: String, ms: u64 },
    /// An error (or a timeout) at `ms`.
    Err { ms: u64, msg: String },
}

/// Clients inserting unique ids through one pooler from a client namespace.
pub struct Load {
    pub pooler: String,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    pub recs: Arc<Mutex<Vec<Rec>>>,
}

impl Load {
    /// `clients` clients in `ns_path`'s namespace on `url`, ids from `ids`.
    pub fn start(
        ns_path: &str,
        pooler: &str,
        url: &str,
        clients: usize,
        ids: Arc<AtomicI64>,
    ) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let recs = Arc::new(Mutex::new(Vec::new()));
        let threads = (0..clients)
            .map(|_| {
                let (ns, url, stop, recs, ids, pooler) = (
                    ns_path.to_string(),
                    url.to_string(),
                    stop.clone(),
                    recs.clone(),
                    ids.clone(),
                    pooler.to_string(),
                );
                std::thread::spawn(move || {
                    let f = std::fs::File::open(&ns).unwrap();
                    nix::sched::setns(f, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
                    client(&url, &pooler, &stop, &recs, &ids);
                })
            })
            .collect();
        Load {
            pooler: pooler.to_string(),
            stop,
            threads,
            recs,
        }
    }

    /// The records so far.
    pub fn records(&self) -> Vec<Rec> {
        self.recs.lock().unwrap().clone()
    }

    /// Stops the clients.
    pub fn stop(self) -> Vec<Rec> {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.threads {
            let _ = t.join();
        }
        let r = self.recs.lock().unwrap().clone();
        r
    }
}

const OP_TIMEOUT: Duration = Duration::from_secs(2);

fn client(url: &str, pooler: &str, stop: &AtomicBool, recs: &Mutex<Vec<Rec>>, ids: &AtomicI64) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut conn: Option<tokio_postgres::Client> = None;
        while !stop.load(Ordering::SeqCst) {
            if conn.is_none() {
                let c = tokio::time::timeout(
                    OP_TIMEOUT,
                    tokio_postgres::connect(url, tokio_postgres::NoTls),
                )
                .await;
                match c {
                    Ok(Ok((c, task))) => {
                        tokio::spawn(task);
                        conn = Some(c);
                    }
                    other => {
                        let msg = match other {
                            Ok(Err(e)) => format!("connect: {e}"),
                            _ => "connect: timeout".to_string(),
                        };
                        recs.lock().unwrap().push(Rec::Err { ms: unix_ms(), msg });
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                }
            }
            let Some(c) = conn.as_ref() else { continue };
            let id = ids.fetch_add(1, Ordering::SeqCst);
            // The simple protocol answers after the commit (ReadyForQuery): an
            // acknowledged id is a committed one, synchronous replication included.
            let sql = format!(
                "insert into t(id, pooler) values ({id}, '{pooler}') returning host(inet_server_addr())"
            );
            match tokio::time::timeout(OP_TIMEOUT, c.simple_query(&sql)).await {
                Ok(Ok(msgs)) => {
                    let server = msgs
                        .iter()
                        .find_map(|m| match m {
                            tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_string),
                            _ => None,
                        })
                        .unwrap_or_default();
                    recs.lock().unwrap().push(Rec::Ack { id, server, ms: unix_ms() });
                }
                other => {
                    let msg = match other {
                        Ok(Err(e)) => e
                            .as_db_error()
                            .map_or(e.to_string(), |d| d.message().to_string()),
                        _ => "timeout".to_string(),
                    };
                    recs.lock().unwrap().push(Rec::Err { ms: unix_ms(), msg });
                    conn = None;
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
}
