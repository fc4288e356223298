//! `pgsluice sandbox up | status | down`: a local primary + 2 standbys with the pgsluice daemons,
//! for newcomers and demos. The work is in [`crate::sandbox`]; this file parses and prints.

use crate::sandbox::{
    self, DownReport, NodeAction, ServiceOutcome, StatusReport, UpOptions, UpReport,
};
use clap::Subcommand;
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// `pgsluice sandbox ...`
#[derive(Debug, clap::Args)]
pub struct SandboxArgs {
    #[command(subcommand)]
    pub action: SandboxAction,
}

/// The sandbox directory option.
#[derive(Debug, clap::Args)]
pub struct DirArg {
    /// Sandbox directory: config, state file, daemon logs and pid files.
    #[arg(long, default_value = sandbox::DEFAULT_DIR)]
    pub dir: PathBuf,
}

/// What to do with the sandbox.
#[derive(Debug, Subcommand)]
pub enum SandboxAction {
    /// Build a primary + 2 standbys, write pgsluice.toml, start the daemons; or start again
    /// whatever of an existing sandbox is down.
    Up {
        #[command(flatten)]
        dir: DirArg,
        /// Use free ports instead of 5432-5434 (nodes), 6432 (pooler), 9930/9931 (HTTP).
        #[arg(long)]
        free_ports: bool,
        /// Agents to run: 1 keeps its state in the sandbox directory; 2 to 9 start a local
        /// etcd (the `etcd` binary, Debian's etcd-server) and that many agents through it.
        #[arg(long, default_value_t = 1,
              value_parser = clap::value_parser!(u8).range(1..=sandbox::multi::MAX_AGENTS as i64))]
        agents: u8,
    },
    /// Show each node's role, port and replication, and the daemons.
    Status {
        #[command(flatten)]
        dir: DirArg,
    },
    /// Stop what `up` started; `--purge` also deletes the data and the sandbox directory.
    Down {
        #[command(flatten)]
        dir: DirArg,
        /// Remove the data directories and the sandbox directory too.
        #[arg(long)]
        purge: bool,
    },
}

