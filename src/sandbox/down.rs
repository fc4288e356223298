//! `sandbox status` and `sandbox down [--purge]`: report and stop exactly what `up` recorded,
//! and remove the sandbox's directories on request.

use super::services::{self, SERVICES};
use super::state::State;
use super::{absolute_dir, data_base, multi, SandboxError};
use crate::cluster::{process, LocalCluster, LocalNode};
use std::path::{Path, PathBuf};

/// One node as `status` sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeStatus {
    /// Node name.
    pub name: String,
    /// TCP port.
    pub port: u16,
    /// Postmaster pid when running.
    pub pid: Option<i32>,
    /// `primary` or `standby` (from `pg_is_in_recovery()`), when it answers.
    pub role: Option<String>,
    /// Replication as a phrase: "streaming from :5432", "2 of 2 standbys streaming", ...
    pub replication: String,
    /// Data directory.
    pub data_dir: PathBuf,
    /// Server log.
    pub log_file: PathBuf,
}

/// One service as `status` sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceStatus {
    /// The role (`etcd`, `agentK` when there are several agents).
    pub role: String,
    /// Its pid when running (and verified to be ours).
    pub pid: Option<i32>,
    /// Where it listens, and for an agent among several whether it leads.
    pub detail: Option<String>,
    /// Its log.
    pub log_file: PathBuf,
}

/// What `status` found.
#[derive(Debug, Clone)]
pub struct StatusReport {
    /// The recorded state.
    pub state: State,
    /// The nodes.
    pub nodes: Vec<NodeStatus>,
    /// The services of the table.
    pub services: Vec<ServiceStatus>,
}

/// What `down` did.
#[derive(Debug, Clone, Default)]
pub struct DownReport {
    /// A sandbox state was found.
    pub found: bool,
    /// Services stopped: role and pid.
    pub services: Vec<(String, i32)>,
    /// Nodes stopped.
    pub nodes: Vec<String>,
    /// Directories removed.
    pub purged: Vec<PathBuf>,
}

/// The status of the sandbox in `dir`; `None` when there is none.
pub fn status(dir: &Path) -> Result<Option<StatusReport>, SandboxError> {
    let dir = absolute_dir(dir)?;
    let Some(state) = State::load(&dir)? else {
        return Ok(None);
    };
    let cluster = LocalCluster::adopt(&state.cluster)?;
    let nodes = cluster.nodes().iter().map(node_status).collect();
    let config = state.config_path();
    let mut services: Vec<ServiceStatus> = SERVICES
        .iter()
        .filter(|s| state.multi.is_none() || s.role != "agent")
        .map(|s| ServiceStatus {
            role: s.role.to_string(),
            pid: services::running_pid(&dir, s.role, &config, state.service_pid(s.role)),
            detail: None,
            log_file: services::log_file(&dir, s.role),
        })
        .collect();
    services.extend(multi_status(&state));
    Ok(Some(StatusReport {
        state,
        nodes,
        services,
    }))
}

/// etcd and the agents of a sandbox with several agents (the leader as etcd tells it).
fn multi_status(state: &State) -> Vec<ServiceStatus> {
    let Some(m) = &state.multi else {
        return Vec::new();
    };
    let etcd = multi::etcd_pid(state);
    let leader = etcd.and_then(|_| multi::leader(m));
    let mut out = vec![ServiceStatus {
        role: multi::ETCD_KEY.to_string(),
        pid: etcd,
        detail: Some(format!("127.0.0.1:{}", m.etcd_client_port)),
        log_file: services::log_file(&state.dir, multi::ETCD_KEY),
    }];
    for (i, port) in m.agent_ports.iter().enumerate() {
        let key = multi::agent_key(i);
        let pid = multi::agent_pid(state, i);
        let role = match (&leader, pid) {
            (_, None) => "",
            (Some(l), _) if *l == key => ", leader",
            _ => ", follower",
        };
        out.push(ServiceStatus {
            detail: Some(format!("127.0.0.1:{port}{role}")),
            log_file: services::log_file(&state.dir, &key),
            role: key,
            pid,
        });
    }
    out
}

fn node_status(n: &LocalNode) -> NodeStatus {
    let pid = n.pid();
    let role = pid
        .and_then(|_| n.is_in_recovery().ok())
        .map(|r| if r { "standby" } else { "primary" }.to_string());
    let replication = match role.as_deref() {
        None if pid.is_none() => "down".to_string(),
        None => "not answering".to_string(),
        Some("standby") => n
            .psql(
                "postgres",
                "select coalesce((select status || ' from :' || sender_port \
                 from pg_stat_wal_receiver), 'not streaming')",
            )
            .unwrap_or_else(|e| format!("unknown ({e})")),
        Some(_) => n
            .psql(
                "postgres",
                "select count(*) filter (where state = 'streaming') || ' of ' || count(*) \
                 || ' standbys streaming' from pg_stat_replication",
            )
            .unwrap_or_else(|e| format!("unknown ({e})")),
    };
    NodeStatus {
        name: n.name().to_string(),
        port: n.port(),
        pid,
        role,
        replication,
        data_dir: n.data_dir().to_path_buf(),
        log_file: n.log_file().to_path_buf(),
    }
}

