//! [`LocalCluster`]: builds a primary and streaming standbys from the installed binaries, and
//! stops every server it started when dropped (also when a test panics).

use super::bins::PgBin;
use super::conf::set_in_file;
use super::error::{HarnessError, Result};
use super::node::{LocalNode, StopMode};
use super::ports;
use super::process;
use super::runas::RunAs;
use super::spec::{ClusterLayout, ClusterSpec, NodeLayout};
use crate::quote::{conf_value, conninfo_value, sql_ident, sql_literal};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Longest unix socket path the kernel accepts (sun_path is 108 bytes with the NUL).
const MAX_SOCKET_PATH: usize = 107;

/// A running primary plus standbys on loopback ports.
///
/// Dropping it stops every server (immediate mode, SIGKILL of the process tree if that fails)
/// and removes a temporary base directory. [`LocalCluster::detach`] hands the servers over to
/// someone else (the sandbox) instead; [`LocalCluster::adopt`] takes such a cluster back.
#[derive(Debug)]
pub struct LocalCluster {
    base: PathBuf,
    temp: Option<tempfile::TempDir>,
    socket_dir: PathBuf,
    bin: PgBin,
    run_as: RunAs,
    nodes: Vec<LocalNode>,
    superuser_password: String,
    replication_user: String,
    replication_password: String,
    timeout: Duration,
    /// False after `detach` and for adopted clusters: drop then leaves the servers alone.
    owns_servers: bool,
}

impl LocalCluster {
    /// Builds and starts the cluster; on error everything already started is stopped again.
    pub fn start(spec: ClusterSpec) -> Result<Self> {
        let bin = PgBin::find(spec.bindir.as_deref())?;
        let run_as = RunAs::detect(spec.os_user.as_deref())?;
        let (base, temp) = match &spec.dir {
            Some(dir) => (absolute(dir)?, None),
            None => {
                // As root the data owner must be able to reach the directory: use /tmp.
                let parent = match run_as.user() {
                    Some(_) => PathBuf::from("/tmp"),
                    None => std::env::temp_dir(),
                };
                let t = tempfile::Builder::new()
                    .prefix("pgsluice-cluster-")
                    .tempdir_in(&parent)
                    .map_err(|e| {
                        HarnessError::io(format!("temp dir in {}", parent.display()), e)
                    })?;
                (t.path().to_path_buf(), Some(t))
            }
        };
        run_as.create_dir(&base)?;
        let socket_dir = base.join("sock");
        if socket_dir.as_os_str().len() + ".s.PGSQL.65535".len() + 1 > MAX_SOCKET_PATH {
            return Err(HarnessError::Invalid(format!(
                "{}: too long for a unix socket directory; use a shorter base directory",
                socket_dir.display()
            )));
        }
        run_as.create_dir(&socket_dir)?;
        let mut cluster = Self {
            base,
            temp,
            socket_dir,
            bin,
            run_as,
            nodes: Vec::new(),
            superuser_password: spec.superuser_password.clone(),
            replication_user: spec.replication_user.clone(),
            replication_password: spec.replication_password.clone(),
            timeout: spec.timeout,
            owns_servers: true,
        };
        cluster.init_primary(&spec)?;
        for i in 0..spec.standbys {
            let port = ports::pick(spec.ports.get(i + 1).copied())?;
            cluster.add_standby_on(&format!("node{}", i + 2), port)?;
        }
        Ok(cluster)
    }

    /// Takes a cluster described by `layout` (built earlier, maybe by another process) under
    /// management. It does not own the servers: dropping it leaves them as they are.
    pub fn adopt(layout: &ClusterLayout) -> Result<Self> {
        let bin = PgBin::at(&layout.bindir).or_else(|_| PgBin::find(None))?;
        let run_as = RunAs::detect(layout.os_user.as_deref())?;
        let nodes = layout
            .nodes
            .iter()
            .map(|n| LocalNode {
                name: n.name.clone(),
                port: n.port,
                data_dir: n.data_dir.clone(),
                socket_dir: n.socket_dir.clone(),
                log_file: n.log_file.clone(),
                superuser: layout.superuser.clone(),
                password: Some(layout.superuser_password.clone()),
                bin: bin.clone(),
                run_as: run_as.clone(),
            })
            .collect();
        Ok(Self {
            base: layout.base_dir.clone(),
            temp: None,
            socket_dir: layout.base_dir.join("sock"),
            bin,
            run_as,
            nodes,
            superuser_password: layout.superuser_password.clone(),
            replication_user: layout.replication_user.clone(),
            replication_password: layout.replication_password.clone(),
            timeout: Duration::from_secs(60),
            owns_servers: false,
        })
    }

