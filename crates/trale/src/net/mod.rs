//! Sockets: [`UdpSocket`], [`TcpListener`], [`TcpStream`], IPv4 and IPv6.
//!
//! Each wraps the std socket in non-blocking mode. Creating one
//! (`bind`, `from_std`) is synchronous, like std, and needs no executor; the
//! first operation that has to wait registers it with the executor it runs
//! on, where it stays until it is dropped (using it on another executor
//! later panics with a message). Methods take `&self`, so tasks can share
//! one socket: a reader and a writer, or several readers (two accept loops on
//! one listener, several receivers on one UDP socket). Each waiting operation
//! keeps one waker, the latest it was polled with; readiness wakes every
//! operation waiting in that direction, the longest waiting first (tasks
//! looping on a shared socket take turns), and those that find nothing left
//! wait again (so `k` receivers sharing a socket cost up to `k` polls per
//! datagram). An operation dropped while it waits gives its waker back at
//! once. Every socket type and its futures are `Send`, and `Sync`.
//!
//! A task that keeps finding data (a flooding peer) is made to yield after
//! 128 completed operations in one poll, so it cannot starve the timers or
//! the other sockets.

mod io;
mod tcp;
mod udp;

pub use tcp::{TcpListener, TcpStream};
pub use udp::UdpSocket;

use std::net::{SocketAddr, ToSocketAddrs};

/// Resolves `addr` (synchronously, like std) to its addresses.
fn resolve(addr: impl ToSocketAddrs) -> std::io::Result<Vec<SocketAddr>> {
    let addrs: Vec<SocketAddr> = addr.to_socket_addrs()?.collect();
    if addrs.is_empty() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "could not resolve to any address",
        ));
    }
    Ok(addrs)
}

/// The first address `addr` resolves to (no allocation for a `SocketAddr`).
fn resolve_first(addr: impl ToSocketAddrs) -> std::io::Result<SocketAddr> {
    addr.to_socket_addrs()?.next().ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "could not resolve to any address",
        )
    })
}
