//! The reconcile controller: the loop that runs reconcile passes beside the requests, when
//! something they read changed (a trigger), when a pass asked to look again
//! ([`Action::Requeue`], as at a mode override's expiry), and after a failed pass once
//! [`error_policy`]'s backoff has passed. It owns the requeue and the backoff; paths that need a
//! pass's result at once (an offer's answer describes the generation in force) run the same pass
//! inline and trigger the controller when the pass leaves something for later. Started by
//! `crate::service`.

use std::sync::Arc;

use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::reconcile::{Action, ReconcileError, error_policy};
use crate::runtime;

/// What the controller reconciles (the node; a fake in tests).
pub trait Reconciler: Send + Sync + 'static {
    /// One pass: blocking (it reads the store and may write it), never two at once.
    fn reconcile(&self) -> Result<Action, ReconcileError>;
    /// Notified when something a pass reads changed. Triggers that come while a pass runs or
    /// before the loop looks collapse into one pass, which re-reads everything.
    fn trigger(&self) -> &Notify;
}

/// Why the loop wakes.
enum Event {
    Shutdown,
    Triggered,
    Requeued,
}

/// Runs passes until `shutdown`: one at the start (a mode override kept from the last run still
/// expires), then on every trigger and deadline.
pub async fn run(reconciler: Arc<impl Reconciler>, shutdown: CancellationToken) {
    let mut deadline = Some(Instant::now());
    // Failed passes in a row: the error policy backs off further with each.
    let mut attempts: u32 = 0;
    loop {
        let event = tokio::select! {
            biased;
            _ = shutdown.cancelled() => Event::Shutdown,
            _ = reconciler.trigger().notified() => Event::Triggered,
            _ = sleep_until(deadline) => Event::Requeued,
        };
        match event {
            Event::Shutdown => return,
            Event::Triggered | Event::Requeued => {}
        }
        let pass = reconciler.clone();
        let outcome = match runtime::spawn_blocking(move || pass.reconcile()).await {
            Ok(outcome) => outcome,
            Err(join) => Err(ReconcileError::Panicked(join.to_string())),
        };
        let action = match outcome {
            Ok(action) => {
                attempts = 0;
                action
            }
            Err(error) => {
                attempts = attempts.saturating_add(1);
                let action = error_policy(&error, attempts);
                tracing::warn!(%error, attempts, ?action, "reconcile pass failed");
                action
            }
        };
        deadline = match action {
            // A delay past what the clock holds never comes.
            Action::Requeue(delay) => Instant::now().checked_add(delay),
            Action::AwaitChange => None,
        };
    }
}

/// Resolves at `deadline`, or never without one.
async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// Starts the controller of `reconciler`; it stops with `shutdown`.
pub fn start(reconciler: Arc<impl Reconciler>, shutdown: CancellationToken) {
    runtime::spawn(run(reconciler, shutdown));
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::sync::Mutex;
    use std::time::Duration;

    use tokio::sync::watch;

    use super::*;
    use crate::desired::reconcile::{BACKOFF_BASE, BACKOFF_CAP};
    use crate::journal::StoreError;

    /// Answers passes from a script (then `AwaitChange`) and records when each pass ran.
    struct Scripted {
        outcomes: Mutex<VecDeque<Result<Action, ReconcileError>>>,
        passes: watch::Sender<Vec<Instant>>,
        trigger: Notify,
    }

    impl Scripted {
        fn new(outcomes: Vec<Result<Action, ReconcileError>>) -> Arc<Self> {
            Arc::new(Scripted {
                outcomes: Mutex::new(outcomes.into()),
                passes: watch::channel(Vec::new()).0,
                trigger: Notify::new(),
            })
        }

        /// Waits for the `count`-th pass and returns the times of the passes so far.
        async fn passes(&self, count: usize) -> Vec<Instant> {
            self.passes
                .subscribe()
                .wait_for(|passes| passes.len() >= count)
                .await
                .unwrap()
                .clone()
        }
    }

    impl Reconciler for Scripted {
        fn reconcile(&self) -> Result<Action, ReconcileError> {
            self.passes
                .send_modify(|passes| passes.push(Instant::now()));
            self.outcomes
                .lock()
                .unwrap()
                .pop_front()
                .unwrap_or(Ok(Action::AwaitChange))
        }
        fn trigger(&self) -> &Notify {
            &self.trigger
        }
    }

    fn store_failure() -> Result<Action, ReconcileError> {
        Err(ReconcileError::Schedules(StoreError::Locked(
            "/data".into(),
        )))
    }

    #[tokio::test(start_paused = true)]
    async fn a_trigger_runs_a_pass_and_awaiting_change_runs_none() {
        let reconciler = Scripted::new(Vec::new());
        let shutdown = CancellationToken::new();
        start(reconciler.clone(), shutdown.clone());
        reconciler.passes(1).await;
        // Nothing is due: an hour later no pass has run.
        tokio::time::sleep(Duration::from_secs(3600)).await;
        assert_eq!(reconciler.passes.borrow().len(), 1);
        reconciler.trigger.notify_one();
        reconciler.passes(2).await;
        shutdown.cancel();
    }

    #[tokio::test(start_paused = true)]
    async fn a_requeue_runs_the_next_pass_at_its_deadline() {
        let reconciler = Scripted::new(vec![Ok(Action::Requeue(Duration::from_secs(90)))]);
        let shutdown = CancellationToken::new();
        start(reconciler.clone(), shutdown.clone());
        let passes = reconciler.passes(2).await;
        assert_eq!(passes[1] - passes[0], Duration::from_secs(90));
        shutdown.cancel();
    }

    #[tokio::test(start_paused = true)]
    async fn failed_passes_back_off_within_the_growing_ceiling_then_stop_on_success() {
        let reconciler = Scripted::new(vec![
            store_failure(),
            store_failure(),
            store_failure(),
            store_failure(),
            Ok(Action::AwaitChange),
        ]);
        let shutdown = CancellationToken::new();
        start(reconciler.clone(), shutdown.clone());
        let passes = reconciler.passes(5).await;
        for (attempt, gap) in passes.windows(2).map(|w| w[1] - w[0]).enumerate() {
            let ceiling = BACKOFF_BASE * (1u32 << attempt);
            assert!(gap <= ceiling.min(BACKOFF_CAP), "retry {attempt}: {gap:?}");
        }
        // The success resets the backoff and leaves nothing due.
        tokio::time::sleep(BACKOFF_CAP * 2).await;
        assert_eq!(reconciler.passes.borrow().len(), 5);
        shutdown.cancel();
    }

    #[tokio::test(start_paused = true)]
    async fn a_trigger_during_a_backoff_runs_a_pass_at_once() {
        let reconciler = Scripted::new(vec![Ok(Action::AwaitChange), store_failure()]);
        let shutdown = CancellationToken::new();
        start(reconciler.clone(), shutdown.clone());
        reconciler.passes(1).await;
        reconciler.trigger.notify_one();
        let failed_at = reconciler.passes(2).await[1];
        reconciler.trigger.notify_one();
        let passes = reconciler.passes(3).await;
        assert_eq!(
            passes[2], failed_at,
            "the trigger does not wait for the backoff"
        );
        shutdown.cancel();
    }
}
