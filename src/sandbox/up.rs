//! `sandbox up`: build a new sandbox (cluster, config, state, daemons), or, when one exists,
//! start again only what is down, without re-initialising anything.

use super::services::{self, SERVICES};
use super::state::{ServicePorts, State};
use super::{
    absolute_dir, config_file, data_base, SandboxError, DEFAULT_NODE_PORTS, DEFAULT_SERVICE_PORTS,
};
use crate::cluster::{ports, set_mode, ClusterSpec, LocalCluster, LocalNode};
use rand::distributions::Alphanumeric;
use rand::Rng;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How long a restarted standby may take to stream again before `up` just warns.
const STREAM_WAIT: Duration = Duration::from_secs(15);

/// What `up` is asked to do.
#[derive(Debug, Clone)]
pub struct UpOptions {
    /// Sandbox directory.
    pub dir: PathBuf,
    /// The pgsluice binary whose roles run as services.
    pub exe: PathBuf,
    /// Use kernel-chosen free ports instead of the defaults (5432-5434, 6432, 9930, 9931).
    pub free_ports: bool,
    /// How many agents: 1 keeps its state locally; more share a local etcd
    /// ([`super::multi`]). Applies when the sandbox is built.
    pub agents: usize,
}

/// What happened to a node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeAction {
    /// Built and started by this `up`.
    Created,
    /// Was down, started again.
    Started,
    /// Was running already.
    AlreadyRunning,
    /// Left down on purpose, with the reason.
    Skipped(String),
}

/// What happened to a service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServiceOutcome {
    /// Started now with this pid.
    Started(i32),
    /// Was running already with this pid.
    AlreadyRunning(i32),
    /// This binary has no such role yet.
    Unavailable,
    /// Would not start.
    Failed(String),
}

/// The result of `up`, for the command line to print.
#[derive(Debug, Clone)]
pub struct UpReport {
    /// True when this `up` built the sandbox.
    pub created: bool,
    /// The state as saved.
    pub state: State,
    /// Each node: name, port, what happened.
    pub nodes: Vec<(String, u16, NodeAction)>,
    /// Each service: role (or `etcd`, `agentK`), what happened.
    pub services: Vec<(String, ServiceOutcome)>,
    /// Things worth knowing that did not stop `up`.
    pub warnings: Vec<String>,
}

/// Builds the sandbox in `opts.dir`, or brings an existing one back up.
pub fn up(opts: &UpOptions) -> Result<UpReport, SandboxError> {
    let dir = absolute_dir(&opts.dir)?;
    std::fs::create_dir_all(&dir)
        .map_err(|e| SandboxError::io(format!("creating {}", dir.display()), e))?;
    set_mode(&dir, 0o700)?;
    match State::load(&dir)? {
        Some(state) => resume(state, opts),
        None => create(dir, opts),
    }
}

fn password() -> String {
    rand::thread_rng()
        .sample_iter(&Alphanumeric)
        .take(20)
        .map(char::from)
        .collect()
}

fn create(dir: PathBuf, opts: &UpOptions) -> Result<UpReport, SandboxError> {
    let base = data_base(&dir);
    let mut warnings = Vec::new();
    if super::down::clear_leftover(&base)? {
        warnings.push(format!(
            "removed {} left by an earlier failed up",
            base.display()
        ));
    }
    // Picked first: the port registry then keeps the cluster off them.
    let ports = service_ports(opts.free_ports)?;
    let multi = super::multi::plan(opts.agents, ports.agent, opts.free_ports)?;
    let app_password = password();
    let spec = ClusterSpec {
        dir: Some(base),
        superuser_password: password(),
        replication_password: password(),
        ports: if opts.free_ports {
            Vec::new()
        } else {
            DEFAULT_NODE_PORTS.to_vec()
        },
        shared_buffers: "64MB".to_string(),
        fsync: true,
        ..ClusterSpec::new(2)
    }
    .user("app", &app_password)
    .database("app", Some("app"));
    let (spec, developer_role) = with_developer_role(spec);
    let cluster = LocalCluster::start(spec)?;
    let nodes = cluster
        .nodes()
        .iter()
        .map(|n| (n.name().to_string(), n.port(), NodeAction::Created))
        .collect();
    let layout = cluster.detach();
    let mut state = State {
        dir,
        cluster: layout,
        ports,
        app_user: "app".to_string(),
        app_password,
        developer_role,
        services: Vec::new(),
        multi,
    };
    // Saved at once: from here on `down` can stop the servers whatever fails next.
    state.save()?;
    write_config(&state)?;
    let services = start_services(&mut state, &opts.exe);
    state.save()?;
    Ok(UpReport {
        created: true,
        state,
        nodes,
        services,
        warnings,
    })
}

