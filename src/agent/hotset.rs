//! The primary's hot set: the main-fork blocks its `pg_buffercache` shows at a usagecount of
//! `k` or more, most used first, capped by a budget; plus the pure set arithmetic warming
//! needs (warmth, missing blocks, coalesced ranges).
//!
//! A physical standby is a byte copy of its primary, so `(database, tablespace, relfilenode,
//! block)` names the same block on every node: the set is shipped as raw tuples and mapped to
//! relations only on the node that loads it ([`super::prewarm`]).

use super::sql::{Rows, SqlError, Target};
use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};
use tokio_postgres::Client;

/// One block of a relation's main fork.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BlockKey {
    /// `pg_database.oid`.
    pub db: u32,
    /// Tablespace oid.
    pub spc: u32,
    /// Relfilenode.
    pub rfn: u32,
    /// Block number.
    pub blk: u32,
}

/// Consecutive blocks of one relation file, `first..=last`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockRange {
    /// `pg_database.oid`.
    pub db: u32,
    /// Tablespace oid.
    pub spc: u32,
    /// Relfilenode.
    pub rfn: u32,
    /// First block.
    pub first: u32,
    /// Last block (inclusive).
    pub last: u32,
}

impl BlockRange {
    /// Number of blocks.
    pub fn len(&self) -> u64 {
        u64::from(self.last - self.first) + 1
    }

    /// Never empty; here for clippy's `len_without_is_empty`.
    pub fn is_empty(&self) -> bool {
        false
    }
}

/// A captured hot set.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HotSet {
    /// The node it was captured on.
    pub source: String,
    /// When (ms since the Unix epoch).
    pub captured_unix_ms: u64,
    /// The blocks, sorted, no duplicates.
    pub blocks: Vec<BlockKey>,
    /// Database names by oid (connecting to load a block needs its database's name).
    pub databases: BTreeMap<u32, String>,
    /// The server's block size in bytes.
    pub block_size: u32,
    /// How long the capture took (the scan is O(shared_buffers)).
    pub took: Duration,
}

impl HotSet {
    /// The relfilenodes it touches (to filter a residency scan).
    pub fn relfilenodes(&self) -> Vec<u32> {
        let mut v: Vec<u32> = self.blocks.iter().map(|b| b.rfn).collect();
        v.dedup();
        v.sort_unstable();
        v.dedup();
        v
    }

    /// Bytes it covers.
    pub fn bytes(&self) -> u64 {
        self.blocks.len() as u64 * u64::from(self.block_size)
    }
}

/// The largest hot-set document stored (etcd refuses requests above 1.5 MiB by default).
pub const DOC_MAX_BYTES: usize = 1024 * 1024;

/// A hot set as stored in the state store (`put_doc("hotset", ...)`): blocks coalesced into
/// `[db, spc, rfn, first, last]` ranges, so that a new leader starts from the last capture.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct HotSetDoc {
    /// The node it was captured on.
    pub source: String,
    /// When (ms since the Unix epoch).
    pub captured_unix_ms: u64,
    /// The server's block size in bytes.
    pub block_size: u32,
    /// Database names by oid.
    pub databases: BTreeMap<u32, String>,
    /// The blocks, as `[db, spc, rfn, first, last]` ranges.
    pub ranges: Vec<[u32; 5]>,
}

impl HotSetDoc {
    /// The document of `hot` as JSON, its ranges cut (in block order) so that it stays under
    /// [`DOC_MAX_BYTES`]; the cut set is still a valid, smaller hot set.
    pub fn encode(hot: &HotSet) -> serde_json::Value {
        let mut doc = HotSetDoc {
            source: hot.source.clone(),
            captured_unix_ms: hot.captured_unix_ms,
            block_size: hot.block_size,
            databases: hot.databases.clone(),
            ranges: coalesce(&hot.blocks)
                .iter()
                .map(|r| [r.db, r.spc, r.rfn, r.first, r.last])
                .collect(),
        };
        loop {
            let v = serde_json::to_value(&doc).unwrap_or_default();
            if doc.ranges.len() <= 1 || v.to_string().len() <= DOC_MAX_BYTES {
                return v;
            }
            doc.ranges.truncate(doc.ranges.len() / 2);
        }
    }

