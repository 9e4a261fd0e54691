//! An anonymous pipe (Linux): a descriptor that turns readable when the
//! test writes into the other end, with plain `read`/`write` calls that
//! Miri also emulates (its sockets have no `send`, which `UnixStream` uses).

use std::fs::File;
use std::os::fd::{FromRawFd, OwnedFd};

/// `O_CLOEXEC` on Linux.
const O_CLOEXEC: i32 = 0o2_000_000;

unsafe extern "C" {
    fn pipe2(fds: *mut i32, flags: i32) -> i32;
}

/// A new pipe: `(read end, write end)`.
pub fn pipe() -> (File, File) {
    let mut fds = [-1i32; 2];
    // SAFETY: `fds` is writable and holds the two descriptors asked for.
    let rc = unsafe { pipe2(fds.as_mut_ptr(), O_CLOEXEC) };
    assert_eq!(rc, 0, "pipe2 failed: {}", std::io::Error::last_os_error());
    // SAFETY: both are new descriptors that nothing else owns, each adopted
    // once.
    let (r, w) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    (File::from(r), File::from(w))
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};

    #[test]
    fn what_is_written_comes_out_of_the_other_end() {
        let (mut r, mut w) = super::pipe();
        w.write_all(b"ab").unwrap();
        let mut got = [0u8; 2];
        r.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"ab");
    }
}