/// Lets the developer run plain `psql -h 127.0.0.1 -p <port>`: a role and a database named
/// after the OS user, trusted on loopback (a non-superuser; the sandbox listens on 127.0.0.1
/// only). Skipped when the name is already one of the sandbox's roles.
fn with_developer_role(spec: ClusterSpec) -> (ClusterSpec, Option<String>) {
    let Ok(Some(me)) = nix::unistd::User::from_uid(nix::unistd::Uid::current()) else {
        return (spec, None);
    };
    let taken = [&spec.superuser, &spec.replication_user]
        .into_iter()
        .chain(spec.users.iter().map(|u| &u.0))
        .any(|r| *r == me.name);
    if taken || me.name.is_empty() {
        return (spec, None);
    }
    let mut spec = spec
        .user(&me.name, &password())
        .database(&me.name, Some(&me.name));
    spec.extra_hba.push(format!(
        "host all {} 127.0.0.1/32 trust",
        crate::quote::sql_ident(&me.name)
    ));
    (spec, Some(me.name))
}

fn service_ports(free: bool) -> Result<ServicePorts, SandboxError> {
    let d = DEFAULT_SERVICE_PORTS;
    let pick = |p: u16| ports::pick((!free).then_some(p));
    Ok(ServicePorts {
        pooler: pick(d.pooler)?,
        metrics: pick(d.metrics)?,
        agent: pick(d.agent)?,
    })
}

/// Writes `pgsluice.toml` and checks it loads, before anything uses it.
fn write_config(state: &State) -> Result<(), SandboxError> {
    let path = state.config_path();
    super::tls::ensure_cert(&state.dir)?;
    let secret = config_file::secret_path(&state.dir);
    if crate::net::secret::read(&secret).is_err() {
        crate::net::secret::generate(&secret)
            .map_err(|e| SandboxError::io(format!("writing {}", secret.display()), e))?;
    }
    std::fs::write(&path, config_file::render(state))
        .map_err(|e| SandboxError::io(format!("writing {}", path.display()), e))?;
    set_mode(&path, 0o600)?;
    crate::config::load(&path)?;
    let agent_dir = state.dir.join("agent");
    std::fs::create_dir_all(&agent_dir)
        .map_err(|e| SandboxError::io(format!("creating {}", agent_dir.display()), e))?;
    super::multi::write_agent_configs(state)
}

/// Starts what does not run: etcd first when there are several agents, the pooler, then the
/// agent (or the agents).
fn start_services(state: &mut State, exe: &Path) -> Vec<(String, ServiceOutcome)> {
    let config = state.config_path();
    let mut out = Vec::new();
    let multi = state.multi.clone();
    if let Some(m) = &multi {
        out.push((
            super::multi::ETCD_KEY.to_string(),
            super::multi::start_etcd(state, m),
        ));
    }
    for s in SERVICES {
        if let Some(m) = multi.as_ref().filter(|_| s.role == "agent") {
            out.extend(super::multi::start_agents(state, exe, m));
            continue;
        }
        let outcome = if !services::supported(exe, s.role) {
            ServiceOutcome::Unavailable
        } else if let Some(pid) =
            services::running_pid(&state.dir, s.role, &config, state.service_pid(s.role))
        {
            state.set_service(s.role, pid);
            ServiceOutcome::AlreadyRunning(pid)
        } else {
            match services::start(exe, &state.dir, s.role, &config) {
                Ok(pid) => {
                    state.set_service(s.role, pid);
                    ServiceOutcome::Started(pid)
                }
                Err(e) => ServiceOutcome::Failed(e.to_string()),
            }
        };
        out.push((s.role.to_string(), outcome));
    }
    out
}

