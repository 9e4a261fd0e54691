//! `TcpListener` and `TcpStream`.

use super::io::Io;
use crate::reactor::Direction;
use crate::sys;
use std::fmt;
use std::io;
use std::net::{Shutdown, SocketAddr, ToSocketAddrs};
use std::os::fd::{AsRawFd, RawFd};

/// A TCP listening socket.
pub struct TcpListener {
    io: Io<std::net::TcpListener>,
}

impl TcpListener {
    /// Binds and listens on `addr` (synchronous; `SO_REUSEADDR` is set, as
    /// std does on Unix).
    pub fn bind(addr: impl ToSocketAddrs) -> io::Result<Self> {
        Self::from_std(std::net::TcpListener::bind(addr)?)
    }

    /// Wraps a std listener (switching it to non-blocking mode).
    pub fn from_std(listener: std::net::TcpListener) -> io::Result<Self> {
        listener.set_nonblocking(true)?;
        Ok(Self {
            io: Io::new(listener),
        })
    }

    /// Deregisters the listener and returns it, back in blocking mode.
    pub fn into_std(self) -> io::Result<std::net::TcpListener> {
        let listener = self.io.into_inner();
        listener.set_nonblocking(false)?;
        Ok(listener)
    }

    /// The local address (with the port the kernel picked for port 0).
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.io.get().local_addr()
    }

    /// Waits for the next connection.
    pub async fn accept(&self) -> io::Result<(TcpStream, SocketAddr)> {
        let (stream, peer) = self.io.op(Direction::Read, |l| l.accept()).await?;
        Ok((TcpStream::from_std(stream)?, peer))
    }
}

impl fmt::Debug for TcpListener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TcpListener")
            .field("socket", self.io.get())
            .finish()
    }
}

/// A TCP connection.
pub struct TcpStream {
    io: Io<std::net::TcpStream>,
}

impl TcpStream {
    /// Connects to `addr` without blocking the thread: each resolved address
    /// is tried in turn and the last error is returned if none accepts.
    /// (A name is resolved synchronously; pass a `SocketAddr` to avoid that.)
    pub async fn connect(addr: impl ToSocketAddrs) -> io::Result<TcpStream> {
        let mut last = None;
        for addr in super::resolve(addr)? {
            match Self::connect_one(addr).await {
                Ok(stream) => return Ok(stream),
                Err(e) => last = Some(e),
            }
        }
        Err(last.expect("resolve returns at least one address"))
    }

    async fn connect_one(addr: SocketAddr) -> io::Result<TcpStream> {
        let stream = TcpStream {
            io: Io::new(sys::tcp_connect_start(addr)?),
        };
        // Connected once writable with no pending error; until then
        // `peer_addr` says "not connected", which we treat as "wait".
        stream
            .io
            .op(Direction::Write, |s| {
                if let Some(e) = sys::take_socket_error(s.as_raw_fd())? {
                    return Err(e);
                }
                match s.peer_addr() {
                    Ok(_) => Ok(()),
                    Err(e) if e.kind() == io::ErrorKind::NotConnected => {
                        Err(io::ErrorKind::WouldBlock.into())
                    }
                    Err(e) => Err(e),
                }
            })
            .await?;
        Ok(stream)
    }

    /// Wraps a connected std stream (switching it to non-blocking mode).
    pub fn from_std(stream: std::net::TcpStream) -> io::Result<Self> {
        stream.set_nonblocking(true)?;
        Ok(Self {
            io: Io::new(stream),
        })
    }

    /// Deregisters the stream and returns it, back in blocking mode.
    pub fn into_std(self) -> io::Result<std::net::TcpStream> {
        let stream = self.io.into_inner();
        stream.set_nonblocking(false)?;
        Ok(stream)
    }

    /// Reads what is available, waiting until something is: the number of
    /// bytes read, 0 at the end of the stream.
    ///
    /// An empty `buf` returns `Ok(0)` at once (the kernel would make a
    /// zero-length read of an empty socket wait for data).
    pub async fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        self.io
            .op(Direction::Read, |mut s| io::Read::read(&mut s, buf))
            .await
    }

    /// Writes what fits, waiting until something does: the number of bytes
    /// written.
    pub async fn write(&self, buf: &[u8]) -> io::Result<usize> {
        self.io
            .op(Direction::Write, |mut s| io::Write::write(&mut s, buf))
            .await
    }

    /// Reads exactly `buf.len()` bytes; `UnexpectedEof` if the stream ends
    /// first.
    pub async fn read_exact(&self, mut buf: &mut [u8]) -> io::Result<()> {
        while !buf.is_empty() {
            match self.read(buf).await? {
                0 => return Err(io::ErrorKind::UnexpectedEof.into()),
                n => buf = &mut buf[n..],
            }
        }
        Ok(())
    }

    /// Writes all of `buf`; `WriteZero` if the socket stops taking bytes.
    pub async fn write_all(&self, mut buf: &[u8]) -> io::Result<()> {
        while !buf.is_empty() {
            match self.write(buf).await? {
                0 => return Err(io::ErrorKind::WriteZero.into()),
                n => buf = &buf[n..],
            }
        }
        Ok(())
    }

    /// Shuts down the read half, the write half or both (synchronous).
    pub fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        self.io.get().shutdown(how)
    }

    /// Sets `TCP_NODELAY` (disables Nagle's algorithm when `true`).
    pub fn set_nodelay(&self, nodelay: bool) -> io::Result<()> {
        self.io.get().set_nodelay(nodelay)
    }

    /// Whether `TCP_NODELAY` is set.
    pub fn nodelay(&self) -> io::Result<bool> {
        self.io.get().nodelay()
    }

    /// The local address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.io.get().local_addr()
    }

    /// The peer's address.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.io.get().peer_addr()
    }
}

impl fmt::Debug for TcpStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TcpStream")
            .field("socket", self.io.get())
            .finish()
    }
}

impl AsRawFd for TcpListener {
    fn as_raw_fd(&self) -> RawFd {
        self.io.get().as_raw_fd()
    }
}

impl AsRawFd for TcpStream {
    fn as_raw_fd(&self) -> RawFd {
        self.io.get().as_raw_fd()
    }
}
