//! `pgsluice switchover --to NODE`: a planned role swap that clients see as a pause.
//!
//! With warm failover on, first warm the target until it holds `switchover_warmth` of the
//! primary's hot set (bounded by `switchover_warmth_timeout`, then it goes on anyway). Then
//! pause the poolers at transaction boundaries (bounded), publish a fenced epoch, stop the old
//! primary cleanly (its WAL senders ship everything up to the shutdown checkpoint), wait until
//! the target has replayed that checkpoint, promote it, repoint the others, restart the old
//! primary as a standby of the target, publish, resume.

use super::actions::{self, fenced_topology};
use super::ctx::{slot_name, Ctx};
use super::local::LocalPg;
use super::ops::OpReport;
use super::pooler::Outcome;
use super::state::{Lsn, Role};
use super::store::{InFlight, Persisted, StateStore, Step};
use super::AgentError;
use std::time::{Duration, Instant};

/// How long the poolers may take to bring every client to a transaction boundary.
pub const PAUSE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the target may take to replay the old primary's shutdown checkpoint.
pub const CATCH_UP_TIMEOUT: Duration = Duration::from_secs(30);

/// Checks, explains, and (unless `dry_run`) switches over to `to`.
pub async fn run<S: StateStore>(ctx: &Ctx<S>, to: &str, dry_run: bool) -> OpReport {
    let mut rep = OpReport::new("switchover");
    let topo = match ctx.store.load().await {
        Ok(s) => s.topology,
        Err(e) => return rep.fail(e),
    };
    let (old, pg) = match preconditions(ctx, &mut rep, &topo, to).await {
        Ok(v) => v,
        Err(e) => return rep.error(e),
    };
    if !rep.gate(pg.is_some(), dry_run) {
        return rep;
    }
    let Some(pg) = pg else { return rep };
    if let Some(line) = ctx.warm.wait_warm(&old, to).await {
        rep.step(line);
    }
    let started = Instant::now();
    let inflight = InFlight {
        op: "switchover".into(),
        old_primary: Some(old.clone()),
        candidate: to.to_string(),
        followers: ctx
            .cluster
            .nodes
            .iter()
            .map(|n| n.name.clone())
            .filter(|n| *n != old && n != to && !topo.is_fenced(n))
            .collect(),
        step: Step::Fence,
        base_epoch: topo.epoch,
        started_unix_ms: super::events::Event::now("", None, "", 0).unix_ms,
    };
    let result = execute(ctx, &mut rep, inflight, &pg).await;
    let resumed = ctx.poolers.resume().await;
    rep.step(format!("resumed {} pooler(s)", resumed.len()));
    match result {
        Ok(t) => {
            ctx.metrics.switchover_done();
            rep.step(format!(
                "{to} is primary at epoch {} ({} ms, clients resumed)",
                t.epoch,
                started.elapsed().as_millis()
            ));
            rep.topology = Some(t);
            // Clients already run again; the old primary catches up in the background of
            // their traffic, and the operation reports only once it streams.
            match super::rejoin::wait_streaming(ctx, &old).await {
                Ok(()) => {
                    rep.step(format!("{old} streams from {to}"));
                    rep
                }
                Err(e) => rep.fail(e),
            }
        }
        Err(e) => rep.error(e),
    }
}

