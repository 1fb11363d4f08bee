//! The real `comnestor` binary under a small open-file limit: a connection it has no
//! descriptor for is refused with 503 at once, not left waiting in the accept queue, and
//! connections are accepted again as soon as others close.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};
use tokio::time::timeout;

use crate::support::WAIT;

/// The server's open-file limit. Its runtime, database and listener take a few dozen.
const FILE_LIMIT: usize = 96;

const KEY: &str = "descriptors-key";

/// Starts `comnestor serve` under `ulimit -n FILE_LIMIT`, on a SQLite file of its own.
async fn spawn_limited(dir: &Path) -> (Child, SocketAddr) {
    std::fs::create_dir_all(dir).expect("a directory for the database");
    let database = format!("sqlite://{}?mode=rwc", dir.join("log.db").display());
    let mut child = Command::new("/bin/sh")
        .arg("-c")
        .arg(format!("ulimit -n {FILE_LIMIT} && exec \"$0\" serve"))
        .arg(env!("CARGO_BIN_EXE_comnestor"))
        .env_clear()
        .env("COMNESTOR_HOST", "127.0.0.1")
        .env("COMNESTOR_PORT", "0")
        .env("COMNESTOR_LOG", "warn")
        .env("COMNESTOR_DATABASE_URL", database)
        .env("COMNESTOR_APP_ID", "9100")
        .env("COMNESTOR_APP_KEY", KEY)
        .env("COMNESTOR_APP_SECRET", "descriptors-secret")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("comnestor starts");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let announced = timeout(WAIT * 6, async {
        while let Some(line) = lines.next_line().await.expect("stdout readable") {
            let url = line
                .strip_prefix("Comnestor Realtime listening on http://")
                .and_then(|rest| rest.split_whitespace().next());
            if let Some(addr) = url {
                return addr.parse::<SocketAddr>().ok();
            }
        }
        None
    })
    .await
    .expect("the server announces its address")
    .expect("the server printed its address before exiting");
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    (child, announced)
}

enum Upgrade {
    /// 101: the connection is open and counts against the server's limit while held.
    Accepted(TcpStream),
    /// Anything else, the whole response.
    Refused(String),
}

/// Asks for a WebSocket upgrade the way pusher-js's browser does, by hand, so that a refusal
/// is read whole.
async fn upgrade(addr: SocketAddr) -> Upgrade {
    let mut stream = TcpStream::connect(addr).await.expect("TCP connect");
    let request = format!(
        "GET /app/{KEY}?protocol=7&client=js&version=8.4.0 HTTP/1.1\r\nHost: {addr}\r\n\
         Upgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.expect("request");
    let mut response = Vec::new();
    let mut buf = [0; 1024];
    while !response.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => response.extend_from_slice(&buf[..n]),
        }
    }
    if response.starts_with(b"HTTP/1.1 101") {
        return Upgrade::Accepted(stream);
    }
    let _ = stream.read_to_end(&mut response).await;
    Upgrade::Refused(String::from_utf8_lossy(&response).into_owned())
}

async fn upgrade_within_wait(addr: SocketAddr) -> Upgrade {
    timeout(WAIT, upgrade(addr))
        .await
        .expect("the server answers the upgrade rather than leaving it waiting")
}

#[tokio::test]
async fn connections_past_the_open_file_limit_are_refused_with_503_until_others_close() {
    let dir = std::env::temp_dir().join(format!("comnestor-descriptors-{}", std::process::id()));
    let (_server, addr) = spawn_limited(&dir).await;

    let mut held = Vec::new();
    let refusal = loop {
        assert!(
            held.len() < FILE_LIMIT,
            "{} connections upgraded under a limit of {FILE_LIMIT} files",
            held.len()
        );
        match upgrade_within_wait(addr).await {
            Upgrade::Accepted(stream) => held.push(stream),
            Upgrade::Refused(response) => break response,
        }
    };
    assert!(
        held.len() >= 10,
        "only {} connections before the first refusal: {refusal}",
        held.len()
    );
    for response in [refusal, upgrade_within_wait(addr).await.refused()] {
        assert!(response.starts_with("HTTP/1.1 503"), "{response}");
        let body = response.split("\r\n\r\n").nth(1).unwrap_or_default();
        let body: Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"));
        assert!(
            body["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{body}"
        );
    }

    // Others close; the server notices and has descriptors again.
    held.truncate(held.len() - 5);
    let deadline = Instant::now() + WAIT;
    loop {
        match upgrade_within_wait(addr).await {
            Upgrade::Accepted(stream) => {
                held.push(stream);
                break;
            }
            Upgrade::Refused(response) => {
                assert!(
                    Instant::now() < deadline,
                    "still refused after five connections closed: {response}"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    drop(held);
    let _ = std::fs::remove_dir_all(&dir);
}

impl Upgrade {
    fn refused(self) -> String {
        match self {
            Upgrade::Accepted(_) => panic!("accepted while the server is out of descriptors"),
            Upgrade::Refused(response) => response,
        }
    }
}
