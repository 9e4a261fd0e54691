//! File descriptors: a constant number per executor, none leaked after
//! 10,000 spawns, sockets and timers, and 100,000 concurrent timers under a
//! low fd limit. One test per binary run: each counts the process's fds.
#![cfg(not(miri))]

use std::os::fd::AsRawFd;
use std::time::Duration;
use trale::net::{TcpListener, TcpStream, UdpSocket};
use trale::task::{Executor, yield_now};
use trale::timer::Timer;

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

/// Serialises the tests of this file: they count fds process-wide.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[test]
fn no_fd_leaks_after_10_000_spawns_sockets_and_timers() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let _dog = testkit::watchdog("no_fd_leaks_after_10_000_spawns_sockets_and_timers");
    let baseline = open_fds();
    for _ in 0..10 {
        Executor::block_on(async {
            // Three per executor, however much it does.
            assert_eq!(open_fds(), baseline + 3);
            // 1,000 spawns per round.
            let joiners: Vec<_> = (0..1000)
                .map(|i| Executor::spawn(async move { i }))
                .collect();
            for (i, j) in joiners.into_iter().enumerate() {
                assert_eq!(j.await, i);
            }
            // 1,000 timers per round, half of them cancelled.
            let sleepers: Vec<_> = (0..1000u64)
                .map(|i| {
                    Executor::spawn(async move {
                        let sleep = Timer::sleep(Duration::from_micros(10 * (i % 50)));
                        if i % 2 == 0 {
                            let _ = Timer::timeout(Duration::ZERO, sleep).await;
                        } else {
                            sleep.await;
                        }
                    })
                })
                .collect();
            for s in sleepers {
                s.await;
            }
            assert_eq!(open_fds(), baseline + 3);
            // 1,000 sockets per round, each registered, some with a parked
            // reader dropped, some aborted with it.
            for i in 0..1000 {
                let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
                if i % 2 == 0 {
                    let mut buf = [0u8; 4];
                    let _ = Timer::timeout(Duration::ZERO, socket.recv_from(&mut buf)).await;
                } else {
                    let task = Executor::spawn(async move {
                        let _ = socket.recv_from(&mut [0u8; 4]).await;
                    });
                    yield_now().await;
                    task.abort();
                    let _ = task.result().await;
                }
            }
            // And a few TCP connections.
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = listener.local_addr().unwrap();
            for _ in 0..20 {
                let (client, accepted) =
                    futures_join(TcpStream::connect(addr), listener.accept()).await;
                drop((client.unwrap(), accepted.unwrap()));
            }
            drop(listener);
            assert_eq!(open_fds(), baseline + 3);
        });
        assert_eq!(open_fds(), baseline, "an executor's fds outlived it");
    }
}

/// A socket that waited on an executor closes its fd when dropped after
/// abort.
#[test]
fn abort_closes_the_task_sockets() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let _dog = testkit::watchdog("abort_closes_the_task_sockets");
    Executor::block_on(async {
        let before = open_fds();
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        let fd = socket.as_raw_fd();
        assert_eq!(open_fds(), before + 1);
        let task = Executor::spawn(async move {
            let _ = socket.recv_from(&mut [0u8; 4]).await;
        });
        yield_now().await;
        task.abort();
        let _ = task.result().await;
        assert_eq!(open_fds(), before, "fd {fd} still open after abort");
    });
}

/// 100,000 concurrent sleeps with the fd limit at 64: timers take no fds.
#[test]
fn one_hundred_thousand_timers_under_a_low_fd_limit() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let _dog = testkit::watchdog("one_hundred_thousand_timers_under_a_low_fd_limit");
    let mut old = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: get/setrlimit read and write one live `rlimit`.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut old), 0);
        let low = libc::rlimit {
            rlim_cur: 64,
            rlim_max: old.rlim_max,
        };
        assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &low), 0);
    }
    assert!(open_fds() < 40, "too many fds open to test a limit of 64");
    let fired = Executor::block_on(async {
        let joiners: Vec<_> = (0..100_000u64)
            .map(|i| {
                Executor::spawn(async move {
                    Timer::sleep(Duration::from_millis(20 + i % 30)).await;
                    1u64
                })
            })
            .collect();
        let mut fired = 0;
        for j in joiners {
            fired += j.await;
        }
        fired
    });
    // SAFETY: as above.
    unsafe { assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &old), 0) };
    assert_eq!(fired, 100_000);
}

/// Polls two futures together (a minimal join, to keep peers out of tests).
async fn futures_join<A: std::future::Future, B: std::future::Future>(
    a: A,
    b: B,
) -> (A::Output, B::Output) {
    let mut a = std::pin::pin!(a);
    let mut b = std::pin::pin!(b);
    let (mut ra, mut rb) = (None, None);
    std::future::poll_fn(|cx| {
        if ra.is_none() {
            if let std::task::Poll::Ready(v) = a.as_mut().poll(cx) {
                ra = Some(v);
            }
        }
        if rb.is_none() {
            if let std::task::Poll::Ready(v) = b.as_mut().poll(cx) {
                rb = Some(v);
            }
        }
        if ra.is_some() && rb.is_some() {
            std::task::Poll::Ready((ra.take().unwrap(), rb.take().unwrap()))
        } else {
            std::task::Poll::Pending
        }
    })
    .await
}
