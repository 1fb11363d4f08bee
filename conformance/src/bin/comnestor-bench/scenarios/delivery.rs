//! The engine behind every scenario that publishes events and counts what arrives: fan-out,
//! many channels, presence churn and intake.
//!
//! Subscribers are one task each until subscribed; then, with `--readers`, those that stay move
//! to the reader threads of [`crate::reader`], and come back to a task to close. Each has a
//! [`Tracker`] that marks each event's per-channel sequence number (to find losses and
//! duplicates) and batches `(event, latency)` pairs into a shared histogram under one lock taken
//! every few hundred messages. The publisher runs on the same runtime and keeps its schedule by
//! counting how many events are due, not by sleeping between them, so a late timer tick is
//! caught up rather than lost.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use comnestor_protocol::ChannelKind;
use comnestor_protocol::ChannelName;
use comnestor_protocol::auth::authorize_channel;
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::task::JoinSet;
use tokio::time::{Instant, MissedTickBehavior};

use crate::client::{Outgoing, Status, Ws};
use crate::payload::{self, Stamp, now_us};
use crate::proc;
use crate::reader::{Handoff, Listener, Parked, Readers};
use crate::stats::{Histogram, SeenSet, Summary};
use crate::target::{Published, Target, unix_ms};

/// `(event, latency)` pairs a subscriber keeps before taking the shared lock.
const BATCH: usize = 256;
/// How long connecting every subscriber may take.
const SETUP_TIMEOUT: Duration = Duration::from_secs(120);
/// The event name every bench event carries.
pub const EVENT: &str = "bench";

const PENDING: u8 = 0;
const OK: u8 = 1;
const FAILED: u8 = 2;

/// Which API events are published through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    /// `POST /apps/{id}/events` (or `/batch_events`), signed: any Pusher server.
    Pusher,
    /// `POST /api/events`: Comnestor's durable intake.
    Intake,
}

/// What to run.
#[derive(Debug, Clone)]
pub struct DeliverySpec {
    pub channels: Vec<String>,
    pub subscribers: usize,
    /// Presence channels: every `stable_every`-th client stays; the others leave and rejoin
    /// at `churn_rate` rejoins per second in total.
    pub stable_every: usize,
    pub churn_rate: f64,
    pub rate: f64,
    pub duration: Duration,
    pub payload: usize,
    pub batch: usize,
    pub inflight: usize,
    pub api: Api,
    pub warmup: Duration,
    pub drain: Duration,
    /// Channels held open on other connections, to measure a publish against a busy server.
    pub background_channels: usize,
    pub buffer: usize,
    pub connect_concurrency: usize,
    /// Reader threads for the subscribers that stay (0: each keeps its task).
    pub readers: usize,
    pub reader_idle: Duration,
}

/// What was measured.
#[derive(Debug, Default)]
pub struct DeliveryOutcome {
    pub setup: Duration,
    pub connect_failures: u64,
    pub first_failure: Option<String>,
    pub publish: PublishSummary,
    pub deliveries: u64,
    pub expected: u64,
    pub lost: u64,
    pub duplicates: u64,
    /// Events delivered although their publish failed or timed out.
    pub delivered_unconfirmed: u64,
    pub disconnected: u64,
    pub close_codes: BTreeMap<String, u64>,
    pub latency: Summary,
    /// Per event, the latency to its last subscriber.
    pub last_subscriber: Summary,
    /// From the first publish to the last delivery.
    pub window: Duration,
    pub joins: Summary,
    pub member_events: u64,
    pub client_cpu: f64,
    pub server_cpu: Option<f64>,
    pub server_rss_kib: Option<(u64, u64)>,
    /// Per event sequence: Unix ms when published and µs to its last subscriber.
    pub per_event: Vec<(i64, u32)>,
    /// Event ids the intake returned, by event sequence.
    pub ids: Vec<(u64, String)>,
}

#[derive(Debug, Default)]
pub struct PublishSummary {
    pub attempted: u64,
    pub ok: u64,
    pub errors: BTreeMap<String, u64>,
    pub elapsed: Duration,
    pub http: Summary,
}

impl PublishSummary {
    pub fn achieved_rate(&self) -> f64 {
        rate(self.ok, self.elapsed)
    }
}

