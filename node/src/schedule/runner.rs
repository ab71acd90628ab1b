//! The schedule runner: one task per node that waits for the next due slot (on its [`Clock`]),
//! applies the missed-run and concurrency policies, and fires each slot as an
//! `ops::Envelope` through its [`Host`] (the node's `handle_local`, so the journal and the
//! policy gate apply). One `select!` over shutdown, changes of the
//! schedule set, the clock, and runs finishing.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use remote_agents_spec::Concurrency;
use tokio::task::{JoinHandle, JoinSet};
use tokio_util::sync::CancellationToken;

use super::store::{self, Cursor};
use super::{Clock, Definition, MISSED_GRACE_MAX, MISSED_GRACE_MIN, Schedules, to_ms};
use remote_agents_ops::{Caller, Envelope, Outcome, Request};
use remote_agents_ops::{RunOutcome, ScheduleRun};

/// What the runner needs of its node, which implements it: the schedules, and running a request
/// as the node runs any local request (journaled, through the policy gate), cancelled by
/// `cancel`.
pub trait Host: Send + Sync + 'static {
    fn schedules(&self) -> &Schedules;
    fn run_local(
        self: Arc<Self>,
        envelope: Envelope,
        cancel: CancellationToken,
    ) -> Pin<Box<dyn Future<Output = Outcome> + Send>>;
}

/// How long a stopping runner waits for cancelled runs to record their end.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// Starts the runner of `node`'s schedules on `clock`; it stops when `shutdown` fires,
/// cancelling the runs still going. Dropping (aborting) the returned task instead stops it
/// like a crash would: the journal then reports the interrupted runs `outcome_unknown`.
pub fn start<H: Host>(
    node: &Arc<H>,
    clock: Arc<dyn Clock>,
    shutdown: CancellationToken,
) -> JoinHandle<()> {
    node.schedules().set_clock(clock.clone());
    let runner = Runner {
        node: node.clone() as Arc<dyn Host>,
        clock,
        cursors: BTreeMap::new(),
        running: BTreeMap::new(),
        tasks: JoinSet::new(),
    };
    crate::runtime::spawn(runner.run(shutdown))
}

struct Running {
    slot: u64,
    cancel: CancellationToken,
    task: tokio::task::Id,
}

struct Runner {
    node: Arc<dyn Host>,
    clock: Arc<dyn Clock>,
    /// The latest slot handled, per schedule the runner currently tracks.
    cursors: BTreeMap<String, DateTime<Utc>>,
    running: BTreeMap<String, Vec<Running>>,
    tasks: JoinSet<()>,
}

enum Event {
    Shutdown,
    Changed,
    Tick,
    Finished(tokio::task::Id),
}

impl Runner {
    async fn run(mut self, shutdown: CancellationToken) {
        let node = self.node.clone();
        let schedules = node.schedules();
        loop {
            let now = self.clock.now();
            let wake = self.evaluate(now);
            schedules.mark_evaluated(now);
            // With nothing to wait for the runner still naps on the clock, so it keeps its
            // view of time fresh (and a test's manual clock can drive it).
            let sleep = self
                .clock
                .sleep_until(wake.unwrap_or(now + chrono::Duration::hours(1)));
            let event = tokio::select! {
                _ = shutdown.cancelled() => Event::Shutdown,
                _ = schedules.changed().notified() => Event::Changed,
                _ = sleep => Event::Tick,
                Some(joined) = self.tasks.join_next_with_id(), if !self.tasks.is_empty() => {
                    match joined {
                        Ok((id, ())) => Event::Finished(id),
                        Err(e) => Event::Finished(e.id()),
                    }
                }
            };
            match event {
                Event::Shutdown => break,
                Event::Changed | Event::Tick => {}
                Event::Finished(id) => {
                    for runs in self.running.values_mut() {
                        runs.retain(|r| r.task != id);
                    }
                    self.running.retain(|_, runs| !runs.is_empty());
                }
            }
        }
        // A graceful stop cancels running commands so that their end is recorded.
        for run in self.running.values().flatten() {
            run.cancel.cancel();
        }
        let drained = async { while self.tasks.join_next().await.is_some() {} };
        if tokio::time::timeout(STOP_GRACE, drained).await.is_err() {
            tracing::warn!("scheduled runs did not stop in time; abandoning them");
        }
    }

