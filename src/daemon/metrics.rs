//! The pooler's Prometheus metrics, in the agent's idiom (the `prometheus` crate, a registry
//! owned by the daemon, no globals): one custom collector that reads, at scrape time, the
//! atomics and lock-free histograms the hot path already keeps; nothing is done per
//! transaction for metrics.
//!
//! Names follow Prometheus conventions: `pgsluice_` prefix, base units (seconds, bytes),
//! `_total` for counters. [`FAMILIES`] declares every family (name, type, help, labels); the
//! values are read in `metrics/read.rs`. Every metric is listed with its meaning in
//! `docs/operations.md`; `monitoring/` (dashboard, alert rules) uses these names.

mod read;

use crate::backend::Backend;
use crate::pool::hist::{Snapshot, BOUNDS_US};
use prometheus::core::{Collector, Desc};
use prometheus::proto::{self, MetricFamily, MetricType};
use prometheus::{Encoder, Registry, TextEncoder};
use std::collections::HashMap;
use std::sync::Arc;

/// What kind of values a family holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Goes up and down.
    Gauge,
    /// Only goes up (until a restart).
    Counter,
    /// Cumulative buckets in seconds, with a sum and a count.
    Histogram,
}

/// One metric family: its name, kind, help text and label names (in the order they are shown).
#[derive(Debug)]
pub struct Family {
    /// The metric name.
    pub name: &'static str,
    /// Its kind.
    pub kind: Kind,
    /// The `# HELP` text.
    pub help: &'static str,
    /// Label names (a histogram's `le` is added by the encoder).
    pub labels: &'static [&'static str],
}

const fn family(
    name: &'static str,
    kind: Kind,
    help: &'static str,
    labels: &'static [&'static str],
) -> Family {
    Family {
        name,
        kind,
        help,
        labels,
    }
}

/// A pool's labels: database, user, the node its connections go to, and whether it follows
/// the primary or serves reads on a standby (both kinds exist per database and user).
const POOL: &[&str] = &["database", "user", "node", "role"];
const NODE: &[&str] = &["node"];
use Kind::{Counter, Gauge, Histogram};

