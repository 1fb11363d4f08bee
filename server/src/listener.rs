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

use std::io::Result;

use poem::http::uri::Scheme;
use poem::listener::{Acceptor, TcpAcceptor};
use poem::web::{LocalAddr, RemoteAddr};
use tokio::net::TcpStream;

/// Accepts TCP connections with `TCP_NODELAY` set.
pub struct NoDelayAcceptor(pub TcpAcceptor);

impl Acceptor for NoDelayAcceptor {
    type Io = TcpStream;

    fn local_addr(&self) -> Vec<LocalAddr> {
        self.0.local_addr()
    }

    async fn accept(&mut self) -> Result<(TcpStream, LocalAddr, RemoteAddr, Scheme)> {
        let accepted = self.0.accept().await?;
        if let Err(error) = accepted.0.set_nodelay(true) {
            tracing::debug!(%error, "cannot set TCP_NODELAY");
        }
        Ok(accepted)
    }
}

#[cfg(test)]
mod tests {
    use poem::listener::{Listener, TcpListener};

    use super::*;

    #[tokio::test]
    async fn accepted_connections_have_nagle_off() {
        let inner = TcpListener::bind("127.0.0.1:0")
            .into_acceptor()
            .await
            .unwrap();
        let addr = *inner.local_addr()[0].as_socket_addr().unwrap();
        let mut acceptor = NoDelayAcceptor(inner);
        let _client = TcpStream::connect(addr).await.unwrap();
        let (stream, ..) = acceptor.accept().await.unwrap();
        assert!(stream.nodelay().unwrap());
    }
}
