//! `pgsluice failover [--to NODE] [--dry-run]`: promotion by hand while the primary is gone,
//! with the same election rules and the same fenced sequence as the automatic one.

use super::actions;
use super::ctx::Ctx;
use super::fsm::{self, Plan};
use super::ops::OpReport;
use super::state::Role;
use super::store::StateStore;

/// Checks, explains, and (unless `dry_run`) fails over to `to` or the best candidate.
pub async fn failover<S: StateStore>(ctx: &Ctx<S>, to: Option<&str>, dry_run: bool) -> OpReport {
    let mut rep = OpReport::new("failover");
    let topo = match ctx.store.load().await {
        Ok(s) => s.topology,
        Err(e) => return rep.fail(e),
    };
    if let Some(n) = to {
        if ctx.node(n).is_err() {
            return rep.refuse(format!("no node named {n:?} in [cluster]"));
        }
    }
    let (plan, ok) = plan(ctx, &mut rep, &topo, to).await;
    let (old, name) = (plan.old_primary.clone(), plan.candidate.clone());
    rep.step(format!(
        "fence {} at epoch {}, stop it if local",
        old.as_deref().unwrap_or("(none)"),
        topo.epoch + 1
    ));
    rep.step(format!(
        "promote {name}; repoint {:?}; publish epoch {}",
        plan.followers,
        topo.epoch + 2
    ));
    if !rep.gate(ok, dry_run) {
        return rep;
    }
    let epoch = topo.epoch;
    ctx.record(
        "manual_failover",
        Some(&name),
        plan.ranking.join("; "),
        epoch,
    )
    .await;
    match actions::failover(ctx, &plan, "failover").await {
        Ok(t) => {
            rep.step(format!("{name} is primary at epoch {}", t.epoch));
            rep.topology = Some(t);
            rep
        }
        Err(e) => rep.error(e),
    }
}

/// Probes, checks and ranks: the plan, and whether every check passed.
async fn plan<S: StateStore>(
    ctx: &Ctx<S>,
    rep: &mut OpReport,
    topo: &crate::topology::Topology,
    to: Option<&str>,
) -> (Plan, bool) {
    let round = ctx.probe_all().await;
    let old = topo.primary.clone();
    let mut ok = true;
    if let Some(p) = old.as_deref() {
        let alive = round.probe(p).is_some_and(|x| x.role() == Role::Primary);
        ok &= rep.check(
            !alive,
            format!("primary {p} is down (when it runs, use `pgsluice switchover`)"),
        );
    }
    let cfg = ctx.fsm_config();
    let vetoes = fsm::vetoes(&cfg, topo, &round, old.as_deref());
    ok &= rep.check(
        vetoes.is_empty(),
        format!("no standby still streams from the primary {vetoes:?}"),
    );
    let ranking = fsm::rank(&cfg, topo, &round, None, old.as_deref());
    for v in &ranking {
        rep.lines.push(format!("         {}", v.line()));
    }
    let chosen = match to {
        Some(n) => ranking.iter().find(|v| v.name == n),
        None => ranking.iter().find(|v| v.eligible),
    };
    let name = chosen.map_or("(none)".to_string(), |v| v.name.clone());
    ok &= rep.check(
        chosen.is_some_and(|v| v.eligible),
        format!("candidate {name} is eligible"),
    );
    if let (Some(c), Some(best)) = (chosen, ranking.first()) {
        if best.eligible && best.lsn > c.lsn {
            rep.lines.push(format!(
                "warning: {} is ahead of {}: choosing {} loses that WAL",
                best.name, c.name, c.name
            ));
        }
    }
    let plan = Plan {
        old_primary: old.clone(),
        candidate: name.clone(),
        followers: ctx
            .cluster
            .nodes
            .iter()
            .map(|n| n.name.clone())
            .filter(|n| Some(n) != old.as_ref() && *n != name && !topo.is_fenced(n))
            .collect(),
        candidate_lsn: chosen.and_then(|c| c.lsn),
        ranking: ranking.iter().map(fsm::Verdict::line).collect(),
    };
    (plan, ok)
}
