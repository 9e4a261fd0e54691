//! A `trale` TCP echo server and concurrent clients on `127.0.0.1:0`, all
//! tasks on one executor (`Executor::block_on` on `main`'s thread).
//!
//! The server task accepts a fixed number of connections and spawns one task
//! per connection, which `read`s what is there and `write_all`s it back
//! until the client's end of stream (`read` returns 0), then returns the
//! byte count; the accept task sums them.
//!
//! Two kinds of client run at the same time:
//!
//! - Lock-step clients (8 by default): `TcpStream::connect`, then 64 chunks
//!   of 1 B to 16 KiB, each sent with `write_all` and read back with
//!   `read_exact` before the next one; then `shutdown(Write)` and a last
//!   `read` that must see the server's end of stream (0).
//! - One full-duplex client: its `TcpStream` is shared (`Arc`) between a
//!   writer sub-task that streams 4 MiB and then shuts down its write half,
//!   and the client itself, which reads the echo as it comes back (one
//!   reader and one writer on the same socket, as `&self` methods allow).
//!
//! Every byte is derived from the client's number and its offset in the
//! stream, and every echoed byte is checked. Everything runs under a 20 s
//! `Timer::timeout`, so a hang shows up as an error, not a stuck program.
//!
//! `cargo run -p examples --bin trale_tcp_echo [CLIENTS]`
//!
//! Expected output (the address and times vary; client lines come in the
//! order the clients finish):
//!
//! ```text
//! server on 127.0.0.1:35723, 8 lock-step clients + 1 full-duplex client
//! full-duplex client: 4194304 bytes written by its writer task, 4194304 read back, 0 wrong
//! client 0: 64 chunks, 536928 bytes echoed, 0 wrong, EOF after shutdown
//! client 5: 64 chunks, 505504 bytes echoed, 0 wrong, EOF after shutdown
//! ...
//! client 1: 64 chunks, 533920 bytes echoed, 0 wrong, EOF after shutdown
//! server: 9 connections, 8356352 bytes echoed
//! all 8356352 bytes verified in 1.8 s
//! ```
//!
//! Exits non-zero if a byte differs, a count does not add up, or the time
//! runs out.

use std::error::Error;
use std::io;
use std::net::{Shutdown, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};
use trale::net::{TcpListener, TcpStream};
use trale::task::{Executor, TaskJoiner};
use trale::timer::Timer;

const DEFAULT_CLIENTS: u32 = 8;
/// Chunks each lock-step client sends.
const CHUNKS: u32 = 64;
/// Largest chunk of a lock-step client.
const MAX_CHUNK: usize = 16 * 1024;
/// What the full-duplex client streams.
const DUPLEX_BYTES: usize = 4 * 1024 * 1024;
/// How much its writer task hands to one `write_all`.
const DUPLEX_PIECE: usize = 64 * 1024;
/// The whole run must end by then.
const TIME_LIMIT: Duration = Duration::from_secs(20);

/// The byte at `offset` in client `id`'s stream.
fn pattern(id: u32, offset: usize) -> u8 {
    ((offset as u32)
        .wrapping_mul(2_654_435_761)
        .wrapping_add(id.wrapping_mul(7_919))
        >> 24) as u8
}

fn fill(id: u32, offset: usize, buf: &mut [u8]) {
    for (i, b) in buf.iter_mut().enumerate() {
        *b = pattern(id, offset + i);
    }
}

/// Bytes of `buf` that differ from client `id`'s stream at `offset`.
fn wrong_bytes(id: u32, offset: usize, buf: &[u8]) -> u64 {
    buf.iter()
        .enumerate()
        .filter(|&(i, &b)| b != pattern(id, offset + i))
        .count() as u64
}

/// Echoes one connection until its end of stream; the bytes echoed.
async fn serve(stream: TcpStream) -> io::Result<u64> {
    let mut buf = vec![0u8; 8 * 1024];
    let mut echoed = 0;
    loop {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            return Ok(echoed);
        }
        stream.write_all(&buf[..n]).await?;
        echoed += n as u64;
    }
}

/// Accepts `connections` connections, one task each; the bytes echoed.
async fn server(listener: TcpListener, connections: u32) -> io::Result<u64> {
    let mut handlers: Vec<TaskJoiner<io::Result<u64>>> = Vec::new();
    for _ in 0..connections {
        let (stream, _peer) = listener.accept().await?;
        handlers.push(Executor::spawn(serve(stream)));
    }
    let mut total = 0;
    for handler in handlers {
        total += handler.await?;
    }
    Ok(total)
}

/// What a client checked.
#[derive(Debug, Default)]
struct Checked {
    bytes: u64,
    wrong: u64,
}

