//! `pgsluice agent`: the loop. Every `probe_interval` (or at once on `POST /probe`): probe every
//! node, feed the round to the state machine, carry out its actions; between rounds, run the
//! DBA operations asked over HTTP. Stops on the injected cancellation token.

use super::actions;
use super::ctx::Ctx;
use super::fsm::{self, Action, FsmConfig, FsmState, Input, Round};
use super::http::{self, OpCall};
use super::metrics::Metrics;
use super::state::NodeProbe;
use super::store::{Persisted, StateStore};
use super::AgentError;
use crate::config::Config;
use crate::topology::Topology;
use serde::{Deserialize, Serialize};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tokio::sync::{mpsc, Notify};
use tokio_util::sync::CancellationToken;

/// The least time between a round and one started early by `POST /probe`.
const EARLY_GAP: std::time::Duration = std::time::Duration::from_millis(50);

/// What `/status` returns.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Status {
    /// The published topology.
    pub topology: Topology,
    /// The decision state (`healthy`, `suspect`, ...), with its details.
    pub decision: serde_json::Value,
    /// The last probe of every node.
    pub nodes: Vec<NodeProbe>,
    /// When the last round ended (ms since the Unix epoch).
    pub updated_unix_ms: u64,
    /// Warmth (0..=1) of each candidate standby; empty when warm failover is off.
    #[serde(default)]
    pub warmth: std::collections::BTreeMap<String, f64>,
}

/// State shared between the loop and the HTTP endpoint.
#[derive(Debug)]
pub struct Shared {
    /// The metrics registry.
    pub metrics: Metrics,
    /// Wakes the loop for an immediate probe.
    pub probe_now: Notify,
    status: Mutex<Status>,
}

impl Shared {
    /// Shared state around `metrics`, with an empty status.
    pub fn new(metrics: Metrics) -> Shared {
        Shared {
            metrics,
            probe_now: Notify::new(),
            status: Mutex::new(Status::default()),
        }
    }

    /// A copy of the latest status.
    pub fn status(&self) -> Status {
        self.status.lock().map(|s| s.clone()).unwrap_or_default()
    }

    fn set_status(&self, s: Status) {
        if let Ok(mut g) = self.status.lock() {
            *g = s;
        }
    }
}