/// Stops the services and servers the sandbox in `dir` started (each pid checked to be ours
/// first); with `purge`, removes its data directories and `dir`.
pub fn down(dir: &Path, purge: bool) -> Result<DownReport, SandboxError> {
    let dir = absolute_dir(dir)?;
    let Some(mut state) = State::load(&dir)? else {
        return down_without_state(&dir, purge);
    };
    let mut report = DownReport {
        found: true,
        ..DownReport::default()
    };
    let config = state.config_path();
    report.services.extend(multi::stop_agents(&state));
    for s in SERVICES {
        let pid = services::running_pid(&dir, s.role, &config, state.service_pid(s.role));
        if let Some(pid) = pid.filter(|p| services::stop(*p, s.role, &config)) {
            report.services.push((s.role.to_string(), pid));
        }
        let _ = std::fs::remove_file(services::pid_file(&dir, s.role));
    }
    report
        .services
        .extend(multi::stop_etcd(&state).map(|p| (multi::ETCD_KEY.to_string(), p)));
    state.services.clear();
    let cluster = LocalCluster::adopt(&state.cluster)?;
    report.nodes = cluster
        .nodes()
        .iter()
        .filter(|n| n.is_running())
        .map(|n| n.name().to_string())
        .collect();
    cluster.stop_all()?;
    if purge {
        remove(&state.cluster.base_dir, &mut report)?;
        remove(&dir, &mut report)?;
    } else {
        state.save()?;
    }
    Ok(report)
}

fn down_without_state(dir: &Path, purge: bool) -> Result<DownReport, SandboxError> {
    let mut report = DownReport::default();
    if !purge {
        return Ok(report);
    }
    let base = data_base(dir);
    if clear_leftover(&base)? {
        report.purged.push(base);
    }
    if dir.is_dir() {
        if !only_sandbox_files(dir) {
            return Err(SandboxError::Blocked {
                message: format!(
                    "{} has no sandbox state and holds other files: not removing it",
                    dir.display()
                ),
            });
        }
        remove(dir, &mut report)?;
    }
    Ok(report)
}

fn remove(path: &Path, report: &mut DownReport) -> Result<(), SandboxError> {
    match std::fs::remove_dir_all(path) {
        Ok(()) => {
            report.purged.push(path.to_path_buf());
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(SandboxError::io(format!("removing {}", path.display()), e)),
    }
}

/// Removes a cluster directory an earlier `up` left without a state file (it failed half-way).
/// Refuses when a server still runs there or it does not look like a harness cluster.
/// Returns whether something was removed.
pub(super) fn clear_leftover(base: &Path) -> Result<bool, SandboxError> {
    if !base.exists() {
        return Ok(false);
    }
    let live = live_postmasters(base);
    if !live.is_empty() {
        return Err(SandboxError::Blocked {
            message: format!(
                "{} has running servers but no sandbox state (postmaster pids {live:?}); \
                 stop them with pg_ctl stop -D <data dir>, then retry",
                base.display()
            ),
        });
    }
    let ours = entries(base)
        .iter()
        .all(|name| name.starts_with("node") || name == "sock" || name == ".pwfile");
    if !ours {
        return Err(SandboxError::Blocked {
            message: format!(
                "{} exists and is not a sandbox cluster: remove it or use another --dir",
                base.display()
            ),
        });
    }
    std::fs::remove_dir_all(base)
        .map_err(|e| SandboxError::io(format!("removing {}", base.display()), e))?;
    Ok(true)
}

fn entries(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// Postmasters alive in `base/*/postmaster.pid`.
fn live_postmasters(base: &Path) -> Vec<i32> {
    entries(base)
        .iter()
        .filter_map(|name| std::fs::read_to_string(base.join(name).join("postmaster.pid")).ok())
        .filter_map(|t| t.lines().next()?.trim().parse::<i32>().ok())
        .filter(|pid| {
            process::alive(*pid)
                && process::cmdline(*pid)
                    .first()
                    .is_some_and(|a| a.ends_with("postgres"))
        })
        .collect()
}

/// True when `dir` holds nothing but what a sandbox writes.
fn only_sandbox_files(dir: &Path) -> bool {
    entries(dir).iter().all(|name| {
        matches!(
            name.as_str(),
            "pgsluice.toml" | "state.json" | "state.json.tmp" | "agent" | "cluster" | "etcd"
        ) || (name.starts_with("agent") && name.ends_with(".toml"))
            || name.ends_with(".log")
            || name.ends_with(".pid")
    })
}
