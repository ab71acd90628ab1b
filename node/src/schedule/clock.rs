//! The runner's sense of time: a [`Clock`] gives the current instant and sleeps until a later
//! one. [`SystemClock`] is wall time plus tokio timers; [`ManualClock`] only moves when a test
//! advances it, so tests prove "fires at the right minutes" without waiting real minutes.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures_util::future::BoxFuture;
use tokio::sync::watch;

/// The time source of the schedule runner.
pub trait Clock: Send + Sync + 'static {
    /// The current instant.
    fn now(&self) -> DateTime<Utc>;
    /// Resolves at `deadline` or later. It may also resolve early (the caller re-reads `now`
    /// and sleeps again), which lets the system clock notice wall-clock jumps.
    fn sleep_until(&self, deadline: DateTime<Utc>) -> BoxFuture<'static, ()>;
}

/// Wall time. Sleeps are cut into pieces of at most [`SystemClock::MAX_NAP`] because tokio
/// timers follow the monotonic clock: after a suspend or a wall-clock step the runner re-reads
/// the wall time within that bound instead of oversleeping a slot.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl SystemClock {
    pub const MAX_NAP: Duration = Duration::from_secs(30);
}

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }

    fn sleep_until(&self, deadline: DateTime<Utc>) -> BoxFuture<'static, ()> {
        let wait = (deadline - Utc::now())
            .to_std()
            .unwrap_or(Duration::ZERO)
            .min(Self::MAX_NAP);
        Box::pin(tokio::time::sleep(wait))
    }
}

/// A clock that stands still until [`ManualClock::set`] or [`ManualClock::advance`] moves it.
#[derive(Debug, Clone)]
pub struct ManualClock {
    now: Arc<watch::Sender<DateTime<Utc>>>,
}

impl ManualClock {
    pub fn new(start: DateTime<Utc>) -> Self {
        ManualClock {
            now: Arc::new(watch::Sender::new(start)),
        }
    }

    /// Moves the clock to `to` (forwards or backwards) and wakes every sleeper that is due.
    pub fn set(&self, to: DateTime<Utc>) {
        self.now.send_replace(to);
    }

    pub fn advance(&self, by: Duration) {
        let by = chrono::Duration::from_std(by).unwrap_or(chrono::Duration::zero());
        self.now.send_modify(|now| *now += by);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.now.borrow()
    }

    /// Ends at the deadline, and also at every move of the clock (an early wake the trait
    /// allows), so that the runner takes a pass at each time a test sets.
    fn sleep_until(&self, deadline: DateTime<Utc>) -> BoxFuture<'static, ()> {
        let mut receiver = self.now.subscribe();
        Box::pin(async move {
            if *receiver.borrow_and_update() >= deadline {
                return;
            }
            // The sender lives as long as any clone of the clock; if every clone is gone the
            // time can never move, so the sleep never ends (like a stopped clock).
            if receiver.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use futures_util::FutureExt;

    #[tokio::test]
    async fn a_manual_sleep_ends_when_the_clock_moves() {
        let start = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        let clock = ManualClock::new(start);
        let deadline = start + chrono::Duration::seconds(60);
        let mut sleep = clock.sleep_until(deadline);
        assert!(
            (&mut sleep).now_or_never().is_none(),
            "woke before any move"
        );
        clock.advance(Duration::from_secs(60));
        assert!(sleep.now_or_never().is_some(), "the deadline came");
        assert!(clock.sleep_until(deadline).now_or_never().is_some());
        // A move short of the deadline also wakes the sleeper, which re-reads the time.
        let mut sleep = clock.sleep_until(deadline + chrono::Duration::seconds(60));
        assert!((&mut sleep).now_or_never().is_none());
        clock.advance(Duration::from_secs(1));
        assert!(sleep.now_or_never().is_some());
    }
}