/// Runs the agent until `stop` is cancelled.
pub async fn run<S: StateStore>(
    config: &Config,
    store: S,
    stop: CancellationToken,
) -> Result<(), AgentError> {
    let ctx = Ctx::new(config, Arc::new(store))?;
    let shared = Arc::new(Shared::new(ctx.metrics.clone()));
    let listener = tokio::net::TcpListener::bind(ctx.agent.listen)
        .await
        .map_err(|e| AgentError::Failed(format!("cannot listen on {}: {e}", ctx.agent.listen)))?;
    let (ops_tx, mut ops_rx) = mpsc::channel::<OpCall>(8);
    crate::net::http::log_control_state(&config.control);
    let server = tokio::spawn(http::serve(
        listener,
        shared.clone(),
        ops_tx,
        config.control.clone(),
        stop.clone(),
    ));
    let warmer = super::warmth::run(
        ctx.warm.clone(),
        shared.clone(),
        ctx.store.clone(),
        stop.clone(),
    );
    let warmer = tokio::spawn(warmer);
    let heartbeat = tokio::spawn(super::heartbeat::run(
        ctx.pushes.clone(),
        ctx.poolers.clone(),
        ctx.store.clone(),
        ctx.agent.topology_lease,
        stop.clone(),
    ));
    // Under systemd (Type=notify): ready once the HTTP endpoint listens and the loop starts.
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);
    // With etcd, the store may not answer yet: the agent then follows (probes, no action)
    // and records its start once it does; its lease ticker retries and logs meanwhile.
    let mut started = false;
    record_started(&ctx, &mut started).await;
    let cfg = ctx.fsm_config();
    let mut fsm = FsmState::default();
    // Whether this agent acts: with etcd, only the lease holder does (take_charge on winning).
    let mut acting = false;
    let mut prober = ctx.prober();
    let mut tick = tokio::time::interval(ctx.agent.probe_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let t0 = Instant::now();
    let mut last_round = t0;
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tick.tick() => {}
            _ = shared.probe_now.notified() => {
                // An early signal probes now while the primary looks healthy; once it is
                // suspect, the agent's own pace (suspect_probe_interval) confirms it, so
                // notices cannot shorten the failure window.
                let healthy = matches!(fsm.phase, fsm::Phase::Healthy);
                if !healthy || last_round.elapsed() < EARLY_GAP {
                    continue;
                }
                tick.reset();
            }
            Some((op, reply)) = ops_rx.recv() => {
                if !acting || !ctx.store.may_act() {
                    let why = "this agent does not hold the leader lease: ask the leader (see pgsluice status)";
                    let _ = reply.send(super::ops::OpReport::new("operation").refuse(why));
                    continue;
                }
                let report = super::ops::execute(&ctx, &op).await;
                let _ = reply.send(report);
                if let Ok(st) = ctx.store.load().await {
                    fsm = fsm::step(&fsm, &cfg, &st.topology, &Input::Reset).0;
                }
                continue;
            }
        }
        match (acting, ctx.store.may_act()) {
            (false, true) => match take_charge(&ctx, &cfg).await {
                Ok(f) => {
                    (fsm, acting) = (f, true);
                    ctx.metrics.set_acting(true);
                }
                Err(e) => tracing::error!(error = %e, "taking charge failed; retrying next round"),
            },
            (true, false) => {
                acting = false;
                ctx.metrics.set_acting(false);
                let why = "stopped acting: the etcd lease is no longer held";
                ctx.record("leadership_lost", None, why, 0).await;
            }
            _ => {}
        }
        if acting {
            // Cleared only at shutdown: after a lost leadership, `may_renew` decides.
            ctx.pushes.acting.store(true, Ordering::Release);
        }
        last_round = Instant::now();
        let round = Round {
            now_ms: t0.elapsed().as_millis() as u64,
            probes: prober.round().await,
            warmth: ctx.warm.warmth(),
        };
        if !acting {
            follow_round(&ctx, &shared, round).await;
            record_started(&ctx, &mut started).await;
            continue;
        }
        // A failing round (state store unwritable, ...) is logged and retried next tick: the
        // machine's state is kept, so nothing is decided twice.
        match one_round(&ctx, &cfg, fsm.clone(), round, &shared, t0).await {
            Ok(next) => fsm = next,
            Err(e) => tracing::error!(error = %e, "probe round failed"),
        }
        let quick = ctx.agent.suspect_probe_interval;
        if !quick.is_zero() && matches!(fsm.phase, fsm::Phase::Suspect { .. }) {
            // The primary failed a probe: confirm (or clear) it sooner than the next tick.
            tick.reset_after(quick);
        }
    }
    ctx.pushes.acting.store(false, Ordering::Release);
    if let Ok(st) = ctx.store.load().await {
        let epoch = st.topology.epoch;
        ctx.record("agent_stopped", None, "shutdown requested", epoch)
            .await;
    }
    ctx.store.release().await;
    let _ = server.await;
    let _ = warmer.await;
    let _ = heartbeat.await;
    Ok(())
}

/// Records `agent_started` once the state store answers (at once for the local store).
async fn record_started<S: StateStore>(ctx: &Ctx<S>, started: &mut bool) {
    if *started {
        return;
    }
    match ctx.store.load().await {
        Ok(st) => {
            let what = format!("listening on {}", ctx.agent.listen);
            ctx.record("agent_started", None, what, st.topology.epoch)
                .await;
            *started = true;
        }
        Err(e) => tracing::warn!(
            error = %e,
            "the state store does not answer: following (probing, not acting) until it does"
        ),
    }
}

