//! `pgsluice status [--json]`: every node probed directly, plus the agent's view (`/status`)
//! when it answers: node, role, state, upstream, timeline, LSN, lag, priority, warmth (the share
//! of the primary's hot set in a standby's shared_buffers, from the agent), epoch.
//! Exit codes: 0 the topology's primary answers as a primary, 1 it does not.

use crate::agent::lease::{membership, Membership};
use crate::agent::probe::{lag, Prober};
use crate::agent::run::Status;
use crate::agent::sql::Target;
use crate::agent::state::{NodeProbe, Role};
use crate::agent::store::{LocalStore, StateStore};
use crate::agent::store_etcd::EtcdStore;
use crate::config::{self, ClusterConfig, StateStoreConfig};
use crate::topology::Topology;
use anyhow::Context;
use std::process::ExitCode;
use std::time::Duration;

/// Arguments of `status`.
#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub config: super::ConfigArg,
    /// Print JSON (topology, agent status, probes) instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Runs the verb.
pub fn run(a: StatusArgs) -> anyhow::Result<ExitCode> {
    let cfg = config::load(&a.config.config)?;
    let cluster = cfg
        .cluster
        .clone()
        .context("the configuration has no [cluster]")?;
    let rt = super::agent::runtime()?;
    let (probes, agent, stored, ha) = rt.block_on(async {
        let probes = Prober::new(Target::all(&cluster), cfg.agent.probe_timeout)
            .round()
            .await;
        let (stored, ha) = match &cfg.agent.state_store {
            StateStoreConfig::Local => {
                let s = LocalStore::open_read_only(&cfg.agent.state_dir);
                (s.load().await, None)
            }
            StateStoreConfig::Etcd(e) => {
                let s = EtcdStore::read_only(e.settings(), &e.prefix);
                let m = membership(s.client(), s.prefix()).await;
                (s.load().await, Some(m.map_err(|e| e.to_string())))
            }
        };
        let listen = ha
            .as_ref()
            .and_then(|m| m.as_ref().ok()?.leader.as_ref()?.listen.parse().ok())
            .unwrap_or(cfg.agent.listen);
        let agent = crate::agent::client::status(
            listen,
            cfg.control.secret_file.as_deref(),
            Duration::from_secs(1),
        )
        .await;
        let stored = stored.map(|s| s.topology).unwrap_or_default();
        (probes, agent.ok(), stored, ha)
    });
    let topo = agent.as_ref().map_or(stored, |s| s.topology.clone());
    let primary_ok = topo
        .primary
        .as_deref()
        .and_then(|p| probes.iter().find(|x| x.name == p))
        .is_some_and(|p| p.role() == Role::Primary);
    if a.json {
        let ha = ha.map(|m| {
            m.map_or_else(
                |e| serde_json::json!({ "error": e }),
                |m| serde_json::json!(m),
            )
        });
        let out =
            serde_json::json!({ "topology": topo, "agent": agent, "agents": ha, "nodes": probes });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        print_table(&cluster, &topo, agent.as_ref(), &probes);
        if let Some(m) = ha {
            println!("{}", agents_line(m));
        }
    }
    Ok(ExitCode::from(if primary_ok { 0 } else { 1 }))
}

fn print_table(
    cluster: &ClusterConfig,
    topo: &Topology,
    agent: Option<&Status>,
    probes: &[NodeProbe],
) {
    let decision = agent
        .and_then(|s| {
            s.decision
                .get("phase")
                .and_then(|p| p.as_str())
                .map(str::to_string)
        })
        .map_or("agent not reachable".to_string(), |d| {
            format!("agent decision: {d}")
        });
    println!(
        "cluster {}  epoch {}  primary {}  {decision}",
        cluster.name,
        topo.epoch,
        topo.primary.as_deref().unwrap_or("(none)")
    );
    println!(
        "{:<12} {:<8} {:<22} {:<12} {:>3} {:<12} {:>12} {:>8} {:>8} {:>6} {:>5}",
        "node",
        "role",
        "state",
        "upstream",
        "tl",
        "lsn",
        "lag bytes",
        "lag s",
        "priority",
        "warm",
        "epoch"
    );
    let head = topo
        .primary
        .as_deref()
        .and_then(|p| probes.iter().find(|x| x.name == p));
    for n in &cluster.nodes {
        if let Some(p) = probes.iter().find(|x| x.name == n.name) {
            let warm = agent.and_then(|s| s.warmth.get(&n.name).copied());
            println!("{}", row(cluster, topo, head, n, p, warm));
        }
    }
    for p in probes.iter().filter(|p| !p.reachable) {
        println!("{}", p.error.as_deref().unwrap_or("unreachable"));
    }
}

/// The agents sharing the etcd store, the leader and its lease.
fn agents_line(m: Result<Membership, String>) -> String {
    let m = match m {
        Ok(m) => m,
        Err(e) => return format!("agents: etcd not readable ({e}): nobody acts until it is"),
    };
    let leader = m.leader.as_ref().map(|l| l.name.as_str());
    let names: Vec<String> = m
        .agents
        .iter()
        .map(|a| match leader == Some(a.name.as_str()) {
            true => format!("{} (leader, {})", a.name, a.listen),
            false => format!("{} ({})", a.name, a.listen),
        })
        .collect();
    let lease = match (leader, m.lease_ttl_left) {
        (Some(l), Some(t)) => format!(
            "leader {l}, lease {:x} {t}s left, fencing revision {}",
            m.lease_id, m.leader_revision
        ),
        _ => "no leader: nobody acts (failover waits for a lease holder)".into(),
    };
    format!("agents: {}\n{lease}", names.join(", "))
}

/// One line of the table.
fn row(
    cluster: &ClusterConfig,
    topo: &Topology,
    head: Option<&NodeProbe>,
    n: &crate::config::NodeConfig,
    p: &NodeProbe,
    warm: Option<f64>,
) -> String {
    let state = if topo.is_fenced(&n.name) {
        "fenced".to_string()
    } else if !p.reachable {
        "down".to_string()
    } else if p.role() == Role::Primary && topo.primary.as_deref() != Some(&n.name) {
        "primary outside topology".into()
    } else if p.role() == Role::Standby && !p.is_streaming() {
        "not streaming".into()
    } else {
        "running".into()
    };
    let upstream = p
        .wal_receiver
        .as_ref()
        .filter(|w| w.is_streaming())
        .map_or("-".into(), |w| {
            cluster
                .nodes
                .iter()
                .find(|u| {
                    Some(u.port) == w.sender_port
                        && w.sender_host.as_deref() == Some(u.host.as_str())
                })
                .map_or(
                    format!(
                        "{}:{}",
                        w.sender_host.as_deref().unwrap_or("?"),
                        w.sender_port.unwrap_or(0)
                    ),
                    |u| u.name.clone(),
                )
        });
    let (bytes, secs) = match (head, p.role()) {
        (Some(h), Role::Standby) => lag(h, p),
        _ => (None, None),
    };
    format!(
        "{:<12} {:<8} {:<22} {:<12} {:>3} {:<12} {:>12} {:>8} {:>8} {:>6} {:>5}",
        n.name,
        p.role().as_str(),
        state,
        upstream,
        p.timeline.map_or("-".into(), |t| t.to_string()),
        p.wal_position().map_or("-".into(), |l| l.to_string()),
        bytes.map_or("-".into(), |b| b.to_string()),
        secs.map_or("-".into(), |s| format!("{s:.2}")),
        n.priority,
        warm.map_or("-".into(), |w| format!("{:.0}%", w * 100.0)),
        topo.epoch
    )
}
