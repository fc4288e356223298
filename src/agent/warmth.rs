//! Warm failover: every `hot_set_interval` capture the primary's hot set, measure each
//! candidate standby's warmth (the share of that set resident in its shared_buffers), and load
//! what is missing at `prewarm_rate`. Warmth feeds the election (third key), the metrics and
//! `/status`; a switchover waits for it; a promotion ends with an unpaced catch-up pass.
//!
//! ```text
//! primary pg_buffercache ──capture──> HotSet ──┬─> resident(standby) ──> warmth (metric, election)
//!                                              └─> missing ──pg_prewarm, paced──> standby
//! ```

use super::ctx::Ctx;
use super::hotset::{self, HotSet, HotSetDoc};
use super::metrics::Metrics;
use super::prewarm::{self, DbConns, WarmReport};
use super::run::Shared;
use super::sql::{SqlError, Target};
use super::state::{NodeProbe, Role};
use super::store::StateStore;
use crate::config::{ClusterConfig, PrewarmMode, WarmConfig};
use crate::topology::Topology;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// The state-store document holding the latest hot set.
pub const HOT_SET_DOC: &str = "hotset";
/// Timeout of a capture or residency scan.
const SCAN_TIMEOUT: Duration = Duration::from_secs(30);
/// The longest a failover waits for its catch-up pass before leaving it in the background.
pub const CATCH_UP_WAIT: Duration = Duration::from_secs(10);

/// The warming state shared by the loop, the failover and the switchover.
#[derive(Debug)]
pub struct Warmer {
    cluster: ClusterConfig,
    cfg: WarmConfig,
    metrics: Metrics,
    conns: DbConns,
    warmth: Mutex<BTreeMap<String, f64>>,
    hot: Mutex<Option<Arc<HotSet>>>,
}

impl Warmer {
    /// A warmer for `cluster` with the `[agent]` warm settings.
    pub fn new(cluster: ClusterConfig, cfg: WarmConfig, metrics: Metrics) -> Warmer {
        Warmer {
            cluster,
            cfg,
            metrics,
            conns: DbConns::default(),
            warmth: Mutex::default(),
            hot: Mutex::default(),
        }
    }

    /// The last measured warmth of each candidate standby (empty when warm failover is off).
    pub fn warmth(&self) -> BTreeMap<String, f64> {
        self.warmth.lock().map(|w| w.clone()).unwrap_or_default()
    }

    /// The latest captured hot set.
    pub fn hot_set(&self) -> Option<Arc<HotSet>> {
        self.hot.lock().ok().and_then(|h| h.clone())
    }

    /// Starts from a hot set captured elsewhere (the previous leader's, read from the state
    /// store) unless a newer one is held. Returns whether it was taken.
    pub fn adopt(&self, hot: HotSet) -> bool {
        let Ok(mut h) = self.hot.lock() else {
            return false;
        };
        if h.as_ref()
            .is_some_and(|cur| cur.captured_unix_ms >= hot.captured_unix_ms)
        {
            return false;
        }
        *h = Some(Arc::new(hot));
        true
    }

    /// Forgets the warmth measured so far (this agent stopped warming: it no longer leads).
    fn forget_warmth(&self) {
        if let Ok(mut m) = self.warmth.lock() {
            m.clear();
        }
    }

    fn set_warmth(&self, node: &str, w: f64) {
        if let Ok(mut m) = self.warmth.lock() {
            m.insert(node.to_string(), w);
        }
        self.metrics.set_warmth(node, w);
    }

    fn target(&self, node: &str) -> Option<Target> {
        self.cluster
            .node(node)
            .map(|n| Target::of(&self.cluster, n))
    }

    /// Standbys that may be promoted: in the topology, unfenced, priority > 0, answering in
    /// recovery.
    fn candidates(&self, topo: &Topology, probes: &[NodeProbe]) -> Vec<Target> {
        self.cluster
            .nodes
            .iter()
            .filter(|n| n.priority > 0 && topo.standbys.contains(&n.name))
            .filter(|n| !topo.is_fenced(&n.name) && topo.primary.as_ref() != Some(&n.name))
            .filter(|n| {
                probes
                    .iter()
                    .any(|p| p.name == n.name && p.role() == Role::Standby)
            })
            .map(|n| Target::of(&self.cluster, n))
            .collect()
    }

    async fn probe_db(&self, t: &Target) -> Result<Arc<tokio_postgres::Client>, SqlError> {
        self.conns.get(t, &t.dbname).await
    }

    /// The hot-set budget in blocks: `hot_set_budget` of the smallest candidate's shared_buffers.
    async fn budget(&self, candidates: &[Target]) -> u64 {
        let mut min = None::<u64>;
        for t in candidates {
            if let Ok(c) = self.probe_db(t).await {
                if let Ok(sb) = hotset::shared_buffers(&c, t, SCAN_TIMEOUT).await {
                    min = Some(min.map_or(sb, |m| m.min(sb)));
                }
            }
        }
        (min.unwrap_or(0) as f64 * self.cfg.budget) as u64
    }

