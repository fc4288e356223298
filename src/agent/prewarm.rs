//! Loading hot blocks on a node with `pg_prewarm`: relfilenodes mapped to relations in their
//! own database (`pg_filenode_relation`), consecutive blocks coalesced into ranges, ranges
//! batched into short statements, statements paced to a byte rate.
//!
//! Loading must never hurt a standby: each statement holds its relations' AccessShareLock only
//! for a few tens of milliseconds of I/O (a replayed AccessExclusiveLock waits at most that
//! long), `lock_timeout` keeps it from queueing behind replay, and a recovery conflict ends the
//! pass for this round (it is retried on the next one). Blocks whose relfilenode no longer maps
//! to a relation (TRUNCATE, VACUUM FULL, CLUSTER, REINDEX, DROP) or lies past the end of its
//! relation are skipped and counted as stale.

use super::hotset::{coalesce, BlockKey, BlockRange, HotSet};
use super::sql::{run_query, SqlError, Target};
use crate::config::PrewarmMode;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_postgres::Client;

/// Statement timeout of one loading statement, and of a mapping query.
pub const STATEMENT_TIMEOUT: Duration = Duration::from_secs(30);

/// What one loading pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WarmReport {
    /// Blocks pg_prewarm loaded.
    pub loaded: u64,
    /// Blocks skipped: their relation file no longer exists or is shorter.
    pub stale: u64,
    /// Blocks whose statement failed for another reason.
    pub failed: u64,
    /// Recovery conflicts or lock timeouts met (each ends the pass).
    pub conflicts: u64,
    /// Why the pass stopped before the end, if it did.
    pub stopped: Option<String>,
    /// How long it took.
    pub took: Duration,
}

/// Connections by (node, database), kept between passes; separate from the probes' so that a
/// loading statement never delays a probe.
#[derive(Debug, Default)]
pub struct DbConns {
    map: Mutex<HashMap<(String, String), Arc<Client>>>,
}

impl DbConns {
    /// The open connection to `base`'s node in database `db`, or a new one.
    pub async fn get(&self, base: &Target, db: &str) -> Result<Arc<Client>, SqlError> {
        let key = (base.name.clone(), db.to_string());
        let cached = self.map.lock().ok().and_then(|m| m.get(&key).cloned());
        if let Some(c) = cached.filter(|c| !c.is_closed()) {
            return Ok(c);
        }
        let t = in_db(base, db);
        let c = t.connect(Duration::from_secs(5)).await?;
        // Never queue behind a replayed AccessExclusiveLock, never run away.
        let setup = format!(
            "SET lock_timeout = '100ms'; SET statement_timeout = '{}s'",
            STATEMENT_TIMEOUT.as_secs()
        );
        run_query(&c, &t, &setup, STATEMENT_TIMEOUT).await?;
        let c = Arc::new(c);
        if let Ok(mut m) = self.map.lock() {
            m.insert(key, c.clone());
        }
        Ok(c)
    }

    /// Forgets every connection to `node`.
    pub fn evict(&self, node: &str) {
        if let Ok(mut m) = self.map.lock() {
            m.retain(|(n, _), _| n != node);
        }
    }
}

fn in_db(base: &Target, db: &str) -> Target {
    Target {
        dbname: db.to_string(),
        ..base.clone()
    }
}

/// The pause owed after sending `sent` bytes `elapsed` into a pass at `rate` bytes/s.
pub fn pace_delay(rate: Option<u64>, sent: u64, elapsed: Duration) -> Duration {
    match rate {
        Some(r) if r > 0 => Duration::from_secs_f64(sent as f64 / r as f64).saturating_sub(elapsed),
        _ => Duration::ZERO,
    }
}

/// Blocks per statement: about 50 ms of the rate (8..=1024 blocks).
pub fn chunk_blocks(rate: Option<u64>, block_size: u32) -> u64 {
    let bs = u64::from(block_size.max(1));
    rate.map_or(1024, |r| (r / 20 / bs).clamp(8, 1024))
}

/// Splits `ranges` (relation oid, first, last) into statements of at most `max` blocks each,
/// cutting long ranges.
pub fn batches(ranges: &[(u32, u32, u32)], max: u64) -> Vec<Vec<(u32, u32, u32)>> {
    let max = max.max(1);
    let mut out: Vec<Vec<(u32, u32, u32)>> = vec![Vec::new()];
    let mut fill = 0u64;
    for &(rel, first, last) in ranges {
        let mut start = first;
        loop {
            let room = max - fill;
            let end = u64::from(last).min(u64::from(start) + room - 1) as u32;
            if let Some(cur) = out.last_mut() {
                cur.push((rel, start, end));
            }
            fill += u64::from(end - start) + 1;
            if fill >= max {
                out.push(Vec::new());
                fill = 0;
            }
            if end >= last {
                break;
            }
            start = end + 1;
        }
    }
    out.retain(|b| !b.is_empty());
    out
}