/// Every family the pooler exports, in the order [`FAMILIES`] lists them.
#[rustfmt::skip]
pub mod f {
    use super::*;
    pub const CLIENTS: Family = family("pgsluice_clients", Gauge, "Client connections by state (login, idle, waiting, active); console clients excluded.", &["state"]);
    pub const CONSOLE_CLIENTS: Family = family("pgsluice_console_clients", Gauge, "Clients connected to the admin console.", &[]);
    pub const POOL_WAITING: Family = family("pgsluice_pool_waiting_clients", Gauge, "Clients waiting for a server connection, per pool.", POOL);
    pub const POOL_PINNED: Family = family("pgsluice_pool_pinned_clients", Gauge, "Transaction-mode clients kept on one server connection by session-scoped state (LISTEN, temporary objects, advisory locks, WITH HOLD cursors, PREPARE, LOAD).", POOL);
    pub const POOL_MAX_WAIT: Family = family("pgsluice_pool_max_wait_seconds", Gauge, "How long the longest-waiting client of the pool has waited so far.", POOL);
    pub const SERVERS: Family = family("pgsluice_servers", Gauge, "Server connections per pool by state: active (checked out), idle, login (being opened).", &["database", "user", "node", "role", "state"]);
    pub const POOL_SIZE: Family = family("pgsluice_pool_size", Gauge, "Configured pool_size of the pool.", POOL);
    pub const POOL_RESERVE: Family = family("pgsluice_pool_reserve_size", Gauge, "Configured reserve_pool_size of the pool.", POOL);
    pub const CONNECTS: Family = family("pgsluice_server_connects_total", Counter, "Server connections opened (attempts).", POOL);
    pub const CLOSED: Family = family("pgsluice_server_closed_total", Counter, "Server connections closed (idle timeout, lifetime, errors, RECONNECT).", POOL);
    pub const XACTS: Family = family("pgsluice_transactions_total", Counter, "Transactions forwarded (one per server check-out in transaction mode).", POOL);
    pub const QUERIES: Family = family("pgsluice_queries_total", Counter, "Queries forwarded (simple Query messages and extended-protocol Syncs).", POOL);
    pub const RECEIVED: Family = family("pgsluice_received_bytes_total", Counter, "Bytes received from clients.", POOL);
    pub const SENT: Family = family("pgsluice_sent_bytes_total", Counter, "Bytes sent to clients.", POOL);
    pub const CHECKOUTS: Family = family("pgsluice_server_checkouts_total", Counter, "Server connections assigned to clients.", POOL);
    pub const XACT_TIME: Family = family("pgsluice_transaction_duration_seconds", Histogram, "Time from server check-out to release, per transaction.", POOL);
    pub const WAIT_TIME: Family = family("pgsluice_wait_duration_seconds", Histogram, "Time clients waited for a server connection (waits only).", POOL);
    pub const LOGINS: Family = family("pgsluice_logins_total", Counter, "Successful client logins.", &[]);
    pub const ERRORS: Family = family("pgsluice_errors_total", Counter, "Errors by kind.", &["kind"]);
    pub const PAUSED: Family = family("pgsluice_paused", Gauge, "1 while the whole pooler is paused (PAUSE, switchover).", &[]);
    pub const DB_PAUSED: Family = family("pgsluice_database_paused", Gauge, "1 while the database is paused (PAUSE db, KILL db).", &["database"]);
    pub const DB_DISABLED: Family = family("pgsluice_database_disabled", Gauge, "1 while new logins to the database are refused (DISABLE db).", &["database"]);
    pub const SHUTTING_DOWN: Family = family("pgsluice_shutting_down", Gauge, "1 once a graceful shutdown or hand-over began.", &[]);
    pub const EPOCH: Family = family("pgsluice_topology_epoch", Gauge, "Epoch of the topology in force.", &[]);
    pub const NODE_PRIMARY: Family = family("pgsluice_node_primary", Gauge, "1 for the node that takes writes now, 0 for the others.", NODE);
    pub const NODE_FENCED: Family = family("pgsluice_node_fenced", Gauge, "1 for a node the topology fences (never used for writes).", NODE);
    pub const NODE_ROLE: Family = family("pgsluice_node_role", Gauge, "1 for the role the node answered its last probe with (primary, standby, down).", &["node", "role"]);
    pub const NODE_LAG_BYTES: Family = family("pgsluice_node_lag_bytes", Gauge, "WAL bytes a standby has not replayed yet (standbys with a known primary).", NODE);
    pub const NODE_LAG_SECONDS: Family = family("pgsluice_node_lag_seconds", Gauge, "How long ago the primary wrote what a standby has not replayed yet.", NODE);
    pub const NODE_BANNED: Family = family("pgsluice_node_banned", Gauge, "1 while the node is left out after a failed probe or connection (ban_time).", NODE);
}

/// Every family, declared to the registry once (values are read at each scrape).
#[rustfmt::skip]
pub const FAMILIES: &[&Family] = &[
    &f::CLIENTS, &f::CONSOLE_CLIENTS, &f::POOL_WAITING, &f::POOL_PINNED, &f::POOL_MAX_WAIT,
    &f::SERVERS, &f::POOL_SIZE, &f::POOL_RESERVE, &f::CONNECTS, &f::CLOSED, &f::XACTS,
    &f::QUERIES, &f::RECEIVED, &f::SENT, &f::CHECKOUTS, &f::XACT_TIME, &f::WAIT_TIME,
    &f::LOGINS, &f::ERRORS, &f::PAUSED, &f::DB_PAUSED, &f::DB_DISABLED, &f::SHUTTING_DOWN,
    &f::EPOCH, &f::NODE_PRIMARY, &f::NODE_FENCED, &f::NODE_ROLE, &f::NODE_LAG_BYTES,
    &f::NODE_LAG_SECONDS, &f::NODE_BANNED,
];

