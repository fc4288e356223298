//! `SHOW STATS`, `STATS_TOTALS`, `STATS_AVERAGES` and `TOTALS`: per-database sums of the pool
//! counters, and averages over the last sampling period (the daemon samples every
//! `stats_period`, 60 s when that is 0), as PgBouncer computes them.
//!
//! The forwarder reads only frame headers, so it does not time single queries inside a
//! transaction: `query_time` is the time server connections spent forwarding, which equals
//! `xact_time` apart from the settings sync before each transaction.

use super::table::{s, Table};
use super::{Admin, Show};
use crate::backend::Backend;
use crate::pool::Pool;
use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Counters of one database (summed over its pools).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DbCounters {
    pub xacts: u64,
    pub queries: u64,
    pub assignments: u64,
    pub received: u64,
    pub sent: u64,
    pub xact_us: u64,
    pub wait_us: u64,
}

impl DbCounters {
    fn add_pool(&mut self, p: &Pool) {
        let st = &p.stats;
        self.xacts += st.xacts.load(Ordering::Relaxed);
        self.queries += st.queries.load(Ordering::Relaxed);
        self.assignments += st.checkouts.load(Ordering::Relaxed);
        self.received += st.bytes_in.load(Ordering::Relaxed);
        self.sent += st.bytes_out.load(Ordering::Relaxed);
        self.xact_us += st.xact_time.snapshot().sum_us;
        self.wait_us += st.wait_time_us.load(Ordering::Relaxed);
    }

    fn minus(&self, o: &Self) -> Self {
        Self {
            xacts: self.xacts.saturating_sub(o.xacts),
            queries: self.queries.saturating_sub(o.queries),
            assignments: self.assignments.saturating_sub(o.assignments),
            received: self.received.saturating_sub(o.received),
            sent: self.sent.saturating_sub(o.sent),
            xact_us: self.xact_us.saturating_sub(o.xact_us),
            wait_us: self.wait_us.saturating_sub(o.wait_us),
        }
    }

    /// Per-second rates and per-transaction times over `secs`.
    fn averages(&self, secs: f64) -> [u64; 8] {
        let rate = |v: u64| (v as f64 / secs.max(1e-3)).round() as u64;
        let per = |v: u64, n: u64| v.checked_div(n).unwrap_or(0);
        [
            rate(self.xacts),
            rate(self.queries),
            rate(self.assignments),
            rate(self.received),
            rate(self.sent),
            per(self.xact_us, self.xacts),
            per(self.xact_us, self.queries),
            per(self.wait_us, self.assignments),
        ]
    }
}

/// Counters of every database now.
pub fn totals(ctx: &Backend) -> BTreeMap<String, DbCounters> {
    let mut m: BTreeMap<String, DbCounters> = ctx
        .config()
        .databases
        .keys()
        .map(|k| (k.clone(), DbCounters::default()))
        .collect();
    for p in ctx.pools.all() {
        m.entry(p.database.to_string()).or_default().add_pool(&p);
    }
    m
}

type Sample = (Instant, BTreeMap<String, DbCounters>);

/// The last two samples; averages are their difference over the time between them.
#[derive(Default, Clone)]
pub struct Averages(Arc<Mutex<(Option<Sample>, Option<Sample>)>>);

impl Averages {
    /// Takes a sample (the daemon calls this every stats period).
    pub fn sample(&self, ctx: &Backend) {
        let now = (Instant::now(), totals(ctx));
        if let Ok(mut g) = self.0.lock() {
            let last = g.1.take();
            *g = (last, Some(now));
        }
    }

    /// Averages per database over the last period (zeros before two samples exist).
    pub fn current(&self) -> BTreeMap<String, [u64; 8]> {
        let Ok(g) = self.0.lock() else {
            return BTreeMap::new();
        };
        let (Some((t0, old)), Some((t1, new))) = (&g.0, &g.1) else {
            return new_zeros(g.1.as_ref().map(|s| &s.1));
        };
        let secs = t1.duration_since(*t0).as_secs_f64();
        new.iter()
            .map(|(db, c)| {
                let base = old.get(db).copied().unwrap_or_default();
                (db.clone(), c.minus(&base).averages(secs))
            })
            .collect()
    }
}

