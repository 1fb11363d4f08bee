//! Large broadcasts, split over tasks that write to subscribers directly.
//!
//! A broadcast offers its frame to every subscriber's outbox ([`Outbox::offer`]), which writes
//! it to an idle connection's socket at once. For a channel with many subscribers that is many
//! `send` calls, too many for the broadcasting task alone: they would be one core's serial
//! work (BENCHMARKS.md, "writing to idle subscribers from the broadcast"). So a large channel's
//! subscribers are split over [`count`] lanes (one per core) by connection id, and each lane
//! is written by a task of its own. A lane runs its broadcasts one after another, and a
//! connection is always in the same lane, so each subscriber still gets a channel's frames in
//! the order they were sent.
//!
//! Frames of different channels are not ordered against each other: a connection subscribed
//! to a large channel and to another one can get an event of the other channel before one
//! published to the large channel just before it, while the lane is still writing.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use bytes::Bytes;

use super::outbox::{ConnId, Frame, Outbox};

/// How many tasks a large broadcast is split over: one per core (as many as the runtime has
/// workers by default), at least two and at most [`MAX_LANES`].
pub fn count() -> usize {
    static COUNT: OnceLock<usize> = OnceLock::new();
    *COUNT.get_or_init(|| {
        std::thread::available_parallelism()
            .map_or(2, usize::from)
            .clamp(2, MAX_LANES)
    })
}

/// The most lanes a channel has, however many cores there are.
const MAX_LANES: usize = 16;

/// Channels with at least this many subscribers are delivered through lanes; smaller ones by
/// the broadcasting task alone.
pub const LANE_THRESHOLD: usize = 256;

/// Subscribers a lane writes before it lets other tasks run.
const TURN: usize = 512;

/// A subscriber as a lane sees it.
pub struct Target {
    pub outbox: Outbox,
    /// The cluster sequence number its join reflected (see `Subscriber::snapshot`).
    pub snapshot: u64,
}

/// A channel's subscribers, split by lane: connection `id` is in part `id % count()`.
pub type Parts = Box<[Vec<Target>]>;

/// Splits subscribers into their lanes' parts, by their outboxes' connection ids.
pub fn split(targets: impl Iterator<Item = Target>) -> Parts {
    let lanes = count();
    let mut parts: Vec<Vec<Target>> = (0..lanes).map(|_| Vec::new()).collect();
    for target in targets {
        parts[(target.outbox.id().0 % lanes as u64) as usize].push(target);
    }
    parts.into_boxed_slice()
}

/// Whom a broadcast skips: a socket id (`Ok`) or a connection (`Err`), and subscribers whose
/// join already reflected `seq`.
pub struct Skip {
    pub except: Option<Result<Box<str>, ConnId>>,
    pub seq: Option<u64>,
}

impl Skip {
    fn skips(&self, target: &Target) -> bool {
        if self.seq.is_some_and(|seq| seq <= target.snapshot) {
            return true;
        }
        match &self.except {
            None => false,
            Some(Ok(socket_id)) => target.outbox.socket_id() == &**socket_id,
            Some(Err(conn)) => target.outbox.id() == *conn,
        }
    }
}

/// One broadcast, for every lane.
pub struct Job {
    pub frame: Frame,
    /// `frame` as a WebSocket frame, written as it is to idle subscribers.
    pub encoded: Bytes,
    pub parts: Arc<Parts>,
    pub skip: Skip,
}

#[derive(Default)]
struct Lane {
    jobs: VecDeque<Arc<Job>>,
    running: bool,
}

/// A channel's lanes, made by its first broadcast through them: a small channel never has any.
#[derive(Default)]
pub struct Lanes(OnceLock<Set>);

/// The lanes themselves, shared with their tasks.
#[derive(Clone)]
struct Set(Arc<[Mutex<Lane>]>);

