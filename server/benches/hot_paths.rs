//! Micro-benchmarks of the paths every event and every connection goes through.
//!
//! Run with `cargo bench -p comnestor-server --bench hot_paths`; pass a filter to run one
//! group (`-- broadcast`). Everything here goes through public APIs: the protocol crate's
//! encoding and signing, and the hub's `Hub`, `AppHub`, `Channel` and `Outbox`.
//!
//! Frames queued to outboxes during a measurement are drained outside the timed section
//! (`iter_custom`), as the connection tasks would drain them, so that a full outbox never
//! turns the measured path into the slow-client path.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use comnestor_protocol::ChannelName;
use comnestor_protocol::api::TriggerRequest;
use comnestor_protocol::auth::{authorize_channel, verify_channel_auth};
use comnestor_protocol::message;
use comnestor_protocol::signing::{SignedRequest, sign_request, verify_request};
use comnestor_server::apps::{App, AppSettings};
use comnestor_server::hub::{AppHub, Channel, ConnId, Frame, Hub, Inbox, Outbox};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use tokio::runtime::Runtime;

const KEY: &str = "278d425bdf160c739803";
const SECRET: &str = "7ad3773142a6692b25b8";
const SOCKET_ID: &str = "123456.7890";

/// A 100-byte payload, the size the fan-out targets use.
fn payload() -> String {
    let mut data = String::from(r#"{"order":12345,"status":"shipped","note":""#);
    data.extend(std::iter::repeat_n('x', 100 - data.len() - 2));
    data.push_str("\"}");
    data
}

fn app() -> Arc<App> {
    Arc::new(App {
        id: "1".to_owned(),
        key: KEY.to_owned(),
        secret: SECRET.to_owned(),
        name: "bench".to_owned(),
        enabled: true,
        settings: AppSettings::default(),
        updated_at: 0,
    })
}

fn outbox(id: u64) -> (Outbox, Inbox) {
    Outbox::new(ConnId(id), format!("{id}.{id}"))
}

fn drain(receivers: &mut [Inbox]) {
    for rx in receivers {
        while rx.try_recv().is_some() {}
    }
}

fn encoding(c: &mut Criterion) {
    let data = payload();
    let mut group = c.benchmark_group("encode");
    group.throughput(Throughput::Elements(1));
    group.bench_function("channel_event_100B", |b| {
        b.iter(|| {
            let frame: Frame =
                message::channel_event(black_box("bench"), black_box("bench-fanout"), &data).into();
            frame
        })
    });
    group.bench_function("member_added", |b| {
        let info = serde_json::json!({ "name": "Ada" });
        b.iter(|| message::member_added(black_box("presence-room"), black_box("42"), &info))
    });
    group.finish();
}

fn signatures(c: &mut Criterion) {
    let body =
        serde_json::json!({ "name": "bench", "channels": ["bench-fanout"], "data": payload() })
            .to_string();
    let now = 1_700_000_000;
    let query = sign_request(
        KEY,
        SECRET,
        "POST",
        "/apps/1/events",
        &[],
        Some(body.as_bytes()),
        now,
    );
    let request = SignedRequest {
        method: "POST",
        path: "/apps/1/events",
        query: &query,
        body: body.as_bytes(),
    };
    let auth = authorize_channel(KEY, SECRET, SOCKET_ID, "private-orders", None);

    let mut group = c.benchmark_group("signature");
    group.throughput(Throughput::Elements(1));
    group.bench_function("verify_http_request", |b| {
        b.iter(|| verify_request(black_box(&request), KEY, SECRET, now).expect("valid"))
    });
    group.bench_function("verify_channel_auth", |b| {
        b.iter(|| {
            verify_channel_auth(
                KEY,
                SECRET,
                SOCKET_ID,
                black_box("private-orders"),
                None,
                &auth,
            )
            .expect("valid")
        })
    });
    // What the delivery worker does for each event: serialize the trigger and sign it.
    group.bench_function("sign_delivery", |b| {
        let trigger = TriggerRequest {
            name: "bench".to_owned(),
            data: payload(),
            channels: Some(vec!["bench-fanout".to_owned()]),
            channel: None,
            socket_id: None,
            info: None,
        };
        b.iter(|| {
            let body = serde_json::to_vec(black_box(&trigger)).expect("serializes");
            sign_request(KEY, SECRET, "POST", "/apps/1/events", &[], Some(&body), now)
        })
    });
    group.finish();
}

/// An app hub holding `channels` occupied channels, all subscribed by one connection whose
/// receiver is returned so the caller can drain it.
fn hub_with_channels(runtime: &Runtime, channels: usize) -> (Arc<AppHub>, Outbox, Inbox) {
    let hub = Hub::new().app(&app());
    let (outbox, mut rx) = outbox(1);
    runtime.block_on(async {
        for i in 0..channels {
            let name = ChannelName::parse(&format!("channel-{i}")).expect("valid name");
            hub.subscribe(&outbox, &name, None)
                .await
                .expect("subscribed");
            while rx.try_recv().is_some() {}
        }
    });
    (hub, outbox, rx)
}

fn channel_lookup(c: &mut Criterion) {
    // The hub's publish is async (it may go to other nodes); without a cluster it completes
    // at once, so the loop runs inside one `block_on` and measures the hub, not the runtime.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let mut group = c.benchmark_group("channel_lookup");
    group.throughput(Throughput::Elements(1));
    for channels in [10, 100_000] {
        let (hub, _outbox, rx) = hub_with_channels(&runtime, channels);
        let mut receivers = [rx];
        group.bench_with_input(BenchmarkId::new("lookup", channels), &channels, |b, _| {
            b.iter(|| hub.channel(black_box("channel-7")).expect("exists"))
        });
        // A whole publish to one channel with one subscriber, among `channels` others.
        let name = ChannelName::parse("channel-7").expect("valid name");
        let data = payload();
        group.bench_with_input(BenchmarkId::new("publish", channels), &channels, |b, _| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                let mut left = iters;
                while left > 0 {
                    let n = left.min(256);
                    let started = Instant::now();
                    runtime.block_on(async {
                        for _ in 0..n {
                            black_box(hub.publish(&name, "bench", &data, None).await.ok());
                        }
                    });
                    total += started.elapsed();
                    drain(&mut receivers);
                    left -= n;
                }
                total
            })
        });
    }
    group.finish();
}

