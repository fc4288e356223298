//! Unit tests of configuration loading: defaults, and every validation path naming its key.

use super::*;
use std::time::Duration;

fn problems(text: &str) -> Vec<String> {
    match from_str(text, "test.toml") {
        Ok(_) => vec![],
        Err(e) => e.lines(),
    }
}

fn has(problems: &[String], prefix: &str) -> bool {
    problems.iter().any(|p| p.starts_with(prefix))
}

const MINIMAL: &str = r#"
[databases.app]
host = "127.0.0.1"
port = 5432
"#;

#[test]
fn defaults_apply() {
    let c = from_str(MINIMAL, "t").unwrap();
    assert_eq!(c.pooler.listen.to_string(), "127.0.0.1:6432");
    assert_eq!(c.pooler.pool_mode, PoolMode::Transaction);
    assert_eq!(c.pooler.auth_type, AuthType::ScramSha256);
    assert_eq!(c.pooler.default_pool_size, 20);
    assert_eq!(c.metrics.listen.to_string(), "127.0.0.1:9930");
    let db = &c.databases["app"];
    assert_eq!(db.dbname, "app");
    assert_eq!(
        db.backend,
        Backend::Host {
            host: "127.0.0.1".into(),
            port: 5432
        }
    );
    assert_eq!(db.pool_size, 20);
}

#[test]
fn example_file_is_valid() {
    let text = include_str!("../../config/pgsluice.toml");
    let c = from_str(text, "config/pgsluice.toml").unwrap();
    assert!(c.cluster.is_some());
    assert!(!c.databases.is_empty());
    let w = &c.agent.warm;
    assert_eq!(w.hot_set_interval, Duration::from_secs(10));
    assert_eq!((w.min_usagecount, w.budget), (2, 0.75));
    assert_eq!(w.rate_bytes, 64 << 20);
    assert_eq!(w.mode, PrewarmMode::Buffer);
    assert_eq!(w.switchover_warmth, 0.9);
    let secret = c.control.secret_file.as_deref();
    assert_eq!(
        secret,
        Some(std::path::Path::new("/etc/pgsluice/control.secret"))
    );
    assert!(!c.control.protect_reads);
}

#[test]
fn empty_user_password_and_admin_trust() {
    let p = problems("[users.bob]\npassword = \"\"\n");
    assert!(has(&p, "users.bob.password:"), "{p:?}");
    assert!(!from_str("", "t").unwrap().pooler.admin_trust);
    let c = from_str("[pooler]\nadmin_trust = true\n", "t").unwrap();
    assert!(c.pooler.admin_trust);
}

#[test]
fn control_section() {
    let c = from_str("", "empty").unwrap();
    assert_eq!(c.control, ControlConfig::default(), "no secret, reads open");
    let c = from_str(
        "[control]\nsecret_file = \"/run/s\"\nprotect_reads = true\n",
        "t",
    )
    .unwrap();
    assert_eq!(
        c.control.secret_file.as_deref(),
        Some(std::path::Path::new("/run/s"))
    );
    assert!(c.control.protect_reads);
    let p = problems("[control]\nsecret_file = \"\"\n");
    assert!(has(&p, "control.secret_file:"), "{p:?}");
    let p = problems("[control]\nsecret = \"x\"\n");
    assert!(p.iter().any(|l| l.contains("secret")), "{p:?}");
}

#[test]
fn durations_and_sizes() {
    assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
    assert_eq!(parse_duration("1.5"), Some(Duration::from_millis(1500)));
    assert_eq!(parse_duration("1m 30s"), Some(Duration::from_secs(90)));
    assert_eq!(parse_duration("soon"), None);
    assert_eq!(parse_bytes("16MB"), Some(16 << 20));
    assert_eq!(parse_bytes("8kB"), Some(8 << 10));
    assert_eq!(parse_bytes("12"), Some(12));
    assert_eq!(parse_bytes("12 parsecs"), None);
}

#[test]
fn unknown_key_is_a_syntax_error_naming_it() {
    let p = problems("[pooler]\nlisten_prot = 1\n");
    assert!(p[0].contains("listen_prot"), "{p:?}");
}