impl Lanes {
    /// Queues `job` on every lane with subscribers, starting the lane's task when it is not
    /// running.
    pub fn push(&self, job: Arc<Job>) {
        let set = self
            .0
            .get_or_init(|| Set((0..count()).map(|_| Mutex::default()).collect()));
        for (lane, part) in job.parts.iter().enumerate() {
            if part.is_empty() {
                continue;
            }
            let mut state = set.lock(lane);
            state.jobs.push_back(job.clone());
            if !state.running {
                state.running = true;
                drop(state);
                let set = set.clone();
                tokio::spawn(async move { set.drain(lane).await });
            }
        }
    }

    /// Whether no lane has a broadcast left to write.
    pub fn idle(&self) -> bool {
        self.0
            .get()
            .is_none_or(|set| (0..set.0.len()).all(|lane| !set.lock(lane).running))
    }
}

impl Set {
    fn lock(&self, lane: usize) -> std::sync::MutexGuard<'_, Lane> {
        self.0[lane].lock().unwrap_or_else(|e| e.into_inner())
    }

    async fn drain(self, lane: usize) {
        loop {
            let job = {
                let mut state = self.lock(lane);
                match state.jobs.pop_front() {
                    Some(job) => job,
                    None => {
                        state.running = false;
                        return;
                    }
                }
            };
            let mut now = Instant::now();
            let part = &job.parts[lane];
            for (i, target) in part.iter().enumerate() {
                if i > 0 && i % TURN == 0 {
                    tokio::task::yield_now().await;
                    now = Instant::now();
                }
                // Two subscribers ahead the outbox, one ahead its wire (whose address is in
                // the outbox): each `send` gives the memory time to arrive.
                if let Some(ahead) = part.get(i + 2) {
                    ahead.outbox.prefetch();
                }
                if let Some(ahead) = part.get(i + 1) {
                    ahead.outbox.prefetch_wire();
                }
                if !job.skip.skips(target) {
                    target.outbox.offer(&job.frame, &job.encoded, now);
                }
            }
        }
    }
}

/// `frame` as an unmasked WebSocket text frame, header and payload.
pub fn encode(frame: &Frame) -> Bytes {
    let payload = frame.as_bytes();
    let len = payload.len();
    let mut out = Vec::with_capacity(len + 10);
    out.push(0x81);
    if len < 126 {
        out.push(len as u8);
    } else if let Ok(short) = u16::try_from(len) {
        out.push(126);
        out.extend_from_slice(&short.to_be_bytes());
    } else {
        out.push(127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    out.extend_from_slice(payload);
    out.into()
}

#[cfg(test)]
mod tests {
    use tokio_tungstenite::tungstenite::protocol::frame::Frame as WsFrame;
    use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};

    use super::*;

    #[test]
    fn each_subscriber_is_in_one_lane_by_its_connection_id() {
        let targets = (0..100).map(|id| {
            let (outbox, _inbox) = Outbox::new(ConnId(id), format!("1.{id}"));
            Target {
                outbox,
                snapshot: 0,
            }
        });
        let parts = split(targets);
        assert_eq!(parts.len(), count());
        assert!(count() >= 2);
        let mut seen: Vec<u64> = Vec::new();
        for (lane, part) in parts.iter().enumerate() {
            for target in part {
                assert_eq!(target.outbox.id().0 as usize % count(), lane);
                seen.push(target.outbox.id().0);
            }
        }
        seen.sort_unstable();
        assert_eq!(seen, (0..100).collect::<Vec<_>>());
    }

    #[test]
    fn lanes_exist_only_once_a_broadcast_needs_them() {
        let lanes = Lanes::default();
        assert!(lanes.idle());
        assert!(lanes.0.get().is_none());
    }

    #[test]
    fn frames_are_encoded_as_tungstenite_writes_them() {
        for len in [0, 1, 125, 126, 127, 65_535, 65_536, 70_000] {
            let text = "x".repeat(len);
            let mut expected = Vec::new();
            WsFrame::message(text.clone(), OpCode::Data(Data::Text), true)
                .format(&mut expected)
                .unwrap();
            assert_eq!(encode(&Frame::from(text)), expected, "{len} bytes");
        }
    }
}
