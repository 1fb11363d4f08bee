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

mod wire;

use std::io::Result;

use poem::http::uri::Scheme;
use poem::listener::{Acceptor, TcpAcceptor};
use poem::web::{LocalAddr, RemoteAddr};

#[cfg(test)]
pub use wire::test_pair;
pub use wire::{Direct, Wire, WireIo, claim};

/// Accepts TCP connections with `TCP_NODELAY` set, each behind a [`Wire`].
pub struct NoDelayAcceptor(pub TcpAcceptor);

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
    use poem::listener::{Listener, TcpListener};
    use tokio::net::TcpStream;

    use super::*;

    /// Binds `host` on a free port, connects to it over loopback and accepts the connection.
    async fn accept_one(host: &str) -> (WireIo, LocalAddr, RemoteAddr, TcpStream) {
        let inner = TcpListener::bind(format!("{host}:0"))
            .into_acceptor()
            .await
            .unwrap();
        let port = inner.local_addr()[0].as_socket_addr().unwrap().port();
        let mut acceptor = NoDelayAcceptor(inner);
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
}
