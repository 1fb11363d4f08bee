//! One app's webhook batcher: collects events for a short window, holds back removals, and
//! hands each finished batch on.
//!
//! `channel_vacated` and `member_removed` wait [`Timing::removal_delay`] first. If the channel
//! is occupied again (or the user rejoins) meanwhile, the removal is dropped **and** so is the
//! re-occupation or re-add, so a page reload produces no webhooks at all, as Pusher does.
//!
//! On a single node the batcher keeps its own count of outstanding occupations per channel
//! and per presence member, so it needs no access to the hub and tolerates a vacated and an
//! occupied event from different connections arriving in either order. In a cluster each
//! transition is reported once, by whichever node Redis decided it on, so a node may see a
//! vacated without having seen the occupied: there the batcher trusts every event, and when
//! a removal's delay ends it asks the cluster ([`Recheck`]) whether the channel is still
//! empty or the user still gone, so a rejoin on another node cancels the removal too.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;

use tokio::sync::mpsc;
use tokio::time::{Instant, sleep_until};

use super::WebhookEvent;

/// A finished batch of one app.
pub type Flushed = (String, Vec<WebhookEvent>);

/// How long events wait.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// Events arriving within this window of the first are sent together.
    pub window: Duration,
    /// How long `channel_vacated` and `member_removed` wait for a rejoin.
    pub removal_delay: Duration,
}

/// Asks the cluster, when a removal's delay ends, whether it still holds.
pub trait Recheck: Send + Sync + 'static {
    /// Whether the `channel_vacated` or `member_removed` `event` of `app_id` is still true
    /// cluster-wide. When the answer cannot be had, the removal is sent.
    fn still_removed(&self, app_id: String, event: WebhookEvent) -> BoxFuture<'static, bool>;
}

/// A removal waiting for its delay.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Removal {
    Vacated(String),
    Member(String, String),
}

impl Removal {
    fn into_event(self) -> WebhookEvent {
        match self {
            Self::Vacated(channel) => WebhookEvent::ChannelVacated { channel },
            Self::Member(channel, user_id) => WebhookEvent::MemberRemoved { channel, user_id },
        }
    }
}

/// The batcher's state, apart from its task.
struct Batcher {
    timing: Timing,
    /// Whether transitions are counted here (one node) or trusted as reported (a cluster).
    counted: bool,
    occupancy: HashMap<String, u32>,
    members: HashMap<(String, String), u32>,
    /// Removals waiting, by the generation of their timer; a cancelled one is absent.
    pending: HashMap<Removal, u64>,
    /// Every removal waits the same delay, so deadlines come out in insertion order.
    timers: VecDeque<(Instant, Removal, u64)>,
    generation: u64,
    batch: Vec<WebhookEvent>,
    /// Channels already in this batch with a `cache_miss`, which Pusher de-duplicates.
    cache_misses: HashSet<String>,
    flush_at: Option<Instant>,
}

/// A removal's recheck result: the removal, its timer's generation, whether it still holds.
type Checked = (Removal, u64, bool);

/// Runs one app's batcher until `events` closes; what is pending then is sent at once.
/// Without `recheck` it counts transitions itself (one node); with it, it trusts them and
/// rechecks removals with the cluster.
pub async fn run(
    app_id: String,
    mut events: mpsc::UnboundedReceiver<WebhookEvent>,
    out: mpsc::UnboundedSender<Flushed>,
    timing: Timing,
    recheck: Option<Arc<dyn Recheck>>,
) {
    let mut batcher = Batcher::new(timing, recheck.is_none());
    let (checked_tx, mut checked) = mpsc::unbounded_channel::<Checked>();
    loop {
        let wake = batcher.next_wake();
        tokio::select! {
            event = events.recv() => match event {
                Some(event) => batcher.push(event, Instant::now()),
                None => break,
            },
            Some((removal, generation, holds)) = checked.recv() => {
                batcher.settle(removal, generation, holds, Instant::now());
            }
            () = sleep_until(wake.unwrap_or_else(far_future)), if wake.is_some() => {}
        }
        let now = Instant::now();
        for (removal, generation) in batcher.due(now) {
            match &recheck {
                None => batcher.settle(removal, generation, true, now),
                Some(recheck) => {
                    let check = recheck.still_removed(app_id.clone(), removal.clone().into_event());
                    let checked_tx = checked_tx.clone();
                    tokio::spawn(async move {
                        let holds = check.await;
                        let _ = checked_tx.send((removal, generation, holds));
                    });
                }
            }
        }
        if let Some(batch) = batcher.take_due(now)
            && out.send((app_id.clone(), batch)).is_err()
        {
            return;
        }
    }
    let rest = batcher.drain();
    if !rest.is_empty() {
        let _ = out.send((app_id, rest));
    }
}