    /// How the cluster is laid out, for a state file.
    pub fn layout(&self) -> ClusterLayout {
        ClusterLayout {
            base_dir: self.base.clone(),
            bindir: self.bin.dir().to_path_buf(),
            os_user: self.run_as.user().map(str::to_string),
            superuser: self.primary().superuser().to_string(),
            superuser_password: self.superuser_password.clone(),
            replication_user: self.replication_user.clone(),
            replication_password: self.replication_password.clone(),
            nodes: self
                .nodes
                .iter()
                .map(|n| NodeLayout {
                    name: n.name.clone(),
                    port: n.port,
                    data_dir: n.data_dir.clone(),
                    socket_dir: n.socket_dir.clone(),
                    log_file: n.log_file.clone(),
                })
                .collect(),
        }
    }

    /// Leaves the servers running and the directory in place after this value is gone.
    pub fn detach(mut self) -> ClusterLayout {
        self.owns_servers = false;
        if let Some(t) = self.temp.take() {
            let _ = t.keep();
        }
        self.layout()
    }

    /// The node built as the primary (it may have been demoted since; see
    /// [`LocalCluster::current_primary`]).
    pub fn primary(&self) -> &LocalNode {
        &self.nodes[0]
    }

    /// The nodes built as standbys.
    pub fn standbys(&self) -> &[LocalNode] {
        &self.nodes[1..]
    }

    /// Every node, the built primary first.
    pub fn nodes(&self) -> &[LocalNode] {
        &self.nodes
    }

    /// The node with this name.
    pub fn node(&self, name: &str) -> Option<&LocalNode> {
        self.nodes.iter().find(|n| n.name == name)
    }

    /// The running node that is not in recovery, if exactly one is found first.
    pub fn current_primary(&self) -> Option<&LocalNode> {
        self.nodes
            .iter()
            .find(|n| n.is_running() && n.is_in_recovery().is_ok_and(|r| !r))
    }

    /// The base directory (data directories, logs, socket directory).
    pub fn base_dir(&self) -> &Path {
        &self.base
    }

    /// The superuser's password.
    pub fn superuser_password(&self) -> &str {
        &self.superuser_password
    }

    /// The replication role and its password.
    pub fn replication_credentials(&self) -> (&str, &str) {
        (&self.replication_user, &self.replication_password)
    }

    /// The `primary_conninfo` a standby named `application_name` uses to stream from `upstream`.
    pub fn replication_conninfo(&self, upstream: &LocalNode, application_name: &str) -> String {
        self.replication_conninfo_with(upstream, application_name, Some(&self.replication_password))
    }

    fn replication_conninfo_with(
        &self,
        upstream: &LocalNode,
        application_name: &str,
        password: Option<&str>,
    ) -> String {
        format!(
            "{} application_name={}",
            upstream
                .conninfo_as(&self.replication_user, password, "replication")
                .replace(" dbname=replication", ""),
            conninfo_value(application_name)
        )
    }

    /// Starts every node that is down (standbys reconnect on their own).
    pub fn start_all(&self) -> Result<()> {
        self.nodes.iter().try_for_each(LocalNode::start)
    }

    /// Stops every running node (fast mode; SIGKILL of the process tree if that fails).
    /// Returns the first error after trying all of them.
    pub fn stop_all(&self) -> Result<()> {
        let mut first = None;
        for node in self.nodes.iter().rev() {
            if let Err(e) = stop_node(node, StopMode::Fast) {
                first.get_or_insert(e);
            }
        }
        first.map_or(Ok(()), Err)
    }

    /// Waits until every running standby has replayed the current primary's WAL position.
    pub fn wait_replicated(&self, timeout: Duration) -> Result<()> {
        let primary = self
            .current_primary()
            .ok_or_else(|| HarnessError::Invalid("no running primary".to_string()))?;
        let lsn = primary.psql("postgres", "select pg_current_wal_lsn()")?;
        for n in &self.nodes {
            if n.name != primary.name && n.is_running() {
                n.wait_replayed(&lsn, timeout)?;
            }
        }
        Ok(())
    }

