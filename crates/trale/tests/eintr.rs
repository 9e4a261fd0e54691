//! A signal every millisecond at the executor's thread while it sleeps,
//! sends, receives, accepts and connects: every interrupted `epoll_wait` and
//! socket call is retried; nothing fails with `Interrupted`.
#![cfg(not(miri))]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;
use trale::net::{TcpListener, TcpStream, UdpSocket};
use trale::task::Executor;
use trale::timer::Timer;

static SIGNALS: AtomicUsize = AtomicUsize::new(0);

extern "C" fn on_signal(_: libc::c_int) {
    SIGNALS.fetch_add(1, Ordering::Relaxed);
}

#[test]
fn signals_every_millisecond_interrupt_nothing() {
    let _dog = testkit::watchdog("signals_every_millisecond_interrupt_nothing");
    // SAFETY: installs a handler that only bumps an atomic, without
    // SA_RESTART, so blocked syscalls really fail with EINTR.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as usize;
        action.sa_flags = 0;
        libc::sigemptyset(&mut action.sa_mask);
        assert_eq!(
            libc::sigaction(libc::SIGUSR1, &action, std::ptr::null_mut()),
            0
        );
    }
    // SAFETY: `pthread_self` has no preconditions.
    let target = unsafe { libc::pthread_self() };
    let stop = Arc::new(AtomicBool::new(false));
    let stop2 = stop.clone();
    let signaller = std::thread::spawn(move || {
        while !stop2.load(Ordering::SeqCst) {
            // SAFETY: `target` is this test's thread, alive until `stop` is
            // set and this thread is joined.
            unsafe { libc::pthread_kill(target, libc::SIGUSR1) };
            std::thread::sleep(Duration::from_millis(1));
        }
    });

    Executor::block_on(async {
        // Sleeps: epoll_wait interrupted many times.
        for _ in 0..20 {
            Timer::sleep(Duration::from_millis(5)).await;
        }
        // UDP round trips.
        let server = UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = server.local_addr().unwrap();
        let echo = Executor::spawn(async move {
            let mut buf = [0u8; 64];
            for _ in 0..200 {
                let (n, from) = server.recv_from(&mut buf).await.unwrap();
                server.send_to(&buf[..n], from).await.unwrap();
            }
        });
        let client = UdpSocket::bind("127.0.0.1:0").unwrap();
        let mut buf = [0u8; 64];
        for i in 0..200u8 {
            client.send_to(&[i; 64], addr).await.unwrap();
            let (n, _) = client.recv_from(&mut buf).await.unwrap();
            assert_eq!(&buf[..n], &[i; 64]);
        }
        echo.await;
        // TCP: accept, connect, 4 MiB each way.
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = Executor::spawn(async move {
            let (s, _) = listener.accept().await.unwrap();
            let mut buf = vec![0u8; 1 << 16];
            loop {
                let n = s.read(&mut buf).await.unwrap();
                if n == 0 {
                    break;
                }
                s.write_all(&buf[..n]).await.unwrap();
            }
        });
        let stream = Arc::new(TcpStream::connect(addr).await.unwrap());
        let data: Vec<u8> = (0..4u32 << 20).map(|i| i as u8).collect();
        let writer = {
            let (stream, data) = (stream.clone(), data.clone());
            Executor::spawn(async move {
                stream.write_all(&data).await.unwrap();
                stream.shutdown(std::net::Shutdown::Write).unwrap();
            })
        };
        let mut back = vec![0u8; data.len()];
        stream.read_exact(&mut back).await.unwrap();
        assert!(back == data);
        writer.await;
        server.await;
    });

    stop.store(true, Ordering::SeqCst);
    signaller.join().unwrap();
    let n = SIGNALS.load(Ordering::Relaxed);
    assert!(
        n >= 20,
        "only {n} signals were delivered: the test did not test EINTR"
    );
}
