//! Declared jobs that act by themselves: a `MapReduceJob` with `trigger: on-apply` runs once per
//! generation that changes it, one with `trigger: cron` once per slot of its cron line, each
//! from one node of the fleet, its *coordinator*, and each run is kept in that node's job
//! history (`fleet::jobs`, listed by `job_list` and `fleetctl jobs`).
//!
//! **Who coordinates.** Every node the job's target selects evaluates the same rule locally:
//! the coordinator is the live node with the lowest agent id among the selected nodes that take
//! commands (this node, and the peers its relay connection reports present). No message is
//! exchanged, so two nodes disagree only while their presence tables do (a node that just left
//! or joined); a node that is not connected to its relay cannot tell who is live and
//! coordinates nothing.
//!
//! **Once.** Each targeted node keeps, per job, the fingerprint (SHA-256 of the spec's JSON) of
//! the version it last handled and the cursor of the cron slots it handled, in its store, and
//! writes them *before* a run starts: a slot or a version is settled on every targeted node
//! whether it coordinated or not, so a restart never reruns it and a node that later becomes
//! the coordinator never replays what the previous one ran. A generation a node adopts by
//! catching up (the relay's copy or a peer's, after being away) settles its `on-apply` jobs
//! without running them: the node that coordinated while this one was away ran them. Missed
//! cron slots follow the schedule runner's policy (`schedule`): only the latest runs, within
//! its grace; a slot that comes due while a run of the job is still going is skipped and
//! recorded so.
//!
//! **Timing** comes from a [`Clock`], so tests drive cron slots with a `ManualClock`.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use remote_agents_spec::{MapReduceSpec, Selector, Trigger};
use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, watch};
use tokio::task::{JoinHandle, JoinSet};
use tokio_util::sync::CancellationToken;

use super::{CallerSide, JobPlan, JobReport};
use crate::fleet::jobs::{self, Job, JobOutcome, JobTrigger};
use crate::fleet::{FanoutReport, remote::host_facts};
use crate::journal::Store;
use crate::node::Node;
use crate::schedule::{Clock, CronLine, MISSED_GRACE_MAX, MISSED_GRACE_MIN};
use remote_agents_ops::status::DeclaredJobRun;

/// How many of its newest declared runs a node reports in its status.
const RUNS_IN_STATUS: usize = 10;

/// Tells `host` its newest declared runs, from its job history.
fn publish(host: &dyn JobHost) {
    match jobs::list_declared(host.store(), RUNS_IN_STATUS) {
        Ok(list) => host.publish_runs(
            list.into_iter()
                .map(|run| DeclaredJobRun {
                    op_id: run.op_id,
                    job: run
                        .summary
                        .strip_prefix("mapreduce ")
                        .unwrap_or_default()
                        .to_string(),
                    trigger: run.trigger.unwrap_or_default(),
                    started_ms: run.started_ms,
                    duration_ms: run.duration_ms,
                    result: run.result,
                })
                .collect(),
        ),
        Err(e) => tracing::warn!("cannot read the declared jobs' runs: {e}"),
    }
}

/// A `MapReduceJob` of the applied spec whose target selects this host.
#[derive(Debug, Clone, PartialEq)]
pub struct DeclaredJob {
    pub name: String,
    pub spec: MapReduceSpec,
}

/// The boxed future of one run.
pub type RunFuture = Pin<Box<dyn Future<Output = Result<JobReport, String>> + Send>>;

/// What the trigger runner needs of its node (the node implements it; tests use fakes).
pub trait JobHost: Send + Sync + 'static {
    fn store(&self) -> &Store;
    fn agent_id(&self) -> &str;
    /// The generation in force, whether this node adopted it by catching up rather than by an
    /// apply, and the declared jobs that select this host under it. `None` while a newly
    /// accepted generation is still being put in force.
    fn declared_jobs(&self) -> Option<(u64, bool, Vec<DeclaredJob>)>;
    /// Notified when a new generation is in force.
    fn changed(&self) -> &Notify;
    /// The agent ids of the other live nodes that take commands and that `target` selects;
    /// `None` when this node cannot tell (it is not connected to its relay).
    fn live_peers_selected(&self, target: &Selector) -> Option<Vec<String>>;
    /// Whether `target` selects this node as its peers see it.
    fn selected(&self, target: &Selector) -> bool;
    /// Whether this node is connected but has not read the room's presence yet (it started
    /// following it for a declared job): the answer of `live_peers_selected` is coming, and
    /// `changed` is notified when it has.
    fn presence_pending(&self) -> bool {
        false
    }
    /// The newest runs of declared jobs this node coordinated changed (for its status).
    fn publish_runs(&self, runs: Vec<DeclaredJobRun>);
    /// Runs the job from this node, as the spec of `generation`.
    fn run_job(
        self: Arc<Self>,
        job: DeclaredJob,
        generation: u64,
        cancel: CancellationToken,
    ) -> RunFuture;
}

