//! Every raw system call trale makes, each wrapped once.
//!
//! The rest of the crate sees owned file descriptors and `io::Result`s, never
//! a raw `libc` call. Sockets themselves are `std::net` types switched to
//! non-blocking mode; only what std cannot do (epoll, eventfd, timerfd, a
//! non-blocking `connect`) is here.

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

/// Turns a `-1` return into the thread's `errno`.
fn check(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// Takes ownership of a descriptor that a syscall has just created.
fn adopt(fd: libc::c_int) -> OwnedFd {
    // SAFETY: every caller passes the non-negative return of a syscall that
    // creates a descriptor, before anything else could have seen it.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

/// What one ready file descriptor reported.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Event {
    pub(crate) token: u64,
    pub(crate) readable: bool,
    pub(crate) writable: bool,
    /// `EPOLLERR` or `EPOLLHUP`: both directions must find out.
    pub(crate) failed: bool,
}

/// An epoll instance.
#[derive(Debug)]
pub(crate) struct Epoll {
    fd: OwnedFd,
}

impl Epoll {
    pub(crate) fn new() -> io::Result<Self> {
        // SAFETY: `epoll_create1` takes no pointers; a non-negative return is a
        // new descriptor that nothing else owns.
        let fd = check(unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) })?;
        Ok(Self { fd: adopt(fd) })
    }

    fn ctl(&self, op: libc::c_int, fd: RawFd, events: u32, token: u64) -> io::Result<()> {
        let mut ev = libc::epoll_event { events, u64: token };
        // SAFETY: `ev` is a valid, initialised `epoll_event` that outlives the
        // call (the kernel copies it); both descriptors are open.
        check(unsafe { libc::epoll_ctl(self.fd.as_raw_fd(), op, fd, &mut ev) })?;
        Ok(())
    }

    /// Watches `fd` for both directions, edge-triggered: one event per
    /// change, so a socket nobody reads never makes the loop spin.
    pub(crate) fn add_edge(&self, fd: RawFd, token: u64) -> io::Result<()> {
        let events = libc::EPOLLIN | libc::EPOLLOUT | libc::EPOLLRDHUP | libc::EPOLLET;
        self.ctl(libc::EPOLL_CTL_ADD, fd, events as u32, token)
    }

    /// Watches `fd` for reading, edge-triggered (the eventfd and timerfd:
    /// every write or expiry is a new edge, and the loop drains them when
    /// they fire).
    pub(crate) fn add_reader(&self, fd: RawFd, token: u64) -> io::Result<()> {
        self.ctl(
            libc::EPOLL_CTL_ADD,
            fd,
            (libc::EPOLLIN | libc::EPOLLET) as u32,
            token,
        )
    }

    pub(crate) fn delete(&self, fd: RawFd) -> io::Result<()> {
        self.ctl(libc::EPOLL_CTL_DEL, fd, 0, 0)
    }

    /// Waits for events; `None` waits without limit. A signal (`EINTR`) is
    /// retried, with what is left of the timeout.
    pub(crate) fn wait(
        &self,
        buf: &mut Vec<libc::epoll_event>,
        timeout: Option<Duration>,
        out: &mut Vec<Event>,
    ) -> io::Result<()> {
        let deadline = timeout.map(|t| Instant::now() + t);
        loop {
            let ms = match deadline {
                None => -1,
                Some(d) => {
                    let left = d.saturating_duration_since(Instant::now());
                    // Round up: waking early would make the caller spin.
                    let ms = left.as_nanos().div_ceil(1_000_000);
                    ms.min(i32::MAX as u128) as libc::c_int
                }
            };
            buf.clear();
            // SAFETY: the kernel writes at most `capacity` events into the
            // spare capacity of `buf`; `set_len` below covers exactly the
            // number it reports.
            let n = unsafe {
                libc::epoll_wait(
                    self.fd.as_raw_fd(),
                    buf.as_mut_ptr(),
                    buf.capacity().min(i32::MAX as usize) as libc::c_int,
                    ms,
                )
            };
            match check(n) {
                Ok(n) => {
                    // SAFETY: the kernel initialised the first `n` entries.
                    unsafe { buf.set_len(n as usize) };
                    break;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
        for ev in buf.iter() {
            let bits = ev.events as libc::c_int;
            out.push(Event {
                token: ev.u64,
                readable: bits & (libc::EPOLLIN | libc::EPOLLRDHUP | libc::EPOLLPRI) != 0,
                writable: bits & libc::EPOLLOUT != 0,
                failed: bits & (libc::EPOLLERR | libc::EPOLLHUP) != 0,
            });
        }
        Ok(())
    }
}

/// An eventfd: how another thread wakes a sleeping executor.
#[derive(Debug)]
pub(crate) struct EventFd {
    fd: OwnedFd,
}

impl EventFd {
    pub(crate) fn new() -> io::Result<Self> {
        // SAFETY: no pointers; a non-negative return is a new descriptor.
        let fd = check(unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) })?;
        Ok(Self { fd: adopt(fd) })
    }

    pub(crate) fn raw(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// Adds one to the counter: a new readiness event for the epoll
    /// instance watching it. Never blocks: if the counter is full (after
    /// 2^64 - 2 un-drained wakes) it is reset and written again.
    pub(crate) fn notify(&self) {
        let one: u64 = 1;
        loop {
            // SAFETY: writes 8 bytes from a live `u64`.
            let n = unsafe { libc::write(self.raw(), (&raw const one).cast(), 8) };
            if n >= 0 {
                return;
            }
            match io::Error::last_os_error().kind() {
                io::ErrorKind::Interrupted => {}
                io::ErrorKind::WouldBlock => self.drain(),
                _ => return,
            }
        }
    }

    /// Resets the counter (making the fd unreadable again).
    pub(crate) fn drain(&self) {
        let mut value: u64 = 0;
        loop {
            // SAFETY: reads at most 8 bytes into a live `u64`.
            let n = unsafe { libc::read(self.raw(), (&raw mut value).cast(), 8) };
            if n >= 0 || io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
                return;
            }
        }
    }
}