fn resume(mut state: State, opts: &UpOptions) -> Result<UpReport, SandboxError> {
    for n in &state.cluster.nodes {
        if !n.data_dir.join("PG_VERSION").is_file() {
            return Err(SandboxError::Blocked {
                message: format!(
                    "{}: data directory {} is gone (was /tmp cleared by a reboot?); run \
                     `pgsluice sandbox down --purge --dir {}` and `up` again",
                    n.name,
                    n.data_dir.display(),
                    state.dir.display()
                ),
            });
        }
    }
    let cluster = LocalCluster::adopt(&state.cluster)?;
    let skip = extra_primaries(&cluster);
    let mut nodes = Vec::new();
    let mut warnings = Vec::new();
    for n in cluster.nodes() {
        let action = if n.is_running() {
            NodeAction::AlreadyRunning
        } else if let Some(why) = skip.iter().find(|(name, _)| name == n.name()) {
            NodeAction::Skipped(why.1.clone())
        } else {
            n.start()?;
            NodeAction::Started
        };
        nodes.push((n.name().to_string(), n.port(), action));
    }
    // Standbys can only stream once a primary runs; without one, waiting is pointless.
    let primary_up = cluster.current_primary().is_some();
    for n in cluster
        .nodes()
        .iter()
        .filter(|n| primary_up && is_standby(n) && n.is_running())
    {
        if let Err(e) = n.wait_streaming(STREAM_WAIT) {
            warnings.push(format!("{} is up but not streaming: {e}", n.name()));
        }
    }
    if !state.config_path().is_file() {
        write_config(&state)?;
    }
    let built_with = state.multi.as_ref().map_or(1, |m| m.agent_ports.len());
    if opts.agents > 1 && opts.agents != built_with {
        warnings.push(format!(
            "this sandbox was built with {built_with} agent(s); --agents only applies when it \
             is built (`down --purge` first)"
        ));
    }
    if let Some(m) = &state.multi {
        let missing =
            (0..m.agent_ports.len()).any(|i| !super::multi::agent_config(&state, i).is_file());
        if missing {
            super::multi::write_agent_configs(&state)?;
        }
    }
    let services = start_services(&mut state, &opts.exe);
    state.save()?;
    Ok(UpReport {
        created: false,
        state,
        nodes,
        services,
        warnings,
    })
}

fn is_standby(node: &LocalNode) -> bool {
    node.data_dir().join("standby.signal").is_file()
}

/// Nodes that would come up as a second primary (no standby.signal) next to a running primary
/// or one on a later timeline, e.g. an old primary after a failover: left down, with why.
fn extra_primaries(cluster: &LocalCluster) -> Vec<(String, String)> {
    let primaries: Vec<&LocalNode> = cluster.nodes().iter().filter(|n| !is_standby(n)).collect();
    if primaries.len() < 2 {
        return Vec::new();
    }
    let keep = primaries
        .iter()
        .find(|n| n.is_running())
        .or_else(|| primaries.iter().max_by_key(|n| timeline(n)))
        .map(|n| n.name().to_string());
    primaries
        .iter()
        .filter(|n| Some(n.name()) != keep.as_deref() && !n.is_running())
        .map(|n| {
            let why = format!(
                "not a standby while {} is the primary: rejoin it as a standby first \
                 (starting it would make two primaries)",
                keep.as_deref().unwrap_or("another node")
            );
            (n.name().to_string(), why)
        })
        .collect()
}

/// The timeline of the latest checkpoint, from pg_controldata (0 if unreadable).
fn timeline(node: &LocalNode) -> u32 {
    let out = std::process::Command::new(node.bin().path("pg_controldata"))
        .arg(node.data_dir())
        .env("LC_ALL", "C")
        .output();
    out.ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .find(|l| l.starts_with("Latest checkpoint's TimeLineID:"))
                .and_then(|l| l.split(':').nth(1)?.trim().parse().ok())
        })
        .unwrap_or(0)
}