fn far_future() -> Instant {
    Instant::now() + Duration::from_secs(86_400)
}

impl Batcher {
    fn new(timing: Timing, counted: bool) -> Self {
        Self {
            timing,
            counted,
            occupancy: HashMap::new(),
            members: HashMap::new(),
            pending: HashMap::new(),
            timers: VecDeque::new(),
            generation: 0,
            batch: Vec::new(),
            cache_misses: HashSet::new(),
            flush_at: None,
        }
    }

    fn push(&mut self, event: WebhookEvent, now: Instant) {
        match event {
            WebhookEvent::ChannelOccupied { ref channel } => {
                let removal = Removal::Vacated(channel.clone());
                if !self.counted || increment(&mut self.occupancy, channel.clone()) {
                    self.add_unless_cancelling(removal, event, now);
                }
            }
            WebhookEvent::ChannelVacated { channel } => {
                if !self.counted || decrement(&mut self.occupancy, channel.clone()) {
                    self.schedule(Removal::Vacated(channel), now);
                }
            }
            WebhookEvent::MemberAdded {
                ref channel,
                ref user_id,
            } => {
                let key = (channel.clone(), user_id.clone());
                let removal = Removal::Member(key.0.clone(), key.1.clone());
                if !self.counted || increment(&mut self.members, key) {
                    self.add_unless_cancelling(removal, event, now);
                }
            }
            WebhookEvent::MemberRemoved { channel, user_id } => {
                let key = (channel.clone(), user_id.clone());
                if !self.counted || decrement(&mut self.members, key) {
                    self.schedule(Removal::Member(channel, user_id), now);
                }
            }
            WebhookEvent::CacheMiss { ref channel } => {
                if self.cache_misses.insert(channel.clone()) {
                    self.emit(event, now);
                }
            }
            other => self.emit(other, now),
        }
    }

    /// Emits an occupation or add, unless it cancels a pending removal of the same thing.
    fn add_unless_cancelling(&mut self, removal: Removal, event: WebhookEvent, now: Instant) {
        if self.pending.remove(&removal).is_none() {
            self.emit(event, now);
        }
    }

    fn schedule(&mut self, removal: Removal, now: Instant) {
        if self.timing.removal_delay.is_zero() {
            return self.emit(removal.into_event(), now);
        }
        self.generation += 1;
        self.pending.insert(removal.clone(), self.generation);
        let deadline = now + self.timing.removal_delay;
        self.timers.push_back((deadline, removal, self.generation));
    }

    /// The removals whose delay has passed and that were not cancelled; they stay pending
    /// until [`Batcher::settle`], so a rejoin meanwhile still cancels them.
    fn due(&mut self, now: Instant) -> Vec<(Removal, u64)> {
        let mut due = Vec::new();
        while self.timers.front().is_some_and(|(at, _, _)| *at <= now) {
            let Some((_, removal, generation)) = self.timers.pop_front() else {
                break;
            };
            if self.pending.get(&removal) == Some(&generation) {
                due.push((removal, generation));
            }
        }
        due
    }

    /// Sends a due removal if it was not cancelled meanwhile and still `holds`.
    fn settle(&mut self, removal: Removal, generation: u64, holds: bool, now: Instant) {
        if self.pending.get(&removal) != Some(&generation) {
            return;
        }
        self.pending.remove(&removal);
        if holds {
            self.emit(removal.into_event(), now);
        }
    }

    fn emit(&mut self, event: WebhookEvent, now: Instant) {
        if self.batch.is_empty() {
            self.flush_at = Some(now + self.timing.window);
        }
        self.batch.push(event);
    }

    fn take_due(&mut self, now: Instant) -> Option<Vec<WebhookEvent>> {
        if self.flush_at.is_none_or(|at| at > now) {
            return None;
        }
        self.flush_at = None;
        self.cache_misses.clear();
        Some(std::mem::take(&mut self.batch))
    }

