//! An accepted socket that a broadcast can write to directly, beside the connection's own
//! stack of HTTP and WebSocket layers.
//!
//! One event to many subscribers costs, for every subscriber, a wake of its connection task,
//! a poll, the outbox, tungstenite's writer and poem's and hyper's IO layers before the `send`
//! that is the delivery (BENCHMARKS.md, "What profiling showed"). A subscriber that is idle
//! (nothing queued, nothing being written) can instead be written by the broadcast itself: the
//! encoded frame, one `send` on the shared socket. [`Wire`] is what makes that safe: every byte
//! reaches the socket through it, whoever writes, and a write is never left half done on the
//! socket. What the kernel does not take at once is kept in the wire's own buffer and goes out
//! before anything written after it, so that a frame is either entirely ahead of another or
//! entirely behind it.

use std::collections::HashMap;
use std::io::{self, ErrorKind};
use std::net::{Shutdown, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::task::{Context, Poll, ready};

use bytes::{Buf, Bytes};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// One accepted TCP connection, shared by the IO stack above it and by direct writers.
pub struct Wire {
    stream: TcpStream,
    /// Bytes accepted from a writer that the socket has not taken yet, oldest first.
    pending: Mutex<Pending>,
}

#[derive(Default)]
struct Pending {
    chunks: std::collections::VecDeque<Bytes>,
}

/// What a direct write did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direct {
    /// All of it is on the socket.
    Sent,
    /// Part of it is on the socket and the rest waits in the wire: the connection must flush.
    Partial,
    /// Nothing was written: the wire has bytes waiting, or the socket is full or broken.
    Refused,
}

impl Wire {
    fn new(stream: TcpStream) -> Self {
        Self {
            stream,
            pending: Mutex::new(Pending::default()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Writes `frame` now if nothing is waiting ahead of it, without registering for
    /// readiness: a refused frame is for the caller to queue.
    pub fn try_send(&self, frame: &Bytes) -> Direct {
        let mut pending = self.lock();
        if !pending.chunks.is_empty() {
            return Direct::Refused;
        }
        match self.stream.try_write(frame) {
            Ok(n) if n == frame.len() => Direct::Sent,
            Ok(n) => {
                pending.chunks.push_back(frame.slice(n..));
                Direct::Partial
            }
            Err(_) => Direct::Refused,
        }
    }

    /// Writes what is waiting; `Ready(Ok)` once nothing is.
    fn poll_drain(&self, pending: &mut Pending, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while let Some(chunk) = pending.chunks.front_mut() {
            match self.stream.try_write(chunk) {
                Ok(0) => return Poll::Ready(Err(ErrorKind::WriteZero.into())),
                Ok(n) if n == chunk.len() => {
                    pending.chunks.pop_front();
                }
                Ok(n) => chunk.advance(n),
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    ready!(self.stream.poll_write_ready(cx))?;
                }
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
        Poll::Ready(Ok(()))
    }
}

/// The IO handed to poem for an accepted connection: reads and writes through its [`Wire`].
pub struct WireIo {
    wire: Arc<Wire>,
    key: Option<(SocketAddr, SocketAddr)>,
}

impl WireIo {
    /// Wraps an accepted stream. With `addrs` (local, peer) the wire can be found again by
    /// [`claim`] until this IO is dropped.
    pub fn new(stream: TcpStream, addrs: Option<(SocketAddr, SocketAddr)>) -> Self {
        let wire = Arc::new(Wire::new(stream));
        if let Some(key) = addrs {
            registry().insert(key, wire.clone());
        }
        Self { wire, key: addrs }
    }

    pub fn stream(&self) -> &TcpStream {
        &self.wire.stream
    }
}

impl Drop for WireIo {
    fn drop(&mut self) {
        if let Some(key) = self.key {
            registry().forget(&key, &self.wire);
        }
    }
}

/// Takes the wire of the connection between `local` and `peer`, once: the WebSocket upgrade
/// hands it to the outbox.
pub fn claim(local: SocketAddr, peer: SocketAddr) -> Option<Arc<Wire>> {
    registry().remove(&(local, peer))
}

struct Registry(Mutex<HashMap<(SocketAddr, SocketAddr), Arc<Wire>>>);

impl Registry {
    fn insert(&self, key: (SocketAddr, SocketAddr), wire: Arc<Wire>) {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key, wire);
    }

    fn remove(&self, key: &(SocketAddr, SocketAddr)) -> Option<Arc<Wire>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).remove(key)
    }

    /// Removes `wire` if it is still registered under `key`.
    fn forget(&self, key: &(SocketAddr, SocketAddr), wire: &Arc<Wire>) {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if map.get(key).is_some_and(|found| Arc::ptr_eq(found, wire)) {
            map.remove(key);
        }
    }
}

fn registry() -> &'static Registry {
    static REGISTRY: OnceLock<Registry> = OnceLock::new();
    REGISTRY.get_or_init(|| Registry(Mutex::new(HashMap::new())))
}

