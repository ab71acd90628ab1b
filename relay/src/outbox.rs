//! The per-connection send queue: frames other connections route to this peer wait here until
//! the connection's writer drains them in one batch (feed, feed, ..., flush). Bounded by bytes
//! so a fast sender is slowed to the pace of a slow receiver instead of growing memory, and a
//! receiver that stops reading altogether is cut off (close 4009) rather than queued for.

use std::collections::VecDeque;
use std::sync::Mutex;

use std::time::Duration;

use bytes::Bytes;
use remote_agents_protocol::frame::close_code;
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
    /// Cut off for not reading: the queue was dropped and the connection is being torn down.
    slow_reader: bool,
}

/// A connection's queue of encoded frames. Cheap when idle: an empty `VecDeque` allocates
/// nothing, which matters at 10,000 idle connections.
pub(crate) struct Outbox {
    state: Mutex<OutboxState>,
    /// Bytes of relay-made frames the queue may hold; one more means the peer is not reading.
    limit: usize,
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

impl Default for Outbox {
    fn default() -> Self {
        Outbox::new(usize::MAX)
    }
}

impl Outbox {
    pub(crate) fn new(limit: usize) -> Self {
        Outbox {
            state: Mutex::default(),
            limit,
            wake_writer: Notify::new(),
            wake_senders: Notify::new(),
            finished_signal: Notify::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, OutboxState> {
        // A panic while holding this lock leaves only a queue of bytes behind: keep going.
        self.state
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    /// Queues a frame the relay generated (control frames are small and must never block the
    /// caller, who may hold the room lock). Returns false once the connection is closing. A
    /// queue past its limit means the peer is not reading (a flood of `RETAIN_GET` on a socket
    /// it never reads): the connection is cut off instead of growing without bound.
    pub(crate) fn push_now(&self, frame: Bytes) -> bool {
        {
            let mut state = self.lock();
            if state.close.is_some() || state.finished {
                return false;
            }
            if state.queued_bytes + frame.len() > self.limit {
                drop(state);
                self.cut_off_slow_reader();
                return false;
            }
            state.queued_bytes += frame.len();
            state.queue.push_back(frame);
        }
        self.wake_writer.notify_one();
        true
    }

    /// Queues a forwarded frame, waiting while more than `budget` bytes are already queued.
    /// Returns false once the connection is closing. A receiver whose queue does not drain at
    /// all within `stall` has stopped reading: it is cut off so the sender is not held forever.
    pub(crate) async fn push_wait(&self, frame: Bytes, budget: usize, stall: Duration) -> bool {
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
            if tokio::time::timeout(stall, notified).await.is_err() {
                self.cut_off_slow_reader();
                return false;
            }
        }
    }

    /// Drops what is queued and ends the connection with 4009: the peer is not reading, so
    /// neither the queue nor a polite close would ever drain. The connection task tears the
    /// socket down once `finished` is seen (after its short grace).
    fn cut_off_slow_reader(&self) {
        {
            let mut state = self.lock();
            if state.finished {
                return;
            }
            state.queue = VecDeque::new();
            state.queued_bytes = 0;
            state.slow_reader = true;
            state.close.get_or_insert(CloseRequest {
                code: close_code::SLOW_READER,
                reason: "not reading",
            });
            state.finished = true;
        }
        self.wake_writer.notify_one();
        self.wake_senders.notify_waiters();
        self.finished_signal.notify_waiters();
    }

    /// Whether the connection was cut off for not reading.
    pub(crate) fn was_slow_reader(&self) -> bool {
        self.lock().slow_reader
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
        assert!(
            outbox
                .push_wait(Bytes::from_static(b"b"), 1024, Duration::from_secs(1))
                .await
        );
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
        let stall = Duration::from_secs(60);
        assert!(outbox.push_wait(Bytes::from(vec![0; 10]), 10, stall).await);
        let waiting = tokio::spawn({
            let outbox = outbox.clone();
            async move { outbox.push_wait(Bytes::from(vec![1; 10]), 10, stall).await }
        });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished());
        let mut batch = VecDeque::new();
        assert!(matches!(outbox.drain_into(&mut batch), Drained::Frames));
        assert!(waiting.await.unwrap());
    }

    #[tokio::test]
    async fn a_queue_past_its_limit_cuts_the_reader_off_with_4009() {
        let outbox = Outbox::new(10);
        assert!(outbox.push_now(Bytes::from(vec![0; 8])));
        assert!(!outbox.push_now(Bytes::from(vec![0; 8])));
        assert!(outbox.was_slow_reader());
        let mut batch = VecDeque::new();
        // The queue was dropped; the writer only has the close left.
        assert!(matches!(
            outbox.drain_into(&mut batch),
            Drained::Close(CloseRequest { code: 4009, .. })
        ));
        tokio::time::timeout(Duration::from_secs(1), outbox.wait_finished())
            .await
            .expect("finished");
    }

    #[tokio::test]
    async fn a_sender_stalled_by_a_reader_that_never_drains_cuts_it_off() {
        let outbox = Outbox::default();
        let stall = Duration::from_millis(50);
        assert!(outbox.push_wait(Bytes::from(vec![0; 10]), 10, stall).await);
        assert!(!outbox.push_wait(Bytes::from(vec![1; 10]), 10, stall).await);
        assert!(outbox.was_slow_reader());
    }
}
