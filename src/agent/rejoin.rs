//! `pgsluice rejoin NODE` and `pgsluice clone --from NODE --name NEW`: make a node a streaming
//! standby of the primary, with pg_rewind (after a CHECKPOINT on the primary, pitfall 4) or a
//! fresh pg_basebackup when rewind is impossible, and report the WAL that was discarded.

use super::ctx::{slot_name, Ctx};
use super::local::{LocalPg, CONFIG_FILES};
use super::ops::OpReport;
use super::state::{Lsn, Role};
use super::store::{Persisted, StateStore};
use super::AgentError;
use crate::topology::Topology;
use std::time::{Duration, Instant};

/// How long a rejoined or cloned node may take to stream.
pub const STREAM_TIMEOUT: Duration = Duration::from_secs(60);

/// Checks, explains, and (unless `dry_run`) rejoins `node` under the current primary.
pub async fn rejoin<S: StateStore>(ctx: &Ctx<S>, node: &str, dry_run: bool) -> OpReport {
    let mut rep = OpReport::new("rejoin");
    let topo = match ctx.store.load().await {
        Ok(s) => s.topology,
        Err(e) => return rep.fail(e),
    };
    let pg = match ctx
        .node(node)
        .and_then(|n| Ok(LocalPg::of(&ctx.cluster, n)?))
    {
        Ok(pg) => pg,
        Err(e) => return rep.error(e),
    };
    let Some(primary) = topo.primary.clone() else {
        return rep.refuse("the topology has no primary to follow");
    };
    let round = ctx.probe_all().await;
    let mut ok = rep.check(
        primary != node,
        format!("{node} is not the primary ({primary})"),
    );
    ok &= rep.check(
        round
            .probe(&primary)
            .is_some_and(|p| p.role() == Role::Primary),
        format!("primary {primary} answers and is not in recovery"),
    );
    let last_lsn = round.probe(node).and_then(|p| p.wal_position());
    rep.step(format!("stop {node}; CHECKPOINT on {primary}; pg_rewind from {primary} (pg_basebackup if rewind is impossible)"));
    rep.step(format!(
        "standby.signal + primary_conninfo -> {primary}, slot {}; start; wait for streaming",
        slot_name(node)
    ));
    rep.step(format!(
        "publish epoch {} with {node} as a standby, unfenced",
        topo.epoch + 1
    ));
    if !rep.gate(ok, dry_run) {
        return rep;
    }
    match rejoin_steps(ctx, &mut rep, &pg, &primary, last_lsn).await {
        Ok(()) => match publish_member(ctx, node).await {
            Ok(t) => {
                rep.step(format!(
                    "{node} streams from {primary}; published epoch {}",
                    t.epoch
                ));
                rep.topology = Some(t);
                rep
            }
            Err(e) => rep.error(e),
        },
        Err(e) => rep.error(e),
    }
}

async fn rejoin_steps<S: StateStore>(
    ctx: &Ctx<S>,
    rep: &mut OpReport,
    pg: &LocalPg,
    primary: &str,
    last_lsn: Option<Lsn>,
) -> Result<(), AgentError> {
    let node = pg.name.clone();
    if pg.is_running().await {
        if let Err(e) = pg.stop("fast", Duration::from_secs(60)).await {
            rep.step(format!("fast stop failed ({e}); immediate stop"));
            pg.stop("immediate", Duration::from_secs(30)).await?;
        }
        rep.step(format!("stopped {node}"));
    }
    let control = pg.controldata().await.unwrap_or_default();
    let old_end = control
        .get("Latest checkpoint location")
        .and_then(|v| Lsn::parse(v))
        .max(last_lsn);
    ctx.sql(primary, "CHECKPOINT", ctx.sql_timeout() * 6)
        .await?;
    let saved: Vec<(&str, String)> = CONFIG_FILES
        .iter()
        .filter_map(|f| pg.read(f).ok().map(|t| (*f, t)))
        .collect();
    let source = ctx.superuser_source(primary)?;
    match pg.rewind(source).await {
        Ok(out) => {
            for (f, text) in &saved {
                pg.write(f, text)?;
            }
            rep.step(format!("pg_rewind: {}", summary(&out)));
            if let Some(fork) = diverged_at(&out) {
                let end = old_end.map_or("its end of WAL".into(), |e| e.to_string());
                rep.step(format!(
                    "discarded WAL of {node}: from {fork} (fork point) to {end}"
                ));
            }
        }
        Err(e) => {
            rep.step(format!("pg_rewind impossible ({e}); cloning afresh"));
            let source = ctx.replication_source(primary, &node)?;
            let aside = pg.clone_from(source).await?;
            if let Some(a) = aside {
                rep.step(format!(
                    "old data directory kept as {} (all its WAL past the fork is discarded)",
                    a.display()
                ));
            }
        }
    }
    super::switchover::restart_as_standby(ctx, pg, primary).await?;
    wait_streaming(ctx, &node).await
}