/// A `CLOCK_MONOTONIC` timerfd armed to one absolute deadline.
///
/// Miri has no timerfd: under Miri the deadline is only remembered, and the
/// reactor turns it into `epoll_wait`'s timeout instead (millisecond
/// resolution, which the executor-only tests do not notice).
#[derive(Debug)]
pub(crate) struct TimerFd {
    #[cfg(not(miri))]
    fd: OwnedFd,
    #[cfg(miri)]
    armed: std::sync::Mutex<Option<Instant>>,
}

impl TimerFd {
    #[cfg(not(miri))]
    pub(crate) fn new() -> io::Result<Self> {
        // SAFETY: no pointers; a non-negative return is a new descriptor.
        let fd = check(unsafe {
            libc::timerfd_create(
                libc::CLOCK_MONOTONIC,
                libc::TFD_NONBLOCK | libc::TFD_CLOEXEC,
            )
        })?;
        Ok(Self { fd: adopt(fd) })
    }

    #[cfg(miri)]
    pub(crate) fn new() -> io::Result<Self> {
        Ok(Self {
            armed: std::sync::Mutex::new(None),
        })
    }

    /// The descriptor to watch, if this build has one.
    pub(crate) fn raw(&self) -> Option<RawFd> {
        #[cfg(not(miri))]
        return Some(self.fd.as_raw_fd());
        #[cfg(miri)]
        return None;
    }