    /// Clones a new standby of the current primary (`node<N>` on a free port), starts it and
    /// waits until it streams.
    pub fn add_standby(&mut self) -> Result<&LocalNode> {
        let name = format!("node{}", self.nodes.len() + 1);
        let port = ports::free_port()?;
        self.add_standby_on(&name, port)
    }

    fn new_node(&self, name: &str, port: u16) -> LocalNode {
        LocalNode {
            name: name.to_string(),
            port,
            data_dir: self.base.join(name),
            socket_dir: self.socket_dir.clone(),
            log_file: self.base.join(format!("{name}.log")),
            superuser: String::new(),
            password: Some(self.superuser_password.clone()),
            bin: self.bin.clone(),
            run_as: self.run_as.clone(),
        }
    }

    fn init_primary(&mut self, spec: &ClusterSpec) -> Result<()> {
        let port = ports::pick(spec.ports.first().copied())?;
        let mut node = self.new_node("node1", port);
        node.superuser = spec.superuser.clone();
        let pwfile = self.base.join(".pwfile");
        self.run_as
            .write_file(&pwfile, &format!("{}\n", spec.superuser_password), 0o600)?;
        let mut cmd = self.run_as.command(self.bin.path("initdb"));
        cmd.arg("-D")
            .arg(&node.data_dir)
            .args(["-U", &spec.superuser, "-E", "UTF8", "--locale=C"])
            .arg(format!("--pwfile={}", pwfile.display()))
            .args(["--auth-local=trust", "--auth-host=scram-sha-256"])
            .arg("--no-instructions");
        if !spec.fsync {
            cmd.arg("--no-sync");
        }
        if spec.data_checksums {
            cmd.arg("--data-checksums");
        }
        let result = process::run(&mut cmd, None, None);
        let _ = std::fs::remove_file(&pwfile);
        result?;
        write_conf(&node, spec)?;
        write_hba(&node, spec)?;
        // Registered before starting, so a failure from here on still stops it on drop.
        self.nodes.push(node);
        let node = &self.nodes[0];
        node.start()?;
        node.wait_ready(spec.timeout)?;
        node.psql("postgres", &bootstrap_sql(spec))?;
        Ok(())
    }

    fn add_standby_on(&mut self, name: &str, port: u16) -> Result<&LocalNode> {
        let upstream = self
            .current_primary()
            .ok_or_else(|| HarnessError::Invalid("no running primary to clone".to_string()))?
            .clone();
        let mut node = self.new_node(name, port);
        node.superuser = upstream.superuser.clone();
        upstream.psql(
            "postgres",
            &format!(
                "select pg_create_physical_replication_slot({0}) where not exists \
                 (select 1 from pg_replication_slots where slot_name = {0})",
                sql_literal(name)
            ),
        )?;
        let conninfo = self.replication_conninfo(&upstream, name);
        // The password goes through a private PGPASSFILE, never the command line.
        let source = self.replication_conninfo_with(&upstream, name, None);
        let passfile = super::PassFile::new(&self.run_as, &self.replication_password)?;
        let mut cmd = self.run_as.command(self.bin.path("pg_basebackup"));
        cmd.arg("-D")
            .arg(&node.data_dir)
            .args([
                "-d", &source, "-R", "-S", name, "-X", "stream", "-c", "fast",
            ])
            .arg("--no-sync");
        passfile.apply(&mut cmd);
        process::run(&mut cmd, None, Some(upstream.log_file()))?;
        drop(passfile);
        // pg_basebackup copied the primary's port: give the clone its own.
        set_in_file(
            &node.data_dir.join("postgresql.conf"),
            "port",
            &port.to_string(),
        )?;
        set_in_file(
            &node.data_dir.join("postgresql.auto.conf"),
            "primary_conninfo",
            &conf_value(&conninfo),
        )?;
        self.nodes.push(node);
        let node = self.nodes.len() - 1;
        let node = &self.nodes[node];
        node.start()?;
        node.wait_streaming(self.timeout)?;
        Ok(node)
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        if !self.owns_servers {
            return;
        }
        // A throwaway cluster needs no shutdown checkpoint; a persistent one gets a clean stop.
        let mode = if self.temp.is_some() {
            StopMode::Immediate
        } else {
            StopMode::Fast
        };
        for node in self.nodes.iter().rev() {
            let _ = stop_node(node, mode);
        }
    }
}

