//! The sending half of a connection, shared with every channel it joins, and the receiving
//! half its task drains.
//!
//! A broadcast pushes one frame into each subscriber's outbox, so this queue is on the
//! fan-out path once per delivery. It is a mutex around a `VecDeque` and the task's waker:
//! a push is one uncontended lock, and the connection task takes everything queued at once by
//! swapping the deque for its own empty one, so a burst costs one lock on the receiving side,
//! not one per frame. An idle connection's outbox holds no frame buffer at all.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use comnestor_protocol::CloseCode;
use tokio_tungstenite::tungstenite::Utf8Bytes;

/// An encoded frame. Cloning shares the bytes, so a broadcast is serialized once for every
/// recipient.
pub type Frame = Utf8Bytes;

/// How many frames may wait for one connection. A client that falls this far behind is
/// disconnected with 4100 rather than allowed to grow the server's memory.
pub const OUTBOX_CAPACITY: usize = 1024;

/// A drained buffer larger than this is freed rather than kept, so that a burst does not leave
/// an idle connection holding its peak.
const KEPT_CAPACITY: usize = 64;

/// Identifies a connection inside this process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId(pub u64);

/// A handle that queues frames for one connection and can ask it to close.
#[derive(Clone)]
pub struct Outbox {
    id: ConnId,
    socket_id: Arc<str>,
    shared: Arc<Shared>,
}

struct Shared {
    /// The close code requested, 0 for none. Read without the lock on every wake-up.
    close: AtomicU16,
    queue: Mutex<Queue>,
}

#[derive(Default)]
struct Queue {
    frames: VecDeque<Frame>,
    /// The connection task, when it waits for frames.
    waker: Option<Waker>,
    /// The connection task has ended; frames sent now are dropped.
    gone: bool,
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
            close: AtomicU16::new(0),
            queue: Mutex::new(Queue::default()),
        });
        let outbox = Self {
            id,
            socket_id: socket_id.into(),
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
        &self.socket_id
    }

    /// Queues a frame without waiting. A full outbox closes the connection with 4100.
    pub fn send(&self, frame: Frame) {
        let mut queue = self.shared.lock();
        if queue.gone {
            return;
        }
        if queue.frames.len() >= OUTBOX_CAPACITY {
            drop(queue);
            tracing::debug!(socket_id = %self.socket_id, "outbox full, disconnecting slow client");
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
        if queue.frames.is_empty() {
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
        Poll::Ready(Wake::Frames)
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
        self.taken.append(&mut queue.frames);
    }
}

impl Drop for Inbox {
    fn drop(&mut self) {
        let mut queue = self.shared.lock();
        queue.gone = true;
        queue.frames = VecDeque::new();
        queue.waker = None;
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