    fn next_wake(&self) -> Option<Instant> {
        let timer = self.timers.front().map(|(at, _, _)| *at);
        match (self.flush_at, timer) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Everything still held, removals included, for shutdown.
    fn drain(&mut self) -> Vec<WebhookEvent> {
        let mut rest = std::mem::take(&mut self.batch);
        for (_, removal, generation) in self.timers.drain(..) {
            if self.pending.get(&removal) == Some(&generation) {
                rest.push(removal.into_event());
            }
        }
        self.pending.clear();
        rest
    }
}

/// Counts one more; returns whether this was the first.
fn increment<K: std::hash::Hash + Eq>(counts: &mut HashMap<K, u32>, key: K) -> bool {
    let count = counts.entry(key).or_insert(0);
    *count += 1;
    *count == 1
}

/// Counts one less; returns whether that was the last. A decrement without a matching
/// increment (the batcher started after the join) is ignored.
fn decrement<K: std::hash::Hash + Eq>(counts: &mut HashMap<K, u32>, key: K) -> bool {
    let Some(count) = counts.get_mut(&key) else {
        return false;
    };
    *count -= 1;
    if *count == 0 {
        counts.remove(&key);
        return true;
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    const WINDOW: Duration = Duration::from_millis(50);
    const DELAY: Duration = Duration::from_secs(3);

    fn start() -> (
        mpsc::UnboundedSender<WebhookEvent>,
        mpsc::UnboundedReceiver<Flushed>,
    ) {
        let (tx, rx) = mpsc::unbounded_channel();
        let (out, flushed) = mpsc::unbounded_channel();
        let timing = Timing {
            window: WINDOW,
            removal_delay: DELAY,
        };
        tokio::spawn(run("1".to_owned(), rx, out, timing, None));
        (tx, flushed)
    }

    /// What a cluster answers: every removal still holds unless named in `back`.
    struct Cluster {
        back: Vec<WebhookEvent>,
    }

    impl Recheck for Cluster {
        fn still_removed(&self, _: String, event: WebhookEvent) -> BoxFuture<'static, bool> {
            let holds = !self.back.contains(&event);
            Box::pin(async move { holds })
        }
    }

    fn start_clustered(
        back: Vec<WebhookEvent>,
    ) -> (
        mpsc::UnboundedSender<WebhookEvent>,
        mpsc::UnboundedReceiver<Flushed>,
    ) {
        let (tx, rx) = mpsc::unbounded_channel();
        let (out, flushed) = mpsc::unbounded_channel();
        let timing = Timing {
            window: WINDOW,
            removal_delay: DELAY,
        };
        let recheck: Arc<dyn Recheck> = Arc::new(Cluster { back });
        tokio::spawn(run("1".to_owned(), rx, out, timing, Some(recheck)));
        (tx, flushed)
    }

    fn occupied(channel: &str) -> WebhookEvent {
        WebhookEvent::ChannelOccupied {
            channel: channel.to_owned(),
        }
    }

    fn vacated(channel: &str) -> WebhookEvent {
        WebhookEvent::ChannelVacated {
            channel: channel.to_owned(),
        }
    }

    fn member(added: bool, user_id: &str) -> WebhookEvent {
        let (channel, user_id) = ("presence-room".to_owned(), user_id.to_owned());
        if added {
            WebhookEvent::MemberAdded { channel, user_id }
        } else {
            WebhookEvent::MemberRemoved { channel, user_id }
        }
    }

    async fn next(flushed: &mut mpsc::UnboundedReceiver<Flushed>) -> Vec<WebhookEvent> {
        flushed.recv().await.expect("a batch").1
    }

    #[tokio::test(start_paused = true)]
    async fn events_within_the_window_form_one_batch() {
        let (tx, mut flushed) = start();
        let started = Instant::now();
        tx.send(occupied("a")).unwrap();
        tx.send(occupied("b")).unwrap();
        assert_eq!(next(&mut flushed).await, [occupied("a"), occupied("b")]);
        assert_eq!(started.elapsed(), WINDOW);
    }

    #[tokio::test(start_paused = true)]
    async fn vacated_waits_for_the_removal_delay() {
        let (tx, mut flushed) = start();
        tx.send(occupied("a")).unwrap();
        assert_eq!(next(&mut flushed).await, [occupied("a")]);
        let left = Instant::now();
        tx.send(vacated("a")).unwrap();
        assert_eq!(next(&mut flushed).await, [vacated("a")]);
        assert!(left.elapsed() >= DELAY, "sent after {:?}", left.elapsed());
    }

    #[tokio::test(start_paused = true)]
    async fn a_rejoin_within_the_delay_cancels_both_webhooks() {
        let (tx, mut flushed) = start();
        tx.send(occupied("a")).unwrap();
        tx.send(member(true, "u1")).unwrap();
        assert_eq!(
            next(&mut flushed).await,
            [occupied("a"), member(true, "u1")]
        );

        // A page reload: the user leaves and is back a second later.
        tx.send(member(false, "u1")).unwrap();
        tx.send(vacated("a")).unwrap();
        tokio::time::sleep(Duration::from_secs(1)).await;
        tx.send(occupied("a")).unwrap();
        tx.send(member(true, "u1")).unwrap();
        // Then another channel comes and goes; its batches are the next ones out.
        tx.send(occupied("b")).unwrap();
        assert_eq!(next(&mut flushed).await, [occupied("b")]);
        tx.send(vacated("b")).unwrap();
        assert_eq!(next(&mut flushed).await, [vacated("b")]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_later_leave_after_a_cancelled_one_is_sent_once() {
        let (tx, mut flushed) = start();
        tx.send(occupied("a")).unwrap();
        assert_eq!(next(&mut flushed).await, [occupied("a")]);
        tx.send(vacated("a")).unwrap();
        tx.send(occupied("a")).unwrap();
        tokio::time::sleep(Duration::from_secs(2)).await;
        tx.send(vacated("a")).unwrap();
        let left = Instant::now();
        assert_eq!(next(&mut flushed).await, [vacated("a")]);
        assert!(left.elapsed() >= DELAY);
        drop(tx);
        assert!(flushed.recv().await.is_none(), "nothing else was sent");
    }

    #[tokio::test(start_paused = true)]
    async fn out_of_order_vacated_and_occupied_from_two_connections() {
        let (tx, mut flushed) = start();
        tx.send(occupied("a")).unwrap();
        // B's join was counted before A's leave was reported.
        tx.send(occupied("a")).unwrap();
        tx.send(vacated("a")).unwrap();
        assert_eq!(next(&mut flushed).await, [occupied("a")]);
        drop(tx);
        assert!(
            flushed.recv().await.is_none(),
            "the channel was never vacated"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn cache_miss_is_deduplicated_within_a_batch() {
        let (tx, mut flushed) = start();
        let miss = WebhookEvent::CacheMiss {
            channel: "cache-a".to_owned(),
        };
        tx.send(miss.clone()).unwrap();
        tx.send(miss.clone()).unwrap();
        assert_eq!(next(&mut flushed).await, vec![miss.clone()]);
        tx.send(miss.clone()).unwrap();
        assert_eq!(next(&mut flushed).await, vec![miss]);
    }

    #[tokio::test(start_paused = true)]
    async fn in_a_cluster_a_vacated_reported_here_is_sent_without_a_local_occupied() {
        let (tx, mut flushed) = start_clustered(Vec::new());
        // Another node reported the occupation; the last subscriber left on this one.
        tx.send(vacated("a")).unwrap();
        let left = Instant::now();
        assert_eq!(next(&mut flushed).await, [vacated("a")]);
        assert!(left.elapsed() >= DELAY);
    }

    #[tokio::test(start_paused = true)]
    async fn in_a_cluster_a_rejoin_on_another_node_cancels_the_removal() {
        // The user and the channel are back, on another node, when the delay ends.
        let (tx, mut flushed) = start_clustered(vec![vacated("a"), member(false, "u1")]);
        tx.send(member(false, "u1")).unwrap();
        tx.send(vacated("a")).unwrap();
        tx.send(vacated("b")).unwrap();
        assert_eq!(next(&mut flushed).await, [vacated("b")]);
        drop(tx);
        assert!(flushed.recv().await.is_none(), "only b was still vacated");
    }

    #[tokio::test(start_paused = true)]
    async fn in_a_cluster_a_rejoin_here_still_cancels_both() {
        let (tx, mut flushed) = start_clustered(Vec::new());
        tx.send(vacated("a")).unwrap();
        tx.send(occupied("a")).unwrap();
        drop(tx);
        assert!(flushed.recv().await.is_none(), "neither was sent");
    }
}
