//! Criterion benchmarks of the hot-path codec: frame headers over a typical response burst,
//! the backend scan, startup-packet parsing and parameter-set interning.
//!
//! Run: `cargo bench --bench codec`.

use bytes::BytesMut;
use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use pgsluice::proto::{builders, frame_len, scan_backend, startup, Frames};
use pgsluice::server::ParamSet;

/// RowDescription, one DataRow, CommandComplete, ReadyForQuery: a `pgbench -S` answer.
fn select_answer(rows: usize) -> BytesMut {
    let mut b = BytesMut::new();
    builders::row_description(&mut b, &["abalance"]);
    for _ in 0..rows {
        builders::data_row(&mut b, &[Some("-4711")]);
    }
    builders::command_complete(&mut b, "SELECT 1");
    builders::ready_for_query(&mut b, b'I');
    b
}

fn frames(c: &mut Criterion) {
    let one = select_answer(1);
    let many = select_answer(1000);
    let mut g = c.benchmark_group("backend");
    g.throughput(Throughput::Bytes(one.len() as u64));
    g.bench_function("scan_backend/select_1_row", |b| {
        b.iter(|| scan_backend(black_box(&one), 1 << 30))
    });
    g.throughput(Throughput::Bytes(many.len() as u64));
    g.bench_function("scan_backend/select_1000_rows", |b| {
        b.iter(|| scan_backend(black_box(&many), 1 << 30))
    });
    g.bench_function("frames_iter/select_1000_rows", |b| {
        b.iter(|| {
            Frames::new(black_box(&many), 1 << 30)
                .filter_map(Result::ok)
                .count()
        })
    });
    g.bench_function("frame_len/header", |b| {
        b.iter(|| frame_len(black_box(&one), 1 << 30))
    });
    g.finish();
}

fn startup_packets(c: &mut Criterion) {
    let pkt = startup::startup_message(&[
        ("user", "app"),
        ("database", "app"),
        ("application_name", "pgbench"),
        ("client_encoding", "UTF8"),
    ]);
    c.bench_function("startup/parse_initial", |b| {
        b.iter(|| startup::parse_initial(black_box(&pkt), 10_000))
    });
}

fn params(c: &mut Criterion) {
    let pairs = || {
        vec![
            ("application_name".to_string(), "pgbench".to_string()),
            ("TimeZone".to_string(), "UTC".to_string()),
        ]
    };
    let held = ParamSet::new(pairs()).intern();
    c.bench_function("params/intern_existing", |b| {
        b.iter(|| ParamSet::new(black_box(pairs())).intern())
    });
    drop(held);
}

criterion_group!(benches, frames, startup_packets, params);
criterion_main!(benches);
