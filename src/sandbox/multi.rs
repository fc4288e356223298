//! `sandbox up --agents N` (N > 1): a local single-member etcd (the `etcd` binary on PATH, as
//! Debian's `etcd-server` installs it; loopback only, data in `<dir>/etcd`) and N agents
//! coordinated through it, each with its own config file `agentK.toml` (distinct `name`,
//! `listen` and state directory). Every process is recorded in the state and pid files and
//! only ever signalled after checking it is ours.

use super::config_file;
use super::services;
use super::state::{MultiAgents, State};
use super::up::ServiceOutcome;
use super::SandboxError;
use crate::cluster::{ports, process, set_mode};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// The key (state record, pid and log file) of the etcd process.
pub const ETCD_KEY: &str = "etcd";
/// The key prefix the sandbox's agents and pooler share in etcd.
pub const ETCD_PREFIX: &str = "/pgsluice/sandbox/";
/// The most agents `up --agents` starts.
pub const MAX_AGENTS: usize = 9;
/// Default etcd client and peer ports (used when free, unless `--free-ports`).
const ETCD_PORTS: (u16, u16) = (2379, 2380);
/// How long a starting etcd gets to listen.
const ETCD_WAIT: Duration = Duration::from_secs(15);

/// `agent1`, `agent2`, ... for agent `i` (0-based).
pub fn agent_key(i: usize) -> String {
    format!("agent{}", i + 1)
}

/// The config file of agent `i`.
pub fn agent_config(state: &State, i: usize) -> PathBuf {
    state.dir.join(format!("{}.toml", agent_key(i)))
}

/// etcd's data directory.
pub fn etcd_data(state: &State) -> PathBuf {
    state.dir.join(ETCD_KEY)
}

/// The `etcd` binary on PATH, if installed.
pub fn etcd_binary() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join("etcd"))
        .find(|p| p.is_file())
}

/// The ports of `agents` agents (the first on `agent_port`) and their etcd; `None` for one
/// agent (local state, no etcd).
pub fn plan(
    agents: usize,
    agent_port: u16,
    free: bool,
) -> Result<Option<MultiAgents>, SandboxError> {
    if agents <= 1 {
        return Ok(None);
    }
    let pick = |p: u16| ports::pick((!free).then_some(p));
    let mut agent_ports = vec![agent_port];
    for i in 1..agents {
        agent_ports.push(pick(agent_port.saturating_add(i as u16))?);
    }
    Ok(Some(MultiAgents {
        etcd_client_port: pick(ETCD_PORTS.0)?,
        etcd_peer_port: pick(ETCD_PORTS.1)?,
        agent_ports,
    }))
}

/// Writes each agent's config file (validated) and state directory.
pub fn write_agent_configs(state: &State) -> Result<(), SandboxError> {
    let Some(m) = &state.multi else {
        return Ok(());
    };
    for i in 0..m.agent_ports.len() {
        let path = agent_config(state, i);
        std::fs::write(&path, config_file::render_agent(state, i))
            .map_err(|e| SandboxError::io(format!("writing {}", path.display()), e))?;
        set_mode(&path, 0o600)?;
        crate::config::load(&path)?;
        let dir = state.dir.join("agent").join(agent_key(i));
        std::fs::create_dir_all(&dir)
            .map_err(|e| SandboxError::io(format!("creating {}", dir.display()), e))?;
    }
    Ok(())
}

/// The running etcd of this sandbox (an `etcd` process with its data directory), if any.
pub fn etcd_pid(state: &State) -> Option<i32> {
    let data = etcd_data(state).to_string_lossy().into_owned();
    services::running_pid_by(&state.dir, ETCD_KEY, state.service_pid(ETCD_KEY), |pid| {
        services::runs(pid, "etcd", &data)
    })
}

/// The running agent `i` of this sandbox, if any.
pub fn agent_pid(state: &State, i: usize) -> Option<i32> {
    let key = agent_key(i);
    let config = agent_config(state, i);
    services::running_pid_by(&state.dir, &key, state.service_pid(&key), |pid| {
        services::belongs(pid, "agent", &config)
    })
}

