//! The sending half of a connection, shared with every channel it joins, and the receiving
//! half its task drains.
//!
//! A broadcast offers its frame to each subscriber's outbox, so this is on the fan-out path
//! once per delivery. It is a mutex around a `VecDeque`, the task's waker and the connection's
//! socket ([`Wire`]). When nothing is queued or being written and the connection is not
//! streaming, the offer writes the frame to the socket itself, under that lock: no task is
//! woken. Otherwise the frame is queued, one uncontended lock, and the connection task takes
//! everything queued at once by swapping the deque for its own empty one, so a burst costs one
//! lock on the receiving side, not one per frame. An idle connection's outbox holds no frame
//! buffer at all.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicPtr, AtomicU16, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use bytes::Bytes;
use comnestor_protocol::CloseCode;
use tokio_tungstenite::tungstenite::Utf8Bytes;

use crate::listener::{Direct, Wire};

/// An encoded frame. Cloning shares the bytes, so a broadcast is serialized once for every
/// recipient.
pub type Frame = Utf8Bytes;

/// How many frames may wait for one connection. A client that falls this far behind is
/// disconnected with 4100 rather than allowed to grow the server's memory.
pub const OUTBOX_CAPACITY: usize = 1024;

/// A drained buffer larger than this is freed rather than kept, so that a burst does not leave
/// an idle connection holding its peak.
const KEPT_CAPACITY: usize = 64;

/// A connection written to less than this long ago is streaming, and a broadcast queues its
/// frame rather than writing it directly, so that the connection task merges what queued up
/// into one `send` (the connection task's `STREAMING_GAP` is this gap).
pub const DIRECT_GAP: Duration = Duration::from_millis(20);

/// Identifies a connection inside this process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId(pub u64);

/// A handle that queues frames for one connection and can ask it to close.
#[derive(Clone)]
pub struct Outbox {
    id: ConnId,
    shared: Arc<Shared>,
}

struct Shared {
    socket_id: Box<str>,
    /// The close code requested, 0 for none. Read without the lock on every wake-up.
    close: AtomicU16,
    queue: Mutex<Queue>,
    /// Where the attached wire lives, for [`Outbox::prefetch_wire`] only: never dereferenced.
    wire_at: AtomicPtr<Wire>,
}

#[derive(Default)]
struct Queue {
    frames: VecDeque<Frame>,
    /// The connection task, when it waits for frames.
    waker: Option<Waker>,
    /// The connection task has ended; frames sent now are dropped.
    gone: bool,
    /// The connection's socket, for writing a frame directly while the task is idle.
    wire: Option<Arc<Wire>>,
    /// The task holds frames it took and has not handed to the socket yet, or is flushing.
    writing: bool,
    /// A direct write left part of a frame waiting in the wire: the task must flush it.
    flush: bool,
    /// When frames last went out.
    last_write: Option<Instant>,
}

/// What the connection task is woken for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wake {
    /// Frames are ready in [`Inbox::pop`].
    Frames,
    /// A close was requested; the frames queued before it are still in the inbox.
    Close(CloseCode),
}

/// The receiving half, owned by the connection task.
pub struct Inbox {
    shared: Arc<Shared>,
    /// Frames taken from the queue and not yet written.
    taken: VecDeque<Frame>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn requested(&self) -> Option<CloseCode> {
        CloseCode::from_code(self.close.load(Ordering::Acquire))
    }
}

impl Outbox {
    /// Creates the handle and the receiving end the connection task drains.
    pub fn new(id: ConnId, socket_id: String) -> (Self, Inbox) {
        let shared = Arc::new(Shared {
            socket_id: socket_id.into(),
            close: AtomicU16::new(0),
            queue: Mutex::new(Queue::default()),
            wire_at: AtomicPtr::new(std::ptr::null_mut()),
        });
        let outbox = Self {
            id,
            shared: shared.clone(),
        };
        let inbox = Inbox {
            shared,
            taken: VecDeque::new(),
        };
        (outbox, inbox)
    }

    pub fn id(&self) -> ConnId {
        self.id
    }

    pub fn socket_id(&self) -> &str {
        &self.shared.socket_id
    }

    /// Lets broadcasts write to the connection's socket directly when it is idle.
    pub fn attach(&self, wire: Arc<Wire>) {
        let mut queue = self.shared.lock();
        self.shared
            .wire_at
            .store(Arc::as_ptr(&wire).cast_mut(), Ordering::Relaxed);
        queue.wire = Some(wire);
    }

    /// Asks the CPU to fetch this outbox's state into its cache, ahead of an [`Outbox::offer`]:
    /// a large broadcast reaches each subscriber's state long after it was last touched, and
    /// without this every offer starts with a wait on memory.
    #[inline]
    pub fn prefetch(&self) {
        prefetch(Arc::as_ptr(&self.shared).cast());
    }