/// Runs one sandbox command.
pub fn run(args: SandboxArgs) -> anyhow::Result<ExitCode> {
    match args.action {
        SandboxAction::Up {
            dir,
            free_ports,
            agents,
        } => {
            let opts = UpOptions {
                dir: dir.dir,
                exe: std::env::current_exe()?,
                free_ports,
                agents: usize::from(agents),
            };
            let report = sandbox::up(&opts)?;
            let mut out = String::new();
            print_up(&mut out, &report);
            emit(&out);
            let failed = report
                .services
                .iter()
                .any(|(_, o)| matches!(o, ServiceOutcome::Failed(_)));
            Ok(if failed {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            })
        }
        SandboxAction::Status { dir } => match sandbox::status(&dir.dir)? {
            Some(report) => {
                let mut out = String::new();
                print_status(&mut out, &report);
                emit(&out);
                Ok(ExitCode::SUCCESS)
            }
            None => {
                emit(&format!(
                    "no sandbox in {} (start one with `pgsluice sandbox up`)\n",
                    dir.dir.display()
                ));
                Ok(ExitCode::FAILURE)
            }
        },
        SandboxAction::Down { dir, purge } => {
            let report = sandbox::down(&dir.dir, purge)?;
            let mut out = String::new();
            print_down(&mut out, &dir.dir, &report);
            emit(&out);
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Writes to stdout, ignoring a closed pipe (`pgsluice sandbox up | head`).
fn emit(text: &str) {
    let _ = std::io::stdout().lock().write_all(text.as_bytes());
}

fn dir_flag(dir: &Path) -> String {
    if dir == Path::new(sandbox::DEFAULT_DIR) || dir.ends_with(sandbox::DEFAULT_DIR) {
        String::new()
    } else {
        format!(" --dir {}", dir.display())
    }
}

fn print_up(out: &mut String, r: &UpReport) {
    let s = &r.state;
    let verb = if r.created {
        "created"
    } else {
        "already there"
    };
    let _ = writeln!(out, "sandbox in {} ({verb})", s.dir.display());
    for (name, port, action) in &r.nodes {
        let what = match action {
            NodeAction::Created => "created".to_string(),
            NodeAction::Started => "started".to_string(),
            NodeAction::AlreadyRunning => "already running".to_string(),
            NodeAction::Skipped(why) => format!("left down: {why}"),
        };
        let _ = writeln!(out, "  {name:<8} 127.0.0.1:{port:<6} {what}");
    }
    for (role, outcome) in &r.services {
        let what = match outcome {
            ServiceOutcome::Started(pid) => format!("started (pid {pid})"),
            ServiceOutcome::AlreadyRunning(pid) => format!("already running (pid {pid})"),
            ServiceOutcome::Unavailable => "not in this build yet: skipped".to_string(),
            ServiceOutcome::Failed(why) => format!("FAILED: {why}"),
        };
        let _ = writeln!(out, "  {role:<8} {what}");
    }
    for w in &r.warnings {
        let _ = writeln!(out, "  warning: {w}");
    }
    print_howto(out, s);
}

fn print_howto(out: &mut String, s: &sandbox::State) {
    let primary = s.cluster.nodes.first().map_or(0, |n| n.port);
    let pooler_up = s.services.iter().any(|x| x.role == "pooler");
    let flag = dir_flag(&s.dir);
    let _ = writeln!(out, "\nConnect:");
    if pooler_up {
        let _ = writeln!(
            out,
            "  through the pooler:  psql \"postgres://{}:{}@127.0.0.1:{}/app?sslmode=require\"",
            s.app_user, s.app_password, s.ports.pooler
        );
    }
    let _ = writeln!(
        out,
        "  to the primary:      psql \"postgres://{}:{}@127.0.0.1:{primary}/app\"",
        s.app_user, s.app_password
    );
    if s.developer_role.is_some() {
        let _ = writeln!(
            out,
            "  as yourself:         psql -h 127.0.0.1 -p {primary} -c 'select 1'"
        );
    }
    let _ = writeln!(
        out,
        "  as superuser:        psql \"postgres://{}:{}@127.0.0.1:{primary}/postgres\"",
        s.cluster.superuser, s.cluster.superuser_password
    );
    let _ = writeln!(out, "Watch:");
    if pooler_up {
        let _ = writeln!(
            out,
            "  admin console:       psql \"host=127.0.0.1 port={} user={} password={} dbname=pgsluice\" -c 'SHOW POOLS'",
            s.ports.pooler, s.app_user, s.app_password
        );
        let _ = writeln!(
            out,
            "  metrics:             curl http://127.0.0.1:{}/metrics",
            s.ports.metrics
        );
    }
    let _ = writeln!(out, "  pgsluice status -c {}", s.config_path().display());
    let _ = writeln!(out, "  pgsluice sandbox status{flag}");
    let _ = writeln!(
        out,
        "  logs: {}/*.log and {}/*.log",
        s.dir.display(),
        s.cluster.base_dir.display()
    );
    let _ = writeln!(out, "Stop:");
    let _ = writeln!(
        out,
        "  pgsluice sandbox down{flag}            (start again with `up`)"
    );
    let _ = writeln!(
        out,
        "  pgsluice sandbox down --purge{flag}    (and delete everything)"
    );
}

fn print_status(out: &mut String, r: &StatusReport) {
    let _ = writeln!(out, "sandbox in {}", r.state.dir.display());
    let _ = writeln!(
        out,
        "  {:<8} {:<8} {:<6} {:<8} replication",
        "node", "role", "port", "pid"
    );
    for n in &r.nodes {
        let pid = n.pid.map_or("-".to_string(), |p| p.to_string());
        let role = n.role.as_deref().unwrap_or("-");
        let _ = writeln!(
            out,
            "  {:<8} {role:<8} {:<6} {pid:<8} {}",
            n.name, n.port, n.replication
        );
    }
    for s in &r.services {
        let state = match s.pid {
            Some(pid) => format!("running (pid {pid})"),
            None => "not running".to_string(),
        };
        let detail = s
            .detail
            .as_deref()
            .map(|d| format!("  {d}"))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "  {:<8} {state}{detail}  log {}",
            s.role,
            s.log_file.display()
        );
    }
}

fn print_down(out: &mut String, dir: &Path, r: &DownReport) {
    if !r.found {
        let _ = writeln!(out, "no sandbox state in {}", dir.display());
    }
    for (role, pid) in &r.services {
        let _ = writeln!(out, "stopped {role} (pid {pid})");
    }
    for n in &r.nodes {
        let _ = writeln!(out, "stopped {n}");
    }
    if r.found && r.services.is_empty() && r.nodes.is_empty() {
        let _ = writeln!(out, "nothing was running");
    }
    for p in &r.purged {
        let _ = writeln!(out, "removed {}", p.display());
    }
}