/// The families of one scrape, built family by family.
#[derive(Default)]
pub(crate) struct Families {
    out: Vec<MetricFamily>,
    /// The declared labels of the family being built.
    labels: &'static [&'static str],
}

fn label_pairs(pairs: &[(&str, &str)]) -> Vec<proto::LabelPair> {
    pairs
        .iter()
        .map(|(k, v)| {
            let mut p = proto::LabelPair::default();
            p.set_name(k.to_string());
            p.set_value(v.to_string());
            p
        })
        .collect()
}

impl Families {
    /// Starts family `f`; the samples that follow belong to it.
    pub(crate) fn family(&mut self, f: &Family) {
        let mut mf = MetricFamily::default();
        mf.set_name(f.name.to_string());
        mf.set_help(f.help.to_string());
        mf.set_field_type(match f.kind {
            Kind::Gauge => MetricType::GAUGE,
            Kind::Counter => MetricType::COUNTER,
            Kind::Histogram => MetricType::HISTOGRAM,
        });
        self.out.push(mf);
        self.labels = f.labels;
    }

    fn push(&mut self, l: &[(&str, &str)], m: impl FnOnce(&mut proto::Metric)) {
        debug_assert!(
            l.iter().map(|(k, _)| *k).eq(self.labels.iter().copied()),
            "labels {l:?} are not the declared {:?}",
            self.labels
        );
        let Some(mf) = self.out.last_mut() else {
            return;
        };
        let mut metric = proto::Metric::default();
        metric.set_label(label_pairs(l));
        m(&mut metric);
        mf.mut_metric().push(metric);
    }

    /// One value of the current (gauge or counter) family.
    pub(crate) fn sample(&mut self, l: &[(&str, &str)], v: f64) {
        let counter = self
            .out
            .last()
            .is_some_and(|mf| mf.get_field_type() == MetricType::COUNTER);
        self.push(l, |m| {
            if counter {
                let mut c = proto::Counter::default();
                c.set_value(v);
                m.set_counter(c);
            } else {
                let mut g = proto::Gauge::default();
                g.set_value(v);
                m.set_gauge(g);
            }
        });
    }

    /// One histogram of the current family, from microsecond buckets to seconds.
    pub(crate) fn histogram(&mut self, l: &[(&str, &str)], h: &Snapshot) {
        self.push(l, |m| {
            let mut cumulative = 0;
            let buckets = BOUNDS_US
                .iter()
                .enumerate()
                .map(|(i, bound)| {
                    cumulative += h.buckets.get(i).copied().unwrap_or(0);
                    let mut b = proto::Bucket::default();
                    b.set_upper_bound(*bound as f64 / 1e6);
                    b.set_cumulative_count(cumulative);
                    b
                })
                .collect();
            let mut hist = proto::Histogram::default();
            hist.set_bucket(buckets);
            hist.set_sample_count(h.count);
            hist.set_sample_sum(h.sum_us as f64 / 1e6);
            m.set_histogram(hist);
        });
    }
}

/// The collector: reads the backend at each scrape.
struct PoolerCollector {
    ctx: Arc<Backend>,
    descs: Vec<Desc>,
}

impl Collector for PoolerCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let mut o = Families::default();
        read::all(&mut o, &self.ctx);
        o.out
    }
}

/// The pooler's registry, owned by the daemon and read by `/metrics`.
pub struct Metrics {
    registry: Registry,
}

impl Metrics {
    /// Registers the collector over `ctx`.
    pub fn new(ctx: Arc<Backend>) -> Result<Metrics, prometheus::Error> {
        let descs = FAMILIES
            .iter()
            .map(|f| {
                let labels = f.labels.iter().map(|l| l.to_string()).collect();
                Desc::new(f.name.into(), f.help.into(), labels, HashMap::new())
            })
            .collect::<Result<Vec<_>, _>>()?;
        let registry = Registry::new();
        registry.register(Box::new(PoolerCollector { ctx, descs }))?;
        Ok(Metrics { registry })
    }

    /// The text exposition format (families sorted by name, as the agent's).
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
mod tests;
