//! The per-connection send queue: frames other connections route to this peer wait here until
//! the connection's writer drains them in one batch (feed, feed, ..., flush). Bounded by bytes
//! so a fast sender is slowed to the pace of a slow receiver instead of growing memory.

use std::collections::VecDeque;
use std::sync::Mutex;

use bytes::Bytes;
use tokio::sync::Notify;

/// Why and how the writer should close the WebSocket once the queue is drained.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct CloseRequest {
    pub code: u16,
    pub reason: &'static str,
}

#[derive(Default)]
struct OutboxState {
    queue: VecDeque<Bytes>,
    queued_bytes: usize,
    close: Option<CloseRequest>,
    finished: bool,
}

/// A connection's queue of encoded frames. Cheap when idle: an empty `VecDeque` allocates
/// nothing, which matters at 10,000 idle connections.
#[derive(Default)]
pub(crate) struct Outbox {
    state: Mutex<OutboxState>,
    wake_writer: Notify,
    wake_senders: Notify,
    finished_signal: Notify,
}

/// What the writer should do next.
pub(crate) enum Drained {
    /// Frames to write (the batch was swapped out of the queue).
    Frames,
    /// Nothing queued; close with this code.
    Close(CloseRequest),
    /// Nothing queued and the connection is over without a close code of ours.
    Finished,
    /// Nothing to do yet.
    Empty,
}

impl Outbox {
    fn lock(&self) -> std::sync::MutexGuard<'_, OutboxState> {
        // A panic while holding this lock leaves only a queue of bytes behind: keep going.
        self.state
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    /// Queues a frame the relay generated (control frames are small and must never block the
    /// caller, who may hold the room lock). Returns false once the connection is closing.
    pub(crate) fn push_now(&self, frame: Bytes) -> bool {
        {
            let mut state = self.lock();
            if state.close.is_some() || state.finished {
                return false;
            }
            state.queued_bytes += frame.len();
            state.queue.push_back(frame);
        }
        self.wake_writer.notify_one();
        true
    }

    /// Queues a forwarded frame, waiting while more than `budget` bytes are already queued.
    /// Returns false once the connection is closing.
    pub(crate) async fn push_wait(&self, frame: Bytes, budget: usize) -> bool {
        loop {
            let notified = self.wake_senders.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let mut state = self.lock();
                if state.close.is_some() || state.finished {
                    return false;
                }
                if state.queued_bytes < budget || state.queue.is_empty() {
                    state.queued_bytes += frame.len();
                    state.queue.push_back(frame);
                    drop(state);
                    self.wake_writer.notify_one();
                    return true;
                }
            }
            notified.await;
        }
    }

    /// Asks the writer to close with `code` after the frames already queued. The first request wins.
    pub(crate) fn close(&self, code: u16, reason: &'static str) {
        {
            let mut state = self.lock();
            if state.close.is_none() && !state.finished {
                state.close = Some(CloseRequest { code, reason });
            }
        }
        self.wake_writer.notify_one();
        self.wake_senders.notify_waiters();
    }

    pub(crate) fn is_closing(&self) -> bool {
        let state = self.lock();
        state.close.is_some() || state.finished
    }

    /// Marks the connection over: queued frames are still written, nothing new is accepted.
    pub(crate) fn finish(&self) {
        self.lock().finished = true;
        self.wake_writer.notify_one();
        self.wake_senders.notify_waiters();
        self.finished_signal.notify_waiters();
    }

    /// Resolves once [`Outbox::finish`] has been called.
    pub(crate) async fn wait_finished(&self) {
        loop {
            let notified = self.finished_signal.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.lock().finished {
                return;
            }
            notified.await;
        }
    }

    /// Swaps the queued frames into `batch` (which must be empty) for the writer.
    pub(crate) fn drain_into(&self, batch: &mut VecDeque<Bytes>) -> Drained {
        let outcome = {
            let mut state = self.lock();
            if !state.queue.is_empty() {
                std::mem::swap(&mut state.queue, batch);
                state.queued_bytes = 0;
                Drained::Frames
            } else if let Some(close) = state.close {
                state.finished = true;
                Drained::Close(close)
            } else if state.finished {
                Drained::Finished
            } else {
                Drained::Empty
            }
        };
        if matches!(outcome, Drained::Frames) {
            self.wake_senders.notify_waiters();
        }
        outcome
    }

    /// Resolves when the writer has something to do (a permit is kept if it was notified early).
    pub(crate) async fn writer_wakeup(&self) {
        self.wake_writer.notified().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn frames_drain_in_order_then_the_close_request() {
        let outbox = Outbox::default();
        assert!(outbox.push_now(Bytes::from_static(b"a")));
        assert!(outbox.push_wait(Bytes::from_static(b"b"), 1024).await);
        outbox.close(4001, "evicted");
        assert!(!outbox.push_now(Bytes::from_static(b"c")));
        let mut batch = VecDeque::new();
        assert!(matches!(outbox.drain_into(&mut batch), Drained::Frames));
        assert_eq!(batch, [Bytes::from_static(b"a"), Bytes::from_static(b"b")]);
        batch.clear();
        assert!(matches!(
            outbox.drain_into(&mut batch),
            Drained::Close(CloseRequest { code: 4001, .. })
        ));
    }

    #[tokio::test]
    async fn a_full_queue_makes_senders_wait_until_drained() {
        let outbox = std::sync::Arc::new(Outbox::default());
        assert!(outbox.push_wait(Bytes::from(vec![0; 10]), 10).await);
        let waiting = tokio::spawn({
            let outbox = outbox.clone();
            async move { outbox.push_wait(Bytes::from(vec![1; 10]), 10).await }
        });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished());
        let mut batch = VecDeque::new();
        assert!(matches!(outbox.drain_into(&mut batch), Drained::Frames));
        assert!(waiting.await.unwrap());
    }
}
