//! Prometheus exposition of the pooler's counters, rendered on demand from the atomics the
//! hot path already keeps (no per-transaction registry calls).

use crate::session::SessionCtx;
use prometheus::core::Collector;
use prometheus::{Encoder, IntCounterVec, IntGaugeVec, Opts, TextEncoder};
use std::sync::atomic::Ordering;

fn gauge(name: &str, help: &str, labels: &[&str]) -> Option<IntGaugeVec> {
    IntGaugeVec::new(Opts::new(name, help), labels).ok()
}

fn counter(name: &str, help: &str, labels: &[&str]) -> Option<IntCounterVec> {
    IntCounterVec::new(Opts::new(name, help), labels).ok()
}

/// The text exposition format of every pooler metric.
pub fn render(ctx: &SessionCtx) -> String {
    let mut families = Vec::new();
    let t = &ctx.totals;
    if let Some(g) = gauge("pgsluice_clients", "Connected clients.", &[]) {
        g.with_label_values(&[])
            .set(t.clients.load(Ordering::Relaxed) as i64);
        families.extend(g.collect());
    }
    if let Some(c) = counter(
        "pgsluice_transactions_total",
        "Transactions forwarded.",
        &[],
    ) {
        c.with_label_values(&[])
            .inc_by(t.transactions.load(Ordering::Relaxed));
        families.extend(c.collect());
    }
    if let Some(c) = counter(
        "pgsluice_queries_total",
        "Queries and Syncs forwarded.",
        &[],
    ) {
        c.with_label_values(&[])
            .inc_by(t.queries.load(Ordering::Relaxed));
        families.extend(c.collect());
    }
    if let Some(c) = counter(
        "pgsluice_received_bytes_total",
        "Bytes received from clients.",
        &[],
    ) {
        c.with_label_values(&[])
            .inc_by(t.bytes_in.load(Ordering::Relaxed));
        families.extend(c.collect());
    }
    if let Some(c) = counter("pgsluice_sent_bytes_total", "Bytes sent to clients.", &[]) {
        c.with_label_values(&[])
            .inc_by(t.bytes_out.load(Ordering::Relaxed));
        families.extend(c.collect());
    }
    if let (Some(idle), Some(active), Some(waiting)) = (
        gauge(
            "pgsluice_pool_idle_servers",
            "Idle server connections per pool.",
            &["database", "user"],
        ),
        gauge(
            "pgsluice_pool_active_servers",
            "Checked-out server connections per pool.",
            &["database", "user"],
        ),
        gauge(
            "pgsluice_pool_waiting_clients",
            "Clients waiting for a server connection per pool.",
            &["database", "user"],
        ),
    ) {
        for p in ctx.pools.all() {
            let labels = [&*p.database, &*p.user];
            let (i, _) = p.counts();
            idle.with_label_values(&labels).set(i as i64);
            active.with_label_values(&labels).set(p.active() as i64);
            waiting
                .with_label_values(&labels)
                .set(p.stats.waiting.load(Ordering::Relaxed) as i64);
        }
        families.extend(idle.collect());
        families.extend(active.collect());
        families.extend(waiting.collect());
    }
    if let Some(g) = gauge(
        "pgsluice_topology_epoch",
        "Epoch of the topology in force.",
        &[],
    ) {
        g.with_label_values(&[]).set(ctx.topology().0.epoch as i64);
        families.extend(g.collect());
    }
    let mut out = Vec::new();
    let _ = TextEncoder::new().encode(&families, &mut out);
    String::from_utf8(out).unwrap_or_default()
}
