//! `pgsluice agent -c FILE`: run the replication manager in the foreground; also the shared
//! plumbing of the verbs that change roles (run by the agent when it is up, else locally).

use crate::agent::ctx::Ctx;
use crate::agent::lease::{membership, AgentInfo};
use crate::agent::ops::{self, OpReport, OpRequest};
use crate::agent::store::LocalStore;
use crate::agent::store_etcd::EtcdStore;
use crate::config::{self, Config, EtcdConfig, StateStoreConfig};
use crate::etcd::EtcdClient;
use anyhow::Context;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Runs until SIGTERM or SIGINT.
pub fn run(path: &Path) -> anyhow::Result<ExitCode> {
    let cfg = config::load(path)?;
    super::logging::init(cfg.agent.log_format);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async {
        let stop = CancellationToken::new();
        tokio::spawn(signals(stop.clone()));
        match &cfg.agent.state_store {
            StateStoreConfig::Local => {
                let store = LocalStore::open_exclusive(&cfg.agent.state_dir)?;
                crate::agent::run::run(&cfg, store, stop).await?;
            }
            StateStoreConfig::Etcd(e) => {
                let store = etcd_store(&cfg, e);
                crate::agent::run::run(&cfg, store, stop).await?;
            }
        }
        Ok(ExitCode::SUCCESS)
    })
}

/// The etcd store of this agent (its lease ticker starts at once).
pub fn etcd_store(cfg: &Config, e: &EtcdConfig) -> EtcdStore {
    let me = AgentInfo {
        name: cfg.agent.name.clone(),
        listen: cfg.agent.listen.to_string(),
        started_unix_ms: crate::agent::events::Event::now("", None, "", 0).unix_ms,
    };
    EtcdStore::open(e.settings(), &e.prefix, me, e.lease_ttl)
}

async fn signals(stop: CancellationToken) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        return;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    stop.cancel();
}

/// A small runtime for one command-line verb.
pub(super) fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}

/// Runs `req`: through the agent when one holds the state directory, else here with the lock.
pub(super) async fn execute(cfg: &Config, req: &OpRequest) -> anyhow::Result<OpReport> {
    if let StateStoreConfig::Etcd(e) = &cfg.agent.state_store {
        let m = membership(&EtcdClient::new(e.settings()), &e.prefix).await?;
        let leader = m
            .leader
            .context("no agent holds the etcd lease: nobody may act now")?;
        let addr = leader
            .listen
            .parse()
            .context("the leader's listen address")?;
        return crate::agent::client::op(addr, req, Duration::from_secs(600))
            .await
            .with_context(|| format!("the leading agent {} did not answer", leader.name));
    }
    if LocalStore::is_locked(&cfg.agent.state_dir) {
        let timeout = Duration::from_secs(600);
        return crate::agent::client::op(cfg.agent.listen, req, timeout)
            .await
            .context("an agent holds the state directory but did not answer");
    }
    let store = LocalStore::open_exclusive(&cfg.agent.state_dir)?;
    let ctx = Ctx::new(cfg, Arc::new(store))?;
    Ok(ops::execute(&ctx, req).await)
}

/// Loads the configuration, runs `req`, prints the report; exit code 0 done (or dry run
/// passed), 1 refused, 2 failed.
pub(super) fn op_verb(path: &Path, req: OpRequest, json: bool) -> anyhow::Result<ExitCode> {
    let cfg = config::load(path)?;
    let report = runtime()?.block_on(execute(&cfg, &req))?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        for line in &report.lines {
            println!("{line}");
        }
        println!("{}: {:?}", report.op, report.outcome);
    }
    Ok(ExitCode::from(report.outcome.exit_code()))
}