/// Stops one node; falls back to SIGKILL of its process tree, and kills any child of the
/// postmaster that outlived it.
fn stop_node(node: &LocalNode, mode: StopMode) -> Result<()> {
    let Some(pm) = node.pid() else {
        return Ok(());
    };
    let children = process::find(|_, s| s.ppid == pm);
    let stopped = node.stop_with(mode);
    if stopped.is_err() || node.is_running() {
        node.kill9()?;
    }
    for c in children.iter().filter(|c| process::alive(**c)) {
        process::signal(*c, nix::sys::signal::Signal::SIGKILL);
    }
    process::wait_gone(&children, Duration::from_secs(5));
    stopped
}

fn absolute(dir: &Path) -> Result<PathBuf> {
    std::path::absolute(dir)
        .map_err(|e| HarnessError::io(format!("resolving {}", dir.display()), e))
}

/// The settings every node shares, appended to the primary's postgresql.conf (clones copy it).
fn write_conf(node: &LocalNode, spec: &ClusterSpec) -> Result<()> {
    let mut lines = vec![
        "# added by the pgsluice cluster harness".to_string(),
        "listen_addresses = '127.0.0.1'".to_string(),
        format!("port = {}", node.port),
        format!(
            "unix_socket_directories = {}",
            conf_value(&node.socket_dir.to_string_lossy())
        ),
        "password_encryption = 'scram-sha-256'".to_string(),
        "wal_level = replica".to_string(),
        "wal_log_hints = on".to_string(),
        "hot_standby = on".to_string(),
        "max_wal_senders = 10".to_string(),
        "max_replication_slots = 10".to_string(),
        "wal_keep_size = '128MB'".to_string(),
        "wal_receiver_status_interval = '1s'".to_string(),
        "shared_preload_libraries = 'pg_prewarm'".to_string(),
        "pg_prewarm.autoprewarm = off".to_string(),
        format!("shared_buffers = {}", conf_value(&spec.shared_buffers)),
        format!("fsync = {}", if spec.fsync { "on" } else { "off" }),
        "log_line_prefix = '%m [%p] %q%a '".to_string(),
    ];
    lines.extend(spec.extra_conf.iter().cloned());
    let file = node.data_dir.join("postgresql.conf");
    let mut text = std::fs::read_to_string(&file)
        .map_err(|e| HarnessError::io(format!("reading {}", file.display()), e))?;
    text.push_str(&format!("\n{}\n", lines.join("\n")));
    std::fs::write(&file, text)
        .map_err(|e| HarnessError::io(format!("writing {}", file.display()), e))
}

/// The spec's own lines first, then: unix socket trust; TCP on loopback SCRAM, including
/// replication (which `all` does not cover).
fn write_hba(node: &LocalNode, spec: &ClusterSpec) -> Result<()> {
    let mut text = String::from("# written by the pgsluice cluster harness\n");
    for line in &spec.extra_hba {
        text.push_str(&format!("{line}\n"));
    }
    text.push_str(
        "local all all trust\n\
         local replication all trust\n\
         host all all 127.0.0.1/32 scram-sha-256\n\
         host replication all 127.0.0.1/32 scram-sha-256\n",
    );
    let file = node.data_dir.join("pg_hba.conf");
    std::fs::write(&file, text)
        .map_err(|e| HarnessError::io(format!("writing {}", file.display()), e))
}

/// Roles, extensions (in template1 too, so every later database has them) and databases.
fn bootstrap_sql(spec: &ClusterSpec) -> String {
    let ext = "create extension if not exists pg_buffercache;\n\
               create extension if not exists pg_prewarm;\n";
    let mut sql = format!(
        "create role {} with login replication password {};\n",
        sql_ident(&spec.replication_user),
        sql_literal(&spec.replication_password)
    );
    for (user, password) in &spec.users {
        sql.push_str(&format!(
            "create role {} with login password {};\n",
            sql_ident(user),
            sql_literal(password)
        ));
    }
    sql.push_str(ext);
    sql.push_str(&format!("\\connect template1\n{ext}\\connect postgres\n"));
    for db in &spec.databases {
        sql.push_str(&format!("create database {}", sql_ident(&db.name)));
        if let Some(owner) = &db.owner {
            sql.push_str(&format!(" owner {}", sql_ident(owner)));
        }
        sql.push_str(";\n");
    }
    sql
}