/// Loads `blocks` (a subset of `hot`) on `base`'s node in `mode`, paced to `rate` bytes/s
/// (`None`: as fast as the node reads). Errors only when no database could be reached.
pub async fn warm(
    conns: &DbConns,
    base: &Target,
    hot: &HotSet,
    blocks: &[BlockKey],
    mode: PrewarmMode,
    rate: Option<u64>,
) -> Result<WarmReport, SqlError> {
    let started = Instant::now();
    let mut rep = WarmReport::default();
    let mut by_db: BTreeMap<u32, Vec<BlockRange>> = BTreeMap::new();
    for r in coalesce(blocks) {
        by_db.entry(r.db).or_default().push(r);
    }
    let mut pace = Pace {
        rate,
        started,
        sent: 0,
        block_size: hot.block_size,
    };
    let mut last_err = None;
    for (db, ranges) in by_db {
        let Some(name) = hot.databases.get(&db) else {
            rep.stale += ranges.iter().map(BlockRange::len).sum::<u64>();
            continue;
        };
        let client = match conns.get(base, name).await {
            Ok(c) => c,
            Err(e) => {
                rep.failed += ranges.iter().map(BlockRange::len).sum::<u64>();
                last_err = Some(e);
                continue;
            }
        };
        let t = in_db(base, name);
        load_db(&client, &t, &ranges, mode, &mut pace, &mut rep).await;
        if rep.stopped.is_some() {
            break;
        }
    }
    rep.took = started.elapsed();
    match last_err {
        Some(e) if rep.loaded == 0 && rep.stopped.is_none() => Err(e),
        _ => Ok(rep),
    }
}

struct Pace {
    rate: Option<u64>,
    started: Instant,
    sent: u64,
    block_size: u32,
}

impl Pace {
    async fn after(&mut self, blocks: u64) {
        self.sent += blocks * u64::from(self.block_size);
        let d = pace_delay(self.rate, self.sent, self.started.elapsed());
        if !d.is_zero() {
            tokio::time::sleep(d).await;
        }
    }
}

/// Loads the ranges of one database over `client`.
async fn load_db(
    client: &Client,
    t: &Target,
    ranges: &[BlockRange],
    mode: PrewarmMode,
    pace: &mut Pace,
    rep: &mut WarmReport,
) {
    let rels = match map_relations(client, t, ranges).await {
        Ok(m) => m,
        Err(e) => {
            rep.failed += ranges.iter().map(BlockRange::len).sum::<u64>();
            rep.stopped = conflict(&e).then(|| format!("{e}"));
            rep.conflicts += u64::from(rep.stopped.is_some());
            return;
        }
    };
    let mut work = Vec::new();
    for r in ranges {
        match rels.get(&(r.spc, r.rfn)) {
            Some(&(oid, nblocks)) if u64::from(r.first) < nblocks => {
                let last = u64::from(r.last).min(nblocks - 1) as u32;
                rep.stale += u64::from(r.last - last);
                work.push((oid, r.first, last));
            }
            _ => rep.stale += r.len(),
        }
    }
    for batch in batches(&work, chunk_blocks(pace.rate, pace.block_size)) {
        let n: u64 = batch.iter().map(|&(_, f, l)| u64::from(l - f) + 1).sum();
        match run_query(client, t, &prewarm_sql(&batch, mode), STATEMENT_TIMEOUT).await {
            Ok(rows) => rep.loaded += first_u64(&rows),
            Err(e) if conflict(&e) => {
                rep.conflicts += 1;
                rep.failed += n;
                rep.stopped = Some(format!("{e}: retried next round"));
                return;
            }
            // A relation dropped since the mapping: load the batch range by range.
            Err(_) => one_by_one(client, t, &batch, mode, rep).await,
        }
        pace.after(n).await;
    }
}

async fn one_by_one(
    client: &Client,
    t: &Target,
    batch: &[(u32, u32, u32)],
    mode: PrewarmMode,
    rep: &mut WarmReport,
) {
    for r in batch {
        let n = u64::from(r.2 - r.1) + 1;
        match run_query(client, t, &prewarm_sql(&[*r], mode), STATEMENT_TIMEOUT).await {
            Ok(rows) => rep.loaded += first_u64(&rows),
            Err(e) if conflict(&e) => {
                rep.conflicts += 1;
                rep.failed += n;
            }
            Err(_) => rep.stale += n,
        }
    }
}