    /// The hot set a stored document describes (None when it is not a hot-set document).
    pub fn decode(v: &serde_json::Value) -> Option<HotSet> {
        let doc: HotSetDoc = serde_json::from_value(v.clone()).ok()?;
        let blocks = doc
            .ranges
            .iter()
            .filter(|r| r[3] <= r[4])
            .flat_map(|&[db, spc, rfn, first, last]| {
                (first..=last).map(move |blk| BlockKey { db, spc, rfn, blk })
            })
            .collect();
        Some(HotSet {
            source: doc.source,
            captured_unix_ms: doc.captured_unix_ms,
            blocks,
            databases: doc.databases,
            block_size: doc.block_size,
            took: Duration::ZERO,
        })
    }
}

/// `shared_buffers` of a node, in blocks.
pub async fn shared_buffers(
    client: &Client,
    t: &Target,
    timeout: Duration,
) -> Result<u64, SqlError> {
    let sql = "SELECT setting FROM pg_settings WHERE name = 'shared_buffers'";
    let rows = super::sql::run_query(client, t, sql, timeout).await?;
    Ok(first_u64(&rows).unwrap_or(0))
}

/// Captures the hot set on `t` (the primary): main-fork buffers with usagecount >= `k`, most
/// used first, at most `budget` blocks. `pg_buffercache` must exist in `t`'s database.
pub async fn capture(
    client: &Client,
    t: &Target,
    k: u8,
    budget: u64,
    timeout: Duration,
) -> Result<HotSet, SqlError> {
    let started = Instant::now();
    let sql = format!(
        "SELECT reldatabase, reltablespace, relfilenode, relblocknumber FROM pg_buffercache \
         WHERE relforknumber = 0 AND reldatabase <> 0 AND usagecount >= {k} \
         ORDER BY usagecount DESC LIMIT {budget};\n\
         SELECT oid, datname FROM pg_database WHERE datallowconn;\n\
         SELECT current_setting('block_size')"
    );
    let rows = super::sql::run_query(client, t, &sql, timeout).await?;
    let blocks = rows.first().map(parse_blocks).unwrap_or_default();
    let databases = rows
        .get(1)
        .map(|r| {
            r.iter()
                .filter_map(|row| {
                    let oid = row.first()?.as_ref()?.parse().ok()?;
                    Some((oid, row.get(1)?.clone()?))
                })
                .collect()
        })
        .unwrap_or_default();
    let block_size = rows
        .get(2)
        .and_then(|r| first_u64(std::slice::from_ref(r)))
        .unwrap_or(8192) as u32;
    Ok(HotSet {
        source: t.name.clone(),
        captured_unix_ms: super::events::Event::now("", None, "", 0).unix_ms,
        blocks,
        databases,
        block_size,
        took: started.elapsed(),
    })
}

/// The blocks of `hot` resident in `t`'s shared_buffers (one scan of its `pg_buffercache`,
/// filtered to the hot set's relfilenodes).
pub async fn resident(
    client: &Client,
    t: &Target,
    hot: &HotSet,
    timeout: Duration,
) -> Result<HashSet<BlockKey>, SqlError> {
    let rfns = hot.relfilenodes();
    if rfns.is_empty() {
        return Ok(HashSet::new());
    }
    let list: Vec<String> = rfns.iter().map(u32::to_string).collect();
    let sql = format!(
        "SELECT reldatabase, reltablespace, relfilenode, relblocknumber FROM pg_buffercache \
         WHERE relforknumber = 0 AND relfilenode = ANY('{{{}}}'::oid[])",
        list.join(",")
    );
    let rows = super::sql::run_query(client, t, &sql, timeout).await?;
    Ok(rows
        .first()
        .map(|r| parse_blocks(r).into_iter().collect())
        .unwrap_or_default())
}

fn first_u64(rows: &[Rows]) -> Option<u64> {
    rows.first()?.first()?.first()?.as_ref()?.parse().ok()
}

/// Parses `(reldatabase, reltablespace, relfilenode, relblocknumber)` rows, sorted, deduplicated.
pub fn parse_blocks(rows: &Rows) -> Vec<BlockKey> {
    let num =
        |row: &[Option<String>], i: usize| -> Option<u32> { row.get(i)?.as_deref()?.parse().ok() };
    let mut v: Vec<BlockKey> = rows
        .iter()
        .filter_map(|r| {
            Some(BlockKey {
                db: num(r, 0)?,
                spc: num(r, 1)?,
                rfn: num(r, 2)?,
                blk: num(r, 3)?,
            })
        })
        .collect();
    v.sort_unstable();
    v.dedup();
    v
}

/// The share of `hot` present in `resident` (1.0 for an empty hot set: nothing to warm).
pub fn warmth(hot: &[BlockKey], resident: &HashSet<BlockKey>) -> f64 {
    if hot.is_empty() {
        return 1.0;
    }
    let held = hot.iter().filter(|b| resident.contains(b)).count();
    held as f64 / hot.len() as f64
}

