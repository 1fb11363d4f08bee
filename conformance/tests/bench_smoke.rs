//! The load generator against a real server, and against the minimal broadcaster it is
//! compared with: a short fan-out must deliver every event once.

use comnestor_server::testing::{APP_ID, APP_KEY, APP_SECRET, TestServer};

/// Runs a one-second fan-out of 20 subscribers at 20 events/s against `url` and checks that
/// every one of the 400 deliveries was made once. `readers` is the generator's `--readers`.
async fn fanout_delivers_every_event_once_to(url: &str, readers: &str) {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_comnestor-bench"))
        .args(["--strict", "--json", "-", "--source-ips", "2"])
        .args([
            "fanout",
            "--subscribers",
            "20",
            "--rate",
            "20",
            "--duration",
            "1",
        ])
        .args(["--warmup", "0", "--drain", "3", "--readers", readers])
        .env("COMNESTOR_URL", url)
        .env("COMNESTOR_APP_ID", APP_ID)
        .env("COMNESTOR_APP_KEY", APP_KEY)
        .env("COMNESTOR_APP_SECRET", APP_SECRET)
        .output()
        .await
        .expect("the bench binary runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let record: serde_json::Value = stdout
        .lines()
        .find(|l| l.starts_with('{'))
        .and_then(|l| serde_json::from_str(l).ok())
        .expect("a JSON record");
    let results = &record["results"];
    assert_eq!(results["deliveries"], 400, "{results}");
    assert_eq!(results["lost"], 0);
    assert_eq!(results["duplicated"], 0);
    assert_eq!(results["latency"]["count"], 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fanout_delivers_every_event_once() {
    let server = TestServer::start().await;
    fanout_delivers_every_event_once_to(&server.http_url(), "2").await;
    server.shutdown().await;
}

/// The same with a task per subscriber, the generator's other way of reading.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fanout_delivers_every_event_once_with_a_task_per_subscriber() {
    let server = TestServer::start().await;
    fanout_delivers_every_event_once_to(&server.http_url(), "0").await;
    server.shutdown().await;
}

/// The yardstick of BENCHMARKS.md must serve the generator too, so that a sitting can measure
/// the machine with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_minimal_broadcaster_delivers_every_event_once() {
    let port = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
        probe.local_addr().expect("its address").port()
    };
    let mut broadcaster = tokio::process::Command::new(env!("CARGO_BIN_EXE_minimal-broadcaster"))
        .args(["--port", &port.to_string()])
        .kill_on_drop(true)
        .spawn()
        .expect("the minimal broadcaster starts");
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the minimal broadcaster never listened on {port}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    fanout_delivers_every_event_once_to(&format!("http://127.0.0.1:{port}"), "2").await;
    let _ = broadcaster.kill().await;
}