/// Whether `own` coordinates among itself and `others` (the rule every node evaluates).
pub fn is_coordinator(own: &str, others: &[String]) -> bool {
    others.iter().all(|other| own < other.as_str())
}

/// The fingerprint of a job's spec: what `on-apply` compares between generations.
pub fn fingerprint(spec: &MapReduceSpec) -> String {
    // Serializing plain data cannot fail.
    let json = serde_json::to_vec(spec).unwrap_or_default();
    let digest = ring::digest::digest(&ring::digest::SHA256, &json);
    digest
        .as_ref()
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// What a node settled for one declared job, kept in its store.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct JobState {
    /// The fingerprint of the version whose `on-apply` run is settled (ran here, ran on the
    /// coordinator, or was caught up with).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    applied: Option<String>,
    /// The cron line and the latest slot settled (ms since the epoch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    cron: Option<(String, i64)>,
}

fn state_key(name: &str) -> String {
    format!("declared_job/{name}")
}

fn load(store: &Store, name: &str) -> Result<JobState, String> {
    store
        .get_meta::<JobState>(&state_key(name))
        .map(Option::unwrap_or_default)
        .map_err(|e| e.to_string())
}

fn save(store: &Store, name: &str, state: &JobState) -> Result<(), String> {
    store
        .set_meta(&state_key(name), Some(state))
        .map_err(|e| e.to_string())
}

/// The running trigger runner: its task, and the clock time of its latest pass.
pub struct TriggerRunner {
    pub task: JoinHandle<()>,
    evaluated: watch::Receiver<Option<DateTime<Utc>>>,
}

impl TriggerRunner {
    /// Waits until the runner's latest pass was at `at` or later: every slot due by then has
    /// been started, skipped or left to the coordinator, and every new version settled.
    pub async fn evaluated_at(&mut self, at: DateTime<Utc>) {
        // An error means the runner stopped: nothing more will be evaluated.
        let _ = self
            .evaluated
            .wait_for(|evaluated| evaluated.is_some_and(|t| t >= at))
            .await;
    }
}

/// Starts the trigger runner of `host`'s declared jobs on `clock`; it stops when `shutdown`
/// fires, cancelling the runs still going.
pub fn start<H: JobHost>(
    host: &Arc<H>,
    clock: Arc<dyn Clock>,
    shutdown: CancellationToken,
) -> TriggerRunner {
    let (evaluated_tx, evaluated) = watch::channel(None);
    let runner = Runner {
        host: host.clone() as Arc<dyn JobHost>,
        clock,
        running: BTreeMap::new(),
        tasks: JoinSet::new(),
        cancel: shutdown.child_token(),
    };
    let task = crate::runtime::spawn(runner.run(shutdown, evaluated_tx));
    TriggerRunner { task, evaluated }
}

/// How long a stopping runner waits for cancelled runs to record their end.
const STOP_GRACE: Duration = Duration::from_secs(10);
/// How soon a node that could not tell who is live looks again.
const NOT_READY_RETRY: Duration = Duration::from_secs(1);

/// How long a node that starts following presence for a declared job waits for the table and
/// its handshakes before it wakes the runner anyway.
const PRESENCE_WAIT: Duration = Duration::from_secs(30);

struct Runner {
    host: Arc<dyn JobHost>,
    clock: Arc<dyn Clock>,
    /// Jobs with a run going: job name → its task.
    running: BTreeMap<String, tokio::task::Id>,
    tasks: JoinSet<()>,
    cancel: CancellationToken,
}

enum Event {
    Shutdown,
    Changed,
    Tick,
    Finished(tokio::task::Id),
}

impl Runner {
    async fn run(
        mut self,
        shutdown: CancellationToken,
        evaluated: watch::Sender<Option<DateTime<Utc>>>,
    ) {
        let host = self.host.clone();
        settle_interrupted(host.store());
        publish(host.as_ref());
        loop {
            let now = self.clock.now();
            let wake = self.evaluate(now);
            // The sleep starts before the pass is reported, so that a clock moved after the
            // report wakes it; a clock that moved during the pass (or a pass that took long)
            // gets another pass at once instead of a sleep that would miss the move.
            let sleep = self
                .clock
                .sleep_until(wake.unwrap_or(now + chrono::Duration::hours(1)));
            if self.clock.now() - now >= chrono::Duration::milliseconds(100) {
                continue;
            }
            evaluated.send_replace(Some(now));
            let event = tokio::select! {
                _ = shutdown.cancelled() => Event::Shutdown,
                _ = host.changed().notified() => Event::Changed,
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
                Event::Finished(id) => self.running.retain(|_, task| *task != id),
            }
        }
        self.cancel.cancel();
        let drained = async { while self.tasks.join_next().await.is_some() {} };
        if tokio::time::timeout(STOP_GRACE, drained).await.is_err() {
            tracing::warn!("declared job runs did not stop in time; abandoning them");
        }
    }