/// Times `iters` calls of `f` in batches of 256, emptying `receivers` between batches
/// (outside the clock), as connection tasks would.
fn timed_in_batches<T>(iters: u64, receivers: &mut [Inbox], mut f: impl FnMut() -> T) -> Duration {
    let mut total = Duration::ZERO;
    let mut left = iters;
    while left > 0 {
        let n = left.min(256);
        let started = Instant::now();
        for _ in 0..n {
            black_box(f());
        }
        total += started.elapsed();
        drain(receivers);
        left -= n;
    }
    total
}

fn broadcast(c: &mut Criterion) {
    let mut group = c.benchmark_group("broadcast");
    let frame: Frame = message::channel_event("bench", "bench-fanout", &payload()).into();
    for subscribers in [10u64, 100, 1_000, 10_000] {
        let channel = Channel::new(ChannelName::parse("bench-fanout").expect("valid name"));
        let mut receivers = Vec::new();
        let mut keep = Vec::new();
        for i in 0..subscribers {
            let (outbox, rx) = outbox(i + 1);
            channel.join(&outbox, None, 100).expect("joined");
            receivers.push(rx);
            keep.push(outbox);
        }
        drain(&mut receivers);
        group.throughput(Throughput::Elements(subscribers));
        group.bench_with_input(
            BenchmarkId::new("subscribers", subscribers),
            &subscribers,
            |b, _| {
                b.iter_custom(|iters| {
                    timed_in_batches(iters, &mut receivers, || channel.broadcast(&frame, None))
                })
            },
        );
    }
    group.finish();
}

fn presence(c: &mut Criterion) {
    let mut group = c.benchmark_group("presence");
    group.throughput(Throughput::Elements(1));
    for members in [0u64, 99] {
        let channel = Channel::new(ChannelName::parse("presence-room").expect("valid name"));
        let mut receivers = Vec::new();
        let mut keep = Vec::new();
        for i in 0..members {
            let (outbox, rx) = outbox(i + 1);
            let info = serde_json::json!({ "name": format!("user {i}") });
            channel
                .join(&outbox, Some((format!("user-{i}"), info)), 100)
                .expect("joined");
            receivers.push(rx);
            keep.push(outbox);
        }
        drain(&mut receivers);
        let (joiner, joiner_rx) = outbox(1_000_000);
        receivers.push(joiner_rx);
        let info = serde_json::json!({ "name": "joiner" });
        group.bench_with_input(
            BenchmarkId::new("join_and_leave", members),
            &members,
            |b, _| {
                b.iter_custom(|iters| {
                    timed_in_batches(iters, &mut receivers, || {
                        channel
                            .join(&joiner, Some(("joiner".to_owned(), info.clone())), 100)
                            .expect("joined");
                        channel.leave(joiner.id()).expect("left")
                    })
                })
            },
        );
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = encoding, signatures, channel_lookup, broadcast, presence
}
criterion_main!(benches);