/// The key lines of pg_rewind's output.
fn summary(out: &str) -> String {
    out.lines()
        .filter(|l| {
            l.contains("diverged") || l.contains("no rewind required") || l.contains("Done")
        })
        .map(|l| l.trim().trim_start_matches("pg_rewind: ").to_string())
        .collect::<Vec<_>>()
        .join("; ")
}

/// The fork point pg_rewind reports ("servers diverged at WAL location X on timeline N").
pub fn diverged_at(out: &str) -> Option<Lsn> {
    let line = out
        .lines()
        .find(|l| l.contains("diverged at WAL location"))?;
    let rest = line.split("diverged at WAL location").nth(1)?;
    Lsn::parse(rest.split_whitespace().next()?)
}

/// Waits (at most [`STREAM_TIMEOUT`]) until `node`'s WAL receiver streams.
pub async fn wait_streaming<S: StateStore>(ctx: &Ctx<S>, node: &str) -> Result<(), AgentError> {
    let deadline = Instant::now() + STREAM_TIMEOUT;
    loop {
        let status = ctx
            .scalar(
                node,
                "SELECT status FROM pg_stat_wal_receiver",
                ctx.sql_timeout(),
            )
            .await
            .ok()
            .flatten();
        if status.as_deref() == Some("streaming") {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(AgentError::Failed(format!(
                "{node} does not stream after {STREAM_TIMEOUT:?} (receiver: {status:?}); see {}.log",
                node
            )));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Publishes the topology with `node` as a standby and not fenced.
pub async fn publish_member<S: StateStore>(
    ctx: &Ctx<S>,
    node: &str,
) -> Result<Topology, AgentError> {
    let st = ctx.store.load().await?;
    let cur = st.topology;
    let mut t = cur.clone();
    t.epoch += 1;
    t.fenced.retain(|f| f != node);
    if !t.standbys.iter().any(|s| s == node) {
        t.standbys.push(node.to_string());
    }
    ctx.commit(
        cur.epoch,
        Persisted {
            topology: t.clone(),
            inflight: st.inflight,
        },
    )
    .await?;
    ctx.record("rejoined", Some(node), "streaming standby", t.epoch)
        .await;
    Ok(t)
}

/// Checks, explains, and (unless `dry_run`) clones `from` into the configured node `name`.
pub async fn clone<S: StateStore>(ctx: &Ctx<S>, from: &str, name: &str, dry_run: bool) -> OpReport {
    let mut rep = OpReport::new("clone");
    let pg = match ctx
        .node(name)
        .and_then(|n| Ok(LocalPg::of(&ctx.cluster, n)?))
    {
        Ok(pg) => pg,
        Err(e) => return rep.error(e),
    };
    if ctx.node(from).is_err() {
        return rep.refuse(format!("no node named {from:?} in [cluster]"));
    }
    let round = ctx.probe_all().await;
    let mut ok = rep.check(from != name, format!("{from} and {name} differ"));
    ok &= rep.check(
        round.probe(from).is_some_and(|p| p.reachable),
        format!("{from} answers"),
    );
    let empty = std::fs::read_dir(&pg.data_dir).map_or(true, |mut d| d.next().is_none());
    ok &= rep.check(
        empty,
        format!("{} is missing or empty", pg.data_dir.display()),
    );
    rep.step(format!(
        "slot {} on {from}; pg_basebackup from {from} into {}",
        slot_name(name),
        pg.data_dir.display()
    ));
    rep.step(format!(
        "standby.signal + primary_conninfo -> {from}; start; wait for streaming; publish"
    ));
    if !rep.gate(ok, dry_run) {
        return rep;
    }
    let result = async {
        ctx.ensure_slot(from, name).await?;
        let source = ctx.replication_source(from, name)?;
        pg.clone_from(source).await?;
        super::switchover::restart_as_standby(ctx, &pg, from).await?;
        wait_streaming(ctx, name).await?;
        publish_member(ctx, name).await
    }
    .await;
    match result {
        Ok(t) => {
            rep.step(format!(
                "{name} streams from {from}; published epoch {}",
                t.epoch
            ));
            rep.topology = Some(t);
            rep
        }
        Err(e) => rep.error(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_fork_point() {
        let out = "pg_rewind: servers diverged at WAL location 0/3000148 on timeline 1\n\
                   pg_rewind: rewinding from last common checkpoint at 0/2000060 on timeline 1\n\
                   pg_rewind: Done!\n";
        assert_eq!(diverged_at(out), Lsn::parse("0/3000148"));
        assert!(summary(out).contains("diverged"));
        assert_eq!(diverged_at("pg_rewind: no rewind required"), None);
    }
}
