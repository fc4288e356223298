//! The janitor's trim gives freed client memory back to the system with the allocator the
//! binary is built with (`pgsluice::allocator::CHOSEN`, as src/main.rs).
//!
//! One test in its own process: it reads the process's RSS, so nothing else may allocate
//! alongside it.

use pgsluice::daemon::trim::Trim;
use std::sync::{Arc, Barrier};

#[global_allocator]
static ALLOCATOR: pgsluice::allocator::Chosen = pgsluice::allocator::CHOSEN;

/// Worker threads standing in for the runtime's workers: they stay alive while the trim runs.
const THREADS: usize = 2;
/// Blocks per thread, sized like a login's buffers (1-3 KiB): 20,000 clients' worth in all.
const BLOCKS: usize = 10_000;
/// One block in `KEEP` stays allocated, spread over the heap like the clients that stay.
const KEEP: usize = 64;
/// The most of the growth still resident after the trim, in quarters. glibc and jemalloc give
/// back free memory in pages of 4 KiB or small slabs (5% and 15% left here); mimalloc only its
/// 64 KiB pages that hold no live block, so the blocks kept pin about half of them
/// (docs/benchmarks.md, "Allocator (session 4)").
#[cfg(feature = "mimalloc")]
const KEPT_QUARTERS: usize = 3;
#[cfg(not(feature = "mimalloc"))]
const KEPT_QUARTERS: usize = 1;

/// Resident set size of this process in bytes (/proc/self/statm, second field, in pages).
fn rss() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: usize = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    // SAFETY: sysconf only reads a system constant.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    pages * usize::try_from(page).unwrap_or(4096)
}

/// Runs one worker: allocate, wait, free all but one block in `KEEP`, wait for the trim,
/// then free the rest.
fn worker(seed: usize, steps: Arc<Barrier>) {
    let mut blocks: Vec<Vec<u8>> = (0..BLOCKS)
        .map(|i| vec![(i + seed) as u8; 1024 + (i * 37 + seed) % 2048])
        .collect();
    steps.wait(); // allocated
    steps.wait(); // peak measured
    let kept: Vec<Vec<u8>> = blocks
        .drain(..)
        .enumerate()
        .filter(|(i, _)| i % KEEP == 0)
        .map(|(_, b)| b)
        .collect();
    drop(blocks);
    steps.wait(); // freed
    steps.wait(); // trimmed and measured
    drop(kept);
}

#[test]
fn trim_returns_the_memory_of_clients_that_left() {
    let steps = Arc::new(Barrier::new(THREADS + 1));
    let base = rss();
    let threads: Vec<_> = (0..THREADS)
        .map(|seed| {
            let s = steps.clone();
            std::thread::spawn(move || worker(seed, s))
        })
        .collect();
    steps.wait();
    let peak = rss();
    steps.wait();
    steps.wait();
    let held = rss();
    let mut trim = Trim::default();
    assert!(!trim.pass(20_000), "clients arriving: no trim");
    assert!(trim.pass(20_000 / KEEP), "most clients left: trim");
    let after = rss();
    steps.wait();
    for t in threads {
        t.join().unwrap_or_default();
    }
    let grew = peak.saturating_sub(base);
    eprintln!("RSS: base {base}, peak {peak}, freed {held}, trimmed {after} bytes");
    assert!(
        grew > 20 << 20,
        "the blocks took {grew} bytes, expected over 20 MiB"
    );
    assert!(
        after.saturating_sub(base) < grew / 4 * KEPT_QUARTERS,
        "after the trim {} of {grew} bytes are still resident (held before it: {})",
        after.saturating_sub(base),
        held.saturating_sub(base)
    );
}