pub fn rate(count: u64, over: Duration) -> f64 {
    let secs = over.as_secs_f64();
    if secs > 0.0 { count as f64 / secs } else { 0.0 }
}

/// State every subscriber of a run shares.
pub struct Shared {
    aggregate: Mutex<Aggregate>,
    received: AtomicU64,
    /// Events sent before this instant ([`now_us`]) are counted but not timed.
    warmup_until_us: AtomicU64,
}

#[derive(Default)]
struct Aggregate {
    latency: Histogram,
    joins: Histogram,
    /// Largest latency seen per event sequence, in µs.
    per_event_max: Vec<u32>,
}

impl Shared {
    fn new() -> Arc<Self> {
        Arc::new(Self {
            aggregate: Mutex::new(Aggregate::default()),
            received: AtomicU64::new(0),
            warmup_until_us: AtomicU64::new(u64::MAX),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Aggregate> {
        self.aggregate.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// One subscriber's view of the events it received.
pub struct Tracker {
    shared: Arc<Shared>,
    seen: SeenSet,
    received: u64,
    reported: u64,
    duplicates: u64,
    member_events: u64,
    batch: Vec<(u32, u32)>,
    last_rx_us: u64,
    /// When the current read's data arrived: taken at its first message, so every frame of
    /// one read shares one clock reading.
    read_at_us: Option<u64>,
    /// When the pending (re)subscription was sent.
    join_started_us: Option<u64>,
}

impl Tracker {
    fn new(shared: Arc<Shared>) -> Self {
        Self {
            shared,
            seen: SeenSet::default(),
            received: 0,
            reported: 0,
            duplicates: 0,
            member_events: 0,
            batch: Vec::with_capacity(BATCH),
            last_rx_us: 0,
            read_at_us: None,
            join_started_us: None,
        }
    }

    /// The per-message work: find the stamp, mark it, remember its latency.
    #[inline]
    fn on_text(&mut self, text: &[u8], out: &mut Outgoing) {
        let Some(stamp) = payload::decode(text) else {
            return self.on_other(text, out);
        };
        let now = *self.read_at_us.get_or_insert_with(now_us);
        self.received += 1;
        if !self.seen.insert(stamp.channel_seq) {
            self.duplicates += 1;
            return;
        }
        self.last_rx_us = now;
        if stamp.sent_us >= self.shared.warmup_until_us.load(Ordering::Relaxed) {
            let latency = now.saturating_sub(stamp.sent_us).min(u64::from(u32::MAX));
            self.batch.push((stamp.event_seq as u32, latency as u32));
            if self.batch.len() == BATCH {
                self.flush();
            }
        }
    }

    /// Anything that is not a bench event: pings, presence changes, subscription answers.
    fn on_other(&mut self, text: &[u8], out: &mut Outgoing) {
        if contains(text, b"pusher:ping") {
            out.text(r#"{"event":"pusher:pong","data":{}}"#);
        } else if contains(text, b"member_added") || contains(text, b"member_removed") {
            self.member_events += 1;
        } else if contains(text, b"subscription_succeeded")
            && let Some(started) = self.join_started_us.take()
        {
            self.shared.lock().joins.record(now_us() - started);
        }
    }

    fn flush(&mut self) {
        if self.batch.is_empty() {
            return;
        }
        let mut aggregate = self.shared.lock();
        for &(event, latency) in &self.batch {
            aggregate.latency.record(u64::from(latency));
            let event = event as usize;
            if event >= aggregate.per_event_max.len() {
                aggregate.per_event_max.resize(event + 1, 0);
            }
            let slot = &mut aggregate.per_event_max[event];
            *slot = (*slot).max(latency);
        }
        drop(aggregate);
        self.batch.clear();
    }

    fn report_received(&mut self) {
        let delta = self.received - self.reported;
        if delta > 0 {
            self.shared.received.fetch_add(delta, Ordering::Relaxed);
            self.reported = self.received;
        }
    }
}

/// A subscriber handed to a reader thread.
struct Listening {
    plan: ClientPlan,
    tracker: Tracker,
}

impl Listener for Listening {
    fn on_text(&mut self, text: &[u8], out: &mut Outgoing) {
        self.tracker.on_text(text, out);
    }

    fn after_read(&mut self) {
        self.tracker.read_at_us = None;
        self.tracker.report_received();
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// One subscriber, as planned.
#[derive(Clone)]
struct ClientPlan {
    index: usize,
    channel: usize,
    channel_name: Arc<str>,
    /// The presence user id it joins as.
    user: Option<String>,
    /// Whether it stays subscribed for the whole run (and so must receive every event).
    stable: bool,
    buffer: usize,
}

/// What a subscriber reports when it stops.
struct ClientResult {
    plan: ClientPlan,
    tracker: Tracker,
    closed: Option<Option<u16>>,
    error: Option<String>,
}

/// Sent to a churning subscriber: leave its channel and join it again.
struct Rejoin;

/// Connects, subscribes and waits for `subscription_succeeded`.
async fn subscribe(target: &Target, plan: &ClientPlan) -> anyhow::Result<Ws> {
    let mut ws = Ws::connect(target, target.source(plan.index), plan.buffer).await?;
    queue_join(&mut ws, target, plan)?;
    ws.flush().await?;
    ws.await_subscribed(&[&plan.channel_name]).await?;
    Ok(ws)
}

fn queue_join(ws: &mut Ws, target: &Target, plan: &ClientPlan) -> anyhow::Result<()> {
    let name = ChannelName::parse(&plan.channel_name)?;
    let channel_data = plan
        .user
        .as_ref()
        .map(|user| serde_json::json!({ "user_id": user }).to_string());
    let auth = match name.kind() {
        ChannelKind::Public => None,
        _ => Some(authorize_channel(
            &target.key,
            &target.secret,
            &ws.socket_id,
            &plan.channel_name,
            channel_data.as_deref(),
        )),
    };
    ws.queue_subscribe(&plan.channel_name, auth, channel_data);
    Ok(())
}

/// What every subscriber of a run gets.
#[derive(Clone)]
struct ClientEnv {
    target: Arc<Target>,
    shared: Arc<Shared>,
    stop: watch::Receiver<bool>,
    ready: mpsc::Sender<Result<(), String>>,
    /// Limits how many connect at once.
    gate: Arc<Semaphore>,
    /// Where subscribers that stay go once subscribed, unless each keeps its task.
    readers: Option<Handoff<Listening>>,
}

async fn run_client(
    env: ClientEnv,
    mut plan: ClientPlan,
    mut commands: mpsc::Receiver<Rejoin>,
) -> Option<ClientResult> {
    let ClientEnv {
        target,
        shared,
        mut stop,
        ready,
        gate,
        readers,
    } = env;
    let permit = gate.acquire().await.ok()?;
    let mut ws = match subscribe(&target, &plan).await {
        Ok(ws) => ws,
        Err(error) => {
            let _ = ready.send(Err(format!("{error:#}"))).await;
            return None;
        }
    };
    drop(permit);
    let _ = ready.send(Ok(())).await;
    drop(ready);

    let mut tracker = Tracker::new(shared);
    if let Some(readers) = readers.filter(|_| plan.stable) {
        match hand_over(ws, plan, tracker, &readers) {
            HandOver::Given => return None,
            HandOver::Back(back, again, kept) => (ws, plan, tracker) = (back, again, kept),
            HandOver::Failed(result) => return Some(result),
        }
    }
    let mut closed = None;
    let mut error = None;
    // Made once: a new `changed()` per message would register and drop a waiter each time.
    let stopped = stop.changed();
    tokio::pin!(stopped);
    loop {
        tokio::select! {
            biased;
            _ = &mut stopped => break,
            Some(Rejoin) = commands.recv(), if !plan.stable => {
                ws.queue_unsubscribe(&plan.channel_name);
                if let Err(e) = queue_join(&mut ws, &target, &plan) {
                    error = Some(e.to_string());
                    break;
                }
                tracker.join_started_us = Some(now_us());
                if let Err(e) = ws.flush().await {
                    error = Some(e.to_string());
                    break;
                }
            }
            status = ws.read_some(|text, out| tracker.on_text(text, out)) => {
                tracker.read_at_us = None;
                tracker.report_received();
                match status {
                    Ok(Status::Open) => {}
                    Ok(Status::Closed(code)) => {
                        closed = Some(code);
                        break;
                    }
                    Err(e) => {
                        error = Some(format!("{e:#}"));
                        break;
                    }
                }
            }
        }
    }
    finish(ws, plan, tracker, closed, error).await
}

/// Where a subscriber went.
enum HandOver {
    Given,
    /// The readers had stopped: the task keeps it.
    Back(Ws, ClientPlan, Tracker),
    /// Its socket could not change hands, which ends it.
    Failed(ClientResult),
}

/// Gives a subscribed connection to a reader thread.
fn hand_over(
    ws: Ws,
    plan: ClientPlan,
    mut tracker: Tracker,
    readers: &Handoff<Listening>,
) -> HandOver {
    let failed =
        |plan, tracker, error: String| HandOver::Failed(ended(plan, tracker, None, Some(error)));
    let (stream, frames) = match ws.into_parts(|text, out| tracker.on_text(text, out)) {
        Ok(parts) => parts,
        Err(e) => return failed(plan, tracker, format!("leaving the runtime: {e}")),
    };
    let parked = match readers.give(stream, frames, Listening { plan, tracker }) {
        Ok(()) => return HandOver::Given,
        Err(parked) => parked,
    };
    let Listening { plan, tracker } = parked.listener;
    match Ws::from_parts(parked.stream, parked.frames) {
        Ok(ws) => HandOver::Back(ws, plan, tracker),
        Err(e) => failed(plan, tracker, format!("back on the runtime: {e}")),
    }
}

/// Closes a subscriber politely unless the server closed it, and reports what it saw.
async fn finish(
    ws: Ws,
    plan: ClientPlan,
    tracker: Tracker,
    closed: Option<Option<u16>>,
    error: Option<String>,
) -> Option<ClientResult> {
    let result = ended(plan, tracker, closed, error);
    if closed.is_none() {
        ws.close().await;
    }
    Some(result)
}

/// What a subscriber that stopped saw, its last latencies and counts handed in.
fn ended(
    plan: ClientPlan,
    mut tracker: Tracker,
    closed: Option<Option<u16>>,
    error: Option<String>,
) -> ClientResult {
    tracker.flush();
    tracker.report_received();
    ClientResult {
        plan,
        tracker,
        closed,
        error,
    }
}

/// Takes a connection back from a reader thread that stopped.
async fn unpark(parked: Parked<Listening>) -> Option<ClientResult> {
    let Listening { plan, tracker } = parked.listener;
    match Ws::from_parts(parked.stream, parked.frames) {
        Ok(ws) => finish(ws, plan, tracker, parked.closed, parked.error).await,
        Err(e) => {
            let error = parked.error.unwrap_or(format!("back on the runtime: {e}"));
            Some(ended(plan, tracker, parked.closed, Some(error)))
        }
    }
}

/// Holds `names` subscribed on one connection until told to stop.
async fn hold_channels(
    target: Arc<Target>,
    index: usize,
    names: Vec<String>,
    mut stop: watch::Receiver<bool>,
    ready: mpsc::Sender<Result<(), String>>,
) {
    let setup = async {
        let mut ws = Ws::connect(&target, target.source(index), 4096).await?;
        for name in &names {
            ws.queue_subscribe(name, None, None);
        }
        ws.flush().await?;
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        ws.await_subscribed(&refs).await?;
        anyhow::Ok(ws)
    };
    let mut ws = match setup.await {
        Ok(ws) => ws,
        Err(error) => {
            let _ = ready.send(Err(format!("{error:#}"))).await;
            return;
        }
    };
    let _ = ready.send(Ok(())).await;
    drop(ready);
    loop {
        tokio::select! {
            _ = stop.changed() => break,
            status = ws.read_some(|_, _| {}) => {
                if !matches!(status, Ok(Status::Open)) {
                    return;
                }
            }
        }
    }
    ws.close().await;
}

/// Runs a delivery scenario from connecting to the last message.
pub async fn run(
    target: Arc<Target>,
    spec: &DeliverySpec,
    server_pid: Option<&str>,
) -> anyhow::Result<DeliveryOutcome> {
    let mut outcome = DeliveryOutcome::default();
    let shared = Shared::new();
    let (stop_tx, stop_rx) = watch::channel(false);
    let (ready_tx, mut ready_rx) = mpsc::channel(1024);
    let gate = Arc::new(Semaphore::new(spec.connect_concurrency.max(1)));
    let setup_started = Instant::now();

    let mut background = JoinSet::new();
    let per_holder = 1000;
    let holders = spec.background_channels.div_ceil(per_holder);
    for h in 0..holders {
        let names = (h * per_holder..((h + 1) * per_holder).min(spec.background_channels))
            .map(|i| format!("bench-background-{i}"))
            .collect();
        background.spawn(hold_channels(
            target.clone(),
            spec.subscribers + h,
            names,
            stop_rx.clone(),
            ready_tx.clone(),
        ));
    }

    let presence = spec.channels.iter().any(|c| c.starts_with("presence-"));
    let names: Vec<Arc<str>> = spec
        .channels
        .iter()
        .map(|c| Arc::from(c.as_str()))
        .collect();
    let mut subscribers_of = vec![0u64; names.len()];
    let mut stable_of = vec![0u64; names.len()];
    let readers = match spec.readers {
        0 => None,
        threads => Some(Readers::spawn(threads, spec.reader_idle)?),
    };
    let env = ClientEnv {
        target: target.clone(),
        shared: shared.clone(),
        stop: stop_rx.clone(),
        ready: ready_tx.clone(),
        gate: gate.clone(),
        readers: readers.as_ref().map(Readers::handoff),
    };
    let mut clients = JoinSet::new();
    let mut churners = Vec::new();
    // Held until the end, so that a subscriber's command channel never reports closed.
    let mut commands = Vec::new();
    for index in 0..spec.subscribers {
        let channel = index % names.len();
        let stable = !presence || spec.stable_every <= 1 || index % spec.stable_every == 0;
        let plan = ClientPlan {
            index,
            channel,
            channel_name: names[channel].clone(),
            user: presence.then(|| format!("user-{index}")),
            stable,
            buffer: spec.buffer,
        };
        subscribers_of[channel] += 1;
        stable_of[channel] += u64::from(stable);
        let (command_tx, command_rx) = mpsc::channel(4);
        if !stable {
            churners.push(command_tx.clone());
        }
        commands.push(command_tx);
        clients.spawn(run_client(env.clone(), plan, command_rx));
    }
    drop(env);
    drop(ready_tx);

    let expected_ready = spec.subscribers + holders;
    let mut ready = 0;
    let deadline = setup_started + SETUP_TIMEOUT;
    while ready + (outcome.connect_failures as usize) < expected_ready {
        match tokio::time::timeout_at(deadline, ready_rx.recv()).await {
            Ok(Some(Ok(()))) => ready += 1,
            Ok(Some(Err(error))) => {
                outcome.connect_failures += 1;
                outcome.first_failure.get_or_insert(error);
            }
            Ok(None) | Err(_) => break,
        }
    }
    outcome.setup = setup_started.elapsed();
    if ready == 0 {
        let _ = stop_tx.send(true);
        anyhow::bail!(
            "no subscriber connected: {}",
            outcome.first_failure.unwrap_or_default()
        );
    }

    // Let the server settle its subscription bookkeeping before the clock starts.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let server_before = server_pid.and_then(proc::sample);
    let client_before = proc::sample("self");
    shared
        .warmup_until_us
        .store(now_us() + spec.warmup.as_micros() as u64, Ordering::Relaxed);
    let publish_started_us = now_us();
    let churn = tokio::spawn(churn(churners, spec.churn_rate, spec.duration));
    let log = publish(target.clone(), spec, &names).await;
    churn.abort();

    let expected_all: u64 = log
        .status
        .iter()
        .zip(&subscribers_of)
        .map(|(statuses, subs)| statuses.iter().filter(|s| **s == OK).count() as u64 * subs)
        .sum();
    let drain_deadline = Instant::now() + spec.drain;
    while shared.received.load(Ordering::Relaxed) < expected_all && Instant::now() < drain_deadline
    {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let server_after = server_pid.and_then(proc::sample);
    let client_after = proc::sample("self");
    let _ = stop_tx.send(true);

    // The tasks first: each has handed its connection to a reader or is stopping, and the
    // readers may stop only once nothing more can be handed to them.
    let mut results = Vec::new();
    while let Some(result) = clients.join_next().await {
        results.extend(result.ok().flatten());
    }
    if let Some(readers) = readers {
        let parked = tokio::task::spawn_blocking(move || readers.stop()).await??;
        for parked in parked {
            clients.spawn(unpark(parked));
        }
        while let Some(result) = clients.join_next().await {
            results.extend(result.ok().flatten());
        }
    }
    let mut last_rx_us = publish_started_us;
    for result in results {
        account(&mut outcome, &result, &log);
        last_rx_us = last_rx_us.max(result.tracker.last_rx_us);
    }
    while background.join_next().await.is_some() {}
    drop(commands);

    outcome.expected = log
        .status
        .iter()
        .zip(&stable_of)
        .map(|(statuses, subs)| statuses.iter().filter(|s| **s == OK).count() as u64 * subs)
        .sum();
    outcome.window = Duration::from_micros(last_rx_us.saturating_sub(publish_started_us));
    let aggregate = shared.lock();
    outcome.latency = aggregate.latency.summary();
    outcome.joins = aggregate.joins.summary();
    let mut last = Histogram::new();
    for &max in aggregate.per_event_max.iter().filter(|m| **m > 0) {
        last.record(u64::from(max));
    }
    outcome.last_subscriber = last.summary();
    outcome.per_event = log
        .sent_unix_ms
        .iter()
        .enumerate()
        .map(|(i, &sent)| (sent, aggregate.per_event_max.get(i).copied().unwrap_or(0)))
        .collect();
    drop(aggregate);
    if let (Some(before), Some(after)) = (client_before, client_after) {
        outcome.client_cpu = proc::cpu_percent(&before, &after);
    }
    if let (Some(before), Some(after)) = (server_before, server_after) {
        outcome.server_cpu = Some(proc::cpu_percent(&before, &after));
        outcome.server_rss_kib = Some((before.rss_kib, after.rss_kib));
    }
    outcome.publish = PublishSummary {
        attempted: log.attempted,
        ok: log.ok,
        errors: log.errors,
        elapsed: log.elapsed,
        http: log.http.summary(),
    };
    outcome.ids = log.ids;
    Ok(outcome)
}

/// Adds one subscriber's counts to the outcome, checking what it saw against what was
/// published to its channel.
fn account(outcome: &mut DeliveryOutcome, result: &ClientResult, log: &PublishLog) {
    let tracker = &result.tracker;
    outcome.deliveries += tracker.received - tracker.duplicates;
    outcome.duplicates += tracker.duplicates;
    outcome.member_events += tracker.member_events;
    if result.closed.is_some() || result.error.is_some() {
        outcome.disconnected += 1;
        let why = match (&result.closed, &result.error) {
            (Some(Some(code)), _) => format!("closed {code}"),
            (Some(None), _) => "closed without a code".to_owned(),
            (None, Some(error)) => error.clone(),
            (None, None) => String::new(),
        };
        *outcome.close_codes.entry(why).or_default() += 1;
    }
    for (seq, &status) in log.status[result.plan.channel].iter().enumerate() {
        let seen = tracker.seen.contains(seq as u64);
        if status == OK && !seen && result.plan.stable {
            outcome.lost += 1;
        } else if status != OK && seen {
            outcome.delivered_unconfirmed += 1;
        }
    }
}

/// Sends `Rejoin` to the churning subscribers in turn, `rate` per second.
async fn churn(churners: Vec<mpsc::Sender<Rejoin>>, rate: f64, duration: Duration) {
    if churners.is_empty() || rate <= 0.0 {
        return;
    }
    let started = Instant::now();
    let mut ticker = tokio::time::interval(Duration::from_millis(1));
    ticker.set_missed_tick_behavior(MissedTickBehavior::Skip);
    let mut sent = 0u64;
    while started.elapsed() < duration {
        ticker.tick().await;
        let due = (started.elapsed().as_secs_f64() * rate) as u64;
        while sent < due {
            let _ = churners[sent as usize % churners.len()].try_send(Rejoin);
            sent += 1;
        }
    }
}

/// What the publisher did, per channel and per event.
struct PublishLog {
    /// Per channel, per channel sequence: pending, ok or failed.
    status: Vec<Vec<u8>>,
    /// Per event sequence: Unix ms when it was sent.
    sent_unix_ms: Vec<i64>,
    ids: Vec<(u64, String)>,
    http: Histogram,
    errors: BTreeMap<String, u64>,
    attempted: u64,
    ok: u64,
    elapsed: Duration,
}

/// Publishes `rate` events per second for `duration`, round robin over the channels, with at
/// most `inflight` requests outstanding. When the server answers too slowly for that, the
/// schedule slips and the achieved rate says so.
async fn publish(target: Arc<Target>, spec: &DeliverySpec, names: &[Arc<str>]) -> PublishLog {
    let names: Arc<[Arc<str>]> = names.into();
    let log = Arc::new(Mutex::new(PublishLog {
        status: vec![Vec::new(); names.len()],
        sent_unix_ms: Vec::new(),
        ids: Vec::new(),
        http: Histogram::new(),
        errors: BTreeMap::new(),
        attempted: 0,
        ok: 0,
        elapsed: Duration::ZERO,
    }));
    let inflight = spec.inflight.max(1);
    let permits = Arc::new(Semaphore::new(inflight));
    let batch = if spec.api == Api::Intake {
        1
    } else {
        spec.batch.clamp(1, 10)
    };
    let total = (spec.rate * spec.duration.as_secs_f64()).round() as u64;
    let started = Instant::now();
    let mut ticker = tokio::time::interval(Duration::from_millis(1));
    ticker.set_missed_tick_behavior(MissedTickBehavior::Skip);
    let mut next = 0u64;
    let mut channel = 0usize;
    while next < total {
        ticker.tick().await;
        let due = ((started.elapsed().as_secs_f64() * spec.rate) as u64 + 1).min(total);
        while next < due {
            let Ok(permit) = permits.clone().acquire_owned().await else {
                break;
            };
            let count = batch.min((due - next) as usize);
            let mut items = Vec::with_capacity(count);
            {
                let mut log = log.lock().unwrap_or_else(|e| e.into_inner());
                for _ in 0..count {
                    let channel_seq = log.status[channel].len() as u64;
                    log.status[channel].push(PENDING);
                    log.sent_unix_ms.push(0);
                    items.push((channel, channel_seq, next));
                    next += 1;
                    channel = (channel + 1) % names.len();
                }
                log.attempted += count as u64;
            }
            let target = target.clone();
            let log = log.clone();
            let names = names.clone();
            let (api, size) = (spec.api, spec.payload);
            tokio::spawn(async move {
                send(&target, api, &names, items, size, &log).await;
                drop(permit);
            });
        }
    }
    let elapsed = started.elapsed();
    let _ = tokio::time::timeout(
        Duration::from_secs(15),
        permits.acquire_many(inflight as u32),
    )
    .await;
    let mut log = log.lock().unwrap_or_else(|e| e.into_inner());
    let mut done = std::mem::replace(
        &mut *log,
        PublishLog {
            status: Vec::new(),
            sent_unix_ms: Vec::new(),
            ids: Vec::new(),
            http: Histogram::new(),
            errors: BTreeMap::new(),
            attempted: 0,
            ok: 0,
            elapsed: Duration::ZERO,
        },
    );
    done.elapsed = elapsed;
    done
}

async fn send(
    target: &Target,
    api: Api,
    names: &[Arc<str>],
    items: Vec<(usize, u64, u64)>,
    size: usize,
    log: &Mutex<PublishLog>,
) {
    let sent_us = now_us();
    let sent_unix = unix_ms();
    let mut datas: Vec<(&str, String)> = items
        .iter()
        .map(|&(channel, channel_seq, event_seq)| {
            let stamp = Stamp {
                channel_seq,
                event_seq,
                sent_us,
            };
            (&*names[channel], payload::encode(stamp, size))
        })
        .collect();
    let result = match api {
        Api::Pusher => target.trigger(EVENT, &datas).await,
        Api::Intake => {
            let (channel, data) = datas.remove(0);
            target.intake(EVENT, channel, data).await
        }
    };
    let took = now_us() - sent_us;
    let mut log = log.lock().unwrap_or_else(|e| e.into_inner());
    log.http.record(took);
    let ok = matches!(result, Published::Ok(_));
    for &(channel, channel_seq, event_seq) in &items {
        log.status[channel][channel_seq as usize] = if ok { OK } else { FAILED };
        log.sent_unix_ms[event_seq as usize] = sent_unix;
    }
    let count = items.len() as u64;
    match result {
        Published::Ok(id) => {
            log.ok += count;
            if let Some(id) = id {
                log.ids.push((items[0].2, id));
            }
        }
        Published::Refused(status) => {
            *log.errors.entry(format!("HTTP {status}")).or_default() += count
        }
        Published::Failed(error) => *log.errors.entry(error).or_default() += count,
    }
}