    /// One pass over the declared jobs; returns when to look again.
    fn evaluate(&mut self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let Some((generation, caught_up, declared)) = self.host.declared_jobs() else {
            return Some(now + chrono::Duration::from_std(NOT_READY_RETRY).unwrap_or_default());
        };
        let mut wake: Option<DateTime<Utc>> = None;
        for job in declared {
            let next = match job.spec.trigger {
                Some(Trigger::OnApply) => self.on_apply(&job, generation, caught_up, now),
                Some(Trigger::Cron) => self.cron(&job, generation, now),
                Some(Trigger::Manual) | None => None,
            };
            if let Some(at) = next {
                wake = Some(wake.map_or(at, |w| w.min(at)));
            }
        }
        wake
    }

    /// Whether this node coordinates `job` now; `None` when it cannot tell.
    fn coordinates(&self, job: &DeclaredJob) -> Option<bool> {
        let selector = Selector::parse(&job.spec.target).ok()?;
        if !self.host.selected(&selector) {
            return Some(false);
        }
        let others = self.host.live_peers_selected(&selector)?;
        Some(is_coordinator(self.host.agent_id(), &others))
    }

    fn on_apply(
        &mut self,
        job: &DeclaredJob,
        generation: u64,
        caught_up: bool,
        now: DateTime<Utc>,
    ) -> Option<DateTime<Utc>> {
        let store = self.host.store();
        let mut state = match load(store, &job.name) {
            Ok(state) => state,
            Err(e) => {
                tracing::error!(job = %job.name, "cannot read the job's state, not running: {e}");
                return None;
            }
        };
        let version = fingerprint(&job.spec);
        if state.applied.as_deref() == Some(version.as_str()) {
            return None;
        }
        let coordinates = if caught_up {
            false
        } else {
            match self.coordinates(job) {
                Some(coordinates) => coordinates,
                // Not connected: look again soon rather than guess.
                None => {
                    return Some(
                        now + chrono::Duration::from_std(NOT_READY_RETRY).unwrap_or_default(),
                    );
                }
            }
        };
        state.applied = Some(version);
        // Settled before the run starts: a crash mid-run never runs this version again.
        if let Err(e) = save(store, &job.name, &state) {
            tracing::error!(job = %job.name, "cannot store the job's state, not running: {e}");
            return None;
        }
        if coordinates {
            let trigger = JobTrigger {
                kind: "on-apply".into(),
                job: job.name.clone(),
                generation,
                slot_ms: None,
            };
            self.fire(job, generation, trigger, now);
        } else {
            tracing::info!(
                job = %job.name,
                generation,
                caught_up,
                "on-apply job settled; another node coordinates it"
            );
        }
        None
    }