#[test]
fn every_pooler_error_names_its_key() {
    let p = problems(
        r#"
[pooler]
listen_addr = "nowhere"
listen_port = 70000
pool_mode = "sometimes"
auth_type = "hope"
default_pool_size = 0
min_pool_size = -1
query_wait_timeout = "soonish"
server_lifetime = -3.0
max_packet_size = "lots"
max_inspected_message = 100
max_client_prepared_statements = 0
max_tracked_prepared_statements = -1
client_message_timeout = "whenever"
max_startup_packet_size = 10
[databases.app]
host = "h"
"#,
    );
    for key in [
        "pooler.listen_addr:",
        "pooler.listen_port: 70000 is not a port",
        "pooler.pool_mode:",
        "pooler.auth_type:",
        "pooler.default_pool_size:",
        "pooler.min_pool_size:",
        "pooler.query_wait_timeout:",
        "pooler.server_lifetime:",
        "pooler.max_packet_size:",
        "pooler.max_inspected_message: 100 is too small",
        "pooler.max_client_prepared_statements: 0 is out of range",
        "pooler.max_tracked_prepared_statements: -1 is out of range",
        "pooler.client_message_timeout:",
        "pooler.max_startup_packet_size:",
    ] {
        assert!(has(&p, key), "missing {key} in {p:#?}");
    }
}

#[test]
fn cluster_errors_name_the_node() {
    let p = problems(
        r#"
[cluster]
[[cluster.nodes]]
name = "a"
port = 5432
[[cluster.nodes]]
name = "a"
port = 5433
[[cluster.nodes]]
name = "c d"
port = 70000
[[cluster.nodes]]
port = 5433
priority = -1
"#,
    );
    assert!(has(&p, "cluster.nodes[1].name: \"a\" is used"), "{p:#?}");
    assert!(has(&p, "cluster.nodes[2].name:"), "{p:#?}");
    assert!(
        has(&p, "cluster.nodes[2].port: 70000 is not a port"),
        "{p:#?}"
    );
    assert!(has(&p, "cluster.nodes[3].name: is missing"), "{p:#?}");
    assert!(
        has(&p, "cluster.nodes[3].port: 127.0.0.1:5433 is used"),
        "{p:#?}"
    );
    assert!(has(&p, "cluster.nodes[3].priority:"), "{p:#?}");
    assert!(has(&problems("[cluster]\n"), "cluster.nodes: is empty"));
}

#[test]
fn database_errors() {
    let p = problems(
        r#"
[databases.pgbouncer]
host = "h"
[databases.nohost]
port = 5432
[databases.lost]
[databases.empty]
host = ""
dbname = ""
pool_mode = "x"
pool_size = 0
"#,
    );
    assert!(
        has(&p, "databases.pgbouncer: \"pgbouncer\" is reserved"),
        "{p:#?}"
    );
    assert!(
        has(&p, "databases.nohost.port: port without host"),
        "{p:#?}"
    );
    assert!(has(&p, "databases.lost: has no host"), "{p:#?}");
    assert!(has(&p, "databases.empty.host: must not be empty"), "{p:#?}");
    assert!(
        has(&p, "databases.empty.dbname: must not be empty"),
        "{p:#?}"
    );
    assert!(has(&p, "databases.empty.pool_mode:"), "{p:#?}");
    assert!(has(&p, "databases.empty.pool_size:"), "{p:#?}");
}

#[test]
fn agent_and_metrics_errors() {
    let p = problems(
        r#"
[agent]
state_dir = "/tmp/x"
probe_interval = 0
failure_threshold = 5
failure_window = "1s"
poolers = ["ftp://x"]
max_failover_lag = "much"
listen = "here"
[metrics]
listen = "127.0.0.1:6432"
[users.bob]
pool_mode = "y"
max_user_connections = -1
"#,
    );
    for key in [
        "agent.probe_interval:",
        "agent.poolers[0]:",
        "agent.state_dir: an agent needs a [cluster]",
        "agent.max_failover_lag:",
        "agent.listen:",
        "metrics.listen:",
        "users.bob.pool_mode:",
        "users.bob.max_user_connections:",
    ] {
        assert!(has(&p, key), "missing {key} in {p:#?}");
    }
    let p = problems("[agent]\nprobe_interval = 1\nfailure_threshold = 5\nfailure_window = 1\n");
    assert!(has(&p, "agent.failure_window:"), "{p:#?}");
    let p = problems(
        "[agent]\nhot_set_budget = 0\nswitchover_warmth = 1.5\nprewarm_rate = -1\n\
         prewarm_mode = \"mmap\"\nhot_set_min_usagecount = 6\n",
    );
    for key in [
        "agent.hot_set_budget:",
        "agent.switchover_warmth:",
        "agent.prewarm_rate:",
        "agent.prewarm_mode:",
        "agent.hot_set_min_usagecount:",
    ] {
        assert!(has(&p, key), "missing {key} in {p:#?}");
    }
    let p = problems("[agent]\nsynchronous_standbys = 1\n");
    assert!(
        has(&p, "agent.synchronous_standbys: 1 is more than the 0"),
        "{p:#?}"
    );
}

