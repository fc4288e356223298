//! Renders the sandbox's `pgsluice.toml` from its state: the cluster's nodes with their data
//! directories and priorities, credentials, `[databases.app]`, users, agent and metrics.

use super::state::State;
use std::fmt::Write;

/// A TOML basic string.
fn q(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

/// Promotion priority of the i-th node: the last one is a less preferred candidate, to show
/// the setting off.
fn priority(i: usize, count: usize) -> u32 {
    if count > 2 && i == count - 1 {
        50
    } else {
        100
    }
}

/// The configuration file for the sandbox described by `state` (`pgsluice.toml`: the pooler,
/// the verbs, and the only agent unless there are several).
pub fn render(state: &State) -> String {
    render_as(state, None)
}

/// The configuration file of agent `i` (0-based) of a sandbox with several agents: the same
/// file with the agent's own `name`, `listen` and state directory.
pub fn render_agent(state: &State, i: usize) -> String {
    render_as(state, Some(i))
}

/// `[agent]` lines of the etcd state store, for a sandbox with several agents.
fn etcd_lines(state: &State, agent: Option<usize>) -> String {
    let Some(m) = &state.multi else {
        return String::new();
    };
    let mut out = format!(
        "state_store = \"etcd\"\netcd_endpoints = [\"http://127.0.0.1:{}\"]\n\
         etcd_prefix = {}\nlease_ttl = \"5s\"\n",
        m.etcd_client_port,
        q(super::multi::ETCD_PREFIX)
    );
    if let Some(i) = agent {
        let _ = writeln!(out, "name = {}", q(&super::multi::agent_key(i)));
    }
    out
}

fn render_as(state: &State, agent: Option<usize>) -> String {
    let c = &state.cluster;
    let p = &state.ports;
    let mut out = String::new();
    let _ = write!(
        out,
        r#"# pgsluice sandbox configuration, written by `pgsluice sandbox up`.
# `up` writes it once and keeps your edits; `down --purge` removes it.

[pooler]
listen_addr = "127.0.0.1"
listen_port = {pooler}
pool_mode = "transaction"
default_pool_size = 10
auth_type = "scram-sha-256"
admin_users = [{app_key}, {superuser}]
client_tls_sslmode = "prefer"
client_tls_cert_file = {tls_cert}
client_tls_key_file = {tls_key}

[databases.app]
dbname = {app_db}
policy = "auto"                  # reads spread over the standbys (docs/routing.md)
read_your_writes = "session"     # a client's reads see its own writes
max_replica_lag = "16MB"

[users.{app_key}]
password = {app_pw}

[users.{su_key}]
password = {su_pw}

[cluster]
name = "sandbox"
pg_bindir = {bindir}
superuser = {superuser}
superuser_password = {su_pw}
replication_user = {repl}
replication_password = {repl_pw}
probe_database = "postgres"
"#,
        pooler = p.pooler,
        tls_cert = q(&super::tls::paths(&state.dir).0.to_string_lossy()),
        tls_key = q(&super::tls::paths(&state.dir).1.to_string_lossy()),
        superuser = q(&c.superuser),
        app_db = q(&state.app_user),
        app_key = q(&state.app_user),
        app_pw = q(&state.app_password),
        su_key = q(&c.superuser),
        su_pw = q(&c.superuser_password),
        bindir = q(&c.bindir.to_string_lossy()),
        repl = q(&c.replication_user),
        repl_pw = q(&c.replication_password),
    );
    render_nodes(&mut out, state);
    let (agent_dir, agent_port) = match (agent, &state.multi) {
        (Some(i), Some(m)) => (
            state.dir.join("agent").join(super::multi::agent_key(i)),
            m.agent_ports.get(i).copied().unwrap_or(p.agent),
        ),
        _ => (state.dir.join("agent"), p.agent),
    };
    let _ = write!(
        out,
        r#"
[agent]
state_dir = {state_dir}
probe_interval = "1s"
probe_timeout = "1s"
failure_threshold = 3
failure_window = "10s"
max_failover_lag = "16MB"
auto_failover = true
poolers = ["http://127.0.0.1:{metrics}"]
listen = "127.0.0.1:{agent}"
{etcd}
[metrics]
enabled = true
listen = "127.0.0.1:{metrics}"

[control]
secret_file = {secret}
"#,
        secret = q(&secret_path(&state.dir).to_string_lossy()),
        state_dir = q(&agent_dir.to_string_lossy()),
        metrics = p.metrics,
        agent = agent_port,
        etcd = etcd_lines(state, agent),
    );
    out
}

/// The control-plane secret of the sandbox in `dir` (random, mode 0600).
pub fn secret_path(dir: &std::path::Path) -> std::path::PathBuf {
    dir.join("control.secret")
}

/// The `[[cluster.nodes]]` tables.
fn render_nodes(out: &mut String, state: &State) {
    let c = &state.cluster;
    for (i, n) in c.nodes.iter().enumerate() {
        let _ = write!(
            out,
            "\n[[cluster.nodes]]\nname = {}\nhost = \"127.0.0.1\"\nport = {}\ndata_dir = {}\npriority = {}\n",
            q(&n.name),
            n.port,
            q(&n.data_dir.to_string_lossy()),
            priority(i, c.nodes.len()),
        );
        if let Some(u) = &c.os_user {
            let _ = writeln!(out, "os_user = {}", q(u));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::{ClusterLayout, NodeLayout};
    use crate::sandbox::state::ServicePorts;
    use std::path::PathBuf;

    fn state() -> State {
        let node = |i: u16| NodeLayout {
            name: format!("node{i}"),
            port: 5431 + i,
            data_dir: PathBuf::from(format!("/tmp/sb/node{i}")),
            socket_dir: PathBuf::from("/tmp/sb/sock"),
            log_file: PathBuf::from(format!("/tmp/sb/node{i}.log")),
        };
        State {
            dir: PathBuf::from("/work/x/.sandbox"),
            cluster: ClusterLayout {
                base_dir: PathBuf::from("/tmp/sb"),
                bindir: PathBuf::from("/usr/lib/postgresql/15/bin"),
                os_user: Some("postgres".to_string()),
                superuser: "postgres".to_string(),
                superuser_password: "su\"pw".to_string(),
                replication_user: "replicator".to_string(),
                replication_password: "rpw".to_string(),
                nodes: (1..=3).map(node).collect(),
            },
            ports: ServicePorts {
                pooler: 6432,
                metrics: 9930,
                agent: 9931,
            },
            app_user: "app".to_string(),
            app_password: "apw".to_string(),
            developer_role: None,
            services: Vec::new(),
            multi: None,
        }
    }

    #[test]
    fn the_rendered_file_validates_and_matches_the_cluster() {
        let text = render(&state());
        let config = crate::config::from_str(&text, "sandbox");
        let config = match config {
            Ok(c) => c,
            Err(e) => panic!("{e}\n{text}"),
        };
        let cluster = config
            .cluster
            .as_ref()
            .map(|c| c.nodes.clone())
            .unwrap_or_default();
        assert_eq!(cluster.len(), 3);
        assert_eq!(cluster[1].port, 5433);
        assert_eq!(cluster[2].priority, 50);
        assert_eq!(cluster[0].os_user.as_deref(), Some("postgres"));
        assert_eq!(config.pooler.listen.port(), 6432);
        assert_eq!(config.users["postgres"].password.as_deref(), Some("su\"pw"));
        assert!(config.databases.contains_key("app"));
        let routing = &config.databases["app"].routing;
        assert_eq!(routing.policy, crate::config::RoutePolicy::Auto);
        assert!(routing.read_your_writes);
        // The sandbox's user runs the admin console.
        assert!(config.pooler.admin_users.contains(&"app".to_string()));
        // The control plane is closed to anyone without the sandbox's secret.
        assert_eq!(
            config.control.secret_file.as_deref(),
            Some(std::path::Path::new("/work/x/.sandbox/control.secret"))
        );
        assert_eq!(config.agent.listen.port(), 9931);
        assert!(matches!(
            config.agent.state_store,
            crate::config::StateStoreConfig::Local
        ));
    }

    #[test]
    fn several_agents_share_etcd_with_their_own_name_and_port() {
        let mut s = state();
        s.multi = Some(crate::sandbox::state::MultiAgents {
            etcd_client_port: 2379,
            etcd_peer_port: 2380,
            agent_ports: vec![9931, 9932, 9933],
        });
        let load = |text: String| match crate::config::from_str(&text, "sandbox") {
            Ok(c) => c,
            Err(e) => panic!("{e}\n{text}"),
        };
        let main = load(render(&s));
        let crate::config::StateStoreConfig::Etcd(e) = &main.agent.state_store else {
            panic!("not etcd: {:?}", main.agent.state_store);
        };
        assert_eq!(e.prefix, "/pgsluice/sandbox/");
        assert_eq!(main.agent.listen.port(), 9931);
        let names: Vec<(String, u16)> = (0..3)
            .map(|i| load(render_agent(&s, i)))
            .map(|c| (c.agent.name.clone(), c.agent.listen.port()))
            .collect();
        let want = [("agent1", 9931), ("agent2", 9932), ("agent3", 9933)];
        let want: Vec<(String, u16)> = want.iter().map(|(n, p)| (n.to_string(), *p)).collect();
        assert_eq!(names, want);
    }
}
