//! Where the agent keeps what must survive it: the topology with its epoch, the action in
//! flight, the event log and small documents (the hot set). [`StateStore`] is the abstraction;
//! [`LocalStore`] keeps them in `agent.state_dir`, written atomically; the etcd store (several
//! agents, a leader lease) is in `store_etcd`.
//!
//! Files: `state.json` (topology + in-flight action; write to a temporary file, fsync, rename,
//! fsync the directory), `events.jsonl` (one JSON event per line, appended and fsynced), and
//! `agent.lock` (an exclusive `flock` held by whoever may act: the agent, or a command-line verb
//! while no agent runs).

use super::events::Event;
use crate::topology::Topology;
use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};
use std::fs::{File, OpenOptions};
use std::future::Future;
use std::io::{BufRead, BufReader, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Why the store failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A file operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A stored file is not what it should be.
    #[error("{path}: {message}")]
    Corrupt {
        /// The file.
        path: String,
        /// What is wrong.
        message: String,
    },
    /// The compare-and-swap lost: someone else changed the epoch.
    #[error("stored epoch is {found}, expected {expected}: someone else acted")]
    EpochMoved {
        /// The epoch the writer expected.
        expected: u64,
        /// The epoch found.
        found: u64,
    },
    /// Another process holds the lock.
    #[error("{0} is locked by another process (is an agent running? then ask it over HTTP)")]
    Locked(String),
    /// This agent does not hold the leader lease (etcd store): it may not write.
    #[error("not the leader: {0}")]
    NotLeader(String),
    /// etcd did not answer or refused.
    #[error(transparent)]
    Etcd(#[from] crate::etcd::EtcdError),
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> StoreError {
    let what = what.into();
    move |source| StoreError::Io { what, source }
}

/// Steps of a multi-step action, in order; the record names the next one to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    /// Publish the fenced topology.
    Fence,
    /// Stop (or soft-fence) the old primary.
    StopOld,
    /// Promote the candidate.
    Promote,
    /// Repoint the other standbys.
    Repoint,
    /// Rejoin the old primary as a standby (switchover only).
    RejoinOld,
    /// Publish the final topology.
    Publish,
}

/// An action in flight, recorded before its first step and cleared after its last.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InFlight {
    /// `failover` or `switchover`.
    pub op: String,
    /// The primary being replaced.
    pub old_primary: Option<String>,
    /// The node being promoted.
    pub candidate: String,
    /// The standbys to repoint.
    pub followers: Vec<String>,
    /// The next step to do.
    pub step: Step,
    /// The epoch of the topology before the action.
    pub base_epoch: u64,
    /// When it started (ms since the Unix epoch).
    pub started_unix_ms: u64,
}

/// Everything persisted besides events.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Persisted {
    /// The last topology published (or about to be).
    pub topology: Topology,
    /// The action in flight, if the agent stopped in the middle of one.
    #[serde(default)]
    pub inflight: Option<InFlight>,
}

