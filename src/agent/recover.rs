//! On start, finish or roll back the action a previous agent left in flight, so that nothing
//! is done twice: the in-flight record names the next step, and the nodes say what happened.
//!
//! | found | failover | switchover |
//! |---|---|---|
//! | candidate out of recovery | finish: repoint, publish | finish: repoint, restart the old primary as standby, publish |
//! | promotion not requested yet, old primary healthy | roll back: publish it again | roll back: start it, publish it again |
//! | otherwise, candidate reachable | finish from the recorded step | roll back if the old primary can start, else finish |
//! | candidate unreachable, old primary healthy | roll back | roll back |
//! | candidate unreachable, old primary too | abandon: keep the fenced topology; the state machine decides again | same |

use super::actions;
use super::ctx::Ctx;
use super::local::LocalPg;
use super::state::Role;
use super::store::{InFlight, Persisted, StateStore, Step};
use super::AgentError;

/// Finishes or rolls back the in-flight action, if any; returns what was done.
pub async fn recover<S: StateStore>(ctx: &Ctx<S>) -> Result<Option<String>, AgentError> {
    let st = ctx.store.load().await?;
    let Some(inflight) = st.inflight.clone() else {
        return Ok(None);
    };
    let round = ctx.probe_all().await;
    let cand = round.probe(&inflight.candidate).map(|p| p.role());
    let old_role = inflight
        .old_primary
        .as_deref()
        .and_then(|o| round.probe(o))
        .map(|p| p.role());
    let epoch = st.topology.epoch;
    let what = format!(
        "{} {:?} -> {} interrupted at step {:?}",
        inflight.op, inflight.old_primary, inflight.candidate, inflight.step
    );
    ctx.record("recovering", Some(&inflight.candidate), what.clone(), epoch)
        .await;
    let switchover = inflight.op == "switchover";
    let decision = decide(&inflight, cand, old_role);
    match decision {
        Recovery::Finish => {
            if old_role == Some(Role::Primary) && !switchover {
                // Still writable although the record says it was stopped: stop it again
                // (idempotent) before anything else, then promotion (idempotent too).
                let mut again = inflight;
                again.step = Step::StopOld;
                finish(ctx, again, switchover).await?
            } else {
                finish(ctx, inflight, switchover).await?
            }
        }
        Recovery::RollBack => roll_back(ctx, &st, &inflight).await?,
        Recovery::Abandon => {
            let next = Persisted {
                topology: st.topology.clone(),
                inflight: None,
            };
            ctx.store.save(epoch, &next).await?;
            ctx.record(
                "failover_abandoned",
                Some(&inflight.candidate),
                "candidate unreachable",
                epoch,
            )
            .await;
        }
    }
    Ok(Some(format!("{what}: {decision:?}")))
}

/// What to do with an action found in flight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recovery {
    /// Complete it from its recorded step.
    Finish,
    /// Put the old primary back.
    RollBack,
    /// Drop the record, keep the fenced topology: the state machine decides again.
    Abandon,
}

/// The table in the module documentation, from the candidate's and the old primary's
/// observed roles (`None` when not probed or not reachable).
pub fn decide(inflight: &InFlight, candidate: Option<Role>, old: Option<Role>) -> Recovery {
    let switchover = inflight.op == "switchover";
    match (candidate, old) {
        (Some(Role::Primary), _) => Recovery::Finish,
        (_, Some(Role::Primary)) if inflight.step <= Step::StopOld => Recovery::RollBack,
        (None | Some(Role::Unknown), Some(Role::Primary)) => Recovery::RollBack,
        (Some(Role::Standby), _) if switchover => Recovery::RollBack,
        (Some(Role::Standby), _) => Recovery::Finish,
        _ => Recovery::Abandon,
    }
}

async fn finish<S: StateStore>(
    ctx: &Ctx<S>,
    mut inflight: InFlight,
    switchover: bool,
) -> Result<(), AgentError> {
    if !switchover {
        if inflight.step < Step::StopOld {
            inflight.step = Step::StopOld;
        }
        actions::resume(ctx, inflight).await?;
        return Ok(());
    }
    if inflight.step <= Step::Promote {
        actions::promote(ctx, &inflight.candidate).await?;
    }
    if inflight.step <= Step::Repoint {
        actions::repoint_all(ctx, &inflight.candidate, &inflight.followers).await;
    }
    let mut rejoined = Vec::new();
    if let Some(old) = inflight.old_primary.clone() {
        let pg = LocalPg::of(&ctx.cluster, ctx.node(&old)?)?;
        if !pg.is_running().await {
            super::switchover::restart_as_standby(ctx, &pg, &inflight.candidate).await?;
        }
        rejoined.push(old);
    }
    actions::publish_final(ctx, &inflight, &rejoined).await?;
    let _ = ctx.poolers.resume().await;
    Ok(())
}

async fn roll_back<S: StateStore>(
    ctx: &Ctx<S>,
    st: &Persisted,
    inflight: &InFlight,
) -> Result<(), AgentError> {
    let Some(old) = inflight.old_primary.clone() else {
        return Ok(());
    };
    if let Ok(pg) = LocalPg::of(&ctx.cluster, ctx.node(&old)?) {
        if !pg.is_running().await {
            pg.start(std::time::Duration::from_secs(60)).await?;
        }
    }
    let mut topo = st.topology.clone();
    topo.epoch += 1;
    topo.primary = Some(old.clone());
    topo.fenced.retain(|f| *f != old);
    topo.standbys.retain(|s| *s != old);
    for f in &inflight.followers {
        if !topo.standbys.contains(f) {
            topo.standbys.push(f.clone());
        }
    }
    if !topo.standbys.contains(&inflight.candidate) {
        topo.standbys.push(inflight.candidate.clone());
    }
    ctx.commit(
        st.topology.epoch,
        Persisted {
            topology: topo.clone(),
            inflight: None,
        },
    )
    .await?;
    let _ = ctx.poolers.resume().await;
    ctx.record(
        &format!("{}_rolled_back", inflight.op),
        Some(&old),
        "primary again",
        topo.epoch,
    )
    .await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(op: &str, step: Step) -> InFlight {
        InFlight {
            op: op.into(),
            old_primary: Some("a".into()),
            candidate: "b".into(),
            followers: vec![],
            step,
            base_epoch: 1,
            started_unix_ms: 0,
        }
    }

    #[test]
    fn recovery_table() {
        use Recovery::*;
        let (p, s, u) = (
            Some(Role::Primary),
            Some(Role::Standby),
            Some(Role::Unknown),
        );
        let f = |step| rec("failover", step);
        let w = |step| rec("switchover", step);
        assert_eq!(decide(&f(Step::Repoint), p, u), Finish);
        assert_eq!(decide(&f(Step::StopOld), s, p), RollBack);
        assert_eq!(decide(&f(Step::Promote), s, p), Finish);
        assert_eq!(decide(&f(Step::StopOld), s, u), Finish);
        assert_eq!(decide(&f(Step::Promote), u, u), Abandon);
        assert_eq!(decide(&f(Step::Promote), None, p), RollBack);
        assert_eq!(decide(&w(Step::RejoinOld), p, u), Finish);
        assert_eq!(decide(&w(Step::StopOld), s, u), RollBack);
        assert_eq!(decide(&w(Step::Promote), s, u), RollBack);
    }
}