    /// One pass: fires or skips every slot due by `now`; returns when to look again.
    fn evaluate(&mut self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let active = self.node.schedules().active(now);
        self.cursors
            .retain(|name, _| active.iter().any(|d| &d.name == name));
        let mut wake: Option<DateTime<Utc>> = None;
        for definition in &active {
            // One schedule that fails (a panic anywhere in its pass) must not stop the others:
            // it is reported, and tried again on the next pass, while the rest keep firing.
            let pass = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                self.evaluate_one(definition, now)
            }));
            match pass {
                Ok(wakes) => {
                    for at in wakes.into_iter().flatten() {
                        wake = Some(wake.map_or(at, |w| w.min(at)));
                    }
                }
                Err(_) => tracing::error!(
                    schedule = %definition.name,
                    "evaluating the schedule failed (panicked); skipped in this pass"
                ),
            }
        }
        wake
    }

    /// Fires or skips the slots of one schedule due by `now`; returns when it next needs a look.
    fn evaluate_one(
        &mut self,
        definition: &Definition,
        now: DateTime<Utc>,
    ) -> [Option<DateTime<Utc>>; 2] {
        let cursor = self.cursor_of(definition, now);
        let cursor = match definition.cron.due(cursor, now) {
            Some(due) => {
                self.handle_due(definition, due, now);
                due.last
            }
            None => cursor,
        };
        self.cursors.insert(definition.name.clone(), cursor);
        let next = definition.cron.next_after(cursor);
        // An expiry beyond what a timestamp can hold never comes (no wrap to the past, which
        // would wake the runner in a loop).
        let expiry = definition
            .expires_at_ms
            .and_then(|ms| i64::try_from(ms).ok())
            .and_then(DateTime::<Utc>::from_timestamp_millis);
        [next, expiry]
    }

    /// The schedule's cursor: in memory, else from the store, else (a new schedule) now.
    fn cursor_of(&mut self, definition: &Definition, now: DateTime<Utc>) -> DateTime<Utc> {
        if let Some(cursor) = self.cursors.get(&definition.name) {
            return *cursor;
        }
        let store = self.node.schedules().store();
        match store::cursor(store, &definition.name) {
            Ok(Some(cursor)) => DateTime::<Utc>::from_timestamp_millis(cursor.at_ms).unwrap_or(now),
            Ok(None) => {
                let cursor = Cursor {
                    source: definition.source,
                    at_ms: now.timestamp_millis(),
                };
                if let Err(e) = store::set_cursor(store, &definition.name, cursor) {
                    tracing::error!(schedule = %definition.name, "cannot store cursor: {e}");
                }
                now
            }
            Err(e) => {
                // Without the store nothing can be recorded, so nothing may run: start from now
                // and let the next pass retry.
                tracing::error!(schedule = %definition.name, "cannot read cursor: {e}");
                now
            }
        }
    }

    fn handle_due(&mut self, definition: &Definition, due: super::cron::Due, now: DateTime<Utc>) {
        let late = (now - due.last).to_std().unwrap_or(Duration::ZERO);
        let grace = definition
            .cron
            .period_after(due.last)
            .unwrap_or(MISSED_GRACE_MAX)
            .clamp(MISSED_GRACE_MIN, MISSED_GRACE_MAX);
        let run_latest = late <= grace;
        let missed = if run_latest { due.count - 1 } else { due.count };
        if missed > 0 {
            let more = if due.count >= super::cron::Due::COUNT_CAP {
                "at least "
            } else {
                ""
            };
            let last_missed = if run_latest {
                "the one before the latest".to_string()
            } else {
                due.last.to_rfc3339()
            };
            let detail = format!(
                "missed {more}{missed} slot(s) from {} to {last_missed} while the runner was not \
                 running; {}",
                due.first.to_rfc3339(),
                if run_latest {
                    format!("only the latest ({}) runs", due.last.to_rfc3339())
                } else {
                    format!(
                        "the latest was {}s late, beyond the grace of {}s, so none runs",
                        late.as_secs(),
                        grace.as_secs()
                    )
                }
            );
            // Keyed at the first missed slot, or at the latest when none runs.
            let key = if run_latest { due.first } else { due.last };
            let run = ScheduleRun::skipped(
                &definition.name,
                definition.source,
                &definition.issuer,
                key.timestamp().max(0) as u64,
                missed,
                detail,
            );
            self.record(definition, &run, due.last);
        }
        if run_latest {
            self.fire(definition, due.last);
        }
    }

    fn record(&self, definition: &Definition, run: &ScheduleRun, cursor: DateTime<Utc>) {
        let cursor = Cursor {
            source: definition.source,
            at_ms: cursor.timestamp_millis(),
        };
        if let Err(e) = store::record(self.node.schedules().store(), run, cursor) {
            tracing::error!(schedule = %definition.name, "cannot record run: {e}");
        }
    }

    fn fire(&mut self, definition: &Definition, slot_time: DateTime<Utc>) {
        let slot = slot_time.timestamp().max(0) as u64;
        let schedules = self.node.schedules();
        // A slot already in the history (e.g. the cursor write was lost) is never fired again.
        match store::has_run(schedules.store(), &definition.name, slot) {
            Ok(false) => {}
            Ok(true) => return,
            Err(e) => {
                tracing::error!(schedule = %definition.name, "cannot read history, not firing: {e}");
                return;
            }
        }
        let busy: Vec<u64> = self
            .running
            .get(&definition.name)
            .map(|runs| runs.iter().map(|r| r.slot).collect())
            .unwrap_or_default();
        if !busy.is_empty() {
            match definition.concurrency {
                Concurrency::Forbid => {
                    let busy: Vec<String> = busy.iter().map(u64::to_string).collect();
                    let run = ScheduleRun::skipped(
                        &definition.name,
                        definition.source,
                        &definition.issuer,
                        slot,
                        1,
                        format!(
                            "the run of slot {} was still running (concurrency: forbid)",
                            busy.join(", ")
                        ),
                    );
                    self.record(definition, &run, slot_time);
                    return;
                }
                Concurrency::Replace => {
                    for run in self.running.get(&definition.name).into_iter().flatten() {
                        run.cancel.cancel();
                    }
                }
                Concurrency::Allow => {}
            }
        }
        let request_id = format!("schedule/{}/{slot}", definition.name);
        let started = ScheduleRun {
            schedule: definition.name.clone(),
            slot,
            source: definition.source,
            issuer: definition.issuer.clone(),
            request_id: Some(request_id.clone()),
            outcome: RunOutcome::Running,
            started_ms: Some(to_ms(self.clock.now())),
            finished_ms: None,
            exit_code: None,
            stdout_tail: String::new(),
            stderr_tail: String::new(),
            truncated: false,
            detail: None,
            skipped_slots: None,
        };
        let cursor = Cursor {
            source: definition.source,
            at_ms: slot_time.timestamp_millis(),
        };
        // The cursor and the "running" record are durable before the command starts: after a
        // restart this slot is settled from the journal, never fired again.
        if let Err(e) = store::record(schedules.store(), &started, cursor) {
            tracing::error!(schedule = %definition.name, "cannot record run, not firing: {e}");
            return;
        }
        let envelope = Envelope {
            id: request_id,
            caller: Caller::from(definition.issuer.as_str()),
            request: Request::Exec(definition.exec_args(slot)),
            on_behalf_of_model: false,
            window_override: None,
        };
        let cancel = CancellationToken::new();
        let run_cancel = cancel.clone();
        let node = self.node.clone();
        let clock = self.clock.clone();
        let name = definition.name.clone();
        tracing::info!(schedule = %name, slot, "firing");
        let task = self.tasks.spawn(async move {
            let outcome = node.clone().run_local(envelope, run_cancel).await;
            let mut run = started;
            store::settle(&mut run, &outcome, to_ms(clock.now()));
            if let Err(e) = store::update(node.schedules().store(), &run) {
                tracing::error!(schedule = %name, slot, "cannot record the end of a run: {e}");
            }
        });
        self.running
            .entry(definition.name.clone())
            .or_default()
            .push(Running {
                slot,
                cancel,
                task: task.id(),
            });
    }
}