/// Starts etcd unless it runs, and waits until it listens.
pub fn start_etcd(state: &mut State, m: &MultiAgents) -> ServiceOutcome {
    if let Some(pid) = etcd_pid(state) {
        state.set_service(ETCD_KEY, pid);
        return ServiceOutcome::AlreadyRunning(pid);
    }
    let Some(bin) = etcd_binary() else {
        return ServiceOutcome::Failed(
            "no etcd binary on PATH (Debian: apt-get install etcd-server)".to_string(),
        );
    };
    let client = format!("http://127.0.0.1:{}", m.etcd_client_port);
    let peer = format!("http://127.0.0.1:{}", m.etcd_peer_port);
    let mut cmd = Command::new(bin);
    cmd.args(["--name", "sandbox", "--data-dir"])
        .arg(etcd_data(state))
        .args([
            "--listen-client-urls",
            &client,
            "--advertise-client-urls",
            &client,
        ])
        .args([
            "--listen-peer-urls",
            &peer,
            "--initial-advertise-peer-urls",
            &peer,
        ])
        .args(["--initial-cluster", &format!("sandbox={peer}")])
        .args(["--initial-cluster-state", "new"]);
    let pid = match services::spawn(&state.dir, ETCD_KEY, cmd) {
        Ok(pid) => pid,
        Err(e) => return ServiceOutcome::Failed(e.to_string()),
    };
    state.set_service(ETCD_KEY, pid);
    let deadline = Instant::now() + ETCD_WAIT;
    while !ports::is_listening(m.etcd_client_port) {
        if Instant::now() >= deadline || !process::alive(pid) {
            let log = services::log_file(&state.dir, ETCD_KEY);
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            return ServiceOutcome::Failed(format!(
                "etcd does not listen on {client}; {}:\n{}",
                log.display(),
                process::tail(&text, 10)
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    ServiceOutcome::Started(pid)
}

/// Starts every agent that does not run.
pub fn start_agents(
    state: &mut State,
    exe: &Path,
    m: &MultiAgents,
) -> Vec<(String, ServiceOutcome)> {
    (0..m.agent_ports.len())
        .map(|i| {
            let key = agent_key(i);
            let outcome = if let Some(pid) = agent_pid(state, i) {
                state.set_service(&key, pid);
                ServiceOutcome::AlreadyRunning(pid)
            } else {
                match services::start_as(exe, &state.dir, &key, "agent", &agent_config(state, i)) {
                    Ok(pid) => {
                        state.set_service(&key, pid);
                        ServiceOutcome::Started(pid)
                    }
                    Err(e) => ServiceOutcome::Failed(e.to_string()),
                }
            };
            (key, outcome)
        })
        .collect()
}

/// Stops the agents (first: they resign their leases), returning (key, pid) of each stopped.
pub fn stop_agents(state: &State) -> Vec<(String, i32)> {
    let Some(m) = &state.multi else {
        return Vec::new();
    };
    let mut stopped = Vec::new();
    for i in 0..m.agent_ports.len() {
        let (key, config) = (agent_key(i), agent_config(state, i));
        if let Some(pid) = agent_pid(state, i) {
            if services::stop_by(pid, |p| services::belongs(p, "agent", &config)) {
                stopped.push((key.clone(), pid));
            }
        }
        let _ = std::fs::remove_file(services::pid_file(&state.dir, &key));
    }
    stopped
}

/// Stops etcd (last), returning its pid if it was stopped.
pub fn stop_etcd(state: &State) -> Option<i32> {
    state.multi.as_ref()?;
    let data = etcd_data(state).to_string_lossy().into_owned();
    let pid =
        etcd_pid(state).filter(|pid| services::stop_by(*pid, |p| services::runs(p, "etcd", &data)));
    let _ = std::fs::remove_file(services::pid_file(&state.dir, ETCD_KEY));
    pid
}

/// The leading agent's name, asked from etcd (None when etcd does not answer or nobody leads).
pub fn leader(m: &MultiAgents) -> Option<String> {
    let settings = crate::etcd::EtcdSettings {
        endpoints: vec![format!("http://127.0.0.1:{}", m.etcd_client_port)],
        auth: None,
        timeout: Duration::from_secs(1),
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .ok()?;
    let client = crate::etcd::EtcdClient::new(settings);
    let m = rt
        .block_on(crate::agent::lease::membership(&client, ETCD_PREFIX))
        .ok()?;
    m.leader.map(|l| l.name)
}