    /// Arms the timer to fire at `deadline` (replacing any earlier setting).
    pub(crate) fn arm(&self, deadline: Instant) {
        #[cfg(not(miri))]
        {
            // `Instant` is CLOCK_MONOTONIC on Linux, but its fields are private:
            // translate through "how far from now".
            let now = Instant::now();
            let mut ts = libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            };
            // SAFETY: writes one `timespec` into a live local.
            unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
            let base = Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32);
            // A deadline in the past still arms (at "now"): zero would disarm.
            let at = base
                + deadline
                    .saturating_duration_since(now)
                    .max(Duration::from_nanos(1));
            let spec = libc::itimerspec {
                it_interval: libc::timespec {
                    tv_sec: 0,
                    tv_nsec: 0,
                },
                it_value: libc::timespec {
                    tv_sec: at.as_secs() as libc::time_t,
                    tv_nsec: at.subsec_nanos() as libc::c_long,
                },
            };
            // SAFETY: `spec` is a valid `itimerspec`; the old value is not asked for.
            unsafe {
                libc::timerfd_settime(
                    self.fd.as_raw_fd(),
                    libc::TFD_TIMER_ABSTIME,
                    &spec,
                    std::ptr::null_mut(),
                )
            };
        }
        #[cfg(miri)]
        {
            *self.armed.lock().unwrap_or_else(|e| e.into_inner()) = Some(deadline);
        }
    }

    /// Forgets the armed deadline: no timer is pending any more. The real
    /// timerfd is one-shot and has fired (or will fire once, harmlessly);
    /// the emulation must stop turning the deadline into a zero timeout.
    pub(crate) fn disarm(&self) {
        #[cfg(miri)]
        {
            *self.armed.lock().unwrap_or_else(|e| e.into_inner()) = None;
        }
    }

    /// Clears the expiry count after the timer fired.
    pub(crate) fn drain(&self) {
        #[cfg(not(miri))]
        {
            let mut expirations: u64 = 0;
            // SAFETY: reads at most 8 bytes into a live `u64`; EAGAIN (already
            // drained) is fine.
            unsafe { libc::read(self.fd.as_raw_fd(), (&raw mut expirations).cast(), 8) };
        }
    }

    /// Under Miri: how long `epoll_wait` may sleep before the armed deadline.
    pub(crate) fn emulated_timeout(&self) -> Option<Duration> {
        #[cfg(miri)]
        return self
            .armed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .map(|d| d.saturating_duration_since(Instant::now()));
        #[cfg(not(miri))]
        return None;
    }
}

/// Starts a non-blocking TCP connect to `addr`. The returned socket is
/// connected once it turns writable and [`take_socket_error`] says `None`.
pub(crate) fn tcp_connect_start(addr: SocketAddr) -> io::Result<std::net::TcpStream> {
    let domain = match addr {
        SocketAddr::V4(_) => libc::AF_INET,
        SocketAddr::V6(_) => libc::AF_INET6,
    };
    // SAFETY: no pointers; a non-negative return is a new descriptor.
    let fd = check(unsafe {
        libc::socket(
            domain,
            libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
        )
    })?;
    // SAFETY: `fd` was just created and is owned by no one else; from here on
    // it is closed by the stream's drop on every path.
    let stream = unsafe { std::net::TcpStream::from_raw_fd(fd) };
    let (storage, len) = sockaddr_of(addr);
    // SAFETY: `storage` holds a valid sockaddr of `len` bytes for the family.
    let ret = unsafe { libc::connect(fd, (&raw const storage).cast(), len) };
    match check(ret) {
        Ok(_) => Ok(stream),
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => Ok(stream),
        Err(e) => Err(e),
    }
}

/// Reads and clears `SO_ERROR`: the outcome of a non-blocking connect.
pub(crate) fn take_socket_error(fd: RawFd) -> io::Result<Option<io::Error>> {
    let mut err: libc::c_int = 0;
    let mut len = size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `err` and `len` are live locals of the sizes passed.
    check(unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_ERROR,
            (&raw mut err).cast(),
            &mut len,
        )
    })?;
    Ok((err != 0).then(|| io::Error::from_raw_os_error(err)))
}

fn sockaddr_of(addr: SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: all-zero bytes are a valid `sockaddr_storage`.
    let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let len = match addr {
        SocketAddr::V4(a) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: a.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(a.ip().octets()),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: `sockaddr_storage` is larger than and suitably aligned
            // for `sockaddr_in`.
            unsafe { (&raw mut storage).cast::<libc::sockaddr_in>().write(sin) };
            size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(a) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: a.port().to_be(),
                sin6_flowinfo: a.flowinfo(),
                sin6_addr: libc::in6_addr {
                    s6_addr: a.ip().octets(),
                },
                sin6_scope_id: a.scope_id(),
            };
            // SAFETY: `sockaddr_storage` is larger than and suitably aligned
            // for `sockaddr_in6`.
            unsafe { (&raw mut storage).cast::<libc::sockaddr_in6>().write(sin6) };
            size_of::<libc::sockaddr_in6>()
        }
    };
    (storage, len as libc::socklen_t)
}
