//! The failover sequence, one recorded step at a time so that a restarted agent finishes or
//! rolls back what it started, and never does it twice:
//!
//! 1. **fence**: persist and publish epoch+1 with the old primary fenced and no primary;
//! 2. **stop the old primary**: soft fence over SQL if it answers, `pg_ctl stop` if local;
//! 3. **promote** the candidate: `pg_promote`, then wait until it is out of recovery;
//! 4. **repoint** the other standbys: slot on the new primary, `ALTER SYSTEM SET
//!    primary_conninfo, primary_slot_name` + `pg_reload_conf()` (PostgreSQL 13+, no restart);
//! 5. **publish** epoch+1 with the new primary; the warm-failover catch-up pass (started right
//!    after the promotion) is then awaited, bounded, and recorded.

use super::ctx::{slot_name, Ctx};
use super::fence::Promote;
use super::fsm::Plan;
use super::heartbeat::Pushed;
use super::local::LocalPg;
use super::sql::literal;
use super::store::{InFlight, Persisted, StateStore, Step};
use super::AgentError;
use crate::topology::Topology;
use std::time::{Duration, Instant};

/// How long `pg_promote` may wait for the end of recovery.
pub const PROMOTE_WAIT_SECS: u32 = 60;

/// Starts a failover: records it, fences, then runs the remaining steps.
pub async fn failover<S: StateStore>(
    ctx: &Ctx<S>,
    plan: &Plan,
    op: &str,
) -> Result<Topology, AgentError> {
    let started = Instant::now();
    let st = ctx.store.load().await?;
    let base = st.topology;
    let inflight = InFlight {
        op: op.to_string(),
        old_primary: plan.old_primary.clone(),
        candidate: plan.candidate.clone(),
        followers: plan.followers.clone(),
        step: Step::Fence,
        base_epoch: base.epoch,
        started_unix_ms: super::events::Event::now("", None, "", 0).unix_ms,
    };
    let fenced = fenced_topology(&base, plan.old_primary.as_deref());
    let pushed = ctx
        .commit(
            base.epoch,
            Persisted {
                topology: fenced.clone(),
                inflight: Some(InFlight {
                    step: Step::StopOld,
                    ..inflight.clone()
                }),
            },
        )
        .await?;
    let old = plan.old_primary.as_deref();
    ctx.record(
        "fenced",
        old,
        "published a topology without a primary",
        fenced.epoch,
    )
    .await;
    let inflight = InFlight {
        step: Step::StopOld,
        ..inflight
    };
    let result = resume_fenced(ctx, inflight, Some(pushed)).await;
    if result.is_ok() {
        ctx.metrics.failover_done(started.elapsed().as_secs_f64());
    }
    result
}

/// `base` plus one epoch, without a primary, with `old` fenced.
pub fn fenced_topology(base: &Topology, old: Option<&str>) -> Topology {
    let mut fenced = base.fenced.clone();
    if let Some(o) = old {
        if !fenced.iter().any(|f| f == o) {
            fenced.push(o.to_string());
        }
    }
    Topology {
        epoch: base.epoch + 1,
        primary: None,
        standbys: base
            .standbys
            .iter()
            .filter(|s| !fenced.contains(s))
            .cloned()
            .collect(),
        fenced,
    }
}

/// Runs the steps of `inflight` from its `step` on; on failure the in-flight record is cleared
/// (the fenced topology stays: the state machine decides again) and the error returned.
pub async fn resume<S: StateStore>(
    ctx: &Ctx<S>,
    inflight: InFlight,
) -> Result<Topology, AgentError> {
    resume_fenced(ctx, inflight, None).await
}

/// [`resume`], given the fence push when it was just made (else the fence is pushed again
/// before the promotion).
async fn resume_fenced<S: StateStore>(
    ctx: &Ctx<S>,
    mut inflight: InFlight,
    fence: Option<Pushed>,
) -> Result<Topology, AgentError> {
    let result = run_steps(ctx, &mut inflight, fence).await;
    if let Err(e) = &result {
        let st = ctx.store.load().await?;
        let epoch = st.topology.epoch;
        ctx.store
            .save(
                epoch,
                &Persisted {
                    topology: st.topology,
                    inflight: None,
                },
            )
            .await?;
        ctx.record(
            &format!("{}_failed", inflight.op),
            Some(&inflight.candidate),
            format!("at step {:?}: {e}", inflight.step),
            epoch,
        )
        .await;
    }
    result
}

async fn advance<S: StateStore>(
    ctx: &Ctx<S>,
    inflight: &mut InFlight,
    next: Step,
) -> Result<(), AgentError> {
    let st = ctx.store.load().await?;
    inflight.step = next;
    let epoch = st.topology.epoch;
    ctx.store
        .save(
            epoch,
            &Persisted {
                topology: st.topology,
                inflight: Some(inflight.clone()),
            },
        )
        .await?;
    Ok(())
}