/// A lock-step client: chunk by chunk, then shutdown and EOF.
async fn lockstep_client(id: u32, server: SocketAddr) -> io::Result<Checked> {
    let stream = TcpStream::connect(server).await?;
    stream.set_nodelay(true)?;
    let mut out = vec![0u8; MAX_CHUNK];
    let mut back = vec![0u8; MAX_CHUNK];
    let mut checked = Checked::default();
    let mut offset = 0;
    for chunk in 0..CHUNKS {
        // 1 B up to 16 KiB, varying from chunk to chunk and client to client.
        let len = 1 + (chunk.wrapping_mul(40_503).wrapping_add(id * 977) as usize % MAX_CHUNK);
        fill(id, offset, &mut out[..len]);
        stream.write_all(&out[..len]).await?;
        stream.read_exact(&mut back[..len]).await?;
        checked.wrong += wrong_bytes(id, offset, &back[..len]);
        checked.bytes += len as u64;
        offset += len;
    }
    stream.shutdown(Shutdown::Write)?;
    // The server sees our end of stream, returns, and drops its end.
    let n = stream.read(&mut back).await?;
    if n != 0 {
        return Err(io::Error::other(format!(
            "client {id}: {n} bytes after shutdown, expected end of stream"
        )));
    }
    println!(
        "client {id}: {CHUNKS} chunks, {} bytes echoed, {} wrong, EOF after shutdown",
        checked.bytes, checked.wrong
    );
    Ok(checked)
}

/// The full-duplex client: a writer sub-task streams while this task reads.
async fn duplex_client(id: u32, server: SocketAddr) -> io::Result<Checked> {
    let stream = Arc::new(TcpStream::connect(server).await?);
    let writer = {
        let stream = Arc::clone(&stream);
        Executor::spawn(async move {
            let mut piece = vec![0u8; DUPLEX_PIECE];
            let mut offset = 0;
            while offset < DUPLEX_BYTES {
                let len = DUPLEX_PIECE.min(DUPLEX_BYTES - offset);
                fill(id, offset, &mut piece[..len]);
                stream.write_all(&piece[..len]).await?;
                offset += len;
            }
            stream.shutdown(Shutdown::Write)?;
            io::Result::Ok(offset)
        })
    };
    let mut buf = vec![0u8; 32 * 1024];
    let mut checked = Checked::default();
    loop {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        checked.wrong += wrong_bytes(id, checked.bytes as usize, &buf[..n]);
        checked.bytes += n as u64;
        if checked.bytes > DUPLEX_BYTES as u64 {
            return Err(io::Error::other(
                "full-duplex client: more bytes back than sent",
            ));
        }
    }
    let written = writer.await?;
    println!(
        "full-duplex client: {written} bytes written by its writer task, {} read back, {} wrong",
        checked.bytes, checked.wrong
    );
    if written != DUPLEX_BYTES || checked.bytes != written as u64 {
        return Err(io::Error::other("full-duplex client: short stream"));
    }
    Ok(checked)
}

/// The whole run: server, clients, totals.
async fn run(clients: u32) -> Result<u64, Box<dyn Error>> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    println!("server on {addr}, {clients} lock-step clients + 1 full-duplex client");
    let server = Executor::spawn(server(listener, clients + 1));

    let lockstep: Vec<_> = (0..clients)
        .map(|id| Executor::spawn(lockstep_client(id, addr)))
        .collect();
    let duplex = Executor::spawn(duplex_client(clients, addr));

    let mut total = Checked::default();
    for client in lockstep {
        let c = client.await?;
        total.bytes += c.bytes;
        total.wrong += c.wrong;
    }
    let c = duplex.await?;
    total.bytes += c.bytes;
    total.wrong += c.wrong;

    let echoed = server.await?;
    println!("server: {} connections, {echoed} bytes echoed", clients + 1);
    if total.wrong > 0 {
        return Err(format!("{} of {} echoed bytes were wrong", total.wrong, total.bytes).into());
    }
    if echoed != total.bytes {
        return Err(format!(
            "the server echoed {echoed} bytes, the clients got {}",
            total.bytes
        )
        .into());
    }
    Ok(total.bytes)
}

fn main() -> Result<(), Box<dyn Error>> {
    let clients: u32 = match std::env::args().nth(1) {
        Some(a) => a.parse()?,
        None => DEFAULT_CLIENTS,
    };
    let started = Instant::now();
    let verified = Executor::block_on(Timer::timeout(TIME_LIMIT, run(clients)))
        .map_err(|_| format!("not done after {TIME_LIMIT:?}: something hangs"))??;
    println!(
        "all {verified} bytes verified in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
