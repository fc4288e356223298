//! A client load that records every acknowledged write, and the checker of what it recorded;
//! shared by the partition tests (`tests/partition`) and the soak (`tests/soak.rs`).
//!
//! Clients insert unique ids (`insert into t(id, pooler) ... returning <server>`) through a
//! pooler, one autocommit statement each, and record which server acknowledged each id and
//! when (`Rec`); a client may first enter a network namespace. The checker compares the
//! acknowledged ids with the ids found on the final primary and, given a fence, counts the
//! ids a fenced node acknowledged after it.

#![allow(dead_code)]

use std::collections::HashSet;
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

/// One outcome seen by a client.
#[derive(Debug, Clone)]
pub enum Rec {
    /// `id` committed, acknowledged by the node at `server`, at `ms`; the statement was sent
    /// at `sent` (so it committed within `sent..=ms`).
    Ack {
        id: i64,
        server: String,
        ms: u64,
        sent: u64,
    },
    /// An error (or a timeout) at `ms`.
    Err { ms: u64, msg: String },
}

/// Where a load's clients run and what they insert.
#[derive(Debug, Clone)]
pub struct LoadSpec {
    /// A network namespace to enter first (`/var/run/netns/...`), if any.
    pub netns: Option<String>,
    /// The label stored with each row (the pooler's name).
    pub pooler: String,
    /// Conninfo through the pooler.
    pub url: String,
    /// The SQL expression naming the server in each answer (`host(inet_server_addr())`,
    /// `inet_server_port()::text`).
    pub server: String,
    /// Pause between two inserts of one client.
    pub pause: Duration,
}

/// Clients inserting unique ids through one pooler.
pub struct Load {
    pub pooler: String,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    pub recs: Arc<Mutex<Vec<Rec>>>,
}

impl Load {
    /// `clients` clients for `spec`, ids taken from `ids`.
    pub fn start(spec: &LoadSpec, clients: usize, ids: Arc<AtomicI64>) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let recs = Arc::new(Mutex::new(Vec::new()));
        let threads = (0..clients)
            .map(|_| {
                let (spec, stop, recs, ids) =
                    (spec.clone(), stop.clone(), recs.clone(), ids.clone());
                std::thread::spawn(move || {
                    if let Some(ns) = &spec.netns {
                        let f = std::fs::File::open(ns).unwrap();
                        nix::sched::setns(f, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
                    }
                    client(&spec, &stop, &recs, &ids);
                })
            })
            .collect();
        Load {
            pooler: spec.pooler.clone(),
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

fn client(spec: &LoadSpec, stop: &AtomicBool, recs: &Mutex<Vec<Rec>>, ids: &AtomicI64) {
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
                    tokio_postgres::connect(&spec.url, tokio_postgres::NoTls),
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
            let sent = unix_ms();
            // The simple protocol answers after the commit (ReadyForQuery): an
            // acknowledged id is a committed one, synchronous replication included.
            let sql = format!(
                "insert into t(id, pooler) values ({id}, '{}') returning {}",
                spec.pooler, spec.server
            );
            match tokio::time::timeout(OP_TIMEOUT, c.simple_query(&sql)).await {
                Ok(Ok(msgs)) => {
                    let server = msgs
                        .iter()
                        .find_map(|m| match m {
                            tokio_postgres::SimpleQueryMessage::Row(r) => {
                                r.get(0).map(str::to_string)
                            }
                            _ => None,
                        })
                        .unwrap_or_default();
                    recs.lock().unwrap().push(Rec::Ack {
                        id,
                        server,
                        ms: unix_ms(),
                        sent,
                    });
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
            tokio::time::sleep(spec.pause).await;
        }
    });
}

/// What the checker found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Checked {
    /// Ids acknowledged to clients.
    pub acked: usize,
    /// Errors clients saw.
    pub errors: usize,
    /// Acknowledged ids not on the final primary.
    pub missing: usize,
    /// Ids the fenced node acknowledged after its fence.
    pub late: usize,
}

/// Checks `recs` against the ids on the final primary (`found`); `fence` is the fenced
/// node's server name and the time of its fence.
pub fn check(recs: &[Rec], found: &HashSet<i64>, fence: Option<(&str, u64)>) -> Checked {
    let mut c = Checked::default();
    for r in recs {
        match r {
            Rec::Ack { id, server, ms, .. } => {
                c.acked += 1;
                if !found.contains(id) {
                    c.missing += 1;
                }
                if fence.is_some_and(|(node, at)| server == node && *ms > at) {
                    c.late += 1;
                }
            }
            Rec::Err { .. } => c.errors += 1,
        }
    }
    c
}

/// The ids in table `t` of database `app` on `node`.
pub fn ids_on(node: &pgsluice::cluster::LocalNode) -> HashSet<i64> {
    node.psql("app", "select string_agg(id::text, ',') from t")
        .unwrap()
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect()
}