    /// Captures the hot set on `primary` within `budget` blocks and keeps it.
    async fn capture(&self, primary: &Target, budget: u64) -> Result<Arc<HotSet>, SqlError> {
        let c = self.probe_db(primary).await?;
        let k = self.cfg.min_usagecount;
        let hot = Arc::new(hotset::capture(&c, primary, k, budget, SCAN_TIMEOUT).await?);
        self.metrics
            .hot_set_captured(hot.blocks.len(), hot.took.as_secs_f64());
        if let Ok(mut h) = self.hot.lock() {
            *h = Some(hot.clone());
        }
        Ok(hot)
    }

    /// Measures `t`'s warmth against `hot`, then loads what is missing.
    async fn measure_and_warm(
        &self,
        t: &Target,
        hot: &HotSet,
        mode: PrewarmMode,
        rate: Option<u64>,
    ) -> Result<(f64, WarmReport), SqlError> {
        let c = self.probe_db(t).await?;
        let resident = hotset::resident(&c, t, hot, SCAN_TIMEOUT).await?;
        let mut w = hotset::warmth(&hot.blocks, &resident);
        self.set_warmth(&t.name, w);
        let missing = hotset::missing(&hot.blocks, &resident);
        if missing.is_empty() {
            return Ok((w, WarmReport::default()));
        }
        let rep = prewarm::warm(&self.conns, t, hot, &missing, mode, rate).await?;
        self.metrics.prewarmed(&t.name, &rep);
        if rep.loaded > 0 && mode == PrewarmMode::Buffer {
            let resident = hotset::resident(&c, t, hot, SCAN_TIMEOUT).await?;
            w = hotset::warmth(&hot.blocks, &resident);
            self.set_warmth(&t.name, w);
        }
        Ok((w, rep))
    }

    /// One round: capture on the topology's primary, measure and warm every candidate at once.
    pub async fn round(
        self: &Arc<Self>,
        topo: &Topology,
        probes: &[NodeProbe],
    ) -> Result<(), SqlError> {
        let primary = topo.primary.as_deref().and_then(|p| self.target(p));
        let cands = self.candidates(topo, probes);
        if let Ok(mut m) = self.warmth.lock() {
            m.retain(|n, _| cands.iter().any(|c| &c.name == n));
        }
        let Some(primary) = primary.filter(|_| !cands.is_empty()) else {
            return Ok(());
        };
        let hot = self.capture(&primary, self.budget(&cands).await).await?;
        let (mode, rate) = (self.cfg.mode, Some(self.cfg.rate_bytes));
        let mut jobs = tokio::task::JoinSet::new();
        for t in cands {
            let (me, hot) = (self.clone(), hot.clone());
            jobs.spawn(async move {
                let r = me.measure_and_warm(&t, &hot, mode, rate).await;
                (t.name, r)
            });
        }
        while let Some(Ok((node, r))) = jobs.join_next().await {
            match r {
                Ok((w, rep)) if rep.stopped.is_some() || rep.failed > 0 => {
                    tracing::info!(node, warmth = w, ?rep, "warming pass cut short")
                }
                Ok((w, rep)) => tracing::debug!(node, warmth = w, ?rep, "warmed"),
                Err(e) => {
                    self.conns.evict(&node);
                    tracing::debug!(node, error = %e, "warming failed")
                }
            }
        }
        Ok(())
    }

    /// Starts the catch-up pass on a new primary: the latest hot set's missing blocks, loaded
    /// into shared_buffers without pacing. `None` when warm failover is off or nothing was
    /// captured yet.
    pub fn start_catch_up(self: &Arc<Self>, node: &str) -> Option<JoinHandle<CatchUp>> {
        let hot = self.hot_set().filter(|_| self.cfg.enabled())?;
        let t = self.target(node)?;
        let me = self.clone();
        Some(tokio::spawn(async move {
            let r = me
                .measure_and_warm(&t, &hot, PrewarmMode::Buffer, None)
                .await;
            CatchUp { hot, result: r }
        }))
    }