async fn run_steps<S: StateStore>(
    ctx: &Ctx<S>,
    inflight: &mut InFlight,
    fence: Option<Pushed>,
) -> Result<Topology, AgentError> {
    if inflight.step <= Step::StopOld {
        if let Some(old) = inflight.old_primary.clone() {
            stop_old(ctx, &old).await;
        }
        advance(ctx, inflight, Step::Promote).await?;
    }
    let mut catch_up = None;
    if inflight.step <= Step::Promote {
        confirm_fence(ctx, fence).await?;
        promote(ctx, &inflight.candidate).await?;
        // Warm failover: load the latest hot set while the others are repointed.
        catch_up = ctx.warm.start_catch_up(&inflight.candidate);
        advance(ctx, inflight, Step::Repoint).await?;
    }
    if inflight.step <= Step::Repoint {
        repoint_all(ctx, &inflight.candidate, &inflight.followers).await;
        advance(ctx, inflight, Step::Publish).await?;
    }
    let topo = publish_final(ctx, inflight, &[]).await?;
    super::warmth::record_catch_up(ctx, &inflight.candidate, catch_up).await;
    Ok(topo)
}

/// Makes sure no pooler still sends writes to the old primary before the candidate is
/// promoted: every pooler acknowledged the fence, or the lease of each one that did not has
/// surely run out (`fence::promote_after`). `fence` is the fence push just made; without
/// it (an agent resuming after a restart) the stored, fenced topology is pushed again.
async fn confirm_fence<S: StateStore>(
    ctx: &Ctx<S>,
    fence: Option<Pushed>,
) -> Result<(), AgentError> {
    let Some(lease) = ctx.write_lease() else {
        return Ok(());
    };
    let epoch = ctx.store.load().await?.topology.epoch;
    let pushed = match fence {
        Some(p) => p,
        None => {
            let t = ctx.store.load().await?.topology;
            ctx.pushes.push(&ctx.poolers, &t).await
        }
    };
    let elapsed = pushed.started.elapsed();
    match super::fence::promote_after(&pushed.replies, elapsed, Some(lease)) {
        Promote::Now => {
            let n = pushed.replies.len();
            let d = format!("{n} pooler(s) acknowledged the fence at epoch {epoch}");
            ctx.record("fence_acknowledged", None, d, epoch).await;
        }
        Promote::After(wait, silent) => {
            let d = format!(
                "{} did not acknowledge the fence: promoting once their lease ({lease:?}) \
                 has surely run out, in {} ms",
                silent.join(", "),
                wait.as_millis()
            );
            ctx.record("fence_lease_wait", None, d, epoch).await;
            tokio::time::sleep(wait).await;
        }
    }
    Ok(())
}

/// Persists (clearing the in-flight record) and publishes the topology with the candidate as
/// primary; `rejoined` nodes leave the fenced list and become standbys.
pub async fn publish_final<S: StateStore>(
    ctx: &Ctx<S>,
    inflight: &InFlight,
    rejoined: &[String],
) -> Result<Topology, AgentError> {
    let st = ctx.store.load().await?;
    let cur = st.topology;
    let fenced: Vec<String> = cur
        .fenced
        .iter()
        .filter(|f| !rejoined.contains(f))
        .cloned()
        .collect();
    let standbys = ctx
        .cluster
        .nodes
        .iter()
        .map(|n| n.name.clone())
        .filter(|n| *n != inflight.candidate && !fenced.contains(n))
        .filter(|n| {
            cur.standbys.contains(n) || inflight.followers.contains(n) || rejoined.contains(n)
        })
        .collect();
    let topo = Topology {
        epoch: cur.epoch + 1,
        primary: Some(inflight.candidate.clone()),
        standbys,
        fenced,
    };
    if let Some(value) = super::fsm::sync_setting(ctx.agent.synchronous_standbys, &topo) {
        // Before the poolers send writes: no acknowledged commit without a standby copy.
        if let Err(e) = ctx.set_sync(&inflight.candidate, &value, cur.epoch).await {
            tracing::warn!(error = %e, "setting synchronous_standby_names failed");
        }
    }
    ctx.commit(
        cur.epoch,
        Persisted {
            topology: topo.clone(),
            inflight: None,
        },
    )
    .await?;
    let took = super::events::Event::now("", None, "", 0)
        .unix_ms
        .saturating_sub(inflight.started_unix_ms);
    ctx.record(
        &format!("{}_completed", inflight.op),
        Some(&inflight.candidate),
        format!(
            "{} is primary at epoch {} ({took} ms after the decision)",
            inflight.candidate, topo.epoch
        ),
        topo.epoch,
    )
    .await;
    Ok(topo)
}

