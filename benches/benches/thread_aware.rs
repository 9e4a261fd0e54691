//! `thread_aware`, single-thread rows (criterion). Groups are
//! `thread_aware/<workload>`; `ours*` rows are compared with the others by
//! `cargo xtask bench`. The two-thread counter is in
//! `thread_aware_interleaved.rs`.
//!
//! - `relocate-vec-u8/<size>`: relocating an inert `Vec<u8>` of 1 KiB ..
//!   64 MiB (`ours`, must be flat: no byte is touched) beside cloning it
//!   (`clone`, what a copying relocation would cost).
//! - `relocate-hit`: `PerCore` relocation into a slot that is already built,
//!   64 in a row (`ours-hit-x64`: one handle moved between two built slots,
//!   no clone or drop), beside 64 plain atomic loads (`atomic-load-x64`, the
//!   spec's yardstick: within 2x) and one `Arc` clone (`arc-clone`).
//! - `relocate-miss`: relocation into an empty slot (a fresh family every
//!   iteration, so the factory runs: `ours-miss`), beside building an `Arc`
//!   (`arc-new`).
//! - `clone-drop`: cloning and dropping a `PerCore` handle (`ours`) beside
//!   `std::sync::Arc` (`arc`).

use criterion::{BatchSize, BenchmarkId, Criterion, criterion_group, criterion_main};
use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use thread_aware::{PerCore, ThreadAware, create_manual_affinities};

fn relocate_vec(c: &mut Criterion) {
    let mut g = c.benchmark_group("thread_aware/relocate-vec-u8");
    let a = create_manual_affinities(&[2]);
    for (label, bytes) in [("1KiB", 1 << 10), ("1MiB", 1 << 20), ("64MiB", 64 << 20)] {
        let smoke = benches::smoke_test_mode();
        g.bench_with_input(BenchmarkId::new("ours", label), &bytes, |b, &bytes| {
            let mut v = Some(vec![7u8; bytes]);
            b.iter(|| {
                let moved = v.take().unwrap().relocated(a[0], a[1]);
                v = Some(black_box(moved));
            });
        });
        if !smoke || bytes <= 1 << 20 {
            g.bench_with_input(BenchmarkId::new("clone", label), &bytes, |b, &bytes| {
                let v = vec![7u8; bytes];
                b.iter(|| black_box(v.clone()));
            });
        }
    }
    g.finish();
}

fn relocate_hit(c: &mut Criterion) {
    let mut g = c.benchmark_group("thread_aware/relocate-hit");
    let a = create_manual_affinities(&[2]);
    let family = PerCore::new(|| AtomicU64::new(0)).relocated(a[0], a[1]);
    // Both slots built: every relocation below is a hit.
    let _warm = family.clone().relocated(a[1], a[0]);
    // 64 relocation hits in a row (one handle moved back and forth between
    // two built slots: no clone, no drop) beside 64 plain atomic loads:
    // criterion's time per iteration / 64 is the cost of one.
    let mut handle = Some(family.clone());
    g.bench_function("ours-hit-x64", |b| {
        b.iter(|| {
            let mut h = handle.take().unwrap();
            for i in 0..64 {
                h = h.relocated(a[i & 1], a[(i + 1) & 1]);
            }
            handle = Some(black_box(h));
        });
    });
    let arc = Arc::new(AtomicU64::new(0));
    g.bench_function("atomic-load-x64", |b| {
        b.iter(|| {
            let mut sum = 0;
            for _ in 0..64 {
                sum += black_box(&arc).load(Ordering::Acquire);
            }
            sum
        });
    });
    g.bench_function("arc-clone", |b| b.iter(|| black_box(Arc::clone(&arc))));
    g.finish();
}

fn relocate_miss(c: &mut Criterion) {
    let mut g = c.benchmark_group("thread_aware/relocate-miss");
    let a = create_manual_affinities(&[2]);
    g.bench_function("ours-miss", |b| {
        b.iter_batched(
            || PerCore::new(|| AtomicU64::new(0)),
            |family| black_box(family.relocated(a[0], a[1])),
            BatchSize::SmallInput,
        );
    });
    g.bench_function("arc-new", |b| {
        b.iter(|| black_box(Arc::new(AtomicU64::new(0))))
    });
    g.finish();
}

fn clone_drop(c: &mut Criterion) {
    let mut g = c.benchmark_group("thread_aware/clone-drop");
    let a = create_manual_affinities(&[2]);
    let ours = PerCore::new(|| AtomicU64::new(0)).relocated(a[0], a[1]);
    g.bench_function("ours", |b| b.iter(|| drop(black_box(ours.clone()))));
    let arc = Arc::new(AtomicU64::new(0));
    g.bench_function("arc", |b| b.iter(|| drop(black_box(Arc::clone(&arc)))));
    g.finish();
}

criterion_group!(
    benches,
    relocate_vec,
    relocate_hit,
    relocate_miss,
    clone_drop
);
criterion_main!(benches);