    fn cron(
        &mut self,
        job: &DeclaredJob,
        generation: u64,
        now: DateTime<Utc>,
    ) -> Option<DateTime<Utc>> {
        let text = job.spec.cron.as_deref()?;
        let line = match CronLine::parse(text) {
            Ok(line) => line,
            Err(e) => {
                tracing::warn!(job = %job.name, "declared job's cron line cannot run: {e}");
                return None;
            }
        };
        let store = self.host.store();
        let mut state = match load(store, &job.name) {
            Ok(state) => state,
            Err(e) => {
                tracing::error!(job = %job.name, "cannot read the job's state, not running: {e}");
                return None;
            }
        };
        // A job seen for the first time (or whose cron line changed) starts from now.
        let cursor = match &state.cron {
            Some((stored, at_ms)) if stored == text => {
                DateTime::<Utc>::from_timestamp_millis(*at_ms).unwrap_or(now)
            }
            _ => {
                state.cron = Some((text.to_string(), now.timestamp_millis()));
                if let Err(e) = save(store, &job.name, &state) {
                    tracing::error!(job = %job.name, "cannot store the job's cursor: {e}");
                    return None;
                }
                now
            }
        };
        // Asked on every pass, not only at the slot: the first look makes a headless node start
        // following the room's presence, so its table is read well before the slot needs it.
        let ready = self.coordinates(job);
        let Some(due) = line.due(cursor, now) else {
            return line.next_after(cursor);
        };
        // Connected, with the room's presence still being read: judge the slot once it is
        // (the host notifies `changed`), rather than pass it over as if disconnected.
        if ready.is_none() && self.host.presence_pending() {
            return Some(now + chrono::Duration::from_std(NOT_READY_RETRY).unwrap_or_default());
        }
        let late = (now - due.last).to_std().unwrap_or(Duration::ZERO);
        let grace = line
            .period_after(due.last)
            .unwrap_or(MISSED_GRACE_MAX)
            .clamp(MISSED_GRACE_MIN, MISSED_GRACE_MAX);
        let coordinates = ready;
        // The slot is settled on every targeted node before anything runs.
        state.cron = Some((text.to_string(), due.last.timestamp_millis()));
        if let Err(e) = save(store, &job.name, &state) {
            tracing::error!(job = %job.name, "cannot store the job's cursor, not running: {e}");
            return line.next_after(cursor);
        }
        let slot_ms = due.last.timestamp_millis().max(0) as u64;
        let trigger = JobTrigger {
            kind: "cron".into(),
            job: job.name.clone(),
            generation,
            slot_ms: Some(slot_ms),
        };
        match coordinates {
            Some(true) if late <= grace => self.fire(job, generation, trigger, now),
            Some(true) => self.record_skipped(
                job,
                trigger,
                now,
                format!(
                    "skipped: the slot was {}s late, beyond the grace of {}s",
                    late.as_secs(),
                    grace.as_secs()
                ),
            ),
            Some(false) => {}
            None => tracing::warn!(
                job = %job.name,
                slot_ms,
                "cron slot passed while this node was not connected to its relay; it cannot \
                 tell who coordinates, so it ran nothing"
            ),
        }
        line.next_after(due.last)
    }

    fn record_skipped(
        &self,
        job: &DeclaredJob,
        trigger: JobTrigger,
        now: DateTime<Utc>,
        why: String,
    ) {
        let at = now.timestamp_millis().max(0) as u64;
        let record = Job {
            op_id: jobs::new_op_id(),
            summary: format!("mapreduce {}", job.name),
            target: job.spec.target.clone(),
            started_ms: at,
            finished_ms: at,
            report: FanoutReport {
                records: Vec::new(),
                halted: false,
            },
            trigger: Some(trigger),
            outcome: Some(JobOutcome {
                result: why,
                report: None,
            }),
        };
        if let Err(e) = jobs::save(self.host.store(), &record) {
            tracing::error!(job = %job.name, "cannot record a skipped run: {e}");
        }
        publish(self.host.as_ref());
    }

    fn fire(
        &mut self,
        job: &DeclaredJob,
        generation: u64,
        trigger: JobTrigger,
        now: DateTime<Utc>,
    ) {
        if self.running.contains_key(&job.name) {
            self.record_skipped(
                job,
                trigger,
                now,
                "skipped: the previous run of the job was still going".into(),
            );
            return;
        }
        let started_ms = now.timestamp_millis().max(0) as u64;
        let mut record = Job {
            op_id: jobs::new_op_id(),
            summary: format!("mapreduce {}", job.name),
            target: job.spec.target.clone(),
            started_ms,
            finished_ms: started_ms,
            report: FanoutReport {
                records: Vec::new(),
                halted: false,
            },
            trigger: Some(trigger),
            outcome: Some(JobOutcome {
                result: "running".into(),
                report: None,
            }),
        };
        if let Err(e) = jobs::save(self.host.store(), &record) {
            tracing::error!(job = %job.name, "cannot record the run, not running: {e}");
            return;
        }
        publish(self.host.as_ref());
        tracing::info!(job = %job.name, op_id = %record.op_id, "running declared job");
        let host = self.host.clone();
        let clock = self.clock.clone();
        let cancel = self.cancel.child_token();
        let run = host.clone().run_job(job.clone(), generation, cancel);
        let task = self.tasks.spawn(async move {
            let outcome = run.await;
            record.finished_ms = clock.now().timestamp_millis().max(0) as u64;
            record.outcome = Some(outcome_of(outcome));
            if let Err(e) = jobs::save(host.store(), &record) {
                tracing::error!(op_id = %record.op_id, "cannot record the end of a run: {e}");
            }
            publish(host.as_ref());
        });
        self.running.insert(job.name.clone(), task.id());
    }
}

/// What a run that was still `running` when its node stopped reads as afterwards.
const INTERRUPTED: &str = "outcome unknown: the node stopped during the run";