    /// Before a switchover: warm `target` until it holds `switchover_warmth` of `primary`'s
    /// hot set, for at most `switchover_warmth_timeout`. Returns a line for the report, `None`
    /// when there is nothing to wait for. Never fails: warming only makes a switchover better.
    pub async fn wait_warm(&self, primary: &str, target: &str) -> Option<String> {
        let want = self.cfg.switchover_warmth;
        if !self.cfg.enabled() || want <= 0.0 {
            return None;
        }
        let (p, t) = (self.target(primary)?, self.target(target)?);
        let started = Instant::now();
        let deadline = started + self.cfg.switchover_timeout;
        loop {
            let pass = async {
                let hot = self
                    .capture(&p, self.budget(std::slice::from_ref(&t)).await)
                    .await?;
                let rate = Some(self.cfg.rate_bytes);
                let (w, _) = self
                    .measure_and_warm(&t, &hot, PrewarmMode::Buffer, rate)
                    .await?;
                Ok::<f64, SqlError>(w)
            };
            let ms = || started.elapsed().as_millis();
            match pass.await {
                Ok(w) if w >= want => {
                    return Some(format!(
                        "{target} holds {:.0}% of {primary}'s hot set (wanted {:.0}%, {} ms)",
                        w * 100.0,
                        want * 100.0,
                        ms()
                    ))
                }
                Ok(w) if Instant::now() >= deadline => {
                    return Some(format!(
                        "warning: {target} holds only {:.0}% of {primary}'s hot set after {} ms \
                         (wanted {:.0}%): switching over anyway",
                        w * 100.0,
                        ms(),
                        want * 100.0
                    ))
                }
                Ok(_) => {}
                Err(e) => return Some(format!("warning: cannot warm {target}: {e}")),
            }
        }
    }
}

/// What a catch-up pass did.
#[derive(Debug)]
pub struct CatchUp {
    /// The hot set it loaded.
    pub hot: Arc<HotSet>,
    /// Warmth before the pass and what the pass did.
    pub result: Result<(f64, WarmReport), SqlError>,
}

/// Runs the warming loop until `stop`: one round every `hot_set_interval`, with the topology
/// and probes of the agent's last round, only while `store.may_act()` (with etcd, only the
/// lease holder captures and warms). Each new hot set is saved in the store (`hotset`), so
/// that a new leader, or a restarted agent, starts from it.
pub async fn run<S: StateStore>(
    w: Arc<Warmer>,
    shared: Arc<Shared>,
    store: Arc<S>,
    stop: CancellationToken,
) {
    if !w.cfg.enabled() {
        return;
    }
    let mut tick = tokio::time::interval(w.cfg.hot_set_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut saved = 0u64;
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tick.tick() => {}
        }
        if !store.may_act() {
            w.forget_warmth();
            continue;
        }
        let st = shared.status();
        let round = w.round(&st.topology, &st.nodes);
        tokio::select! {
            _ = stop.cancelled() => break,
            r = round => if let Err(e) = r {
                tracing::debug!(error = %e, "hot set capture failed");
            }
        }
        let Some(hot) = w.hot_set().filter(|h| h.captured_unix_ms != saved) else {
            continue;
        };
        match store.put_doc(HOT_SET_DOC, &HotSetDoc::encode(&hot)).await {
            Ok(()) => saved = hot.captured_unix_ms,
            Err(e) => tracing::debug!(error = %e, "could not save the hot set"),
        }
    }
}

/// Restores the hot set saved in the store (`hotset`) when it is newer than the one held:
/// a new leader starts warming, and can catch up a promoted node, from the last capture.
/// Returns a line for the `leadership_acquired` event.
pub async fn restore<S: StateStore>(w: &Warmer, store: &S) -> Option<String> {
    if !w.cfg.enabled() {
        return None;
    }
    let doc = match store.get_doc(HOT_SET_DOC).await {
        Ok(d) => d?,
        Err(e) => return Some(format!("hot set not restored: {e}")),
    };
    let hot = HotSetDoc::decode(&doc)?;
    let (n, src, at) = (hot.blocks.len(), hot.source.clone(), hot.captured_unix_ms);
    let age = super::events::Event::now("", None, "", 0)
        .unix_ms
        .saturating_sub(at);
    w.adopt(hot)
        .then(|| format!("hot set restored: {n} blocks captured on {src} {age} ms before"))
}

/// Waits (at most [`CATCH_UP_WAIT`]) for a catch-up pass and records it as `warm_catch_up`.
pub async fn record_catch_up<S: StateStore>(
    ctx: &Ctx<S>,
    node: &str,
    handle: Option<JoinHandle<CatchUp>>,
) {
    let Some(h) = handle else { return };
    let epoch = ctx.store.load().await.map_or(0, |s| s.topology.epoch);
    let details = match tokio::time::timeout(CATCH_UP_WAIT, h).await {
        Err(_) => format!("still loading after {CATCH_UP_WAIT:?}; left running"),
        Ok(Err(e)) => format!("task failed: {e}"),
        Ok(Ok(CatchUp { hot, result })) => {
            let age = super::events::Event::now("", None, "", 0)
                .unix_ms
                .saturating_sub(hot.captured_unix_ms);
            match result {
                Ok((w, rep)) => format!(
                    "warmth {:.0}% before; loaded {} of {} hot blocks in {} ms ({} stale); \
                     hot set captured on {} {age} ms before",
                    w * 100.0,
                    rep.loaded,
                    hot.blocks.len(),
                    rep.took.as_millis(),
                    rep.stale,
                    hot.source
                ),
                Err(e) => format!("failed: {e}"),
            }
        }
    };
    ctx.record("warm_catch_up", Some(node), details, epoch)
        .await;
}
