//! Polling a connection's socket for client messages only when the socket has woken the task.
//!
//! The connection task wakes for queued frames far more often than for client messages (once
//! per event it delivers), and each wake would poll the read side too: through tungstenite,
//! tokio-tungstenite's waker proxies, poem's and hyper's IO layers and the split lock, down to
//! tokio's readiness check, to learn that nothing arrived; `perf` put that at about 4 % of the
//! server's CPU with 10,000 subscribers. [`Reads`] polls the stream with a waker of its own, which
//! notes that the read side woke before it wakes the task, and skips the poll otherwise.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, Wake, Waker};

use futures_util::task::AtomicWaker;
use futures_util::{Stream, StreamExt};

/// The read side's waker: remembers that it was woken, then wakes the task.
struct ReadWake {
    woken: AtomicBool,
    task: AtomicWaker,
}

impl Wake for ReadWake {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::Release);
        self.task.wake();
    }
}

/// Polls a stream only when it woke since it last returned `Pending`, or when it last returned
/// an item (it may hold more).
pub struct Reads {
    wake: Arc<ReadWake>,
    waker: Waker,
}

impl Reads {
    pub fn new() -> Self {
        let wake = Arc::new(ReadWake {
            // The first poll always reaches the stream, which registers the waker.
            woken: AtomicBool::new(true),
            task: AtomicWaker::new(),
        });
        Self {
            waker: Waker::from(wake.clone()),
            wake,
        }
    }

    pub fn poll_next<S: Stream + Unpin>(
        &mut self,
        stream: &mut S,
        cx: &mut Context<'_>,
    ) -> Poll<Option<S::Item>> {
        // Registered before the flag is read: a wake in between is then seen now or wakes
        // the task again.
        self.wake.task.register(cx.waker());
        if !self.wake.woken.swap(false, Ordering::AcqRel) {
            return Poll::Pending;
        }
        let item = stream.poll_next_unpin(&mut Context::from_waker(&self.waker));
        if item.is_ready() {
            self.wake.woken.store(true, Ordering::Release);
        }
        item
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::pin::Pin;
    use std::sync::atomic::AtomicUsize;

    use super::*;

    /// A stream that yields what it is given, counts its polls and keeps its last waker.
    #[derive(Default)]
    struct Probe {
        items: VecDeque<u32>,
        polls: usize,
        waker: Option<Waker>,
    }

    impl Stream for Probe {
        type Item = u32;

        fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<u32>> {
            self.polls += 1;
            match self.items.pop_front() {
                Some(item) => Poll::Ready(Some(item)),
                None => {
                    self.waker = Some(cx.waker().clone());
                    Poll::Pending
                }
            }
        }
    }

    /// A task waker that counts its wakes.
    #[derive(Default)]
    struct Count(AtomicUsize);

    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn the_stream_is_polled_again_only_after_it_woke() {
        let task = Arc::new(Count::default());
        let waker = Waker::from(task.clone());
        let mut cx = Context::from_waker(&waker);
        let mut reads = Reads::new();
        let mut probe = Probe::default();

        assert!(reads.poll_next(&mut probe, &mut cx).is_pending());
        assert_eq!(probe.polls, 1, "the first poll reaches the stream");
        // Woken for something else (queued frames): the stream is left alone.
        assert!(reads.poll_next(&mut probe, &mut cx).is_pending());
        assert!(reads.poll_next(&mut probe, &mut cx).is_pending());
        assert_eq!(probe.polls, 1);

        // A message arrives: the stream's waker wakes the task and the next poll reads it.
        probe.items.push_back(7);
        probe.waker.take().unwrap().wake();
        assert_eq!(task.0.load(Ordering::SeqCst), 1, "the task was woken");
        assert_eq!(reads.poll_next(&mut probe, &mut cx), Poll::Ready(Some(7)));
        assert_eq!(probe.polls, 2);
    }

    #[test]
    fn after_an_item_the_stream_is_polled_until_it_is_pending() {
        let waker = Waker::from(Arc::new(Count::default()));
        let mut cx = Context::from_waker(&waker);
        let mut reads = Reads::new();
        let mut probe = Probe {
            items: VecDeque::from([1, 2]),
            ..Probe::default()
        };
        // Messages already buffered come out without any new wake.
        assert_eq!(reads.poll_next(&mut probe, &mut cx), Poll::Ready(Some(1)));
        assert_eq!(reads.poll_next(&mut probe, &mut cx), Poll::Ready(Some(2)));
        assert!(reads.poll_next(&mut probe, &mut cx).is_pending());
        assert!(reads.poll_next(&mut probe, &mut cx).is_pending());
        assert_eq!(probe.polls, 3);
    }
}