/// Relation oid and length in blocks for each (tablespace, relfilenode) that still maps.
async fn map_relations(
    client: &Client,
    t: &Target,
    ranges: &[BlockRange],
) -> Result<HashMap<(u32, u32), (u32, u64)>, SqlError> {
    let mut pairs: Vec<(u32, u32)> = ranges.iter().map(|r| (r.spc, r.rfn)).collect();
    pairs.sort_unstable();
    pairs.dedup();
    let list = |f: fn(&(u32, u32)) -> u32| {
        pairs
            .iter()
            .map(|p| f(p).to_string())
            .collect::<Vec<_>>()
            .join(",")
    };
    let sql = format!(
        "SELECT t.s, t.f, c.oid, pg_relation_size(c.oid) / current_setting('block_size')::int \
         FROM unnest('{{{}}}'::oid[], '{{{}}}'::oid[]) AS t(s, f), \
         LATERAL (SELECT pg_filenode_relation(t.s, t.f)::oid AS oid) c WHERE c.oid IS NOT NULL",
        list(|p| p.0),
        list(|p| p.1)
    );
    let rows = run_query(client, t, &sql, STATEMENT_TIMEOUT).await?;
    let num = |v: &Option<String>| v.as_deref().and_then(|s| s.parse::<u64>().ok());
    Ok(rows
        .first()
        .into_iter()
        .flatten()
        .filter_map(|r| {
            let col = |i: usize| r.get(i).and_then(num);
            let (s, f, oid, n) = (col(0)?, col(1)?, col(2)?, col(3)?);
            Some(((s as u32, f as u32), (oid as u32, n)))
        })
        .collect())
}

/// One statement loading every range of `batch`.
pub fn prewarm_sql(batch: &[(u32, u32, u32)], mode: PrewarmMode) -> String {
    let values: Vec<String> = batch
        .iter()
        .map(|(rel, f, l)| format!("({rel}::int8, {f}::int8, {l}::int8)"))
        .collect();
    format!(
        "SELECT coalesce(sum(pg_prewarm(v.r::oid::regclass, '{}', 'main', v.f, v.l)), 0) \
         FROM (VALUES {}) AS v(r, f, l)",
        mode.as_str(),
        values.join(", ")
    )
}

fn first_u64(rows: &[super::sql::Rows]) -> u64 {
    rows.first()
        .and_then(|r| r.first())
        .and_then(|r| r.first())
        .and_then(|v| v.as_deref())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// A recovery conflict (40001), a lock timeout (55P03) or a cancellation (57014): the node
/// is busy replaying; try again next round.
fn conflict(e: &SqlError) -> bool {
    use tokio_postgres::error::SqlState;
    match e {
        SqlError::Postgres { source, .. } => source.code().is_some_and(|c| {
            *c == SqlState::T_R_SERIALIZATION_FAILURE
                || *c == SqlState::LOCK_NOT_AVAILABLE
                || *c == SqlState::QUERY_CANCELED
        }),
        SqlError::Timeout { .. } => true,
        SqlError::Lost { .. } => false,
        SqlError::Io { .. } => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pacing_follows_the_rate() {
        let mb = 1 << 20;
        assert_eq!(
            pace_delay(Some(4 * mb), 2 * mb, Duration::from_millis(100)),
            Duration::from_millis(400)
        );
        assert_eq!(
            pace_delay(Some(mb), mb, Duration::from_secs(2)),
            Duration::ZERO
        );
        assert_eq!(pace_delay(None, 100 * mb, Duration::ZERO), Duration::ZERO);
        assert_eq!(chunk_blocks(Some(64 * mb), 8192), 409);
        assert_eq!(chunk_blocks(Some(mb / 10), 8192), 8);
        assert_eq!(chunk_blocks(None, 8192), 1024);
    }

    #[test]
    fn batches_cut_long_ranges_and_keep_every_block() {
        let b = batches(&[(1, 0, 9), (2, 5, 5), (3, 0, 3)], 4);
        assert_eq!(
            b,
            vec![
                vec![(1, 0, 3)],
                vec![(1, 4, 7)],
                vec![(1, 8, 9), (2, 5, 5), (3, 0, 0)],
                vec![(3, 1, 3)],
            ]
        );
        assert!(batches(&[], 4).is_empty());
    }

    #[test]
    fn one_statement_per_batch() {
        let sql = prewarm_sql(&[(16384, 0, 7), (16390, 3, 3)], PrewarmMode::Buffer);
        assert!(sql.contains("'buffer', 'main'"), "{sql}");
        assert!(sql.contains("(16384::int8, 0::int8, 7::int8), (16390::int8, 3::int8, 3::int8)"));
    }
}
