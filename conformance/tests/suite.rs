//! Runs the whole conformance suite, in process, against a Comnestor server on 127.0.0.1:0.

use comnestor_conformance::{Config, Node, Status};
use comnestor_server::testing::{APP_ID, APP_KEY, APP_SECRET, TestServer};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn comnestor_passes_the_suite() {
    let server = TestServer::start_with(|settings| {
        settings.subscription_count = true;
        settings.client_events = true;
        settings.user_authentication = true;
        // Short, so that ping.server_pings_idle_client runs here too.
        settings.activity_timeout = 2;
    })
    .await;
    let node = Node::new(&server.http_url(), None).expect("an http URL");
    let mut cfg = Config::new(node, APP_ID, APP_KEY, APP_SECRET);
    cfg.expect_subscription_count = true;
    cfg.activity_timeout_wait = Some(std::time::Duration::from_secs(6));
    if let Ok(only) = std::env::var("CONFORMANCE_ONLY") {
        cfg.only = only.split(',').map(str::to_owned).collect();
    }
    let report = comnestor_conformance::run(cfg).await;
    println!("{}", report.text());
    let failed: Vec<&str> = report
        .results
        .iter()
        .filter(|r| r.status == Status::Failed)
        .map(|r| r.id.as_str())
        .collect();
    assert!(failed.is_empty(), "failed cases: {failed:?}");
    assert!(
        report.passed() > 100,
        "too few cases ran: {}",
        report.summary()
    );
    server.shutdown().await;
}
