//! `Send`/`Sync` exactly as documented.

use static_assertions::{assert_impl_all, assert_not_impl_any};
use std::rc::Rc;
use trale::net::{TcpListener, TcpStream, UdpSocket};
use trale::task::{Executor, JoinError, JoinHandle, TaskJoiner, YieldNow};
use trale::timer::{Elapsed, Interval, Sleep, Timer};

assert_impl_all!(UdpSocket: Send, Sync);
assert_impl_all!(TcpListener: Send, Sync);
assert_impl_all!(TcpStream: Send, Sync);
assert_impl_all!(TaskJoiner<u32>: Send, Sync, Unpin);
assert_impl_all!(JoinHandle<Vec<u8>>: Send, Sync);
assert_not_impl_any!(TaskJoiner<Rc<u8>>: Send);
assert_impl_all!(Sleep: Send, Sync, Unpin);
assert_impl_all!(Interval: Send, Sync);
assert_impl_all!(YieldNow: Send, Sync);
assert_impl_all!(JoinError: Send, Sync, std::error::Error);
assert_impl_all!(Elapsed: Send, Sync, std::error::Error);

fn is_send<T: Send>(_: &T) {}

/// Every socket future is `Send`: a task owning a socket can be spawned.
#[test]
#[cfg_attr(miri, ignore = "opens sockets")]
fn socket_and_timer_futures_are_send() {
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut buf = [0u8; 4];
    is_send(&udp.recv_from(&mut buf));
    is_send(&udp.send_to(b"", "127.0.0.1:9"));
    is_send(&udp.recv(&mut buf));
    is_send(&udp.send(b""));
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    is_send(&listener.accept());
    is_send(&TcpStream::connect("127.0.0.1:9"));
    is_send(&Timer::timeout(std::time::Duration::ZERO, async {}));
    let mut interval = Timer::interval(std::time::Duration::from_secs(1));
    is_send(&interval.tick());
    let stream = async {
        let s = TcpStream::connect("127.0.0.1:9").await.unwrap();
        let mut b = [0u8; 4];
        s.read(&mut b).await.unwrap();
        s.read_exact(&mut b).await.unwrap();
        s.write_all(&b).await.unwrap();
    };
    is_send(&stream);
    // And such a task spawns.
    drop(Executor::spawn(async move {
        let _ = udp.local_addr();
    }));
}
