//! Prometheus exposition of the pooler, rendered on demand from the atomics and lock-free
//! histograms the hot path already keeps (no registry call per transaction).
//!
//! Names follow Prometheus conventions: `pgsluice_` prefix, base units (seconds, bytes),
//! `_total` for counters. Every metric is listed with its meaning in `docs/operations.md`.

use crate::backend::clients::{now_us, ClientState};
use crate::backend::Backend;
use crate::pool::hist::{Snapshot, BOUNDS_US};
use crate::pool::Pool;
use std::fmt::Write;
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// Text exposition format 0.0.4 under construction.
struct Out {
    text: String,
}

/// Escapes a label value.
fn esc(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn labels(pairs: &[(&str, &str)]) -> String {
    if pairs.is_empty() {
        return String::new();
    }
    let inner: Vec<String> = pairs
        .iter()
        .map(|(k, v)| format!("{k}=\"{}\"", esc(v)))
        .collect();
    format!("{{{}}}", inner.join(","))
}

impl Out {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.text, "# HELP {name} {help}");
        let _ = writeln!(self.text, "# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, l: &[(&str, &str)], v: impl std::fmt::Display) {
        let _ = writeln!(self.text, "{name}{} {v}", labels(l));
    }

    /// One family with one value per pool.
    fn per_pool(
        &mut self,
        pools: &[Arc<Pool>],
        (name, kind, help): (&str, &str, &str),
        value: impl Fn(&Pool) -> u64,
    ) {
        self.family(name, kind, help);
        for p in pools {
            self.sample(name, &pool_labels(p).get(), value(p));
        }
    }

    fn histogram(&mut self, name: &str, l: &[(&str, &str)], h: &Snapshot) {
        let mut cumulative = 0;
        for (i, bound) in BOUNDS_US.iter().enumerate() {
            cumulative += h.buckets.get(i).copied().unwrap_or(0);
            let le = format!("{}", *bound as f64 / 1e6);
            let mut with = l.to_vec();
            with.push(("le", &le));
            self.sample(&format!("{name}_bucket"), &with, cumulative);
        }
        let mut with = l.to_vec();
        with.push(("le", "+Inf"));
        self.sample(&format!("{name}_bucket"), &with, h.count);
        self.sample(&format!("{name}_sum"), l, h.sum_us as f64 / 1e6);
        self.sample(&format!("{name}_count"), l, h.count);
    }
}

/// A pool's labels: database, user, the node its connections go to, and whether it follows
/// the primary or serves reads on a standby (both kinds exist per database and user).
struct PoolLabels<'a> {
    p: &'a Pool,
    node: Arc<str>,
}

impl PoolLabels<'_> {
    fn get(&self) -> [(&str, &str); 4] {
        [
            ("database", &self.p.database),
            ("user", &self.p.user),
            ("node", &self.node),
            ("role", self.p.role()),
        ]
    }
}

fn pool_labels(p: &Pool) -> PoolLabels<'_> {
    PoolLabels {
        p,
        node: p.spec().node.clone(),
    }
}

/// The text exposition of every pooler metric.
pub fn render(ctx: &Backend) -> String {
    let mut o = Out {
        text: String::with_capacity(16 * 1024),
    };
    let mut pools = ctx.pools.all();
    pools.sort_by(|a, b| (&a.database, &a.user).cmp(&(&b.database, &b.user)));
    clients(&mut o, ctx, &pools);
    servers(&mut o, &pools);
    traffic(&mut o, ctx, &pools);
    state(&mut o, ctx);
    o.text
}

fn clients(o: &mut Out, ctx: &Backend, pools: &[Arc<Pool>]) {
    let all = ctx.clients.all();
    let connected = ctx.totals.clients.load(Ordering::Relaxed);
    let mut by_state = [0usize; 4];
    let console = all.iter().filter(|c| c.console).count();
    for c in all.iter().filter(|c| !c.console) {
        by_state[c.state() as usize] += 1;
    }
    by_state[ClientState::Login as usize] = connected.saturating_sub(all.len());
    o.family(
        "pgsluice_clients",
        "gauge",
        "Client connections by state (login, idle, waiting, active); console clients excluded.",
    );
    for (state, i) in [
        ("login", ClientState::Login),
        ("idle", ClientState::Idle),
        ("waiting", ClientState::Waiting),
        ("active", ClientState::Active),
    ] {
        o.sample(
            "pgsluice_clients",
            &[("state", state)],
            by_state[i as usize],
        );
    }
    o.family(
        "pgsluice_console_clients",
        "gauge",
        "Clients connected to the admin console.",
    );
    o.sample("pgsluice_console_clients", &[], console);
    let now = now_us();
    o.family(
        "pgsluice_pool_waiting_clients",
        "gauge",
        "Clients waiting for a server connection, per pool.",
    );
    for p in pools {
        o.sample(
            "pgsluice_pool_waiting_clients",
            &pool_labels(p).get(),
            p.stats.waiting.load(Ordering::Relaxed),
        );
    }
    o.family(
        "pgsluice_pool_max_wait_seconds",
        "gauge",
        "How long the longest-waiting client of the pool has waited so far.",
    );
    for p in pools {
        let oldest = all
            .iter()
            .filter(|c| !c.console && c.database == *p.database && c.pool_user == *p.user)
            .filter_map(|c| c.wait_since_us())
            .min()
            .map_or(0, |w| now.saturating_sub(w));
        o.sample(
            "pgsluice_pool_max_wait_seconds",
            &pool_labels(p).get(),
            oldest as f64 / 1e6,
        );
    }
}

