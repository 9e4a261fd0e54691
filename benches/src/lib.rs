//! Shared helpers for the bench suites in `benches/`.

use std::path::PathBuf;

/// Where suites put Markdown fragments that `cargo xtask bench` appends to
/// `target/bench-report.md` (for figures criterion cannot produce: tail
/// percentiles, allocation counts).
pub fn report_fragment_path(name: &str) -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let dir = root.join("target/bench-report.d");
    let _ = std::fs::create_dir_all(&dir);
    dir.join(format!("{name}.md"))
}

/// Whether the bench binary was started as a smoke test
/// (`cargo bench -- --test`): run each workload once, assert, measure nothing.
pub fn smoke_test_mode() -> bool {
    std::env::args().any(|a| a == "--test")
}
