//! The values of every pooler family, read from the backend at scrape time: client states,
//! pool counters and histograms, pause gates, topology and what discovery saw of the nodes.

use super::{f, Families};
use crate::backend::clients::{now_us, ClientState};
use crate::backend::Backend;
use crate::pool::Pool;
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// A pool's label values, in the order of `POOL`.
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

fn n(v: impl TryInto<u64>) -> f64 {
    v.try_into().unwrap_or(u64::MAX) as f64
}

impl Families {
    /// One family with one value per pool.
    fn per_pool(
        &mut self,
        pools: &[Arc<Pool>],
        family: &super::Family,
        value: impl Fn(&Pool) -> f64,
    ) {
        self.family(family);
        for p in pools {
            self.sample(&pool_labels(p).get(), value(p));
        }
    }
}

/// Every family's values.
pub(super) fn all(o: &mut Families, ctx: &Backend) {
    let mut pools = ctx.pools.all();
    pools.sort_by(|a, b| (&a.database, &a.user).cmp(&(&b.database, &b.user)));
    clients(o, ctx, &pools);
    servers(o, &pools);
    traffic(o, ctx, &pools);
    state(o, ctx);
}

fn clients(o: &mut Families, ctx: &Backend, pools: &[Arc<Pool>]) {
    let all = ctx.clients.all();
    let connected = ctx.totals.clients.load(Ordering::Relaxed);
    let mut by_state = [0usize; 4];
    let console = all.iter().filter(|c| c.console).count();
    for c in all.iter().filter(|c| !c.console) {
        by_state[c.state() as usize] += 1;
    }
    by_state[ClientState::Login as usize] = connected.saturating_sub(all.len());
    o.family(&f::CLIENTS);
    for (state, i) in [
        ("login", ClientState::Login),
        ("idle", ClientState::Idle),
        ("waiting", ClientState::Waiting),
        ("active", ClientState::Active),
    ] {
        o.sample(&[("state", state)], n(by_state[i as usize]));
    }
    o.family(&f::CONSOLE_CLIENTS);
    o.sample(&[], n(console));
    o.per_pool(pools, &f::POOL_WAITING, |p| {
        n(p.stats.waiting.load(Ordering::Relaxed))
    });
    o.per_pool(pools, &f::POOL_PINNED, |p| {
        n(p.stats.pinned.load(Ordering::Relaxed))
    });
    let now = now_us();
    o.per_pool(pools, &f::POOL_MAX_WAIT, |p| {
        let oldest = all
            .iter()
            .filter(|c| !c.console && c.database() == &*p.database && c.pool_user() == &*p.user)
            .filter_map(|c| c.wait_since_us())
            .min()
            .map_or(0, |w| now.saturating_sub(w));
        oldest as f64 / 1e6
    });
}

fn servers(o: &mut Families, pools: &[Arc<Pool>]) {
    o.family(&f::SERVERS);
    for p in pools {
        let (idle, total) = p.counts();
        let active = p.active();
        let labels = pool_labels(p);
        let [d, u, nd, r] = labels.get();
        for (state, count) in [
            ("active", active),
            ("idle", idle),
            ("login", total.saturating_sub(idle + active)),
        ] {
            o.sample(&[d, u, nd, r, ("state", state)], n(count));
        }
    }
    o.per_pool(pools, &f::POOL_SIZE, |p| n(p.settings().size));
    o.per_pool(pools, &f::POOL_RESERVE, |p| n(p.settings().reserve_size));
    o.per_pool(pools, &f::CONNECTS, |p| {
        n(p.stats.connects.load(Ordering::Relaxed))
    });
    o.per_pool(pools, &f::CLOSED, |p| {
        n(p.stats.closed.load(Ordering::Relaxed))
    });
}