impl AsyncRead for WireIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        loop {
            ready!(self.wire.stream.poll_read_ready(cx))?;
            match self.wire.stream.try_read(buf.initialize_unfilled()) {
                Ok(n) => {
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }
}

impl AsyncWrite for WireIo {
    /// Takes all of `buf` or none of it: what the socket does not take waits in the wire.
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let wire = &self.wire;
        let mut pending = wire.lock();
        ready!(wire.poll_drain(&mut pending, cx))?;
        loop {
            match wire.stream.try_write(buf) {
                Ok(n) => {
                    if n < buf.len() {
                        pending.chunks.push_back(Bytes::copy_from_slice(&buf[n..]));
                    }
                    return Poll::Ready(Ok(buf.len()));
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    ready!(wire.stream.poll_write_ready(cx))?;
                }
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let wire = &self.wire;
        let mut pending = wire.lock();
        wire.poll_drain(&mut pending, cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.as_mut().poll_flush(cx))?;
        let shut = socket2::SockRef::from(&self.wire.stream).shutdown(Shutdown::Write);
        Poll::Ready(match shut {
            Err(e) if e.kind() == ErrorKind::NotConnected => Ok(()),
            other => other,
        })
    }
}

/// A connected pair for tests: the accepted side behind a wire, with a small send buffer,
/// and the client, which reads only when told to. Far less than 2 MiB fits in between.
#[cfg(test)]
pub async fn test_pair(register: bool) -> (WireIo, TcpStream) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let client = TcpStream::connect(listener.local_addr().unwrap())
        .await
        .unwrap();
    let (accepted, _) = listener.accept().await.unwrap();
    socket2::SockRef::from(&accepted)
        .set_send_buffer_size(4096)
        .unwrap();
    let addrs = (
        accepted.local_addr().unwrap(),
        accepted.peer_addr().unwrap(),
    );
    let io = WireIo::new(accepted, register.then_some(addrs));
    // Writable once the runtime has seen it.
    io.stream().writable().await.unwrap();
    (io, client)
}

#[cfg(test)]
impl WireIo {
    pub fn wire(&self) -> Arc<Wire> {
        self.wire.clone()
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    const BIG: usize = 2 * 1024 * 1024;

    async fn pair(register: bool) -> (WireIo, TcpStream) {
        test_pair(register).await
    }

    async fn read_exactly(client: &mut TcpStream, n: usize) -> Vec<u8> {
        let mut got = vec![0; n];
        client.read_exact(&mut got).await.unwrap();
        got
    }

    #[tokio::test]
    async fn a_direct_write_goes_out_whole() {
        let (io, mut client) = pair(false).await;
        assert_eq!(
            io.wire.try_send(&Bytes::from_static(b"frame")),
            Direct::Sent
        );
        assert_eq!(read_exactly(&mut client, 5).await, b"frame");
    }

    #[tokio::test]
    async fn what_the_socket_cannot_take_waits_in_the_wire_and_goes_out_first() {
        let (mut io, mut client) = pair(false).await;
        let big: Vec<u8> = (0..BIG).map(|i| (i % 251) as u8).collect();
        // Taken whole, though the socket holds far less: the rest waits in the wire.
        let taken = io.write(&big).await.unwrap();
        assert_eq!(taken, big.len());
        assert!(!io.wire.lock().chunks.is_empty());
        // A direct write cannot go ahead of it.
        assert_eq!(
            io.wire.try_send(&Bytes::from_static(b"late")),
            Direct::Refused
        );
        let reader = tokio::spawn(async move {
            let got = read_exactly(&mut client, big.len() + 5).await;
            (got, big)
        });
        io.write_all(b"after").await.unwrap();
        io.flush().await.unwrap();
        let (got, big) = reader.await.unwrap();
        assert_eq!(&got[..big.len()], &big[..]);
        assert_eq!(&got[big.len()..], b"after");
    }

    #[tokio::test]
    async fn a_direct_write_the_socket_takes_in_part_keeps_the_rest_for_the_next_flush() {
        let (mut io, mut client) = pair(false).await;
        let frame = Bytes::from(vec![7u8; BIG]);
        assert_eq!(io.wire.try_send(&frame), Direct::Partial);
        let reader = tokio::spawn(async move { read_exactly(&mut client, BIG).await });
        io.flush().await.unwrap();
        assert!(reader.await.unwrap().iter().all(|b| *b == 7));
    }

    #[tokio::test]
    async fn a_wire_is_claimed_once_and_forgotten_with_its_io() {
        let (io, _client) = pair(true).await;
        let local = io.stream().local_addr().unwrap();
        let peer = io.stream().peer_addr().unwrap();
        assert!(claim(local, peer).is_some());
        assert!(claim(local, peer).is_none());

        let (io, _client) = pair(true).await;
        let local = io.stream().local_addr().unwrap();
        let peer = io.stream().peer_addr().unwrap();
        drop(io);
        assert!(claim(local, peer).is_none());
    }

    #[tokio::test]
    async fn reads_and_shutdown_pass_through() {
        let (mut io, mut client) = pair(false).await;
        client.write_all(b"hello").await.unwrap();
        let mut got = [0; 5];
        io.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"hello");
        io.shutdown().await.unwrap();
        let mut rest = Vec::new();
        client.read_to_end(&mut rest).await.unwrap();
        assert!(rest.is_empty());
    }
}
