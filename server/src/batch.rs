//! Group commit: requests that arrive while the previous group is being written are written
//! together, in one transaction, by one task.
//!
//! The embedded default keeps the event log and the queue in one SQLite file, where each commit
//! costs a round trip to SQLite's thread and rewrites whole pages of every table and index it
//! touches. Writing each accepted event and each delivery attempt on its own capped the
//! pipeline near 250 events/s; written in groups, the cost of a commit is shared by however many
//! requests are waiting. An idle server writes a group of one at once, so a lone request waits
//! for nothing.

use std::future::Future;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

/// Requests waiting for the writer, beyond which submitters wait for room.
const BACKLOG: usize = 4096;

/// A handle to submit items to a group writer. Cloning shares the writer; the writer stops
/// once every handle is gone and the items already submitted are written.
pub struct Batcher<I, O> {
    tx: mpsc::Sender<(I, oneshot::Sender<O>)>,
}

impl<I, O> Clone for Batcher<I, O> {
    fn clone(&self) -> Self {
        Self {
            tx: self.tx.clone(),
        }
    }
}

impl<I, O> std::fmt::Debug for Batcher<I, O> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Batcher").finish_non_exhaustive()
    }
}

impl<I: Send + 'static, O: Send + 'static> Batcher<I, O> {
    /// Starts a writer that hands `write` up to `max` waiting items at a time. `write` answers
    /// each item, in order, with one output.
    pub fn spawn<F, Fut>(max: usize, write: F) -> Self
    where
        F: FnMut(Vec<I>) -> Fut + Send + 'static,
        Fut: Future<Output = Vec<O>> + Send,
    {
        Self::spawn_lingering(max, Duration::ZERO, write)
    }

    /// Like [`Batcher::spawn`], but once an item arrives the writer waits up to `linger` for
    /// more (or for `max`) before it writes: fewer, larger groups, for writes nobody is
    /// waiting on, at the cost of that much delay.
    pub fn spawn_lingering<F, Fut>(max: usize, linger: Duration, mut write: F) -> Self
    where
        F: FnMut(Vec<I>) -> Fut + Send + 'static,
        Fut: Future<Output = Vec<O>> + Send,
    {
        let (tx, mut rx) = mpsc::channel::<(I, oneshot::Sender<O>)>(BACKLOG);
        let max = max.max(1);
        tokio::spawn(async move {
            let mut waiting = Vec::with_capacity(max);
            while rx.recv_many(&mut waiting, max).await > 0 {
                if !linger.is_zero() {
                    let deadline = tokio::time::Instant::now() + linger;
                    while waiting.len() < max {
                        let room = max - waiting.len();
                        let more =
                            tokio::time::timeout_at(deadline, rx.recv_many(&mut waiting, room));
                        if !matches!(more.await, Ok(n) if n > 0) {
                            break;
                        }
                    }
                }
                let (items, replies): (Vec<I>, Vec<_>) = waiting.drain(..).unzip();
                let outputs = write(items).await;
                debug_assert_eq!(outputs.len(), replies.len());
                for (reply, output) in replies.into_iter().zip(outputs) {
                    // A submitter that gave up waiting, or did not wait, needs no answer.
                    let _ = reply.send(output);
                }
            }
        });
        Self { tx }
    }

    /// Submits one item without waiting for its output; waits only while the writer's backlog
    /// is full. `false` when the writer has stopped.
    pub async fn send(&self, item: I) -> bool {
        let (reply, _) = oneshot::channel();
        self.tx.send((item, reply)).await.is_ok()
    }

    /// Submits one item and waits for its output. `None` when the writer has stopped or
    /// gave no output for it.
    pub async fn submit(&self, item: I) -> Option<O> {
        let (reply, answer) = oneshot::channel();
        self.tx.send((item, reply)).await.ok()?;
        answer.await.ok()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    #[tokio::test]
    async fn items_waiting_together_are_written_together_and_each_gets_its_own_answer() {
        let groups = Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = groups.clone();
        let gate = Arc::new(tokio::sync::Semaphore::new(0));
        let opened = gate.clone();
        let batcher = Batcher::spawn(8, move |items: Vec<u32>| {
            let seen = seen.clone();
            let gate = opened.clone();
            async move {
                seen.lock().unwrap().push(items.len());
                // The first group waits, so the next ones queue up behind it.
                if items == [0] {
                    gate.acquire().await.unwrap().forget();
                }
                items.into_iter().map(|i| i * 10).collect::<Vec<_>>()
            }
        });
        let first = tokio::spawn({
            let batcher = batcher.clone();
            async move { batcher.submit(0).await }
        });
        while groups.lock().unwrap().is_empty() {
            tokio::task::yield_now().await;
        }
        let rest: Vec<_> = (1..=20)
            .map(|i| {
                let batcher = batcher.clone();
                tokio::spawn(async move { batcher.submit(i).await })
            })
            .collect();
        // Let all twenty reach the queue before the first group finishes.
        for _ in 0..100 {
            tokio::task::yield_now().await;
        }
        gate.add_permits(1);
        assert_eq!(first.await.unwrap(), Some(0));
        for (i, task) in rest.into_iter().enumerate() {
            assert_eq!(task.await.unwrap(), Some((i as u32 + 1) * 10));
        }
        // One group of one, then the twenty in groups of at most eight.
        assert_eq!(*groups.lock().unwrap(), vec![1, 8, 8, 4]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_lingering_writer_gathers_what_arrives_within_its_linger() {
        let groups = Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = groups.clone();
        let batcher =
            Batcher::spawn_lingering(8, Duration::from_millis(50), move |items: Vec<u32>| {
                seen.lock().unwrap().push(items.clone());
                async move { items }
            });
        let first = tokio::spawn({
            let batcher = batcher.clone();
            async move { batcher.submit(1).await }
        });
        tokio::time::sleep(Duration::from_millis(30)).await;
        assert!(
            groups.lock().unwrap().is_empty(),
            "written before the linger ended"
        );
        assert_eq!(batcher.submit(2).await, Some(2));
        assert_eq!(first.await.unwrap(), Some(1));
        // Long after: a group of its own.
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(batcher.submit(3).await, Some(3));
        assert_eq!(*groups.lock().unwrap(), vec![vec![1, 2], vec![3]]);
    }

    #[tokio::test]
    async fn a_writer_that_answers_nothing_gives_none() {
        let calls = Arc::new(AtomicUsize::new(0));
        let counted = calls.clone();
        let batcher = Batcher::spawn(4, move |_: Vec<u8>| {
            counted.fetch_add(1, Ordering::SeqCst);
            async { Vec::<u8>::new() }
        });
        assert_eq!(batcher.submit(1).await, None);
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }
}