fn traffic(o: &mut Families, ctx: &Backend, pools: &[Arc<Pool>]) {
    let t = &ctx.totals;
    o.per_pool(pools, &f::XACTS, |p| {
        n(p.stats.xacts.load(Ordering::Relaxed))
    });
    o.per_pool(pools, &f::QUERIES, |p| {
        n(p.stats.queries.load(Ordering::Relaxed))
    });
    o.per_pool(pools, &f::RECEIVED, |p| {
        n(p.stats.bytes_in.load(Ordering::Relaxed))
    });
    o.per_pool(pools, &f::SENT, |p| {
        n(p.stats.bytes_out.load(Ordering::Relaxed))
    });
    o.per_pool(pools, &f::CHECKOUTS, |p| {
        n(p.stats.checkouts.load(Ordering::Relaxed))
    });
    o.family(&f::XACT_TIME);
    for p in pools {
        o.histogram(&pool_labels(p).get(), &p.stats.xact_time.snapshot());
    }
    o.family(&f::WAIT_TIME);
    for p in pools {
        o.histogram(&pool_labels(p).get(), &p.stats.wait_time.snapshot());
    }
    o.family(&f::LOGINS);
    o.sample(&[], n(t.logins.load(Ordering::Relaxed)));
    let connect_errors: u64 = pools
        .iter()
        .map(|p| p.stats.connect_errors.load(Ordering::Relaxed))
        .sum();
    o.family(&f::ERRORS);
    for (kind, v) in [
        ("login_failed", t.login_failures.load(Ordering::Relaxed)),
        ("login_refused", t.refused.load(Ordering::Relaxed)),
        ("server_lost", t.server_errors.load(Ordering::Relaxed)),
        ("server_connect", connect_errors),
    ] {
        o.sample(&[("kind", kind)], n(v));
    }
}

fn state(o: &mut Families, ctx: &Backend) {
    let config = ctx.config();
    let flag = |b: bool| f64::from(u8::from(b));
    o.family(&f::PAUSED);
    o.sample(&[], flag(ctx.gate.is_paused()));
    o.family(&f::DB_PAUSED);
    for name in config.databases.keys() {
        o.sample(&[("database", name)], flag(ctx.gate.db(name).is_paused()));
    }
    o.family(&f::DB_DISABLED);
    for name in config.databases.keys() {
        o.sample(&[("database", name)], flag(ctx.gate.db(name).is_disabled()));
    }
    o.family(&f::SHUTTING_DOWN);
    o.sample(&[], flag(ctx.shutting_down.load(Ordering::Relaxed)));
    let (topology, primary) = ctx.topology();
    o.family(&f::EPOCH);
    o.sample(&[], n(topology.epoch));
    if let Some(cluster) = &config.cluster {
        o.family(&f::NODE_PRIMARY);
        for node in &cluster.nodes {
            let is = primary.as_ref().is_some_and(|p| p.name == node.name);
            o.sample(&[("node", &node.name)], flag(is));
        }
        o.family(&f::NODE_FENCED);
        for node in &cluster.nodes {
            o.sample(
                &[("node", &node.name)],
                flag(topology.is_fenced(&node.name)),
            );
        }
        nodes(o, &ctx.cluster_view());
    }
}

/// What discovery last saw of each node: role, lag, bans.
fn nodes(o: &mut Families, view: &crate::router::ClusterView) {
    let now = std::time::Instant::now();
    let flag = |b: bool| f64::from(u8::from(b));
    o.family(&f::NODE_ROLE);
    for node in &view.nodes {
        for role in ["primary", "standby", "down"] {
            let l = [("node", &*node.name), ("role", role)];
            o.sample(&l, flag(node.role.as_str() == role));
        }
    }
    o.family(&f::NODE_LAG_BYTES);
    for node in &view.nodes {
        if let Some(lag) = node.lag_bytes {
            o.sample(&[("node", &node.name)], n(lag));
        }
    }
    o.family(&f::NODE_LAG_SECONDS);
    for node in &view.nodes {
        if let Some(t) = node.lag_time {
            o.sample(&[("node", &node.name)], t.as_secs_f64());
        }
    }
    o.family(&f::NODE_BANNED);
    for node in &view.nodes {
        o.sample(&[("node", &node.name)], flag(node.is_banned(now)));
    }
}