#[test]
fn etcd_state_store_keys() {
    let cluster = "[cluster]\nname = \"c1\"\n[[cluster.nodes]]\nname = \"a\"\nhost = \"h\"\n";
    let ok = format!(
        "{cluster}[agent]\nname = \"x\"\nstate_store = \"etcd\"\n\
         etcd_endpoints = [\"http://127.0.0.1:2379\"]\netcd_username = \"u\"\netcd_password = \"p\"\n"
    );
    let c = from_str(&ok, "t").unwrap();
    assert_eq!(c.agent.name, "x");
    let StateStoreConfig::Etcd(e) = &c.agent.state_store else {
        panic!("etcd expected");
    };
    assert_eq!(e.prefix, "/pgsluice/c1/");
    assert_eq!(e.topology_key(), "/pgsluice/c1/topology");
    assert_eq!(e.lease_ttl, Duration::from_secs(10));
    assert_eq!(e.auth, Some(("u".into(), "p".into())));
    let bad = format!(
        "{cluster}[agent]\nstate_store = \"etcd\"\nlease_ttl = \"1500ms\"\netcd_username = \"u\"\n"
    );
    let p = problems(&bad);
    assert!(has(&p, "agent.etcd_endpoints"), "{p:?}");
    assert!(has(&p, "agent.lease_ttl"), "{p:?}");
    assert!(has(&p, "agent.etcd_username"), "{p:?}");
    for e in ["https://127.0.0.1:2379", "127.0.0.1:2379", "http://"] {
        let text = format!(
            "{cluster}[agent]\nstate_store = \"etcd\"\netcd_endpoints = [\"http://h:2379\", \"{e}\"]\n"
        );
        let p = problems(&text);
        assert!(has(&p, "agent.etcd_endpoints"), "{e}: {p:?}");
        assert!(p.iter().any(|p| p.contains(e)), "{e}: {p:?}");
    }
    let p = problems(&format!("{cluster}[agent]\netcd_prefix = \"/x/\"\n"));
    assert!(has(&p, "agent.state_store"), "{p:?}");
    let p = problems(&format!("{cluster}[agent]\nstate_store = \"zk\"\n"));
    assert!(has(&p, "agent.state_store"), "{p:?}");
    assert_eq!(
        from_str(MINIMAL, "t").unwrap().agent.state_store,
        StateStoreConfig::Local
    );
}

#[test]
fn routing_keys() {
    let text = r#"
[pooler]
probe_interval = "250ms"
ban_time = "3s"
[databases.app]
policy = "auto"
read_your_writes = "off"
max_replica_lag = "1MB"
max_replica_lag_time = "2s"
replica_choice = "weighted"
replica_fallback = "error"
[databases.plain]
[cluster]
[[cluster.nodes]]
name = "n1"
[[cluster.nodes]]
name = "n2"
port = 5433
weight = 30
"#;
    let c = from_str(text, "t").unwrap();
    assert_eq!(c.pooler.probe_interval, Duration::from_millis(250));
    assert_eq!(c.pooler.ban_time, Duration::from_secs(3));
    let r = &c.databases["app"].routing;
    assert_eq!(r.policy, RoutePolicy::Auto);
    assert!(!r.read_your_writes);
    assert_eq!(r.max_replica_lag, 1024 * 1024);
    assert_eq!(r.max_replica_lag_time, Duration::from_secs(2));
    assert_eq!(r.replica_choice, ReplicaChoice::Weighted);
    assert!(!r.replica_fallback);
    let d = &c.databases["plain"].routing;
    assert_eq!(d.policy, RoutePolicy::Primary);
    assert!(d.read_your_writes && d.replica_fallback);
    assert_eq!(d.replica_choice, ReplicaChoice::LeastOutstanding);
    let nodes = &c.cluster.as_ref().unwrap().nodes;
    assert_eq!((nodes[0].weight, nodes[1].weight), (100, 30));

    let p = problems("[databases.app]\nhost = \"h\"\npolicy = \"auto\"\n");
    assert!(has(&p, "databases.app.policy"), "{p:?}");
    let p = problems(&text.replace("\"weighted\"", "\"random\""));
    assert!(has(&p, "databases.app.replica_choice"), "{p:?}");
}

