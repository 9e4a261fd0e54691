//! Helpers for the tests that run a stage over a Unix datagram pair.

use std::os::unix::net::UnixDatagram;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Reads one datagram of exactly `N` bytes; `None` at the socket's read
/// time-out (or for a datagram of another size).
pub fn recv_exact<const N: usize>(r: &UnixDatagram) -> Result<Option<[u8; N]>, std::io::ErrorKind> {
    let mut buf = [0u8; N];
    match r.recv(&mut buf) {
        Ok(n) if n == N => Ok(Some(buf)),
        Ok(_) => Ok(None),
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ) =>
        {
            Ok(None)
        }
        Err(e) => Err(e.kind()),
    }
}

/// Reads one `[to, seq]` item (two little-endian `u32`s); `None` at the
/// socket's read time-out (or for a datagram of another size).
pub fn read_item(r: &UnixDatagram) -> Result<Option<(u32, u32)>, std::io::ErrorKind> {
    Ok(recv_exact::<8>(r)?.map(|buf| {
        (
            u32::from_le_bytes(buf[..4].try_into().unwrap()),
            u32::from_le_bytes(buf[4..].try_into().unwrap()),
        )
    }))
}

/// Whether `done` stays unset for a while (a wrongly woken thread would
/// have set it). A wait that gives a bug the chance to show; it measures
/// nothing.
pub fn stays_unset(done: &AtomicBool) -> bool {
    std::thread::sleep(Duration::from_millis(100));
    !done.load(Ordering::Acquire)
}