/// The agent's durable state, local or in etcd. The topology epoch is the fencing
/// token: [`StateStore::save`] succeeds only if the stored epoch is the one the writer read.
pub trait StateStore: Send + Sync + 'static {
    /// Reads the state (the default state when nothing was stored yet).
    fn load(&self) -> impl Future<Output = Result<Persisted, StoreError>> + Send;
    /// Replaces the state if the stored epoch is still `expected_epoch`.
    fn save(
        &self,
        expected_epoch: u64,
        next: &Persisted,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Appends one event.
    fn append_event(&self, event: &Event) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Events from cursor `from` on (0 = oldest), with the cursor to continue from (a line
    /// number for the local store, an etcd revision for etcd).
    fn events(
        &self,
        from: u64,
    ) -> impl Future<Output = Result<(Vec<Event>, u64), StoreError>> + Send;
    /// Stores a small JSON document under `name` (e.g. `hotset`), replacing the previous one.
    fn put_doc(
        &self,
        name: &str,
        doc: &serde_json::Value,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// The document stored under `name`, if any.
    fn get_doc(
        &self,
        name: &str,
    ) -> impl Future<Output = Result<Option<serde_json::Value>, StoreError>> + Send;
    /// Whether this process may act now: always for the local store (its lock is held), only
    /// while holding the leader lease for etcd. Those that may not act keep probing.
    fn may_act(&self) -> bool {
        true
    }
    /// Whether this process may keep renewing the poolers' write lease with the topology it
    /// published: while it may act, and for etcd also while etcd does not answer, as long as
    /// no answer showed another leader (failsafe: an etcd outage alone stops no writes).
    fn may_renew(&self) -> bool {
        self.may_act()
    }
    /// The agent's name when several agents share the store (recorded in events).
    fn agent_name(&self) -> Option<String> {
        None
    }
    /// Gives up leadership at once (clean shutdown); nothing for the local store.
    fn release(&self) -> impl Future<Output = ()> + Send {
        async {}
    }
}

/// The state in a local directory.
#[derive(Debug)]
pub struct LocalStore {
    dir: PathBuf,
    lock: Option<Flock<File>>,
    write: Mutex<()>,
}

impl LocalStore {
    /// Opens `dir` (created if missing) and takes its exclusive lock: only the holder acts.
    pub fn open_exclusive(dir: &Path) -> Result<LocalStore, StoreError> {
        std::fs::create_dir_all(dir).map_err(io(format!("creating {}", dir.display())))?;
        let path = dir.join("agent.lock");
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io(format!("opening {}", path.display())))?;
        let lock = Flock::lock(file, FlockArg::LockExclusiveNonblock)
            .map_err(|_| StoreError::Locked(path.display().to_string()))?;
        Ok(LocalStore {
            dir: dir.to_path_buf(),
            lock: Some(lock),
            write: Mutex::new(()),
        })
    }

    /// Opens `dir` for reading only (`status`, `events`): no lock, and `save` refuses.
    pub fn open_read_only(dir: &Path) -> LocalStore {
        LocalStore {
            dir: dir.to_path_buf(),
            lock: None,
            write: Mutex::new(()),
        }
    }

    /// Whether another process holds the lock (an agent runs on this state dir).
    pub fn is_locked(dir: &Path) -> bool {
        let Ok(file) = File::open(dir.join("agent.lock")) else {
            return false;
        };
        Flock::lock(file, FlockArg::LockSharedNonblock).is_err()
    }

    fn state_path(&self) -> PathBuf {
        self.dir.join("state.json")
    }

    fn events_path(&self) -> PathBuf {
        self.dir.join("events.jsonl")
    }

    fn load_sync(&self) -> Result<Persisted, StoreError> {
        let path = self.state_path();
        match std::fs::read_to_string(&path) {
            Ok(text) => serde_json::from_str(&text).map_err(|e| StoreError::Corrupt {
                path: path.display().to_string(),
                message: e.to_string(),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Persisted::default()),
            Err(e) => Err(io(format!("reading {}", path.display()))(e)),
        }
    }

    fn save_sync(&self, expected_epoch: u64, next: &Persisted) -> Result<(), StoreError> {
        if self.lock.is_none() {
            return Err(StoreError::Locked(format!(
                "{} (opened read-only)",
                self.dir.display()
            )));
        }
        let _guard = self.write.lock().unwrap_or_else(|p| p.into_inner());
        let found = self.load_sync()?.topology.epoch;
        if found != expected_epoch {
            return Err(StoreError::EpochMoved {
                expected: expected_epoch,
                found,
            });
        }
        let text = serde_json::to_vec_pretty(next).map_err(|e| StoreError::Corrupt {
            path: self.state_path().display().to_string(),
            message: e.to_string(),
        })?;
        write_atomically(&self.dir, &self.state_path(), &text)
    }

    fn append_sync(&self, event: &Event) -> Result<(), StoreError> {
        let path = self.events_path();
        let mut line = serde_json::to_vec(event).map_err(|e| StoreError::Corrupt {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
        line.push(b'\n');
        let _guard = self.write.lock().unwrap_or_else(|p| p.into_inner());
        let mut f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(io(format!("opening {}", path.display())))?;
        f.write_all(&line)
            .and_then(|()| f.sync_data())
            .map_err(io(format!("appending to {}", path.display())))
    }

    fn events_sync(&self, from: u64) -> Result<(Vec<Event>, u64), StoreError> {
        let path = self.events_path();
        let file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((Vec::new(), from)),
            Err(e) => return Err(io(format!("opening {}", path.display()))(e)),
        };
        let mut out = Vec::new();
        let mut n = 0u64;
        for line in BufReader::new(file).lines() {
            let line = line.map_err(io(format!("reading {}", path.display())))?;
            if n >= from && !line.trim().is_empty() {
                // A torn last line (crash while appending) is skipped, not fatal.
                if let Ok(e) = serde_json::from_str::<Event>(&line) {
                    out.push(e);
                }
            }
            n += 1;
        }
        Ok((out, n.max(from)))
    }
}

/// Writes `path` through a temporary file in `dir`, fsync, rename, fsync of the directory.
pub fn write_atomically(dir: &Path, path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    let tmp = path.with_extension("tmp");
    let mut f = File::create(&tmp).map_err(io(format!("creating {}", tmp.display())))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .map_err(io(format!("writing {}", tmp.display())))?;
    std::fs::rename(&tmp, path).map_err(io(format!("renaming to {}", path.display())))?;
    let d = File::open(dir).map_err(io(format!("opening {}", dir.display())))?;
    d.sync_all()
        .map_err(io(format!("syncing {}", dir.display())))
}

/// Reads events appended after byte `offset` of `events.jsonl` (for `events --follow`).
pub fn tail_events(dir: &Path, offset: u64) -> Result<(Vec<Event>, u64), StoreError> {
    let path = dir.join("events.jsonl");
    let mut file = match File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((Vec::new(), 0)),
        Err(e) => return Err(io(format!("opening {}", path.display()))(e)),
    };
    let len = file.metadata().map_err(io("stat events"))?.len();
    let start = if offset > len { 0 } else { offset };
    file.seek(SeekFrom::Start(start))
        .map_err(io("seeking events"))?;
    let mut reader = BufReader::new(file);
    let mut out = Vec::new();
    let mut pos = start;
    let mut line = String::new();
    loop {
        line.clear();
        let n = reader.read_line(&mut line).map_err(io("reading events"))?;
        if n == 0 || !line.ends_with('\n') {
            break;
        }
        pos += n as u64;
        if let Ok(e) = serde_json::from_str::<Event>(line.trim_end()) {
            out.push(e);
        }
    }
    Ok((out, pos))
}

impl StateStore for LocalStore {
    async fn load(&self) -> Result<Persisted, StoreError> {
        self.load_sync()
    }

    async fn save(&self, expected_epoch: u64, next: &Persisted) -> Result<(), StoreError> {
        self.save_sync(expected_epoch, next)
    }

    async fn append_event(&self, event: &Event) -> Result<(), StoreError> {
        self.append_sync(event)
    }

    async fn events(&self, from: u64) -> Result<(Vec<Event>, u64), StoreError> {
        self.events_sync(from)
    }

    async fn put_doc(&self, name: &str, doc: &serde_json::Value) -> Result<(), StoreError> {
        let path = self.dir.join(format!("{name}.json"));
        let text = serde_json::to_vec(doc).map_err(|e| StoreError::Corrupt {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
        write_atomically(&self.dir, &path, &text)
    }

    async fn get_doc(&self, name: &str) -> Result<Option<serde_json::Value>, StoreError> {
        let path = self.dir.join(format!("{name}.json"));
        match std::fs::read(&path) {
            Ok(b) => serde_json::from_slice(&b)
                .map(Some)
                .map_err(|e| StoreError::Corrupt {
                    path: path.display().to_string(),
                    message: e.to_string(),
                }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io(format!("reading {}", path.display()))(e)),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn topo(epoch: u64, primary: &str) -> Topology {
        Topology {
            epoch,
            primary: Some(primary.into()),
            ..Topology::default()
        }
    }

    #[tokio::test]
    async fn state_survives_reopen_and_epoch_is_compare_and_swapped() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = LocalStore::open_exclusive(dir.path()).unwrap();
            assert_eq!(s.load().await.unwrap(), Persisted::default());
            let p = Persisted {
                topology: topo(1, "a"),
                inflight: None,
            };
            s.save(0, &p).await.unwrap();
            let stale = s.save(0, &p).await.unwrap_err();
            assert!(matches!(
                stale,
                StoreError::EpochMoved {
                    expected: 0,
                    found: 1
                }
            ));
            assert!(LocalStore::is_locked(dir.path()));
            assert!(matches!(
                LocalStore::open_exclusive(dir.path()),
                Err(StoreError::Locked(_))
            ));
        }
        assert!(!LocalStore::is_locked(dir.path()));
        let s = LocalStore::open_exclusive(dir.path()).unwrap();
        assert_eq!(s.load().await.unwrap().topology, topo(1, "a"));
        let ro = LocalStore::open_read_only(dir.path());
        assert!(ro.save(1, &Persisted::default()).await.is_err());
    }

    #[tokio::test]
    async fn inflight_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let s = LocalStore::open_exclusive(dir.path()).unwrap();
        let p = Persisted {
            topology: topo(2, "a"),
            inflight: Some(InFlight {
                op: "failover".into(),
                old_primary: Some("a".into()),
                candidate: "b".into(),
                followers: vec!["c".into()],
                step: Step::Promote,
                base_epoch: 1,
                started_unix_ms: 5,
            }),
        };
        s.save(0, &p).await.unwrap();
        assert_eq!(s.load().await.unwrap(), p);
    }

    #[tokio::test]
    async fn events_append_read_and_tail() {
        let dir = tempfile::tempdir().unwrap();
        let s = LocalStore::open_exclusive(dir.path()).unwrap();
        s.append_event(&Event::now("a", None, "", 1)).await.unwrap();
        s.append_event(&Event::now("b", Some("n"), "x", 1))
            .await
            .unwrap();
        let (all, next) = s.events(0).await.unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!(next, 2);
        let (later, _) = s.events(1).await.unwrap();
        assert_eq!(later[0].kind, "b");
        let (tail, off) = tail_events(dir.path(), 0).unwrap();
        assert_eq!(tail.len(), 2);
        s.append_event(&Event::now("c", None, "", 2)).await.unwrap();
        let (tail, _) = tail_events(dir.path(), off).unwrap();
        assert_eq!(tail.len(), 1);
        assert_eq!(tail[0].kind, "c");
        // A torn line is skipped.
        std::fs::OpenOptions::new()
            .append(true)
            .open(dir.path().join("events.jsonl"))
            .unwrap()
            .write_all(b"{\"time\":")
            .unwrap();
        assert_eq!(s.events(0).await.unwrap().0.len(), 3);
    }
}