async fn preconditions<S: StateStore>(
    ctx: &Ctx<S>,
    rep: &mut OpReport,
    topo: &crate::topology::Topology,
    to: &str,
) -> Result<(String, Option<LocalPg>), AgentError> {
    ctx.node(to)?;
    let Some(old) = topo.primary.clone() else {
        return Err(AgentError::Refused(
            "the topology has no primary: use `pgsluice failover`".into(),
        ));
    };
    let round = ctx.probe_all().await;
    let mut ok = rep.check(old != to, format!("{to} is not already the primary"));
    let p = round.probe(&old);
    ok &= rep.check(
        p.is_some_and(|p| p.role() == Role::Primary),
        format!("primary {old} answers and is not in recovery"),
    );
    ok &= rep.check(!topo.is_fenced(to), format!("{to} is not fenced"));
    let t = round.probe(to);
    ok &= rep.check(
        t.is_some_and(|t| t.role() == Role::Standby && t.is_streaming()),
        format!("{to} is a standby streaming WAL"),
    );
    if let (Some(p), Some(t)) = (p, t) {
        let (bytes, _) = super::probe::lag(p, t);
        ok &= rep.check(
            bytes.is_some_and(|b| b <= ctx.agent.max_failover_lag),
            format!(
                "{to} lags {} bytes (max_failover_lag {})",
                bytes.map_or("?".into(), |b| b.to_string()),
                ctx.agent.max_failover_lag
            ),
        );
    }
    let pg = ctx
        .node(&old)
        .and_then(|n| LocalPg::of(&ctx.cluster, n).map_err(AgentError::from));
    ok &= rep.check(
        pg.is_ok(),
        format!("{old} has a local data_dir (clean stop and restart as a standby)"),
    );
    if ctx.poolers.is_empty() {
        rep.lines.push(
            "warning: no pooler configured: clients connected directly will see the stop".into(),
        );
    }
    let w = &ctx.agent.warm;
    if w.enabled() && w.switchover_warmth > 0.0 {
        rep.step(format!(
            "warm {to} until it holds {:.0}% of {old}'s hot set (at most {:?})",
            w.switchover_warmth * 100.0,
            w.switchover_timeout
        ));
    }
    rep.step(format!(
        "pause poolers (at most {PAUSE_TIMEOUT:?}), CHECKPOINT on {old}"
    ));
    rep.step(format!(
        "publish epoch {} with {old} fenced; stop {old} cleanly",
        topo.epoch + 1
    ));
    rep.step(format!(
        "wait until {to} replayed {old}'s shutdown checkpoint (at most {CATCH_UP_TIMEOUT:?})"
    ));
    rep.step(format!(
        "promote {to}; repoint the others; restart {old} as a standby of {to}"
    ));
    rep.step(format!("publish epoch {}; resume poolers", topo.epoch + 2));
    Ok((old, pg.ok().filter(|_| ok)))
}

async fn execute<S: StateStore>(
    ctx: &Ctx<S>,
    rep: &mut OpReport,
    mut inflight: InFlight,
    pg: &LocalPg,
) -> Result<crate::topology::Topology, AgentError> {
    let old = pg.name.clone();
    let to = inflight.candidate.clone();
    let base = ctx.store.load().await?.topology;
    ctx.store
        .save(
            base.epoch,
            &Persisted {
                topology: base.clone(),
                inflight: Some(inflight.clone()),
            },
        )
        .await?;
    for r in ctx.poolers.pause(PAUSE_TIMEOUT).await {
        match r.outcome {
            Outcome::Ok => rep.step(format!("paused {}", r.url)),
            Outcome::PauseTimedOut => {
                clear_inflight(ctx).await?;
                return Err(AgentError::Refused(format!(
                    "{} could not pause within {PAUSE_TIMEOUT:?}: long transactions?",
                    r.url
                )));
            }
            other => rep.step(format!("pooler {} did not pause: {other:?}", r.url)),
        }
    }
    ctx.sql(&old, "CHECKPOINT", ctx.sql_timeout() * 6).await?;
    let fenced = fenced_topology(&base, Some(&old));
    inflight.step = Step::StopOld;
    ctx.commit(
        base.epoch,
        Persisted {
            topology: fenced.clone(),
            inflight: Some(inflight.clone()),
        },
    )
    .await?;
    rep.step(format!(
        "published epoch {} with {old} fenced",
        fenced.epoch
    ));
    pg.stop("fast", Duration::from_secs(60)).await?;
    let control = pg.controldata().await?;
    let end = control
        .get("Latest checkpoint location")
        .and_then(|v| Lsn::parse(v))
        .ok_or_else(|| {
            AgentError::Failed(format!("{old}: no checkpoint location in pg_controldata"))
        })?;
    rep.step(format!(
        "stopped {old}; its shutdown checkpoint is at {end}"
    ));
    if let Err(e) = wait_replayed(ctx, &to, end).await {
        rollback(ctx, pg, &base).await?;
        return Err(e);
    }
    rep.step(format!("{to} replayed past {end}"));
    inflight.step = Step::Promote;
    save_step(ctx, &inflight).await?;
    actions::promote(ctx, &to).await?;
    let catch_up = ctx.warm.start_catch_up(&to);
    inflight.step = Step::Repoint;
    save_step(ctx, &inflight).await?;
    actions::repoint_all(ctx, &to, &inflight.followers).await;
    inflight.step = Step::RejoinOld;
    save_step(ctx, &inflight).await?;
    restart_as_standby(ctx, pg, &to).await?;
    rep.step(format!("{old} restarted as a standby of {to}"));
    let topo = actions::publish_final(ctx, &inflight, std::slice::from_ref(&old)).await?;
    super::warmth::record_catch_up(ctx, &to, catch_up).await;
    Ok(topo)
}