/// Becomes the acting agent (at start, or on winning the lease): finishes or rolls back the
/// action left in flight, pushes the topology again, and starts the state machine afresh.
async fn take_charge<S: StateStore>(ctx: &Ctx<S>, cfg: &FsmConfig) -> Result<FsmState, AgentError> {
    let restored = super::warmth::restore(&ctx.warm, ctx.store.as_ref()).await;
    if let Some(name) = ctx.store.agent_name() {
        let epoch = ctx.store.load().await?.topology.epoch;
        let mut what = format!("{name} holds the lease and acts");
        if let Some(r) = &restored {
            what = format!("{what}; {r}");
        }
        ctx.record("leadership_acquired", None, what, epoch).await;
    } else if let Some(r) = restored {
        tracing::info!("{r}");
    }
    if let Some(done) = super::recover::recover(ctx).await? {
        tracing::info!("{done}");
    }
    let topo = ctx.store.load().await?.topology;
    ctx.republish(&topo).await;
    Ok(fsm::step(&FsmState::default(), cfg, &topo, &Input::Reset).0)
}

/// A round of an agent that does not act (no lease): it keeps probing and reporting.
async fn follow_round<S: StateStore>(ctx: &Ctx<S>, shared: &Shared, round: Round) {
    let topology = match ctx.store.load().await {
        Ok(p) => p.topology,
        Err(_) => shared.status().topology,
    };
    ctx.metrics
        .observe(&round.probes, topology.primary.as_deref());
    shared.set_status(Status {
        topology,
        decision: serde_json::json!({"phase": "follower"}),
        nodes: round.probes,
        updated_unix_ms: super::events::Event::now("", None, "", 0).unix_ms,
        warmth: round.warmth,
    });
}

async fn one_round<S: StateStore>(
    ctx: &Ctx<S>,
    cfg: &FsmConfig,
    fsm: FsmState,
    round: Round,
    shared: &Shared,
    t0: Instant,
) -> Result<FsmState, AgentError> {
    let topo = ctx.store.load().await?.topology;
    ctx.metrics.observe(&round.probes, topo.primary.as_deref());
    ctx.metrics.set_epoch(topo.epoch);
    let (mut fsm, acts) = fsm::step(&fsm, cfg, &topo, &Input::Round(round.clone()));
    for act in acts {
        match act {
            Action::Note(n) => {
                ctx.record(n.kind, n.node.as_deref(), n.details, topo.epoch)
                    .await
            }
            Action::Adopt(t) => {
                ctx.commit(
                    topo.epoch,
                    Persisted {
                        topology: t.clone(),
                        inflight: None,
                    },
                )
                .await?;
            }
            Action::Fence(node) => {
                if let Err(e) = actions::soft_fence(ctx, &node).await {
                    tracing::warn!(node, error = %e, "soft fence failed");
                }
            }
            Action::SetSync { node, value } => {
                if let Err(e) = ctx.set_sync(&node, &value, topo.epoch).await {
                    tracing::warn!(node, error = %e, "setting synchronous_standby_names failed");
                }
            }
            Action::Failover(plan) => {
                let r = actions::failover(ctx, &plan, "failover").await;
                let input = Input::FailoverFinished {
                    now_ms: t0.elapsed().as_millis() as u64,
                    ok: r.is_ok(),
                    detail: r.err().map(|e| e.to_string()).unwrap_or_default(),
                };
                let topo = ctx.store.load().await?.topology;
                fsm = fsm::step(&fsm, cfg, &topo, &input).0;
            }
        }
    }
    ctx.metrics.set_phase(&fsm.phase);
    let topology = ctx.store.load().await?.topology;
    shared.set_status(Status {
        topology,
        decision: serde_json::to_value(&fsm.phase).unwrap_or_default(),
        nodes: round.probes,
        updated_unix_ms: super::events::Event::now("", None, "", 0).unix_ms,
        warmth: round.warmth,
    });
    Ok(fsm)
}