/// Runs recorded `running` by an earlier life of this node were interrupted (no run of this
/// runner has started yet): they are recorded so, never run again.
fn settle_interrupted(store: &Store) {
    let runs = match jobs::list_declared(store, usize::MAX) {
        Ok(runs) => runs,
        Err(e) => {
            tracing::warn!("cannot read the declared jobs' runs: {e}");
            return;
        }
    };
    for run in runs.into_iter().filter(|run| run.result == "running") {
        if let Ok(Some(mut job)) = jobs::get(store, &run.op_id) {
            job.outcome = Some(JobOutcome {
                result: INTERRUPTED.into(),
                report: None,
            });
            if let Err(e) = jobs::save(store, &job) {
                tracing::warn!(op_id = %run.op_id, "cannot record an interrupted run: {e}");
            }
        }
    }
}

/// A run's one-line result and its report.
fn outcome_of(outcome: Result<JobReport, String>) -> JobOutcome {
    match outcome {
        Ok(report) => {
            let result = if report.complete {
                let text = report.result.as_deref().unwrap_or_default().trim();
                let first = text.lines().next().unwrap_or_default();
                let mut line: String = first.chars().take(80).collect();
                if line.len() < text.len() {
                    line.push('…');
                }
                format!("complete: {line}")
            } else {
                format!(
                    "incomplete: {} of {} partitions failed{}",
                    report.failed,
                    report.partitions,
                    report
                        .reduce_error
                        .as_deref()
                        .map(|e| format!("; reduce: {e}"))
                        .unwrap_or_default()
                )
            };
            JobOutcome {
                result,
                report: serde_json::to_value(&report).ok(),
            }
        }
        Err(error) => JobOutcome {
            result: format!("failed: {error}"),
            report: None,
        },
    }
}

impl JobHost for Node {
    fn store(&self) -> &Store {
        Node::store(self)
    }

    fn agent_id(&self) -> &str {
        Node::agent_id(self)
    }

    fn declared_jobs(&self) -> Option<(u64, bool, Vec<DeclaredJob>)> {
        let Some(bundle) = self.desired().current() else {
            return Some((0, false, Vec::new()));
        };
        let (accepted, caught_up) = self.last_acceptance();
        let generation = bundle.content.generation;
        if accepted != generation {
            return None;
        }
        let selected: Vec<String> = bundle
            .model
            .effective_config(&self.host_facts())
            .jobs
            .into_iter()
            .map(|job| job.value)
            .collect();
        let jobs = bundle
            .model
            .jobs()
            .filter(|(_, job)| selected.contains(&job.metadata.name))
            .map(|(_, job)| DeclaredJob {
                name: job.metadata.name.clone(),
                spec: job.spec.clone(),
            })
            .collect();
        Some((generation, caught_up, jobs))
    }

    fn changed(&self) -> &Notify {
        self.declared_jobs_changed()
    }

    fn publish_runs(&self, runs: Vec<DeclaredJobRun>) {
        self.set_declared_runs(runs);
    }

    fn live_peers_selected(&self, target: &Selector) -> Option<Vec<String>> {
        let net = self.net()?;
        // The coordinator rule reads the room: who is live and what each announced. A headless
        // node does not follow presence until it has such a job (keeping a mass reconnect of a
        // fleet without one at O(N) relay frames); from its first look it follows the room and
        // meets every peer in it, and cannot tell until that table is read.
        if !net.follows_presence() {
            let net = net.clone();
            let waker = self.declared_jobs_waker();
            crate::runtime::spawn(async move {
                net.follow_presence(true).await;
                // Wake the runner once the table is read (and the peers met), so a slot that
                // came meanwhile is judged then rather than passed over.
                let _ = net.meet_present(PRESENCE_WAIT).await;
                waker.notify_one();
            });
            return None;
        }
        if *net.watch_state().borrow() != crate::net::ConnectionState::Connected
            || !net.presence_settled()
        {
            return None;
        }
        Some(
            net.peers()
                .iter()
                .filter(|peer| peer.announcement.accepts_commands)
                .filter(|peer| target.matches(&host_facts(peer)))
                .map(|peer| peer.agent_id.clone())
                .collect(),
        )
    }

    fn selected(&self, target: &Selector) -> bool {
        !self.settings().no_agent.value && target.matches(&self.announced_host())
    }

    fn presence_pending(&self) -> bool {
        self.net().is_some_and(|net| {
            *net.watch_state().borrow() == crate::net::ConnectionState::Connected
                && !net.presence_settled()
        })
    }