    /// Like [`Outbox::prefetch`], for the socket's wire; best after `prefetch` had time to
    /// bring in the outbox, where the wire's address is read from.
    #[inline]
    pub fn prefetch_wire(&self) {
        let at = self.shared.wire_at.load(Ordering::Relaxed);
        if !at.is_null() {
            prefetch(at.cast());
        }
    }

    /// Queues a frame without waiting. A full outbox closes the connection with 4100.
    pub fn send(&self, frame: Frame) {
        let queue = self.shared.lock();
        self.push(queue, frame);
    }

    /// Delivers a broadcast frame: written to the socket at once (`encoded`, the whole
    /// WebSocket frame) when nothing is queued or being written and the connection has not
    /// been written to within [`DIRECT_GAP`] of `now`, queued otherwise.
    ///
    /// A server-side close stops direct writes at once; a client's close stops them when its
    /// task reads it and seals the inbox ([`Inbox::seal`]), before the reply goes out.
    pub fn offer(&self, frame: &Frame, encoded: &Bytes, now: Instant) {
        let mut queue = self.shared.lock();
        if let Some(wire) = &queue.wire
            && queue.frames.is_empty()
            && !queue.writing
            && queue
                .last_write
                .is_none_or(|at| now.saturating_duration_since(at) >= DIRECT_GAP)
            && self.shared.close.load(Ordering::Acquire) == 0
        {
            match wire.try_send(encoded) {
                Direct::Sent => {
                    queue.last_write = Some(now);
                    return;
                }
                Direct::Partial => {
                    queue.last_write = Some(now);
                    queue.flush = true;
                    let waker = queue.waker.take();
                    drop(queue);
                    if let Some(waker) = waker {
                        waker.wake();
                    }
                    return;
                }
                Direct::Refused => {}
            }
        }
        self.push(queue, frame.clone());
    }