/// Configures the stopped `pg` as a standby of `upstream` and starts it.
pub async fn restart_as_standby<S: StateStore>(
    ctx: &Ctx<S>,
    pg: &LocalPg,
    upstream: &str,
) -> Result<(), AgentError> {
    ctx.ensure_slot(upstream, &pg.name).await?;
    let port = ctx.node(&pg.name)?.port;
    let conninfo = ctx.replication_conninfo(upstream, &pg.name)?;
    pg.make_standby(port, &conninfo, &slot_name(&pg.name))?;
    pg.start(Duration::from_secs(60)).await?;
    Ok(())
}

async fn save_step<S: StateStore>(ctx: &Ctx<S>, inflight: &InFlight) -> Result<(), AgentError> {
    let st = ctx.store.load().await?;
    let epoch = st.topology.epoch;
    let next = Persisted {
        topology: st.topology,
        inflight: Some(inflight.clone()),
    };
    Ok(ctx.store.save(epoch, &next).await?)
}

async fn clear_inflight<S: StateStore>(ctx: &Ctx<S>) -> Result<(), AgentError> {
    let st = ctx.store.load().await?;
    let epoch = st.topology.epoch;
    let next = Persisted {
        topology: st.topology,
        inflight: None,
    };
    Ok(ctx.store.save(epoch, &next).await?)
}

async fn wait_replayed<S: StateStore>(
    ctx: &Ctx<S>,
    node: &str,
    past: Lsn,
) -> Result<(), AgentError> {
    let deadline = Instant::now() + CATCH_UP_TIMEOUT;
    loop {
        let replay = ctx
            .scalar(node, "SELECT pg_last_wal_replay_lsn()", ctx.sql_timeout())
            .await?
            .and_then(|v| Lsn::parse(&v));
        if replay.is_some_and(|r| r > past) {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(AgentError::Failed(format!(
                "{node} did not replay past {past} within {CATCH_UP_TIMEOUT:?} (at {replay:?})"
            )));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Puts the old primary back: start it, publish it as primary again at a new epoch.
pub async fn rollback<S: StateStore>(
    ctx: &Ctx<S>,
    pg: &LocalPg,
    base: &crate::topology::Topology,
) -> Result<(), AgentError> {
    pg.start(Duration::from_secs(60)).await?;
    let st = ctx.store.load().await?;
    let mut topo = base.clone();
    topo.epoch = st.topology.epoch + 1;
    ctx.commit(
        st.topology.epoch,
        Persisted {
            topology: topo.clone(),
            inflight: None,
        },
    )
    .await?;
    ctx.record(
        "switchover_rolled_back",
        Some(&pg.name),
        "restarted as primary",
        topo.epoch,
    )
    .await;
    Ok(())
}
