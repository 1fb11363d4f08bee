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
//!
//! A process that runs out of file descriptors cannot accept, and poem tries again at once:
//! the server would spin on a full core while the clients in the queue hang, their TCP
//! handshakes done and their upgrades never answered. So the acceptor keeps one descriptor in
//! reserve and, when out of them, spends it on refusing the oldest waiting connection with a
//! 503 ([`NoDelayAcceptor::shed`]); its client tries again later, as pusher-js does after a
//! failed connection, and connections are accepted again as soon as others close.

mod wire;

use std::fs::File;
use std::io::{Error, Result};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use poem::http::uri::Scheme;
use poem::listener::{Acceptor, TcpAcceptor};
use poem::web::{LocalAddr, RemoteAddr};
use tokio::net::{TcpSocket, TcpStream};

#[cfg(test)]
pub use wire::test_pair;
pub use wire::{Direct, Wire, WireIo, claim};

/// How many connections may wait to be accepted. Linux caps it at `net.core.somaxconn`
/// (4,096 by default since 5.4); raise that setting to let more reconnects queue.
pub const BACKLOG: u32 = 65_535;

/// How often running out of file descriptors is logged, at most.
const WARN_EVERY: Duration = Duration::from_secs(10);

/// How long the acceptor waits before trying again when it is out of file descriptors and has
/// none in reserve either.
const OUT_OF_FILES_PAUSE: Duration = Duration::from_millis(50);

/// Accepts TCP connections with `TCP_NODELAY` set, each behind a [`Wire`].
pub struct NoDelayAcceptor {
    inner: TcpAcceptor,
    /// A descriptor held back for refusing connections when the process has no other.
    reserve: Option<File>,
    /// When running out of descriptors was last logged.
    warned: Option<Instant>,
}

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
    Ok(NoDelayAcceptor {
        inner: TcpAcceptor::from_tokio(listener)?,
        reserve: Some(reserve()?),
        warned: None,
    })
}

fn reserve() -> Result<File> {
    File::open("/dev/null")
}

/// Whether a failed accept means the process or the machine has no descriptor or buffer left
/// for another connection, rather than that one connection went wrong.
fn out_of_files(error: &Error) -> bool {
    matches!(
        error.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
    )
}

impl NoDelayAcceptor {
    /// Refuses the oldest waiting connection, the process being out of file descriptors: the
    /// reserve is closed for a moment so that the connection can be accepted, answered 503
    /// with a JSON body, and closed. When the freed descriptor was taken by another thread
    /// first, or the reserve cannot be opened again, it waits [`OUT_OF_FILES_PAUSE`] instead.
    async fn shed(&mut self, error: &Error) {
        let now = Instant::now();
        if self
            .warned
            .is_none_or(|at| now.duration_since(at) >= WARN_EVERY)
        {
            self.warned = Some(now);
            tracing::warn!(
                %error,
                "out of file descriptors: refusing new connections with 503 until others close \
                 (raise the open-file limit, `ulimit -n`)"
            );
        }
        if self.reserve.take().is_some() {
            let waiting = tokio::time::timeout(Duration::from_millis(10), self.inner.accept());
            let refused = match waiting.await {
                Ok(Ok((stream, ..))) => {
                    refuse(stream);
                    true
                }
                _ => false,
            };
            self.reserve = reserve().ok();
            if refused && self.reserve.is_some() {
                return;
            }
        }
        tokio::time::sleep(OUT_OF_FILES_PAUSE).await;
        if self.reserve.is_none() {
            self.reserve = reserve().ok();
        }
    }
}

/// Answers a connection the server cannot keep with 503, without waiting on it. The request
/// is read first, when it has arrived, so that closing sends the response and a FIN rather
/// than a reset that could overtake it.
fn refuse(stream: TcpStream) {
    const BODY: &str =
        r#"{"error":"the server cannot take more connections now; try again later"}"#;
    let response = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n\
         content-length: {}\r\nretry-after: 1\r\nconnection: close\r\n\r\n{BODY}",
        BODY.len()
    );
    let mut request = [0; 4096];
    let _ = stream.try_read(&mut request);
    let _ = stream.try_write(response.as_bytes());
}

impl Acceptor for NoDelayAcceptor {
    type Io = WireIo;

    fn local_addr(&self) -> Vec<LocalAddr> {
        self.inner.local_addr()
    }

    async fn accept(&mut self) -> Result<(WireIo, LocalAddr, RemoteAddr, Scheme)> {
        let (stream, local, remote, scheme) = loop {
            match self.inner.accept().await {
                Ok(accepted) => break accepted,
                Err(error) if out_of_files(&error) => self.shed(&error).await,
                Err(error) => return Err(error),
            }
        };
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