/// Best effort: soft-fence the old primary if it answers, stop it if it is local.
pub async fn stop_old<S: StateStore>(ctx: &Ctx<S>, old: &str) {
    let epoch = ctx
        .store
        .load()
        .await
        .map(|s| s.topology.epoch)
        .unwrap_or(0);
    match soft_fence(ctx, old).await {
        Ok(()) => {
            ctx.record(
                "soft_fenced",
                Some(old),
                "default_transaction_read_only = on, clients terminated",
                epoch,
            )
            .await
        }
        Err(e) => tracing::debug!(node = old, error = %e, "old primary does not answer"),
    }
    let Ok(node) = ctx.node(old) else { return };
    if node.data_dir.is_none() {
        return;
    }
    match LocalPg::of(&ctx.cluster, node) {
        Ok(pg) if pg.is_running().await => {
            let r = pg.stop("fast", Duration::from_secs(10)).await;
            let r = match r {
                Err(_) => pg.stop("immediate", Duration::from_secs(10)).await,
                ok => ok,
            };
            let d = match r {
                Ok(()) => "stopped".to_string(),
                Err(e) => format!("could not stop: {e}"),
            };
            ctx.record("old_primary_stopped", Some(old), d, epoch).await;
        }
        Ok(_) => {}
        Err(e) => tracing::warn!(node = old, error = %e, "cannot manage the old primary locally"),
    }
}

/// Makes `node` refuse writes by default and ends its client sessions.
pub async fn soft_fence<S: StateStore>(ctx: &Ctx<S>, node: &str) -> Result<(), AgentError> {
    let timeout = ctx.agent.probe_timeout.max(Duration::from_millis(500));
    let sqls = [
        "ALTER SYSTEM SET default_transaction_read_only = on",
        "SELECT pg_reload_conf()",
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE backend_type = 'client backend' AND pid <> pg_backend_pid() \
         AND application_name <> 'pgsluice-agent'",
    ];
    ctx.sql_each(node, &sqls, timeout).await
}

/// Promotes `node` (`pg_promote(wait => false)`, then waits until it is out of recovery, at
/// most `PROMOTE_WAIT_SECS`); a node already out of recovery is left alone.
pub async fn promote<S: StateStore>(ctx: &Ctx<S>, node: &str) -> Result<(), AgentError> {
    let timeout = Duration::from_secs(u64::from(PROMOTE_WAIT_SECS) + 5);
    let epoch = ctx
        .store
        .load()
        .await
        .map(|s| s.topology.epoch)
        .unwrap_or(0);
    let started = Instant::now();
    // pg_promote(wait => true) looks every 100 ms; asking every 5 ms ends the pause sooner.
    let sql = "SELECT CASE WHEN pg_is_in_recovery() THEN pg_promote(false) ELSE true END";
    let mut answer = ctx.scalar(node, sql, timeout).await?;
    while answer.as_deref() == Some("t") {
        let out = ctx
            .scalar(node, "SELECT NOT pg_is_in_recovery()", timeout)
            .await?;
        let limit = Duration::from_secs(u64::from(PROMOTE_WAIT_SECS));
        if out.as_deref() == Some("t") || started.elapsed() >= limit {
            answer = out;
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    match answer {
        Some(v) if v == "t" => {
            let ms = started.elapsed().as_millis();
            ctx.record(
                "promoted",
                Some(node),
                format!("pg_promote took {ms} ms"),
                epoch,
            )
            .await;
            Ok(())
        }
        other => Err(AgentError::Failed(format!(
            "{node}: pg_promote returned {other:?}"
        ))),
    }
}

/// Repoints every follower to `primary` concurrently; failures are events, not errors (a
/// follower that cannot follow needs `pgsluice rejoin`).
pub async fn repoint_all<S: StateStore>(ctx: &Ctx<S>, primary: &str, followers: &[String]) {
    let epoch = ctx
        .store
        .load()
        .await
        .map(|s| s.topology.epoch)
        .unwrap_or(0);
    let jobs = followers
        .iter()
        .map(|f| Box::pin(async move { (f, repoint(ctx, primary, f).await) }))
        .collect();
    for (f, r) in join_all(jobs).await {
        match r {
            Ok(()) => {
                ctx.record("repointed", Some(f), format!("follows {primary}"), epoch)
                    .await
            }
            Err(e) => {
                ctx.record("repoint_failed", Some(f), e.to_string(), epoch)
                    .await
            }
        }
    }
}

/// Polls every future together (they borrow the context, so they cannot be spawned).
async fn join_all<F: std::future::Future + Unpin>(mut futs: Vec<F>) -> Vec<F::Output> {
    let mut done: Vec<Option<F::Output>> = futs.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (i, f) in futs.iter_mut().enumerate() {
            if done[i].is_none() {
                match std::pin::Pin::new(f).poll(cx) {
                    std::task::Poll::Ready(v) => done[i] = Some(v),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    done.into_iter().flatten().collect()
}

/// Points `follower` at `primary`: slot on the primary, then conninfo + slot + reload.
pub async fn repoint<S: StateStore>(
    ctx: &Ctx<S>,
    primary: &str,
    follower: &str,
) -> Result<(), AgentError> {
    ctx.ensure_slot(primary, follower).await?;
    let conninfo = ctx.replication_conninfo(primary, follower)?;
    let conninfo = format!("ALTER SYSTEM SET primary_conninfo = {}", literal(&conninfo));
    let slot = format!(
        "ALTER SYSTEM SET primary_slot_name = {}",
        literal(&slot_name(follower))
    );
    let sqls = [conninfo.as_str(), slot.as_str(), "SELECT pg_reload_conf()"];
    ctx.sql_each(follower, &sqls, ctx.sql_timeout()).await
}