fn new_zeros(m: Option<&BTreeMap<String, DbCounters>>) -> BTreeMap<String, [u64; 8]> {
    m.map(|m| m.keys().map(|k| (k.clone(), [0; 8])).collect())
        .unwrap_or_default()
}

const TOTAL_NAMES: [&str; 7] = [
    "xact_count",
    "query_count",
    "server_assignment_count",
    "received",
    "sent",
    "xact_time",
    "query_time",
];
const AVG_NAMES: [&str; 8] = [
    "xact_count",
    "query_count",
    "server_assignment_count",
    "recv",
    "sent",
    "xact_time",
    "query_time",
    "wait_time",
];

fn total_values(c: &DbCounters) -> [u64; 8] {
    [
        c.xacts,
        c.queries,
        c.assignments,
        c.received,
        c.sent,
        c.xact_us,
        c.xact_us,
        c.wait_us,
    ]
}

impl Admin {
    pub(super) fn stats_table(&self, what: Show) -> Table {
        let totals = totals(&self.ctx);
        let avgs = self.averages.current();
        let avg_of = |db: &str| avgs.get(db).copied().unwrap_or([0; 8]);
        match what {
            Show::Totals => {
                let mut sum = [0u64; 8];
                let mut avg = [0u64; 8];
                for (db, c) in &totals {
                    for (a, v) in sum.iter_mut().zip(total_values(c)) {
                        *a += v;
                    }
                    for (a, v) in avg.iter_mut().zip(avg_of(db)) {
                        *a += v;
                    }
                }
                let mut t = Table::new(&["name", "value"]);
                let names = TOTAL_NAMES.iter().chain(["wait_time"].iter());
                for (n, v) in names.zip(sum) {
                    t.text_row(&[format!("total_{n}"), v.to_string()]);
                }
                for (n, v) in AVG_NAMES.iter().zip(avg) {
                    t.text_row(&[format!("avg_{n}"), v.to_string()]);
                }
                t
            }
            Show::StatsTotals | Show::StatsAverages => {
                let mut t = Table::new(&[
                    "database",
                    "xact_count",
                    "query_count",
                    "server_assignment_count",
                    "bytes_received",
                    "bytes_sent",
                    "xact_time",
                    "query_time",
                    "wait_time",
                ]);
                for (db, c) in &totals {
                    let v = if what == Show::StatsTotals {
                        total_values(c)
                    } else {
                        avg_of(db)
                    };
                    let mut row = vec![s(db)];
                    row.extend(v.iter().map(s));
                    t.row(row);
                }
                t
            }
            _ => {
                let mut t = Table::new(&[
                    "database",
                    "total_xact_count",
                    "total_query_count",
                    "total_server_assignment_count",
                    "total_received",
                    "total_sent",
                    "total_xact_time",
                    "total_query_time",
                    "total_wait_time",
                    "avg_xact_count",
                    "avg_query_count",
                    "avg_server_assignment_count",
                    "avg_recv",
                    "avg_sent",
                    "avg_xact_time",
                    "avg_query_time",
                    "avg_wait_time",
                ]);
                for (db, c) in &totals {
                    let mut row = vec![s(db)];
                    row.extend(total_values(c).iter().map(s));
                    row.extend(avg_of(db).iter().map(s));
                    t.row(row);
                }
                t
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn averages_are_rates_and_per_transaction_times() {
        let c = DbCounters {
            xacts: 100,
            queries: 200,
            assignments: 100,
            received: 1000,
            sent: 5000,
            xact_us: 50_000,
            wait_us: 1_000,
        };
        let a = c.minus(&DbCounters::default()).averages(10.0);
        assert_eq!(a, [10, 20, 10, 100, 500, 500, 250, 10]);
        assert_eq!(DbCounters::default().averages(0.0), [0; 8]);
    }
}