fn servers(o: &mut Out, pools: &[Arc<Pool>]) {
    o.family(
        "pgsluice_servers",
        "gauge",
        "Server connections per pool by state: active (checked out), idle, login (being opened).",
    );
    for p in pools {
        let (idle, total) = p.counts();
        let active = p.active();
        let labels = pool_labels(p);
        let [d, u, n, r] = labels.get();
        for (state, count) in [
            ("active", active),
            ("idle", idle),
            ("login", total.saturating_sub(idle + active)),
        ] {
            o.sample("pgsluice_servers", &[d, u, n, r, ("state", state)], count);
        }
    }
    o.per_pool(
        pools,
        (
            "pgsluice_pool_size",
            "gauge",
            "Configured pool_size of the pool.",
        ),
        |p| p.settings().size as u64,
    );
    o.per_pool(
        pools,
        (
            "pgsluice_pool_reserve_size",
            "gauge",
            "Configured reserve_pool_size of the pool.",
        ),
        |p| p.settings().reserve_size as u64,
    );
    o.per_pool(
        pools,
        (
            "pgsluice_server_connects_total",
            "counter",
            "Server connections opened (attempts).",
        ),
        |p| p.stats.connects.load(Ordering::Relaxed),
    );
    o.per_pool(
        pools,
        (
            "pgsluice_server_closed_total",
            "counter",
            "Server connections closed (idle timeout, lifetime, errors, RECONNECT).",
        ),
        |p| p.stats.closed.load(Ordering::Relaxed),
    );
}

fn traffic(o: &mut Out, ctx: &Backend, pools: &[Arc<Pool>]) {
    let t = &ctx.totals;
    o.per_pool(
        pools,
        (
            "pgsluice_transactions_total",
            "counter",
            "Transactions forwarded (one per server check-out in transaction mode).",
        ),
        |p| p.stats.xacts.load(Ordering::Relaxed),
    );
    o.per_pool(
        pools,
        (
            "pgsluice_queries_total",
            "counter",
            "Queries forwarded (simple Query messages and extended-protocol Syncs).",
        ),
        |p| p.stats.queries.load(Ordering::Relaxed),
    );
    o.per_pool(
        pools,
        (
            "pgsluice_received_bytes_total",
            "counter",
            "Bytes received from clients.",
        ),
        |p| p.stats.bytes_in.load(Ordering::Relaxed),
    );
    o.per_pool(
        pools,
        (
            "pgsluice_sent_bytes_total",
            "counter",
            "Bytes sent to clients.",
        ),
        |p| p.stats.bytes_out.load(Ordering::Relaxed),
    );
    o.per_pool(
        pools,
        (
            "pgsluice_server_checkouts_total",
            "counter",
            "Server connections assigned to clients.",
        ),
        |p| p.stats.checkouts.load(Ordering::Relaxed),
    );
    let name = "pgsluice_transaction_duration_seconds";
    o.family(
        name,
        "histogram",
        "Time from server check-out to release, per transaction.",
    );
    for p in pools {
        o.histogram(name, &pool_labels(p).get(), &p.stats.xact_time.snapshot());
    }
    let name = "pgsluice_wait_duration_seconds";
    o.family(
        name,
        "histogram",
        "Time clients waited for a server connection (waits only).",
    );
    for p in pools {
        o.histogram(name, &pool_labels(p).get(), &p.stats.wait_time.snapshot());
    }
    o.family(
        "pgsluice_logins_total",
        "counter",
        "Successful client logins.",
    );
    o.sample(
        "pgsluice_logins_total",
        &[],
        t.logins.load(Ordering::Relaxed),
    );
    let connect_errors: u64 = pools
        .iter()
        .map(|p| p.stats.connect_errors.load(Ordering::Relaxed))
        .sum();
    o.family("pgsluice_errors_total", "counter", "Errors by kind.");
    for (kind, v) in [
        ("login_failed", t.login_failures.load(Ordering::Relaxed)),
        ("login_refused", t.refused.load(Ordering::Relaxed)),
        ("server_lost", t.server_errors.load(Ordering::Relaxed)),
        ("server_connect", connect_errors),
    ] {
        o.sample("pgsluice_errors_total", &[("kind", kind)], v);
    }
}