    fn push(&self, mut queue: MutexGuard<'_, Queue>, frame: Frame) {
        if queue.gone {
            return;
        }
        if queue.frames.len() >= OUTBOX_CAPACITY {
            drop(queue);
            tracing::debug!(socket_id = %self.socket_id(), "outbox full, disconnecting slow client");
            return self.close(CloseCode::OverCapacity);
        }
        queue.frames.push_back(frame);
        let waker = queue.waker.take();
        drop(queue);
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    /// Asks the connection to send `code` and close. The first request wins.
    pub fn close(&self, code: CloseCode) {
        let first =
            self.shared
                .close
                .compare_exchange(0, code.code(), Ordering::AcqRel, Ordering::Acquire);
        if first.is_ok() {
            let waker = self.shared.lock().waker.take();
            if let Some(waker) = waker {
                waker.wake();
            }
        }
    }
}

/// A hint to load the two cache lines from `at` (an outbox's or a wire's first 128 bytes). It
/// reads nothing on the program's behalf and cannot fault, so any address will do, even one no
/// longer allocated.
#[inline]
fn prefetch(at: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: `prefetcht0` only hints the cache; it has no effect the program can observe.
    unsafe {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        _mm_prefetch::<_MM_HINT_T0>(at.cast());
        _mm_prefetch::<_MM_HINT_T0>(at.wrapping_add(64).cast());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = at;
}

impl Inbox {
    /// Waits until frames are queued or a close is requested. A close comes first, with the
    /// frames queued before it left for [`Inbox::pop`].
    pub fn poll_wake(&mut self, cx: &mut Context<'_>) -> Poll<Wake> {
        if let Some(code) = self.shared.requested() {
            self.take_queued();
            return Poll::Ready(Wake::Close(code));
        }
        if !self.taken.is_empty() {
            return Poll::Ready(Wake::Frames);
        }
        let mut queue = self.shared.lock();
        if queue.frames.is_empty() && !queue.flush {
            match &queue.waker {
                Some(waker) if waker.will_wake(cx.waker()) => {}
                _ => queue.waker = Some(cx.waker().clone()),
            }
            drop(queue);
            // A close requested between the check above and the waker's registration found
            // no waker to wake.
            if let Some(code) = self.shared.requested() {
                return Poll::Ready(Wake::Close(code));
            }
            return Poll::Pending;
        }
        if self.taken.capacity() > KEPT_CAPACITY {
            self.taken = VecDeque::new();
        }
        std::mem::swap(&mut queue.frames, &mut self.taken);
        queue.writing = true;
        queue.flush = false;
        Poll::Ready(Wake::Frames)
    }

    /// Says that everything taken so far is on its way to the socket (written and flushed),
    /// so that broadcasts may write directly again once nothing is left here.
    pub fn written(&mut self) {
        if self.taken.is_empty() {
            let mut queue = self.shared.lock();
            queue.writing = false;
            queue.last_write = Some(Instant::now());
        }
    }

    /// The next frame taken from the queue, in the order they were sent.
    pub fn pop(&mut self) -> Option<Frame> {
        self.taken.pop_front()
    }

    /// The next frame without waiting, taking from the queue when nothing is left here.
    pub fn try_recv(&mut self) -> Option<Frame> {
        if self.taken.is_empty() {
            self.take_queued();
        }
        self.taken.pop_front()
    }

    /// Moves every frame queued since the last take into the inbox.
    pub fn take_queued(&mut self) {
        let mut queue = self.shared.lock();
        if !queue.frames.is_empty() {
            queue.writing = true;
        }
        self.taken.append(&mut queue.frames);
    }

    /// Ends the connection's deliveries: what is queued is dropped, later frames too, and no
    /// broadcast writes to the socket from now on. A direct write in progress holds the lock
    /// this takes, so it is over when this returns, and the frame the task writes next (the
    /// answer to a client's close) is the last one on the socket.
    pub fn seal(&mut self) {
        let mut queue = self.shared.lock();
        queue.gone = true;
        queue.frames = VecDeque::new();
        queue.waker = None;
        queue.wire = None;
        self.shared
            .wire_at
            .store(std::ptr::null_mut(), Ordering::Relaxed);
    }
}

impl Drop for Inbox {
    fn drop(&mut self) {
        self.seal();
    }
}

#[cfg(test)]
mod tests {
    use std::future::poll_fn;

    use super::*;

    fn pair() -> (Outbox, Inbox) {
        Outbox::new(ConnId(1), "1.1".to_owned())
    }

    #[tokio::test]
    async fn frames_arrive_in_order_and_wake_the_waiting_task() {
        let (outbox, mut inbox) = pair();
        let waiting = tokio::spawn(async move {
            let wake = poll_fn(|cx| inbox.poll_wake(cx)).await;
            let frames: Vec<String> = std::iter::from_fn(|| inbox.pop())
                .map(|f| f.to_string())
                .collect();
            (wake, frames)
        });
        tokio::task::yield_now().await;
        outbox.send(Frame::from("a"));
        outbox.send(Frame::from("b"));
        let (wake, frames) = waiting.await.unwrap();
        assert_eq!(wake, Wake::Frames);
        assert_eq!(frames.first().map(String::as_str), Some("a"));
        assert!(frames.len() <= 2);
    }

    #[tokio::test]
    async fn a_close_wakes_the_task_and_keeps_the_frames_before_it() {
        let (outbox, mut inbox) = pair();
        let sender = outbox.clone();
        let waiting = tokio::spawn(async move { (poll_fn(|cx| inbox.poll_wake(cx)).await, inbox) });
        tokio::task::yield_now().await;
        sender.send(Frame::from("last words"));
        outbox.close(CloseCode::OverCapacity);
        outbox.close(CloseCode::Reconnect);
        let (wake, mut inbox) = waiting.await.unwrap();
        // Woken by the frame or by the close; either way the close is seen next.
        if wake == Wake::Frames {
            assert_eq!(
                poll_fn(|cx| inbox.poll_wake(cx)).await,
                Wake::Close(CloseCode::OverCapacity)
            );
        } else {
            assert_eq!(wake, Wake::Close(CloseCode::OverCapacity));
        }
        assert_eq!(inbox.pop().as_deref(), Some("last words"));
    }

    #[test]
    fn a_full_outbox_asks_to_close_with_4100() {
        let (outbox, mut inbox) = pair();
        for i in 0..OUTBOX_CAPACITY {
            outbox.send(Frame::from(i.to_string()));
        }
        assert_eq!(outbox.shared.requested(), None);
        outbox.send(Frame::from("one too many"));
        assert_eq!(outbox.shared.requested(), Some(CloseCode::OverCapacity));
        let kept = std::iter::from_fn(|| inbox.try_recv()).count();
        assert_eq!(kept, OUTBOX_CAPACITY);
    }

    #[test]
    fn frames_sent_after_the_connection_ended_are_dropped() {
        let (outbox, inbox) = pair();
        outbox.send(Frame::from("queued"));
        drop(inbox);
        outbox.send(Frame::from("late"));
        assert!(outbox.shared.lock().frames.is_empty());
    }

    #[tokio::test]
    async fn the_wire_is_prefetched_from_where_it_is_attached_until_the_inbox_is_sealed() {
        let (io, _client) = crate::listener::test_pair(false).await;
        let (outbox, mut inbox) = pair();
        let wire_at = || outbox.shared.wire_at.load(Ordering::Relaxed).cast_const();
        // Nothing attached: nothing to prefetch, and asking is harmless.
        outbox.prefetch();
        outbox.prefetch_wire();
        assert!(wire_at().is_null());

        let wire = io.wire();
        outbox.attach(wire.clone());
        assert_eq!(wire_at(), Arc::as_ptr(&wire));
        outbox.prefetch();
        outbox.prefetch_wire();

        inbox.seal();
        assert!(wire_at().is_null());
        outbox.prefetch_wire();
    }

    #[tokio::test]
    async fn a_broadcast_writes_an_idle_connection_directly_and_queues_for_a_busy_one() {
        use tokio::io::AsyncReadExt;

        let (io, mut client) = crate::listener::test_pair(false).await;
        let (outbox, mut inbox) = pair();
        outbox.attach(io.wire());
        let waker = Waker::noop();
        let mut cx = Context::from_waker(waker);
        let encoded = |text: &str| crate::hub::lanes::encode(&Frame::from(text.to_owned()));
        let offer =
            |text: &str, now| outbox.offer(&Frame::from(text.to_owned()), &encoded(text), now);
        let start = Instant::now();

        offer("direct", start);
        let mut got = vec![0; encoded("direct").len()];
        client.read_exact(&mut got).await.unwrap();
        assert_eq!(got, encoded("direct"));
        assert!(outbox.shared.lock().frames.is_empty());

        // Written to within the gap: streaming, so queued for the task to merge.
        offer("streaming", start + DIRECT_GAP / 2);
        assert_eq!(outbox.shared.lock().frames.len(), 1);
        // Something queued: the next one waits behind it, even after the gap.
        offer("behind", start + DIRECT_GAP * 2);
        assert_eq!(outbox.shared.lock().frames.len(), 2);

        // The task takes them: until it says they are written, broadcasts still queue.
        assert_eq!(inbox.poll_wake(&mut cx), Poll::Ready(Wake::Frames));
        offer("while writing", start + DIRECT_GAP * 3);
        assert_eq!(outbox.shared.lock().frames.len(), 1);
        while inbox.pop().is_some() {}
        inbox.written();
        // "while writing" is still queued, so the next broadcast queues behind it.
        offer("queued behind", Instant::now() + DIRECT_GAP);
        assert_eq!(outbox.shared.lock().frames.len(), 2);
        assert_eq!(inbox.poll_wake(&mut cx), Poll::Ready(Wake::Frames));
        assert_eq!(inbox.pop().as_deref(), Some("while writing"));
        assert_eq!(inbox.pop().as_deref(), Some("queued behind"));
        inbox.written();
        let later = Instant::now() + DIRECT_GAP;
        offer("direct again", later);
        assert!(outbox.shared.lock().frames.is_empty());
        let mut got = vec![0; encoded("direct again").len()];
        client.read_exact(&mut got).await.unwrap();
        assert_eq!(got, encoded("direct again"));

        // A close requested: frames are queued for the task, which writes them before closing.
        outbox.close(CloseCode::Reconnect);
        offer("after close", later + DIRECT_GAP * 2);
        assert_eq!(outbox.shared.lock().frames.len(), 1);
    }

    #[tokio::test]
    async fn a_direct_write_the_socket_takes_in_part_wakes_the_task_to_flush() {
        let (io, _client) = crate::listener::test_pair(false).await;
        let (outbox, mut inbox) = pair();
        outbox.attach(io.wire());
        let big = Frame::from("x".repeat(2 * 1024 * 1024));
        outbox.offer(&big, &crate::hub::lanes::encode(&big), Instant::now());
        let waker = Waker::noop();
        let mut cx = Context::from_waker(waker);
        assert_eq!(inbox.poll_wake(&mut cx), Poll::Ready(Wake::Frames));
        assert!(
            inbox.pop().is_none(),
            "nothing to write, only the wire to flush"
        );
        assert!(outbox.shared.lock().writing);
    }

    #[test]
    fn the_wire_goes_with_the_connection() {
        let (outbox, inbox) = pair();
        drop(inbox);
        assert!(outbox.shared.lock().wire.is_none());
    }

    #[test]
    fn a_drained_burst_does_not_stay_allocated() {
        let (outbox, mut inbox) = pair();
        let waker = Waker::noop();
        let mut cx = Context::from_waker(waker);
        for i in 0..500 {
            outbox.send(Frame::from(i.to_string()));
        }
        assert_eq!(inbox.poll_wake(&mut cx), Poll::Ready(Wake::Frames));
        while inbox.pop().is_some() {}
        outbox.send(Frame::from("next"));
        assert_eq!(inbox.poll_wake(&mut cx), Poll::Ready(Wake::Frames));
        assert!(inbox.taken.capacity() < 500);
        assert!(outbox.shared.lock().frames.capacity() <= KEPT_CAPACITY);
    }
}
