//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::sync::mpsc;
use std::time::Duration;

/// Aborts the whole test binary, with a message, if the guard is still alive
/// after 60 seconds: a hang is a failure, not a stuck CI. (Not under Miri,
/// whose clock is virtual and whose runs are slow by design.)
pub struct Watchdog {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

pub fn watchdog(test: &'static str) -> Watchdog {
    if cfg!(miri) {
        return Watchdog {
            stop: None,
            thread: None,
        };
    }
    let (stop, stopped) = mpsc::channel::<()>();
    let thread = std::thread::spawn(move || {
        if let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(Duration::from_secs(60))
        {
            eprintln!("test `{test}` still running after 60 s: assuming a hang, aborting");
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

/// `n` normally, fewer under Miri.
pub fn iters(n: usize, miri: usize) -> usize {
    if cfg!(miri) { miri } else { n }
}
