//! The TCP listener every endpoint shares, with Nagle's algorithm off on each connection.
//!
//! A realtime server writes small frames that must leave at once. With Nagle's algorithm on, a
//! frame written while an earlier one is still unacknowledged waits for that acknowledgement,
//! and clients delay acknowledgements: 40 ms on Linux once the client has sent anything, up to
//! 200 ms on Windows. Two events a few milliseconds apart would reach such a client a delayed
//! acknowledgement apart. The connection task already gathers the frames queued at one moment
//! into one write, so each write can leave as it is made.
//!
//! On loopback, with the load generator saturating both cores, Nagle's algorithm merged more
//! writes and the fan-out p99 was lower with it (BENCHMARKS.md, sitting of 04:25), a gain that
//! exists only where acknowledgements come back within microseconds. A streaming connection
//! now merges its writes itself (`STREAMING_GAP` in the connection task).
//!
//! The listener asks for a long accept queue ([`BACKLOG`]). When a server restarts, every
//! client it had reconnects within a second or two, and with the 1,024 places a listener gets
//! by default the kernel drops the handshakes that find the queue full: those clients wait a
//! whole second for their SYN to be sent again (BENCHMARKS.md, sitting of 22:19).

mod wire;

use std::io::Result;
use std::net::SocketAddr;

use poem::http::uri::Scheme;
use poem::listener::{Acceptor, TcpAcceptor};
use poem::web::{LocalAddr, RemoteAddr};
use tokio::net::TcpSocket;

#[cfg(test)]
pub use wire::test_pair;
pub use wire::{Direct, Wire, WireIo, claim};

/// How many connections may wait to be accepted. Linux caps it at `net.core.somaxconn`
/// (4,096 by default since 5.4); raise that setting to let more reconnects queue.
pub const BACKLOG: u32 = 65_535;

/// Accepts TCP connections with `TCP_NODELAY` set, each behind a [`Wire`].
pub struct NoDelayAcceptor(pub TcpAcceptor);

/// Listens on `addr` with an accept queue of [`BACKLOG`] (`SO_REUSEADDR` set, as tokio's own
/// `bind` does, so a restarted server gets its port back at once).
pub fn bind(addr: SocketAddr) -> Result<NoDelayAcceptor> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    let listener = socket.listen(BACKLOG)?;
    TcpAcceptor::from_tokio(listener).map(NoDelayAcceptor)
}

impl Acceptor for NoDelayAcceptor {
    type Io = WireIo;

    fn local_addr(&self) -> Vec<LocalAddr> {
        self.0.local_addr()
    }

    async fn accept(&mut self) -> Result<(WireIo, LocalAddr, RemoteAddr, Scheme)> {
        let (stream, local, remote, scheme) = self.0.accept().await?;
        if let Err(error) = stream.set_nodelay(true) {
            tracing::debug!(%error, "cannot set TCP_NODELAY");
        }
        // The addresses requests on this connection will carry (the listener's own address,
        // not the connection's, when it listens on all interfaces).
        let addrs = local
            .as_socket_addr()
            .copied()
            .zip(remote.as_socket_addr().copied());
        Ok((WireIo::new(stream, addrs), local, remote, scheme))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::net::TcpStream;
    use tokio::time::timeout;

    use super::*;

    fn port_of(acceptor: &NoDelayAcceptor) -> u16 {
        acceptor.local_addr()[0].as_socket_addr().unwrap().port()
    }

    /// Binds `host` on a free port, connects to it over loopback and accepts the connection.
    async fn accept_one(host: &str) -> (WireIo, LocalAddr, RemoteAddr, TcpStream) {
        let mut acceptor = bind(format!("{host}:0").parse().unwrap()).unwrap();
        let port = port_of(&acceptor);
        let client = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        let (io, local, remote, _) = acceptor.accept().await.unwrap();
        (io, local, remote, client)
    }

    #[tokio::test]
    async fn accepted_connections_have_nagle_off() {
        let (io, ..) = accept_one("127.0.0.1").await;
        assert!(io.stream().nodelay().unwrap());
    }

    #[tokio::test]
    async fn the_wire_is_found_by_the_addresses_requests_carry() {
        let (_io, local, remote, _client) = accept_one("0.0.0.0").await;
        let local = *local.as_socket_addr().unwrap();
        assert!(local.ip().is_unspecified(), "the listener's address");
        assert!(claim(local, *remote.as_socket_addr().unwrap()).is_some());
    }

    /// A burst of reconnects larger than the 1,024 places a listener gets by default: every
    /// handshake completes before the server accepts any of them. With the default queue the
    /// SYNs beyond it are dropped, and sent again, and dropped again, for as long as nothing
    /// is accepted, so the generous timeout only spares a busy test machine.
    #[tokio::test]
    async fn a_burst_of_connections_waits_in_the_accept_queue() {
        const BURST: usize = 1_500;
        let somaxconn: usize = std::fs::read_to_string("/proc/sys/net/core/somaxconn")
            .expect("net.core.somaxconn")
            .trim()
            .parse()
            .unwrap();
        assert!(
            somaxconn > BURST,
            "net.core.somaxconn is {somaxconn}; this test needs more than {BURST}"
        );
        let mut acceptor = bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let port = port_of(&acceptor);
        let connects = (0..BURST).map(|_| {
            timeout(
                Duration::from_secs(5),
                TcpStream::connect(("127.0.0.1", port)),
            )
        });
        let clients = futures::future::join_all(connects).await;
        let waited = clients.iter().filter(|c| !matches!(c, Ok(Ok(_)))).count();
        assert_eq!(waited, 0, "handshakes not completed within 5 s");
        for _ in 0..BURST {
            timeout(Duration::from_secs(5), acceptor.accept())
                .await
                .expect("a queued connection")
                .unwrap();
        }
    }
}
