//! Runnable programs that use several crates of the workspace together; see
//! `src/bin/`. Run one with `cargo run -p examples --bin NAME`.