fn state(o: &mut Out, ctx: &Backend) {
    let config = ctx.config();
    o.family(
        "pgsluice_paused",
        "gauge",
        "1 while the whole pooler is paused (PAUSE, switchover).",
    );
    o.sample("pgsluice_paused", &[], u8::from(ctx.gate.is_paused()));
    o.family(
        "pgsluice_database_paused",
        "gauge",
        "1 while the database is paused (PAUSE db, KILL db).",
    );
    for name in config.databases.keys() {
        let g = ctx.gate.db(name);
        o.sample(
            "pgsluice_database_paused",
            &[("database", name)],
            u8::from(g.is_paused()),
        );
    }
    o.family(
        "pgsluice_database_disabled",
        "gauge",
        "1 while new logins to the database are refused (DISABLE db).",
    );
    for name in config.databases.keys() {
        let g = ctx.gate.db(name);
        o.sample(
            "pgsluice_database_disabled",
            &[("database", name)],
            u8::from(g.is_disabled()),
        );
    }
    o.family(
        "pgsluice_shutting_down",
        "gauge",
        "1 once a graceful shutdown or hand-over began.",
    );
    o.sample(
        "pgsluice_shutting_down",
        &[],
        u8::from(ctx.shutting_down.load(Ordering::Relaxed)),
    );
    let (topology, primary) = ctx.topology();
    o.family(
        "pgsluice_topology_epoch",
        "gauge",
        "Epoch of the topology in force.",
    );
    o.sample("pgsluice_topology_epoch", &[], topology.epoch);
    if let Some(cluster) = &config.cluster {
        o.family(
            "pgsluice_node_primary",
            "gauge",
            "1 for the node that takes writes now, 0 for the others.",
        );
        for n in &cluster.nodes {
            let is = primary.as_ref().is_some_and(|p| p.name == n.name);
            o.sample("pgsluice_node_primary", &[("node", &n.name)], u8::from(is));
        }
        o.family(
            "pgsluice_node_fenced",
            "gauge",
            "1 for a node the topology fences (never used for writes).",
        );
        for n in &cluster.nodes {
            let f = topology.is_fenced(&n.name);
            o.sample("pgsluice_node_fenced", &[("node", &n.name)], u8::from(f));
        }
        nodes(o, &ctx.cluster_view());
    }
}

/// What discovery last saw of each node: role, lag, bans.
fn nodes(o: &mut Out, view: &crate::router::ClusterView) {
    let now = std::time::Instant::now();
    o.family(
        "pgsluice_node_role",
        "gauge",
        "1 for the role the node answered its last probe with (primary, standby, down).",
    );
    for n in &view.nodes {
        for role in ["primary", "standby", "down"] {
            let is = u8::from(n.role.as_str() == role);
            let l = [("node", &*n.name), ("role", role)];
            o.sample("pgsluice_node_role", &l, is);
        }
    }
    o.family(
        "pgsluice_node_lag_bytes",
        "gauge",
        "WAL bytes a standby has not replayed yet (standbys with a known primary).",
    );
    for n in view.nodes.iter().filter(|n| n.lag_bytes.is_some()) {
        let lag = n.lag_bytes.unwrap_or(0);
        o.sample("pgsluice_node_lag_bytes", &[("node", &n.name)], lag);
    }
    o.family(
        "pgsluice_node_lag_seconds",
        "gauge",
        "How long ago the primary wrote what a standby has not replayed yet.",
    );
    for n in &view.nodes {
        if let Some(t) = n.lag_time {
            let v = t.as_secs_f64();
            o.sample("pgsluice_node_lag_seconds", &[("node", &n.name)], v);
        }
    }
    o.family(
        "pgsluice_node_banned",
        "gauge",
        "1 while the node is left out after a failed probe or connection (ban_time).",
    );
    for n in &view.nodes {
        let banned = u8::from(n.is_banned(now));
        o.sample("pgsluice_node_banned", &[("node", &n.name)], banned);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_is_cumulative_in_seconds() {
        let mut o = Out {
            text: String::new(),
        };
        let h = crate::pool::hist::Histogram::default();
        h.observe(50);
        h.observe(300);
        o.histogram("x_seconds", &[("a", "b\"c")], &h.snapshot());
        assert!(o
            .text
            .contains("x_seconds_bucket{a=\"b\\\"c\",le=\"0.0001\"} 1"));
        assert!(o
            .text
            .contains("x_seconds_bucket{a=\"b\\\"c\",le=\"0.0005\"} 2"));
        assert!(o
            .text
            .contains("x_seconds_bucket{a=\"b\\\"c\",le=\"+Inf\"} 2"));
        assert!(o.text.contains("x_seconds_sum{a=\"b\\\"c\"} 0.00035"));
    }
}