#[test]
fn auth_query_keys() {
    let c = from_str(&format!("[pooler]\nauth_user = \"lookup\"\n{MINIMAL}"), "t").unwrap();
    let aq = c.pooler.auth_query.unwrap();
    assert_eq!(aq.user, "lookup");
    assert!(aq.query.contains("pg_shadow") && aq.query.contains("$1"));
    assert_eq!(aq.dbname, None);
    assert_eq!(aq.cache_ttl, Duration::from_secs(60));
    assert!(from_str(MINIMAL, "t").unwrap().pooler.auth_query.is_none());
    let p = problems(&format!("[pooler]\nauth_query = \"select 1\"\n{MINIMAL}"));
    assert!(has(&p, "pooler.auth_query"), "{p:?}");
    let p = problems(&format!(
        "[pooler]\nauth_user = \"u\"\nauth_query = \"select 1\"\nauth_dbname = \"nope\"\n{MINIMAL}"
    ));
    assert!(
        has(&p, "pooler.auth_query") && has(&p, "pooler.auth_dbname"),
        "{p:?}"
    );
}

#[test]
fn server_tls_keys() {
    let c = from_str(MINIMAL, "t").unwrap();
    assert_eq!(c.pooler.server_tls.mode, ServerTlsMode::Prefer);
    assert!(!c.pooler.server_tls.allow_cleartext_password);
    let text = format!("[pooler]\nserver_allow_cleartext_password = true\n{MINIMAL}");
    assert!(
        from_str(&text, "t")
            .unwrap()
            .pooler
            .server_tls
            .allow_cleartext_password
    );
    let text = format!(
        "[pooler]\nserver_tls_sslmode = \"verify-full\"\nserver_tls_ca_file = \"/ca.pem\"\n{MINIMAL}"
    );
    let c = from_str(&text, "t").unwrap();
    assert_eq!(c.pooler.server_tls.mode, ServerTlsMode::VerifyFull);
    assert_eq!(
        c.pooler.server_tls.ca_file.as_deref(),
        Some(std::path::Path::new("/ca.pem"))
    );
    let p = problems(&format!(
        "[pooler]\nserver_tls_sslmode = \"verify-ca\"\n{MINIMAL}"
    ));
    assert!(has(&p, "pooler.server_tls_ca_file"), "{p:?}");
    let p = problems(&format!(
        "[pooler]\nserver_tls_sslmode = \"always\"\n{MINIMAL}"
    ));
    assert!(has(&p, "pooler.server_tls_sslmode"), "{p:?}");
    let p = problems(&format!(
        "[pooler]\nserver_tls_cert_file = \"/c.pem\"\n{MINIMAL}"
    ));
    assert!(has(&p, "pooler.server_tls_cert_file"), "{p:?}");
}

