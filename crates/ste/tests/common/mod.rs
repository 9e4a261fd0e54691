//! Helpers shared by the integration tests: the workspace's `testkit`
//! (a hang watchdog, iteration counts scaled down under Miri).
#![allow(unused_imports)]

pub use testkit::{Watchdog, iters, watchdog};
