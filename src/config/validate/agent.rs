//! `[agent]`: probing and failover timing, pushes, synchronous mode, warm failover, state store.

use super::check::Checker;
use super::pooler::log_format;
use crate::config::model::*;
use crate::config::raw::RawAgent;
use std::net::SocketAddr;
use std::time::Duration;

/// Validates `[agent]`; `cluster` bounds `synchronous_standbys` and names the etcd prefix.
pub(super) fn agent(c: &mut Checker, a: &RawAgent, cluster: Option<&ClusterConfig>) -> AgentConfig {
    let probe_interval = c.duration("agent.probe_interval", &a.probe_interval);
    if probe_interval.is_zero() {
        c.bad(
            "agent.probe_interval",
            "must be above zero",
            "for example \"1s\"",
        );
    }
    let failure_threshold = c.count("agent.failure_threshold", a.failure_threshold) as u32;
    let failure_window = c.duration("agent.failure_window", &a.failure_window);
    if failure_window < probe_interval * failure_threshold.saturating_sub(1) {
        c.bad(
            "agent.failure_window",
            format!("{failure_window:?} cannot hold {failure_threshold} probes {probe_interval:?} apart"),
            "make it at least probe_interval x (failure_threshold - 1)",
        );
    }
    let synchronous_standbys = c.count("agent.synchronous_standbys", a.synchronous_standbys) as u32;
    let standbys = cluster.map_or(0, |cl| cl.nodes.len().saturating_sub(1));
    if synchronous_standbys as usize > standbys {
        c.bad(
            "agent.synchronous_standbys",
            format!("{synchronous_standbys} is more than the {standbys} standby(s) of [cluster]"),
            "at most the number of nodes minus one",
        );
    }
    if a.state_dir.is_some() && cluster.is_none() {
        c.bad(
            "agent.state_dir",
            "an agent needs a [cluster] to manage",
            "describe [[cluster.nodes]]",
        );
    }
    let topology_lease = c.duration("agent.topology_lease", &a.topology_lease);
    if !topology_lease.is_zero() && topology_lease < Duration::from_millis(300) {
        c.bad(
            "agent.topology_lease",
            format!("{topology_lease:?} is too short to renew three times over HTTP"),
            "at least \"300ms\", or 0 to turn the lease off",
        );
    }
    let suspect_probe_interval =
        c.duration("agent.suspect_probe_interval", &a.suspect_probe_interval);
    if suspect_probe_interval > probe_interval {
        c.bad(
            "agent.suspect_probe_interval",
            format!("{suspect_probe_interval:?} is longer than probe_interval {probe_interval:?}"),
            "at most probe_interval, or 0",
        );
    }
    let listen = c.socket("agent.listen", &a.listen);
    AgentConfig {
        topology_lease,
        state_dir: c.path("agent.state_dir", &a.state_dir).unwrap_or_default(),
        probe_interval,
        suspect_probe_interval,
        probe_timeout: c.duration("agent.probe_timeout", &a.probe_timeout),
        failure_threshold,
        failure_window,
        max_failover_lag: c.bytes("agent.max_failover_lag", &a.max_failover_lag),
        auto_failover: c.flag("agent.auto_failover", a.auto_failover),
        event_command: a.event_command.clone().filter(|s| !s.is_empty()),
        poolers: c.list("agent.poolers", &a.poolers),
        listen,
        synchronous_standbys,
        warm: warm(c, a),
        name: agent_name(a, listen),
        state_store: state_store(c, a, cluster),
        log_format: log_format(c, "agent.log_format", &a.log_format),
    }
}

/// `agent.name`, by default `<host name>-<listen port>`.
fn agent_name(a: &RawAgent, listen: SocketAddr) -> String {
    a.name.clone().filter(|n| !n.is_empty()).unwrap_or_else(|| {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
        format!("{}-{}", host.trim(), listen.port())
    })
}

/// `http://` followed by a host (and usually a port): what the etcd client can reach.
fn is_http_url(e: &str) -> bool {
    e.strip_prefix("http://")
        .is_some_and(|rest| !rest.is_empty() && !rest.starts_with('/') && !rest.contains(' '))
}

/// `agent.state_store` and the etcd keys.
fn state_store(c: &mut Checker, a: &RawAgent, cluster: Option<&ClusterConfig>) -> StateStoreConfig {
    let etcd_keys = a.etcd_endpoints.is_some() || a.etcd_prefix.is_some() || a.lease_ttl.is_some();
    if c.choice("agent.state_store", &a.state_store) != "etcd" {
        if etcd_keys || a.etcd_username.is_some() {
            c.bad(
                "agent.state_store",
                "etcd keys are set but state_store is local",
                "set state_store = \"etcd\"",
            );
        }
        return StateStoreConfig::Local;
    }
    let endpoints = a.etcd_endpoints.clone().unwrap_or_default();
    if endpoints.is_empty() {
        c.bad(
            "agent.etcd_endpoints",
            "state_store = \"etcd\" needs endpoints",
            "for example [\"http://127.0.0.1:2379\"]",
        );
    }
    for e in endpoints.iter().filter(|e| !is_http_url(e)) {
        c.bad(
            "agent.etcd_endpoints",
            format!("{e:?} is not an http://host:port URL (TLS to etcd is not supported)"),
            "for example \"http://127.0.0.1:2379\"",
        );
    }
    let endpoints = c.list("agent.etcd_endpoints", &Some(endpoints));
    let name = cluster.map_or("default", |c| c.name.as_str());
    let mut prefix = a
        .etcd_prefix
        .clone()
        .unwrap_or_else(|| format!("/pgsluice/{name}/"));
    if !prefix.ends_with('/') {
        prefix.push('/');
    }
    let lease_ttl = c.duration("agent.lease_ttl", &a.lease_ttl);
    if lease_ttl < Duration::from_secs(2) || lease_ttl.subsec_nanos() != 0 {
        c.bad(
            "agent.lease_ttl",
            format!("{lease_ttl:?} is not whole seconds >= 2"),
            "etcd leases count whole seconds; for example \"10s\"",
        );
    }
    let auth = match (&a.etcd_username, &a.etcd_password) {
        (Some(u), Some(p)) => Some((u.clone(), p.clone())),
        (None, None) => None,
        _ => {
            c.bad(
                "agent.etcd_username",
                "etcd_username and etcd_password go together",
                "",
            );
            None
        }
    };
    StateStoreConfig::Etcd(EtcdConfig {
        endpoints,
        prefix,
        auth,
        lease_ttl,
    })
}

/// The warm-failover keys of `[agent]`.
fn warm(c: &mut Checker, a: &RawAgent) -> WarmConfig {
    let rate = c.rate(
        "agent.prewarm_rate",
        a.prewarm_rate,
        "MB per second above 0, for example 64",
    );
    let mode = c.choice("agent.prewarm_mode", &a.prewarm_mode);
    WarmConfig {
        hot_set_interval: c.duration("agent.hot_set_interval", &a.hot_set_interval),
        min_usagecount: c.count("agent.hot_set_min_usagecount", a.hot_set_min_usagecount) as u8,
        budget: c.fraction("agent.hot_set_budget", a.hot_set_budget),
        rate_bytes: (rate * 1048576.0) as u64,
        mode: PrewarmMode::parse(mode).unwrap_or(PrewarmMode::Buffer),
        switchover_warmth: c.fraction("agent.switchover_warmth", a.switchover_warmth),
        switchover_timeout: c.duration(
            "agent.switchover_warmth_timeout",
            &a.switchover_warmth_timeout,
        ),
    }
}
