//! Processes of the partition tests, each started inside its member's namespace (PostgreSQL
//! as its OS user, etcd members, the agent, the poolers). The client load (threads that enter
//! a client namespace and insert unique ids through a pooler) is `tests/shared/acked.rs`.

use super::net::Net;
pub use crate::acked::{unix_ms, Load, LoadSpec, Rec};
use pgsluice::cluster::LocalNode;
use std::path::Path;
use std::process::{Child, Stdio};

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
