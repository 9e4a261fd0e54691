//! The two-thread ping-pong rows of the multishot suite, measured in
//! interleaved rounds, quiet and loaded, wall time and CPU time of both
//! threads (`benches::interleaved`, whose documentation says how and why).
//!
//! These are the suite's only two-thread rows. Why not criterion: on a
//! shared virtual machine the cost of a cache-line transfer between the two
//! vCPUs drifts (we see whole minutes at ~5x), and criterion measures one
//! row after the other, so two rows can land in different regimes. A ratio
//! taken within one round compares like with like.
//!
//! Three groups:
//! - task-style, busy-waiting executor (`spin_block_on` on both sides, the
//!   same for every channel): each channel's own register / send / wake /
//!   re-poll path, with the cost of waking a parked thread taken out;
//! - task-style, parking executor, the way users run tasks: every channel in
//!   `sync_core::future::block_on` (one executor for all, so the rows differ
//!   only in the channel: the fair comparison), plus tokio in its own
//!   current-thread runtime on each side (what a tokio user sees; its
//!   runtime's park and re-poll path differs from `block_on`'s, so read it
//!   beside, not instead of, the `block_on` row);
//! - blocking: each channel's own blocking receive on both sides.
//!
//! Writes `target/bench-report.d/multishot-interleaved.md`. `BENCH_ROUNDS`
//! and `BENCH_RUN_MS` shrink a run while developing; `BENCH_SECTION=blocking`
//! (or `spin`, `park`) runs that group only and writes no report (a partial
//! report would replace the whole one; the table is on the terminal);
//! `--test` runs every row once, briefly.

#[path = "shared/multishot_pingpong.rs"]
mod pingpong;
use benches::interleaved::{Design, Settings, compare};
use pingpong::Wait;

/// One row per channel, both sides waiting as `wait` says (futures'
/// oneshot has no blocking receive).
fn rows(wait: Wait) -> Vec<Design> {
    let mut rows = vec![
        Design::new("ours-recycled", move |n| pingpong::ours(n, wait)),
        Design::new("tokio", move |n| pingpong::tokio(n, wait)),
        Design::new("oneshot", move |n| pingpong::oneshot(n, wait)),
    ];
    if !matches!(wait, Wait::Blocking) {
        rows.push(Design::new("futures", move |n| pingpong::futures(n, wait)));
    }
    rows
}

fn main() {
    // 12 rows x (15 quiet + 15 loaded rounds + 2 warm-up runs) x 0.3 s:
    // about 2 minutes.
    let settings = Settings::from_env(15, 300);
    let mut park_task = rows(Wait::ParkTask);
    park_task.push(Design::new("tokio (own current-thread runtime)", |n| {
        pingpong::tokio(n, Wait::TokioRuntime)
    }));
    let section = std::env::var("BENCH_SECTION").ok();
    let wanted = |name: &str| section.as_deref().is_none_or(|s| s == name);
    let mut md = String::from("## multishot: two-thread ping-pong, interleaved rounds\n\n");
    if wanted("spin") {
        md += &compare(
            "task-style, busy-waiting executor (both sides `spin_block_on`)",
            &rows(Wait::SpinTask),
            &settings,
        );
    }
    if wanted("park") {
        md += &compare(
            "task-style, parking executor (both sides `sync_core::future::block_on`; \
             one tokio row in tokio's own current-thread runtime)",
            &park_task,
            &settings,
        );
    }
    if wanted("blocking") {
        md += &compare(
            "blocking (each channel's own blocking receive on both sides)",
            &rows(Wait::Blocking),
            &settings,
        );
    }
    if section.is_none() && !settings.smoke {
        std::fs::write(benches::report_fragment_path("multishot-interleaved"), md).unwrap();
    }
}
