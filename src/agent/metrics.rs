//! The agent's Prometheus metrics (its own registry, no globals), updated after each probe
//! round and each action, rendered for `/metrics`.

use super::fsm::Phase;
use super::state::{NodeProbe, Role};
use prometheus::{
    Encoder, Gauge, GaugeVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

/// Every metric the agent exports.
#[derive(Debug, Clone)]
pub struct Metrics {
    registry: Registry,
    node_up: IntGaugeVec,
    node_role: IntGaugeVec,
    lag_bytes: IntGaugeVec,
    lag_seconds: GaugeVec,
    timeline: IntGaugeVec,
    epoch: IntGauge,
    failovers: IntCounter,
    switchovers: IntCounter,
    last_failover_seconds: Gauge,
    decision_state: IntGauge,
    acting: IntGauge,
    warm: WarmMetrics,
}

/// Warm failover: warmth per standby, hot-set size and capture cost, blocks loaded.
#[derive(Debug, Clone)]
struct WarmMetrics {
    warmth: GaugeVec,
    hot_set_blocks: IntGauge,
    capture_seconds: Gauge,
    loaded: IntCounterVec,
    stale: IntCounterVec,
    conflicts: IntCounterVec,
}

impl WarmMetrics {
    fn new(r: &Registry) -> Result<WarmMetrics, prometheus::Error> {
        let counter = |name: &str, help: &str| IntCounterVec::new(Opts::new(name, help), &["node"]);
        let m = WarmMetrics {
            warmth: GaugeVec::new(
                Opts::new(
                    "pgsluice_agent_node_warmth",
                    "Share (0..1) of the primary's hot set resident in the standby's shared_buffers",
                ),
                &["node"],
            )?,
            hot_set_blocks: IntGauge::new(
                "pgsluice_agent_hot_set_blocks",
                "Blocks in the last captured hot set",
            )?,
            capture_seconds: Gauge::new(
                "pgsluice_agent_hot_set_capture_seconds",
                "Duration of the last hot-set capture (a pg_buffercache scan of the primary)",
            )?,
            loaded: counter(
                "pgsluice_agent_prewarm_blocks_total",
                "Blocks loaded by pg_prewarm on the node",
            )?,
            stale: counter(
                "pgsluice_agent_prewarm_stale_blocks_total",
                "Hot blocks skipped: relation rewritten, truncated or dropped",
            )?,
            conflicts: counter(
                "pgsluice_agent_prewarm_conflicts_total",
                "Warming passes cut short by a recovery conflict or lock timeout",
            )?,
        };
        r.register(Box::new(m.warmth.clone()))?;
        r.register(Box::new(m.hot_set_blocks.clone()))?;
        r.register(Box::new(m.capture_seconds.clone()))?;
        r.register(Box::new(m.loaded.clone()))?;
        r.register(Box::new(m.stale.clone()))?;
        r.register(Box::new(m.conflicts.clone()))?;
        Ok(m)
    }
}

fn node_gauge(name: &str, help: &str) -> Result<IntGaugeVec, prometheus::Error> {
    IntGaugeVec::new(Opts::new(name, help), &["node"])
}

impl Metrics {
    /// Creates and registers every metric.
    pub fn new() -> Result<Metrics, prometheus::Error> {
        let registry = Registry::new();
        let m = Metrics {
            warm: WarmMetrics::new(&registry)?,
            registry,
            node_up: node_gauge(
                "pgsluice_agent_node_up",
                "1 if the last probe of the node succeeded",
            )?,
            node_role: node_gauge(
                "pgsluice_agent_node_role",
                "Observed role: 0 unknown, 1 primary, 2 standby",
            )?,
            lag_bytes: node_gauge(
                "pgsluice_agent_node_lag_bytes",
                "Bytes of WAL the standby has not replayed yet",
            )?,
            lag_seconds: GaugeVec::new(
                Opts::new(
                    "pgsluice_agent_node_lag_seconds",
                    "Replay lag of the standby in seconds",
                ),
                &["node"],
            )?,
            timeline: node_gauge("pgsluice_agent_node_timeline", "Timeline the node is on")?,
            epoch: IntGauge::new("pgsluice_agent_epoch", "Epoch of the published topology")?,
            failovers: IntCounter::new("pgsluice_agent_failovers_total", "Failovers completed")?,
            switchovers: IntCounter::new(
                "pgsluice_agent_switchovers_total",
                "Switchovers completed",
            )?,
            last_failover_seconds: Gauge::new(
                "pgsluice_agent_last_failover_duration_seconds",
                "Duration of the last failover, from decision to published topology",
            )?,
            decision_state: IntGauge::new(
                "pgsluice_agent_decision_state",
                "0 healthy, 1 suspect, 2 vetoed, 3 blocked, 4 failing over, 5 discovering",
            )?,
            acting: IntGauge::new(
                "pgsluice_agent_acting",
                "1 while this agent acts (the only agent, or the holder of the etcd leader lease)",
            )?,
        };
        let r = &m.registry;
        r.register(Box::new(m.acting.clone()))?;
        r.register(Box::new(m.node_up.clone()))?;
        r.register(Box::new(m.node_role.clone()))?;
        r.register(Box::new(m.lag_bytes.clone()))?;
        r.register(Box::new(m.lag_seconds.clone()))?;
        r.register(Box::new(m.timeline.clone()))?;
        r.register(Box::new(m.epoch.clone()))?;
        r.register(Box::new(m.failovers.clone()))?;
        r.register(Box::new(m.switchovers.clone()))?;
        r.register(Box::new(m.last_failover_seconds.clone()))?;
        r.register(Box::new(m.decision_state.clone()))?;
        Ok(m)
    }

    /// Updates the per-node gauges from a probe round.
    pub fn observe(&self, probes: &[NodeProbe], primary: Option<&str>) {
        let head = probes.iter().find(|p| Some(p.name.as_str()) == primary);
        for p in probes {
            let n = [p.name.as_str()];
            self.node_up
                .with_label_values(&n)
                .set(i64::from(p.reachable));
            self.node_role.with_label_values(&n).set(p.role().code());
            if let Some(t) = p.timeline {
                self.timeline.with_label_values(&n).set(i64::from(t));
            }
            if let (Some(h), Role::Standby) = (head, p.role()) {
                let (bytes, secs) = super::probe::lag(h, p);
                if let Some(b) = bytes {
                    self.lag_bytes
                        .with_label_values(&n)
                        .set(b.min(i64::MAX as u64) as i64);
                }
                if let Some(s) = secs {
                    self.lag_seconds.with_label_values(&n).set(s);
                }
            }
        }
    }

    /// Sets the published epoch.
    pub fn set_epoch(&self, epoch: u64) {
        self.epoch.set(epoch.min(i64::MAX as u64) as i64);
    }

    /// Whether this agent acts (holds the lease) or only follows.
    pub fn set_acting(&self, acting: bool) {
        self.acting.set(i64::from(acting));
    }

    /// Sets the decision state.
    pub fn set_phase(&self, phase: &Phase) {
        self.decision_state.set(phase.code());
    }

    /// Counts a completed failover and its duration.
    pub fn failover_done(&self, seconds: f64) {
        self.failovers.inc();
        self.last_failover_seconds.set(seconds);
    }

    /// Sets a standby's warmth.
    pub fn set_warmth(&self, node: &str, warmth: f64) {
        self.warm.warmth.with_label_values(&[node]).set(warmth);
    }

    /// Records a hot-set capture.
    pub fn hot_set_captured(&self, blocks: usize, seconds: f64) {
        self.warm.hot_set_blocks.set(blocks as i64);
        self.warm.capture_seconds.set(seconds);
    }

    /// Counts what a warming pass did on `node`.
    pub fn prewarmed(&self, node: &str, r: &super::prewarm::WarmReport) {
        let n = [node];
        self.warm.loaded.with_label_values(&n).inc_by(r.loaded);
        self.warm.stale.with_label_values(&n).inc_by(r.stale);
        self.warm
            .conflicts
            .with_label_values(&n)
            .inc_by(r.conflicts);
    }

    /// Counts a completed switchover.
    pub fn switchover_done(&self) {
        self.switchovers.inc();
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        if TextEncoder::new()
            .encode(&self.registry.gather(), &mut buf)
            .is_err()
        {
            return String::new();
        }
        String::from_utf8(buf).unwrap_or_default()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn renders_node_and_decision_metrics() {
        let m = Metrics::new().unwrap();
        let mut a = NodeProbe::unreachable("a", "");
        a.reachable = true;
        a.in_recovery = Some(false);
        a.timeline = Some(2);
        m.observe(&[a, NodeProbe::unreachable("b", "down")], Some("a"));
        m.set_epoch(4);
        m.set_phase(&Phase::Healthy);
        m.failover_done(1.5);
        m.set_warmth("b", 0.25);
        m.hot_set_captured(100, 0.5);
        let text = m.render();
        assert!(text.contains("pgsluice_agent_node_warmth{node=\"b\"} 0.25"));
        assert!(text.contains("pgsluice_agent_hot_set_blocks 100"));
        assert!(text.contains("pgsluice_agent_node_up{node=\"a\"} 1"));
        assert!(text.contains("pgsluice_agent_node_up{node=\"b\"} 0"));
        assert!(text.contains("pgsluice_agent_node_role{node=\"a\"} 1"));
        assert!(text.contains("pgsluice_agent_epoch 4"));
        assert!(text.contains("pgsluice_agent_acting 0"));
        m.set_acting(true);
        assert!(m.render().contains("pgsluice_agent_acting 1"));
        assert!(text.contains("pgsluice_agent_failovers_total 1"));
        assert!(text.contains("pgsluice_agent_last_failover_duration_seconds 1.5"));
    }
}
