//! A per-test hang detector.

use std::sync::mpsc;
use std::time::Duration;

/// How long a test may run before it is taken for a hang.
const LIMIT: Duration = Duration::from_secs(60);

/// Aborts the whole test binary, with a message naming the test, if it is
/// still alive after 60 seconds. Dropping it (at the end of the test, or
/// while the test unwinds) disarms it.
#[must_use = "the watchdog is disarmed as soon as it is dropped"]
pub struct Watchdog {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// Arms a [`Watchdog`] for the test named `test`. Off under Miri, whose
/// clock is virtual and whose runs are slow by design, and under loom,
/// which reports a deadlock itself and may explore a model for longer.
pub fn watchdog(test: &'static str) -> Watchdog {
    if cfg!(miri) || cfg!(loom) {
        return Watchdog {
            stop: None,
            thread: None,
        };
    }
    let (stop, stopped) = mpsc::channel::<()>();
    let thread = std::thread::spawn(move || {
        if let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(LIMIT) {
            eprintln!(
                "test `{test}` still running after {} s: assuming a hang, aborting",
                LIMIT.as_secs()
            );
            std::process::abort();
        }
    });
    Watchdog {
        stop: Some(stop),
        thread: Some(thread),
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// `n` normally, `miri` under Miri (where every iteration is slow).
pub fn iters(n: usize, miri: usize) -> usize {
    if cfg!(miri) { miri } else { n }
}
