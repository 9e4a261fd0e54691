//! The two-thread ping-pong rows of the multishot suite, measured
//! *interleaved*: each round runs every implementation once, back to back,
//! and the report gives the median over rounds plus the median of the
//! per-round ratios ours/peer.
//!
//! These are the suite's only two-thread rows. Why not criterion: on a
//! shared virtual machine the cost of a cache-line transfer between the two
//! vCPUs drifts (we see whole minutes at ~5x), and criterion measures one
//! row after the other, so two rows can land in different regimes. A ratio
//! taken within one round compares like with like. Writes
//! `target/bench-report.d/multishot-interleaved.md`.

#[path = "shared/multishot_pingpong.rs"]
mod pingpong;
use pingpong::Wait;
use std::time::Duration;

type Row = (&'static str, fn(u64) -> Duration);

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Runs `rows` interleaved and returns a Markdown table.
fn compare(title: &str, rows: &[Row], rounds: usize, iters: u64) -> String {
    for (_, run) in rows {
        run(iters / 4); // warm-up: threads, allocator caches
    }
    let mut per_trip: Vec<Vec<f64>> = vec![Vec::new(); rows.len()];
    for _ in 0..rounds {
        for (i, (_, run)) in rows.iter().enumerate() {
            per_trip[i].push(run(iters).as_nanos() as f64 / iters as f64);
        }
    }
    let mut md = format!(
        "### {title}\n\n{rounds} rounds x {iters} round trips, every implementation once per round.\n\n\
         | implementation | median ns / round trip | ours / this (median of per-round ratios) |\n|---|---:|---:|\n"
    );
    for (i, (name, _)) in rows.iter().enumerate() {
        let ratio = median(
            per_trip[0]
                .iter()
                .zip(&per_trip[i])
                .map(|(ours, peer)| ours / peer)
                .collect(),
        );
        let ns = median(per_trip[i].clone());
        md.push_str(&format!("| {name} | {ns:.0} | {ratio:.2} |\n"));
    }
    md.push('\n');
    md
}

fn main() {
    let (rounds, iters) = if benches::smoke_test_mode() {
        (1, 100)
    } else {
        (41, 20_000)
    };
    let task: [Row; 4] = [
        ("ours-recycled", |n| pingpong::ours(n, Wait::Task)),
        ("tokio", |n| pingpong::tokio(n, Wait::Task)),
        ("futures", pingpong::futures),
        ("oneshot", |n| pingpong::oneshot(n, Wait::Task)),
    ];
    let blocking: [Row; 3] = [
        ("ours-recycled", |n| pingpong::ours(n, Wait::Blocking)),
        ("tokio", |n| pingpong::tokio(n, Wait::Blocking)),
        ("oneshot", |n| pingpong::oneshot(n, Wait::Blocking)),
    ];
    let mut md = String::from("## multishot: two-thread ping-pong, interleaved rounds\n\n");
    md += &compare(
        "task-style (both sides `spin_block_on`, woken by waker)",
        &task,
        rounds,
        iters,
    );
    // Blocking round trips park, so they are ~100x slower: fewer of them.
    md += &compare(
        "blocking (each channel's own blocking receive on both sides)",
        &blocking,
        rounds,
        iters / 10,
    );
    println!("{md}");
    if !benches::smoke_test_mode() {
        std::fs::write(benches::report_fragment_path("multishot-interleaved"), md).unwrap();
    }
}