/// The blocks of `hot` not in `resident`, in `hot`'s (sorted) order.
pub fn missing(hot: &[BlockKey], resident: &HashSet<BlockKey>) -> Vec<BlockKey> {
    hot.iter()
        .filter(|b| !resident.contains(b))
        .copied()
        .collect()
}

/// Coalesces sorted blocks into ranges of consecutive blocks of one relation file.
pub fn coalesce(blocks: &[BlockKey]) -> Vec<BlockRange> {
    let mut out: Vec<BlockRange> = Vec::new();
    for b in blocks {
        match out.last_mut() {
            Some(r)
                if (r.db, r.spc, r.rfn) == (b.db, b.spc, b.rfn)
                    && r.last.checked_add(1) == Some(b.blk) =>
            {
                r.last = b.blk
            }
            _ => out.push(BlockRange {
                db: b.db,
                spc: b.spc,
                rfn: b.rfn,
                first: b.blk,
                last: b.blk,
            }),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn k(rfn: u32, blk: u32) -> BlockKey {
        BlockKey {
            db: 5,
            spc: 1663,
            rfn,
            blk,
        }
    }

    #[test]
    fn coalesces_consecutive_blocks_of_one_file() {
        let blocks = [k(10, 0), k(10, 1), k(10, 2), k(10, 4), k(11, 5), k(11, 6)];
        let r = coalesce(&blocks);
        let spans: Vec<(u32, u32, u32)> = r.iter().map(|r| (r.rfn, r.first, r.last)).collect();
        assert_eq!(spans, vec![(10, 0, 2), (10, 4, 4), (11, 5, 6)]);
        assert_eq!(r.iter().map(BlockRange::len).sum::<u64>(), 6);
        assert!(coalesce(&[]).is_empty());
    }

    #[test]
    fn warmth_and_missing() {
        let hot = vec![k(1, 0), k(1, 1), k(2, 0), k(2, 1)];
        let resident: HashSet<BlockKey> = [k(1, 0), k(2, 1), k(3, 0)].into_iter().collect();
        assert_eq!(warmth(&hot, &resident), 0.5);
        assert_eq!(missing(&hot, &resident), vec![k(1, 1), k(2, 0)]);
        assert_eq!(warmth(&[], &resident), 1.0);
    }

    #[test]
    fn parses_rows_sorted_without_duplicates_or_nulls() {
        let row = |v: [&str; 4]| v.iter().map(|s| Some(s.to_string())).collect::<Vec<_>>();
        let rows = vec![
            row(["5", "1663", "11", "3"]),
            row(["5", "1663", "10", "7"]),
            row(["5", "1663", "10", "7"]),
            vec![None, None, None, None],
        ];
        assert_eq!(parse_blocks(&rows), vec![k(10, 7), k(11, 3)]);
        let hs = HotSet {
            blocks: parse_blocks(&rows),
            block_size: 8192,
            ..HotSet::default()
        };
        assert_eq!(hs.relfilenodes(), vec![10, 11]);
        assert_eq!(hs.bytes(), 16384);
    }

    #[test]
    fn hot_set_document_round_trips_and_stays_small() {
        let hot = HotSet {
            source: "node1".into(),
            captured_unix_ms: 42,
            blocks: vec![k(10, 0), k(10, 1), k(10, 2), k(11, 7)],
            databases: [(5, "app".to_string())].into_iter().collect(),
            block_size: 8192,
            took: Duration::from_millis(3),
        };
        let v = HotSetDoc::encode(&hot);
        assert_eq!(
            v["ranges"],
            serde_json::json!([[5, 1663, 10, 0, 2], [5, 1663, 11, 7, 7]])
        );
        let back = HotSetDoc::decode(&v).unwrap();
        assert_eq!(
            back,
            HotSet {
                took: Duration::ZERO,
                ..hot
            }
        );
        assert!(HotSetDoc::decode(&serde_json::json!({"x": 1})).is_none());
        // 200 000 scattered blocks do not fit: the document is cut to a prefix that does.
        let big = HotSet {
            blocks: (0..200_000).map(|i| k(10, i * 2)).collect(),
            ..HotSet::default()
        };
        let v = HotSetDoc::encode(&big);
        assert!(v.to_string().len() <= DOC_MAX_BYTES);
        let cut = HotSetDoc::decode(&v).unwrap().blocks;
        assert!(cut.len() > 10_000 && cut.len() < 200_000, "{}", cut.len());
        assert_eq!(cut[..], big.blocks[..cut.len()]);
    }
}