    fn run_job(
        self: Arc<Self>,
        job: DeclaredJob,
        generation: u64,
        cancel: CancellationToken,
    ) -> RunFuture {
        Box::pin(async move {
            let plan = JobPlan::from_spec(&job.name, &job.spec).map_err(|e| e.to_string())?;
            let net = self.net().ok_or_else(|| {
                "this node has no relay connection, so it has no fleet to run a job on".to_string()
            })?;
            let side = CallerSide::Declared {
                node: self.clone(),
                generation,
            };
            super::run(&net, self.agent_id(), &side, plan, None, cancel)
                .await
                .map_err(|e| e.to_string())
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use chrono::TimeZone;
    use remote_agents_spec::{Input, Reduce, Reducer, Step};

    use super::*;
    use crate::schedule::ManualClock;

    /// The fleet as the fake hosts see it: who is live, and every run started anywhere.
    #[derive(Default)]
    struct FakeFleet {
        live: Mutex<Vec<String>>,
        /// (node, job, trigger) of every run started, fleet-wide.
        runs: Mutex<Vec<(String, String, String)>>,
    }

    struct FakeHost {
        id: String,
        store: Arc<Store>,
        fleet: Arc<FakeFleet>,
        applied: Mutex<(u64, bool, Vec<DeclaredJob>)>,
        changed: Notify,
        published: Mutex<Vec<DeclaredJobRun>>,
    }

    impl FakeHost {
        fn new(id: &str, store: Arc<Store>, fleet: &Arc<FakeFleet>) -> Arc<Self> {
            fleet.live.lock().unwrap().push(id.to_string());
            Arc::new(FakeHost {
                id: id.to_string(),
                store,
                fleet: fleet.clone(),
                applied: Mutex::new((0, false, Vec::new())),
                changed: Notify::new(),
                published: Mutex::new(Vec::new()),
            })
        }

        fn apply(&self, generation: u64, caught_up: bool, jobs: Vec<DeclaredJob>) {
            *self.applied.lock().unwrap() = (generation, caught_up, jobs);
            self.changed.notify_one();
        }
    }

    impl JobHost for FakeHost {
        fn store(&self) -> &Store {
            &self.store
        }
        fn agent_id(&self) -> &str {
            &self.id
        }
        fn declared_jobs(&self) -> Option<(u64, bool, Vec<DeclaredJob>)> {
            Some(self.applied.lock().unwrap().clone())
        }
        fn changed(&self) -> &Notify {
            &self.changed
        }
        fn publish_runs(&self, runs: Vec<DeclaredJobRun>) {
            *self.published.lock().unwrap() = runs;
        }
        fn live_peers_selected(&self, _target: &Selector) -> Option<Vec<String>> {
            let live = self.fleet.live.lock().unwrap();
            Some(live.iter().filter(|id| **id != self.id).cloned().collect())
        }
        fn selected(&self, _target: &Selector) -> bool {
            true
        }
        fn run_job(
            self: Arc<Self>,
            job: DeclaredJob,
            generation: u64,
            _cancel: CancellationToken,
        ) -> RunFuture {
            self.fleet.runs.lock().unwrap().push((
                self.id.clone(),
                job.name.clone(),
                format!("gen {generation}"),
            ));
            let name = job.name.clone();
            Box::pin(async move {
                Ok(JobReport {
                    job_id: "mr-test".into(),
                    name,
                    target: "all".into(),
                    hosts: vec!["a".into()],
                    partitions: 1,
                    done: 1,
                    failed: 0,
                    complete: true,
                    result: Some("42\n".into()),
                    reduce_error: None,
                    failed_partitions: Vec::new(),
                    host_problems: Vec::new(),
                    attempts: 1,
                    backups: 0,
                    duplicates_ignored: 0,
                    hosts_lost: Vec::new(),
                    input_bytes: 0,
                    shipped_bytes: 0,
                    map_ms: 0,
                    reduce_ms: 0,
                    duration_ms: 0,
                    committed: Vec::new(),
                })
            })
        }
    }

    fn job(name: &str, trigger: Trigger, cron: Option<&str>, map: &str) -> DeclaredJob {
        DeclaredJob {
            name: name.into(),
            spec: MapReduceSpec {
                target: "all".into(),
                input: Input {
                    items: vec!["x".into()],
                    ..Input::default()
                },
                partitions: None,
                map: Step {
                    command: vec![map.into()],
                    shell: None,
                },
                reduce: Reduce {
                    builtin: Some(Reducer::Count),
                    command: Vec::new(),
                    shell: None,
                },
                retries: None,
                trigger: Some(trigger),
                cron: cron.map(str::to_string),
            },
        }
    }

    fn store() -> (tempfile::TempDir, Arc<Store>) {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(dir.path()).unwrap());
        (dir, store)
    }

    fn at(hour: u32, minute: u32, second: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 3, 2, hour, minute, second)
            .unwrap()
    }

    /// Moves the clock and waits until every runner has passed at the new time.
    async fn move_to(clock: &ManualClock, to: DateTime<Utc>, runners: &mut [&mut TriggerRunner]) {
        clock.set(to);
        for runner in runners.iter_mut() {
            tokio::time::timeout(Duration::from_secs(10), runner.evaluated_at(to))
                .await
                .expect("the runner passes at the new time");
        }
    }

    /// The runs `store` holds, oldest first, once none is still `running`.
    async fn settled_runs(store: &Store) -> Vec<jobs::JobSummary> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let mut list = jobs::list(store, 100).unwrap();
            if list.iter().all(|j| j.result != "running") {
                list.reverse();
                return list;
            }
            assert!(tokio::time::Instant::now() < deadline, "runs never ended");
            tokio::task::yield_now().await;
        }
    }

    fn runs(fleet: &FakeFleet) -> Vec<(String, String, String)> {
        fleet.runs.lock().unwrap().clone()
    }

    #[tokio::test]
    async fn a_cron_job_runs_once_per_slot_fleet_wide_from_the_lowest_live_node() {
        let clock = ManualClock::new(at(10, 0, 30));
        let fleet = Arc::new(FakeFleet::default());
        let stores: Vec<_> = (0..3).map(|_| store()).collect();
        let hosts: Vec<Arc<FakeHost>> = ["a", "b", "c"]
            .iter()
            .zip(&stores)
            .map(|(id, (_, store))| FakeHost::new(id, store.clone(), &fleet))
            .collect();
        let every_five = job("tally", Trigger::Cron, Some("*/5 * * * *"), "wc");
        let stops: Vec<CancellationToken> =
            hosts.iter().map(|_| CancellationToken::new()).collect();
        let mut runners: Vec<TriggerRunner> = hosts
            .iter()
            .zip(&stops)
            .map(|(host, stop)| {
                host.apply(1, false, vec![every_five.clone()]);
                start(host, Arc::new(clock.clone()), stop.clone())
            })
            .collect();
        let [a, b, c] = &mut runners[..] else {
            unreachable!()
        };
        move_to(&clock, at(10, 0, 30), &mut [a, b, c]).await;
        move_to(&clock, at(10, 0, 31), &mut [a, b, c]).await;
        assert!(runs(&fleet).is_empty(), "nothing before the first slot");

        move_to(&clock, at(10, 5, 0), &mut [a, b, c]).await;
        move_to(&clock, at(10, 7, 0), &mut [a, b, c]).await;
        move_to(&clock, at(10, 10, 0), &mut [a, b, c]).await;
        let gen1 = |node: &str| (node.to_string(), "tally".to_string(), "gen 1".to_string());
        assert_eq!(
            runs(&fleet),
            vec![gen1("a"), gen1("a")],
            "once per slot, by `a`"
        );

        // `a` leaves the fleet: the next lowest live node takes the next slot, and only it.
        stops[0].cancel();
        (&mut a.task).await.unwrap();
        fleet.live.lock().unwrap().retain(|id| id != "a");
        move_to(&clock, at(10, 15, 0), &mut [b, c]).await;
        assert_eq!(runs(&fleet), vec![gen1("a"), gen1("a"), gen1("b")]);

        let on_a = settled_runs(&stores[0].1).await;
        assert_eq!(
            on_a.iter()
                .map(|r| r.trigger.clone().unwrap())
                .collect::<Vec<_>>(),
            vec![
                "cron slot 2026-03-02T10:05:00+00:00",
                "cron slot 2026-03-02T10:10:00+00:00"
            ]
        );
        assert!(on_a.iter().all(|r| r.result == "complete: 42"), "{on_a:?}");
        assert_eq!(settled_runs(&stores[1].1).await.len(), 1);
        assert!(settled_runs(&stores[2].1).await.is_empty());
    }

    #[tokio::test]
    async fn an_on_apply_job_runs_once_per_generation_that_changes_it() {
        let clock = ManualClock::new(at(9, 0, 0));
        let fleet = Arc::new(FakeFleet::default());
        let (_dir_a, store_a) = store();
        let (_dir_b, store_b) = store();
        let a = FakeHost::new("a", store_a.clone(), &fleet);
        let b = FakeHost::new("b", store_b, &fleet);
        let mut runner_a = start(&a, Arc::new(clock.clone()), CancellationToken::new());
        let mut runner_b = start(&b, Arc::new(clock.clone()), CancellationToken::new());
        move_to(&clock, at(9, 0, 0), &mut [&mut runner_a, &mut runner_b]).await;
        let mut second = 0;
        let mut apply = async |generation: u64, jobs: Vec<DeclaredJob>| {
            a.apply(generation, false, jobs.clone());
            b.apply(generation, false, jobs);
            second += 1;
            move_to(
                &clock,
                at(9, 0, second),
                &mut [&mut runner_a, &mut runner_b],
            )
            .await;
        };
        let index = job("index", Trigger::OnApply, None, "wc");
        let manual = job("by-hand", Trigger::Manual, None, "wc");
        apply(1, vec![index.clone(), manual.clone()]).await;
        // An unrelated change: a new generation, the same job.
        apply(2, vec![index.clone()]).await;
        apply(3, vec![index.clone()]).await;
        // The job itself changes.
        apply(4, vec![job("index", Trigger::OnApply, None, "cat")]).await;
        assert_eq!(
            runs(&fleet),
            vec![
                ("a".into(), "index".into(), "gen 1".into()),
                ("a".into(), "index".into(), "gen 4".into())
            ]
        );
        let listed = settled_runs(&store_a).await;
        assert_eq!(
            listed
                .iter()
                .map(|r| r.trigger.clone().unwrap())
                .collect::<Vec<_>>(),
            vec!["on-apply gen 1", "on-apply gen 4"]
        );
        // The coordinator's status reports them, newest first; the other node's none.
        let published: Vec<(String, String, String)> = a
            .published
            .lock()
            .unwrap()
            .iter()
            .map(|r| (r.job.clone(), r.trigger.clone(), r.result.clone()))
            .collect();
        assert_eq!(
            published,
            vec![
                (
                    "index".into(),
                    "on-apply gen 4".into(),
                    "complete: 42".into()
                ),
                (
                    "index".into(),
                    "on-apply gen 1".into(),
                    "complete: 42".into()
                )
            ]
        );
        assert!(b.published.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_restart_reruns_neither_a_slot_nor_a_version_and_catching_up_runs_nothing() {
        let clock = ManualClock::new(at(10, 4, 0));
        let fleet = Arc::new(FakeFleet::default());
        let (_dir, store) = store();
        let jobs = vec![
            job("tally", Trigger::Cron, Some("*/5 * * * *"), "wc"),
            job("index", Trigger::OnApply, None, "wc"),
        ];
        let host = FakeHost::new("a", store.clone(), &fleet);
        host.apply(7, false, jobs.clone());
        let stop = CancellationToken::new();
        let mut runner = start(&host, Arc::new(clock.clone()), stop.clone());
        move_to(&clock, at(10, 4, 0), &mut [&mut runner]).await;
        move_to(&clock, at(10, 5, 0), &mut [&mut runner]).await;
        assert_eq!(runs(&fleet).len(), 2, "{:?}", runs(&fleet));
        stop.cancel();
        runner.task.await.unwrap();

        // The same node (its store) starts again at the same time: nothing runs again, and a
        // run its earlier life left `running` (it stopped mid-run) reads as interrupted.
        let interrupted = Job {
            op_id: "0000000000001-cut".into(),
            summary: "mapreduce index".into(),
            target: "all".into(),
            started_ms: 1,
            finished_ms: 1,
            report: FanoutReport {
                records: Vec::new(),
                halted: false,
            },
            trigger: Some(JobTrigger {
                kind: "on-apply".into(),
                job: "index".into(),
                generation: 6,
                slot_ms: None,
            }),
            outcome: Some(JobOutcome {
                result: "running".into(),
                report: None,
            }),
        };
        jobs::save(&store, &interrupted).unwrap();
        fleet.live.lock().unwrap().clear();
        let again = FakeHost::new("a", store.clone(), &fleet);
        again.apply(7, false, jobs.clone());
        let mut runner = start(&again, Arc::new(clock.clone()), CancellationToken::new());
        move_to(&clock, at(10, 5, 1), &mut [&mut runner]).await;
        assert_eq!(runs(&fleet).len(), 2, "{:?}", runs(&fleet));
        let settled = settled_runs(&store).await;
        assert_eq!(settled.len(), 3, "{settled:?}");
        assert_eq!(settled[0].op_id, "0000000000001-cut");
        assert_eq!(settled[0].result, INTERRUPTED);

        // A version adopted by catching up was applied while the node was away: not run.
        again.apply(8, true, vec![job("index", Trigger::OnApply, None, "cat")]);
        move_to(&clock, at(10, 5, 2), &mut [&mut runner]).await;
        assert_eq!(runs(&fleet).len(), 2, "{:?}", runs(&fleet));
    }

    #[test]
    fn the_coordinator_is_the_lowest_agent_id() {
        assert!(is_coordinator("0a", &["0b".into(), "ff".into()]));
        assert!(!is_coordinator("0b", &["0a".into()]));
        assert!(is_coordinator("0a", &[]));
        // The fingerprint follows the spec, not the generation.
        let one = job("j", Trigger::OnApply, None, "wc");
        assert_eq!(fingerprint(&one.spec), fingerprint(&one.clone().spec));
        assert_ne!(
            fingerprint(&one.spec),
            fingerprint(&job("j", Trigger::OnApply, None, "cat").spec)
        );
    }
}