#[test]
fn write_lease_keys() {
    let cluster = "[cluster]\nname = \"c1\"\n[[cluster.nodes]]\nname = \"a\"\nhost = \"h\"\n";
    // No agent pushes to this pooler: discovery alone, no lease.
    let c = from_str(MINIMAL, "t").unwrap();
    assert_eq!(c.agent.topology_lease, Duration::from_secs(3));
    assert_eq!(c.write_lease(), None);
    assert_eq!(c.pooler.primary_wait_timeout, Duration::from_secs(15));
    let managed = format!("{cluster}[agent]\npoolers = [\"http://127.0.0.1:9930\"]\n");
    let c = from_str(&managed, "t").unwrap();
    assert_eq!(c.write_lease(), Some(Duration::from_secs(3)));
    let off = format!("{managed}topology_lease = 0\n");
    assert_eq!(from_str(&off, "t").unwrap().write_lease(), None);
    let p = problems(&format!("{managed}topology_lease = \"100ms\"\n"));
    assert!(has(&p, "agent.topology_lease: 100ms is too short"), "{p:?}");
    assert_eq!(c.pooler.standby_spares, 2);
    assert_eq!(c.agent.suspect_probe_interval, Duration::ZERO);
    let c2 = from_str("[agent]\nsuspect_probe_interval = \"50ms\"\n", "t").unwrap();
    assert_eq!(c2.agent.suspect_probe_interval, Duration::from_millis(50));
    let p = problems("[agent]\nsuspect_probe_interval = \"2s\"\n");
    assert!(
        has(&p, "agent.suspect_probe_interval: 2s is longer"),
        "{p:?}"
    );
    let c = from_str("[pooler]\nstandby_spares = 0\n", "t").unwrap();
    assert_eq!(c.pooler.standby_spares, 0);
    let p = problems("[pooler]\nstandby_spares = -1\n");
    assert!(
        has(&p, "pooler.standby_spares: -1 is out of range"),
        "{p:?}"
    );
    let p = problems("[pooler]\nprimary_wait_timeout = \"soon\"\n");
    assert!(has(&p, "pooler.primary_wait_timeout:"), "{p:?}");
}

#[test]
fn log_format_text_json_or_error() {
    let c = from_str(MINIMAL, "t").unwrap();
    assert_eq!(c.pooler.log_format, LogFormat::Text);
    assert_eq!(c.agent.log_format, LogFormat::Text);
    let text =
        format!("{MINIMAL}[pooler]\nlog_format = \"json\"\n[agent]\nlog_format = \"json\"\n");
    let c = from_str(&text, "t").unwrap();
    assert_eq!(c.pooler.log_format, LogFormat::Json);
    assert_eq!(c.agent.log_format, LogFormat::Json);
    let text = format!("{MINIMAL}[pooler]\nlog_format = \"xml\"\n[agent]\nlog_format = \"\"\n");
    let p = problems(&text);
    assert!(
        has(&p, "pooler.log_format: \"xml\" is not a log format"),
        "{p:#?}"
    );
    assert!(
        has(&p, "agent.log_format: \"\" is not a log format"),
        "{p:#?}"
    );
}

#[test]
fn session_features_default_and_per_database() {
    let c = from_str(MINIMAL, "t").unwrap();
    assert_eq!(c.pooler.session_features, SessionFeatures::Pin);
    assert_eq!(c.databases["app"].session_features, SessionFeatures::Pin);
    let text = "[pooler]\nsession_features = \"ignore\"\n[databases.a]\nhost = \"h\"\n\
                [databases.b]\nhost = \"h\"\nsession_features = \"error\"\n";
    let c = from_str(text, "t").unwrap();
    assert_eq!(c.databases["a"].session_features, SessionFeatures::Ignore);
    assert_eq!(c.databases["b"].session_features, SessionFeatures::Error);
    let p = problems("[databases.a]\nhost = \"h\"\nsession_features = \"sticky\"\n");
    assert!(has(&p, "databases.a.session_features"), "{p:?}");
}

#[test]
fn wildcard_database_serves_any_name_as_itself() {
    let text = "[databases.\"*\"]\nhost = \"h\"\npool_size = 3\n[databases.app]\nhost = \"x\"\n";
    let c = from_str(text, "t").unwrap();
    let d = c.database("made_later").unwrap();
    assert_eq!(
        (d.name.as_str(), d.dbname.as_str(), d.pool_size),
        ("made_later", "made_later", 3)
    );
    assert_eq!(c.database("app").unwrap().dbname, "app");
    assert!(c.database("*").is_none());
    assert!(from_str(MINIMAL, "t").unwrap().database("other").is_none());
    let p = problems("[databases.\"*\"]\nhost = \"h\"\ndbname = \"x\"\n");
    assert!(has(&p, "databases.*.dbname"), "{p:?}");
}
