//! In-process tests of the runner on a manual clock: real nodes (`Node::open` on a temp data
//! dir, local-only), real processes, no real minutes.

use std::collections::BTreeMap;
use std::sync::{Arc, Weak};
use std::time::Duration;

use chrono::{DateTime, Local, TimeZone, Utc};
use remote_agents_spec::{Concurrency, ScheduleSpec};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::*;
use crate::config::{NodeFlags, Settings};
use crate::journal::Stage;
use crate::node::{CallContext, Node};
use remote_agents_ops::{Envelope, Outcome, Request};
use remote_agents_ops::{RunOutcome, ScheduleRemoveArgs};

const WAIT: Duration = Duration::from_secs(20);

fn utc(h: u32, m: u32, s: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 10, h, m, s).unwrap()
}

fn open(dir: &std::path::Path, mode: &str) -> Arc<Node> {
    let flags = NodeFlags {
        name: Some("sched-test".into()),
        data_dir: Some(dir.to_path_buf()),
        mode: Some(mode.into()),
        ..NodeFlags::default()
    };
    let settings = Settings::resolve(&flags, &BTreeMap::<String, String>::new()).unwrap();
    Node::open(settings).unwrap()
}

/// A node with its runner on a manual clock.
struct Running {
    node: Arc<Node>,
    clock: ManualClock,
    shutdown: CancellationToken,
    runner: JoinHandle<()>,
}

impl Running {
    fn start(dir: &std::path::Path, at: DateTime<Utc>) -> Self {
        let node = open(dir, "edit");
        let clock = ManualClock::new(at);
        let shutdown = CancellationToken::new();
        let runner = start(&node, Arc::new(clock.clone()), shutdown.clone());
        Running {
            node,
            clock,
            shutdown,
            runner,
        }
    }

    /// Moves the clock and waits until the runner has looked at the new time.
    async fn set(&self, at: DateTime<Utc>) {
        self.clock.set(at);
        let mut evaluated = self.node.schedules().evaluated();
        tokio::time::timeout(WAIT, evaluated.wait_for(|t| t.is_some_and(|t| t >= at)))
            .await
            .expect("the runner looked at the new time")
            .unwrap();
    }

    async fn call(&self, caller: &str, request: Request) -> Outcome {
        let envelope = Envelope {
            id: uuid::Uuid::new_v4().to_string(),
            caller: caller.into(),
            request,
            on_behalf_of_model: false,
            window_override: None,
        };
        self.node
            .handle_local(envelope, CallContext::default())
            .await
    }

    async fn add(&self, caller: &str, name: &str, cron: &str, command: &[&str]) {
        self.add_with(caller, name, cron, command, None, None).await;
    }

    async fn add_with(
        &self,
        caller: &str,
        name: &str,
        cron: &str,
        command: &[&str],
        concurrency: Option<Concurrency>,
        ttl_secs: Option<u64>,
    ) {
        let outcome = self
            .call(
                caller,
                Request::ScheduleAdd(ScheduleAddArgs {
                    agent_id: None,
                    name: name.into(),
                    cron: cron.into(),
                    command: command.iter().map(|s| s.to_string()).collect(),
                    shell: None,
                    timeout_secs: None,
                    concurrency,
                    ttl_secs,
                }),
            )
            .await;
        assert!(matches!(outcome, Outcome::Ok { .. }), "{outcome:?}");
        // The runner picks up the new schedule (and its cursor) on its next pass.
        self.set(self.clock.now()).await;
    }

    fn runs(&self, name: &str) -> Vec<ScheduleRun> {
        self.node.schedules().history(name, 100).unwrap()
    }

    /// Waits until `name` has a finished run of `slot` and returns it.
    async fn finished(&self, name: &str, slot: DateTime<Utc>) -> ScheduleRun {
        let slot = slot.timestamp() as u64;
        wait_for(|| {
            self.runs(name)
                .into_iter()
                .find(|r| r.slot == slot && r.outcome != RunOutcome::Running)
        })
        .await
    }

    /// Stops gracefully and waits until the node's store is closed.
    async fn stop(self) {
        self.shutdown.cancel();
        self.runner.await.unwrap();
        closed(self.node).await;
    }
}

/// Drops a node and waits until nothing holds it any more (so its store can be reopened).
async fn closed(node: Arc<Node>) {
    let weak: Weak<Node> = Arc::downgrade(&node);
    drop(node);
    wait_for(|| weak.upgrade().is_none().then_some(())).await;
}

async fn wait_for<T>(mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "condition not met within {WAIT:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn echo_slot() -> [&'static str; 3] {
    ["sh", "-c", "echo slot=$REMOTE_AGENTS_SCHEDULE_SLOT"]
}

#[tokio::test]
async fn an_imperative_schedule_fires_at_the_right_minutes_as_its_issuer() {
    let dir = tempfile::tempdir().unwrap();
    let node = Running::start(dir.path(), utc(9, 0, 30));
    node.add("peer:alice", "tick", "*/5 * * * *", &echo_slot())
        .await;

    node.set(utc(9, 4, 59)).await;
    assert!(node.runs("tick").is_empty(), "nothing is due before 09:05");

    node.set(utc(9, 5, 0)).await;
    let run = node.finished("tick", utc(9, 5, 0)).await;
    assert_eq!(run.outcome, RunOutcome::Ok, "{run:?}");
    assert_eq!(run.exit_code, Some(0));
    let slot = utc(9, 5, 0).timestamp();
    assert_eq!(run.stdout_tail, format!("slot={slot}\n"));
    assert_eq!(run.issuer, "peer:alice");
    assert_eq!(run.source, ScheduleSource::Imperative);
    let id = format!("schedule/tick/{slot}");
    assert_eq!(run.request_id.as_deref(), Some(id.as_str()));
    // The firing went through the journal as the issuer.
    let entry = node.node.store().lookup(&id).unwrap().unwrap();
    assert_eq!(entry.caller, "peer:alice");
    assert_eq!(entry.op, "exec");

    node.set(utc(9, 7, 0)).await;
    assert_eq!(node.runs("tick").len(), 1);
    node.set(utc(9, 10, 0)).await;
    node.finished("tick", utc(9, 10, 0)).await;
    let slots: Vec<u64> = node.runs("tick").iter().map(|r| r.slot).collect();
    assert_eq!(
        slots,
        [utc(9, 10, 0).timestamp() as u64, slot as u64],
        "newest first, one run per slot"
    );

    let list = node
        .node
        .schedules()
        .list(&ScheduleListArgs::default())
        .unwrap();
    assert_eq!(list.schedules.len(), 1);
    assert_eq!(list.schedules[0].source, ScheduleSource::Imperative);
    assert_eq!(
        list.schedules[0].next_run_ms,
        Some(utc(9, 15, 0).timestamp_millis() as u64)
    );
    assert_eq!(list.schedules[0].recent_runs.len(), 2);
    assert_eq!(list.drift.len(), 1, "{:?}", list.drift);
    assert!(list.drift[0].contains("`tick`") && list.drift[0].contains("peer:alice"));
    node.stop().await;
}

#[tokio::test]
async fn restarting_around_a_firing_never_runs_a_slot_twice() {
    let dir = tempfile::tempdir().unwrap();
    let ticks = dir.path().join("ticks");
    let line = format!("echo $REMOTE_AGENTS_SCHEDULE_SLOT >> {}", ticks.display());
    let command = ["sh", "-c", line.as_str()];
    let count = || {
        std::fs::read_to_string(&ticks)
            .unwrap_or_default()
            .lines()
            .count()
    };

    let node = Running::start(dir.path(), utc(9, 4, 0));
    node.add("peer:alice", "tick", "*/5 * * * *", &command)
        .await;
    node.set(utc(9, 5, 0)).await;
    node.finished("tick", utc(9, 5, 0)).await;
    node.stop().await;
    assert_eq!(count(), 1);

    // Back at the very slot that already ran.
    let node = Running::start(dir.path(), utc(9, 5, 0));
    node.set(utc(9, 5, 0)).await;
    node.set(utc(9, 5, 30)).await;
    assert_eq!(node.runs("tick").len(), 1);
    node.stop().await;

    // Back before it (the wall clock was stepped back), then through it again.
    let node = Running::start(dir.path(), utc(9, 4, 30));
    node.set(utc(9, 5, 0)).await;
    node.set(utc(9, 6, 0)).await;
    assert_eq!(node.runs("tick").len(), 1);
    assert_eq!(count(), 1, "the slot ran once across three starts");
    // Still alive: the next slot runs.
    node.set(utc(9, 10, 0)).await;
    node.finished("tick", utc(9, 10, 0)).await;
    assert_eq!(count(), 2);
    node.stop().await;
}

#[tokio::test]
async fn a_crash_mid_run_is_outcome_unknown_and_not_run_again() {
    let dir = tempfile::tempdir().unwrap();
    let node = Running::start(dir.path(), utc(9, 4, 0));
    node.add("peer:alice", "long", "*/5 * * * *", &["sleep", "30"])
        .await;
    node.set(utc(9, 5, 0)).await;
    let id = format!("schedule/long/{}", utc(9, 5, 0).timestamp());
    wait_for(|| {
        let entry = node.node.store().lookup(&id).unwrap()?;
        (entry.stage == Stage::Started).then_some(())
    })
    .await;
    // A crash: the runner and its runs vanish without recording anything more.
    node.runner.abort();
    assert!(node.runner.await.unwrap_err().is_cancelled());
    closed(node.node).await;

    let node = Running::start(dir.path(), utc(9, 5, 0));
    node.set(utc(9, 6, 0)).await;
    let runs = node.runs("long");
    assert_eq!(runs.len(), 1, "{runs:?}");
    assert_eq!(runs[0].outcome, RunOutcome::OutcomeUnknown, "{runs:?}");
    let entry = node.node.store().lookup(&id).unwrap().unwrap();
    assert!(matches!(
        entry.outcome,
        Some(Outcome::OutcomeUnknown { .. })
    ));
    node.stop().await;
}

#[tokio::test]
async fn after_downtime_only_the_latest_missed_slot_runs_and_the_rest_are_recorded_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let node = Running::start(dir.path(), utc(9, 0, 30));
    node.add("peer:alice", "tick", "*/5 * * * *", &echo_slot())
        .await;
    node.stop().await;

    // Down from 09:00:30 to 09:22: 09:05, 09:10 and 09:15 are skipped, 09:20 (2 min late,
    // within its 5 min period) runs.
    let node = Running::start(dir.path(), utc(9, 22, 0));
    node.set(utc(9, 22, 0)).await;
    let run = node.finished("tick", utc(9, 20, 0)).await;
    assert_eq!(run.outcome, RunOutcome::Ok);
    let runs = node.runs("tick");
    assert_eq!(runs.len(), 2, "{runs:?}");
    let skipped = &runs[1];
    assert_eq!(skipped.outcome, RunOutcome::Skipped);
    assert_eq!(skipped.slot, utc(9, 5, 0).timestamp() as u64);
    assert_eq!(skipped.skipped_slots, Some(3));
    node.stop().await;
}

#[tokio::test]
async fn a_daily_slot_missed_by_more_than_an_hour_is_skipped_not_run_late() {
    let local = |d: u32, h: u32| {
        Local
            .with_ymd_and_hms(2026, 1, d, h, 0, 0)
            .single()
            .unwrap()
            .with_timezone(&Utc)
    };
    let dir = tempfile::tempdir().unwrap();
    let node = Running::start(dir.path(), local(10, 12));
    node.add("peer:alice", "nightly", "0 3 * * *", &echo_slot())
        .await;
    node.stop().await;

    // Back at 05:00, two hours after 03:00: beyond the one-hour grace.
    let node = Running::start(dir.path(), local(11, 5));
    node.set(local(11, 5)).await;
    let runs = node.runs("nightly");
    assert_eq!(runs.len(), 1, "{runs:?}");
    assert_eq!(runs[0].outcome, RunOutcome::Skipped);
    assert_eq!(runs[0].slot, local(11, 3).timestamp() as u64);
    // The next night runs on time.
    node.set(local(12, 3)).await;
    assert_eq!(
        node.finished("nightly", local(12, 3)).await.outcome,
        RunOutcome::Ok
    );
    node.stop().await;
}

#[tokio::test]
async fn concurrency_forbid_skips_a_slot_while_the_previous_run_runs_and_replace_cancels_it() {
    let dir = tempfile::tempdir().unwrap();
    let node = Running::start(dir.path(), utc(9, 0, 30));
    node.add_with(
        "peer:alice",
        "forbid",
        "* * * * *",
        &["sleep", "30"],
        Some(Concurrency::Forbid),
        None,
    )
    .await;
    node.add_with(
        "peer:alice",
        "replace",
        "* * * * *",
        &["sleep", "30"],
        Some(Concurrency::Replace),
        None,
    )
    .await;
    node.set(utc(9, 1, 0)).await;
    node.set(utc(9, 2, 0)).await;

    let forbid = node.runs("forbid");
    assert_eq!(forbid.len(), 2, "{forbid:?}");
    assert_eq!(forbid[0].outcome, RunOutcome::Skipped);
    assert!(forbid[0].detail.as_deref().unwrap().contains("forbid"));
    assert_eq!(forbid[1].outcome, RunOutcome::Running);

    let first = node.finished("replace", utc(9, 1, 0)).await;
    assert_eq!(first.outcome, RunOutcome::Cancelled, "{first:?}");
    let second = node.runs("replace")[0].clone();
    assert_eq!(second.slot, utc(9, 2, 0).timestamp() as u64);
    assert_eq!(second.outcome, RunOutcome::Running);

    // A graceful stop cancels what still runs and records its end.
    node.shutdown.cancel();
    node.runner.await.unwrap();
    for name in ["forbid", "replace"] {
        let runs = node.node.schedules().history(name, 10).unwrap();
        assert!(
            runs.iter().all(|r| r.outcome != RunOutcome::Running),
            "{runs:?}"
        );
    }
}

#[tokio::test]
async fn declared_schedules_fire_as_the_spec_and_stop_when_removed_from_it() {
    let dir = tempfile::tempdir().unwrap();
    let node = Running::start(dir.path(), utc(9, 0, 30));
    let declared = vec![DeclaredSchedule {
        name: "report".into(),
        spec: ScheduleSpec {
            target: "all".into(),
            cron: "*/5 * * * *".into(),
            command: vec!["true".into()],
            timeout: Some("30s".into()),
            ..ScheduleSpec::default()
        },
        generation: 7,
    }];
    let schedules = node.node.schedules();
    schedules.set_declared(declared.clone()).unwrap();
    schedules.set_declared(declared.clone()).unwrap();
    node.set(utc(9, 0, 31)).await;
    assert!(
        schedules.drift().is_empty(),
        "declared schedules are not drift"
    );

    node.set(utc(9, 5, 0)).await;
    let run = node.finished("report", utc(9, 5, 0)).await;
    assert_eq!(run.outcome, RunOutcome::Ok);
    assert_eq!(run.issuer, "spec:7");
    assert_eq!(run.source, ScheduleSource::Spec);

    // Imperative edits cannot touch a declared schedule.
    let outcome = node
        .call(
            "peer:alice",
            Request::ScheduleRemove(ScheduleRemoveArgs {
                agent_id: None,
                name: "report".into(),
            }),
        )
        .await;
    assert!(
        matches!(&outcome, Outcome::Failed { error } if error.contains("declared")),
        "{outcome:?}"
    );

    schedules.set_declared(Vec::new()).unwrap();
    node.set(utc(9, 10, 0)).await;
    node.set(utc(9, 15, 0)).await;
    assert_eq!(
        node.runs("report").len(),
        1,
        "removed from the spec: no more runs"
    );
    node.stop().await;
}

#[tokio::test]
async fn removing_or_expiring_an_imperative_schedule_stops_it_and_clears_the_drift() {
    let dir = tempfile::tempdir().unwrap();
    let node = Running::start(dir.path(), utc(9, 0, 30));
    node.add("peer:alice", "tick", "*/5 * * * *", &["true"])
        .await;
    node.add_with(
        "peer:bob",
        "brief",
        "*/5 * * * *",
        &["true"],
        None,
        Some(600),
    )
    .await;
    node.set(utc(9, 5, 0)).await;
    node.finished("tick", utc(9, 5, 0)).await;
    node.finished("brief", utc(9, 5, 0)).await;
    assert_eq!(node.node.schedules().drift().len(), 2);

    let outcome = node
        .call(
            "peer:alice",
            Request::ScheduleRemove(ScheduleRemoveArgs {
                agent_id: None,
                name: "tick".into(),
            }),
        )
        .await;
    assert!(matches!(outcome, Outcome::Ok { .. }), "{outcome:?}");
    node.set(utc(9, 10, 0)).await;
    node.finished("brief", utc(9, 10, 0)).await;
    // 09:10:30 ends the ten-minute ttl of `brief` (added at 09:00:30).
    node.set(utc(9, 10, 30)).await;
    node.set(utc(9, 15, 0)).await;
    assert_eq!(node.runs("tick").len(), 1, "removed: no more runs");
    let brief = node.runs("brief");
    assert_eq!(
        brief.len(),
        2,
        "ran at 09:05 and 09:10, then expired: {brief:?}"
    );
    let list = node
        .node
        .schedules()
        .list(&ScheduleListArgs::default())
        .unwrap();
    assert!(list.schedules.is_empty(), "{list:?}");
    assert!(list.drift.is_empty(), "{:?}", list.drift);
    node.stop().await;
}

#[tokio::test]
async fn plan_mode_refuses_to_add_a_schedule() {
    let dir = tempfile::tempdir().unwrap();
    let node = open(dir.path(), "plan");
    let envelope = Envelope {
        id: "add-1".into(),
        caller: "peer:alice".into(),
        request: Request::ScheduleAdd(ScheduleAddArgs {
            agent_id: None,
            name: "tick".into(),
            cron: "* * * * *".into(),
            command: vec!["true".into()],
            shell: None,
            timeout_secs: None,
            concurrency: None,
            ttl_secs: None,
        }),
        on_behalf_of_model: false,
        window_override: None,
    };
    let outcome = node.handle_local(envelope, CallContext::default()).await;
    assert!(
        matches!(&outcome, Outcome::Refused { reason } if reason.contains("plan mode")),
        "{outcome:?}"
    );
    assert!(node.schedules().drift().is_empty());
}

#[test]
fn bad_schedule_arguments_are_refused_before_anything_is_stored() {
    let good = ScheduleAddArgs {
        agent_id: None,
        name: "ok".into(),
        cron: "*/5 * * * *".into(),
        command: vec!["true".into()],
        shell: None,
        timeout_secs: None,
        concurrency: None,
        ttl_secs: None,
    };
    assert!(validate_add(&good).is_ok());
    let cases = [
        ScheduleAddArgs {
            name: "a/b".into(),
            ..good.clone()
        },
        ScheduleAddArgs {
            cron: "every day".into(),
            ..good.clone()
        },
        ScheduleAddArgs {
            command: Vec::new(),
            ..good.clone()
        },
        ScheduleAddArgs {
            shell: Some("true".into()),
            ..good.clone()
        },
        ScheduleAddArgs {
            timeout_secs: Some(-1.0),
            ..good.clone()
        },
        // 1e300 was accepted, stored, and panicked the runner at its next pass.
        ScheduleAddArgs {
            timeout_secs: Some(1e300),
            ..good.clone()
        },
        ScheduleAddArgs {
            timeout_secs: Some(f64::NAN),
            ..good.clone()
        },
        // An expiry past what a timestamp holds wrapped to the past: a runner woken in a loop.
        ScheduleAddArgs {
            ttl_secs: Some(u64::MAX),
            ..good.clone()
        },
    ];
    for args in cases {
        assert!(validate_add(&args).is_err(), "{args:?}");
    }
}

/// The acceptance path in process: a `Schedule` in a signed bundle reaches each node
/// through the reconciler (`offer_bundle` → `set_declared`) and fires only where its target
/// selects the host.
#[tokio::test]
async fn a_schedule_declared_in_the_spec_runs_on_exactly_the_targeted_nodes() {
    use crate::desired::{BundleContent, OperatorKey, SignedBundle, SpecFile};
    let key = OperatorKey::generate();
    let bundle = |generation: u64, schedules: &str| {
        let text = format!(
            "apiVersion: remote-agents.dev/v1\nkind: Fleet\nmetadata:\n  name: lab\nspec:\n  \
             defaults:\n    mode: edit\n{schedules}"
        );
        let content = BundleContent {
            fleet: "lab".into(),
            generation,
            revision: format!("r{generation}"),
            issued_at_ms: generation,
            issuer: key.public(),
            files: vec![SpecFile {
                path: "fleet.yaml".into(),
                text,
            }],
            window_override: None,
            rollout: None,
        };
        SignedBundle::sign(&content, &key)
    };
    let report = "---\napiVersion: remote-agents.dev/v1\nkind: Schedule\nmetadata:\n  name: report\n\
                  spec:\n  target: tag:web\n  cron: \"*/5 * * * *\"\n  command: [\"true\"]\n";

    let clock = ManualClock::new(utc(9, 0, 30));
    let mut nodes = Vec::new();
    let dirs: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    for (dir, (name, tags)) in dirs
        .iter()
        .zip([("w1", "web"), ("w2", "web"), ("d1", "db")])
    {
        let flags = NodeFlags {
            name: Some(name.into()),
            tags: Some(tags.into()),
            data_dir: Some(dir.path().to_path_buf()),
            mode: Some("edit".into()),
            ..NodeFlags::default()
        };
        let settings = Settings::resolve(&flags, &BTreeMap::<String, String>::new()).unwrap();
        let node = Node::open(settings).unwrap();
        let shutdown = CancellationToken::new();
        let runner = start(&node, Arc::new(clock.clone()), shutdown.clone());
        nodes.push(Running {
            node,
            clock: clock.clone(),
            shutdown,
            runner,
        });
    }
    for node in &nodes {
        assert!(node.node.offer_bundle(&bundle(1, report), "test").is_ok());
    }
    for node in &nodes {
        node.set(utc(9, 5, 0)).await;
    }
    for node in &nodes[..2] {
        let run = node.finished("report", utc(9, 5, 0)).await;
        assert_eq!(
            (run.outcome, run.issuer.as_str()),
            (RunOutcome::Ok, "spec:1")
        );
    }
    assert!(nodes[2].runs("report").is_empty(), "db is not targeted");

    // Generation 2 drops the schedule: it stops everywhere.
    for node in &nodes {
        assert!(node.node.offer_bundle(&bundle(2, ""), "test").is_ok());
    }
    for node in &nodes {
        node.set(utc(9, 10, 0)).await;
    }
    for node in &nodes[..2] {
        assert_eq!(
            node.runs("report").len(),
            1,
            "removed from the spec: no more runs"
        );
    }
    for node in nodes {
        node.stop().await;
    }
}

/// `schedule_add timeout_secs=1e300` from any peer was stored, then panicked the runner at its
/// next pass: every schedule on the node stopped until a restart after removing it. The op
/// refuses it now, naming the field.
#[tokio::test]
async fn schedule_add_with_an_absurd_timeout_is_refused_through_the_op() {
    let dir = tempfile::tempdir().unwrap();
    let node = Running::start(dir.path(), utc(9, 0, 30));
    let outcome = node
        .call(
            "peer:mallory",
            Request::ScheduleAdd(ScheduleAddArgs {
                agent_id: None,
                name: "bomb".into(),
                cron: "* * * * *".into(),
                command: vec!["true".into()],
                shell: None,
                timeout_secs: Some(1e300),
                concurrency: None,
                ttl_secs: None,
            }),
        )
        .await;
    assert!(
        matches!(&outcome, Outcome::Refused { reason } if reason.contains("timeout_secs")),
        "{outcome:?}"
    );
    let list = node
        .node
        .schedules()
        .list(&ScheduleListArgs::default())
        .unwrap();
    assert!(list.schedules.is_empty(), "{list:?}");
    node.stop().await;
}

/// A bad schedule already in the store (written before the limits, or damaged) is skipped with
/// a reported reason; the node opens and its other schedules keep firing.
#[tokio::test]
async fn a_bad_persisted_schedule_does_not_stop_the_others() {
    let dir = tempfile::tempdir().unwrap();
    {
        let node = open(dir.path(), "edit");
        let bad = store::StoredImperative {
            name: "bomb".into(),
            cron: "* * * * *".into(),
            command: vec!["true".into()],
            shell: None,
            timeout_secs: Some(1e300),
            concurrency: Concurrency::Forbid,
            issuer: "peer:mallory".into(),
            added_at_ms: 0,
            expires_at_ms: None,
        };
        store::put_imperative(node.schedules().store(), &bad, 0).unwrap();
        store::put_raw_imperative(node.schedules().store(), "garbled", b"{not json").unwrap();
        closed(node).await;
    }
    let node = Running::start(dir.path(), utc(9, 0, 30));
    node.add("peer:alice", "tick", "* * * * *", &echo_slot())
        .await;
    node.set(utc(9, 1, 0)).await;
    let run = node.finished("tick", utc(9, 1, 0)).await;
    assert_eq!(run.outcome, RunOutcome::Ok, "{run:?}");
    assert!(node.runs("bomb").is_empty(), "the bad schedule never fires");
    let list = node
        .node
        .schedules()
        .list(&ScheduleListArgs::default())
        .unwrap();
    let bomb = list
        .schedules
        .iter()
        .find(|s| s.name == "bomb")
        .expect("the bad schedule is listed");
    assert!(!bomb.active);
    assert!(
        bomb.note
            .as_deref()
            .is_some_and(|n| n.contains("timeout_secs")),
        "{bomb:?}"
    );
    assert!(list.schedules.iter().all(|s| s.name != "garbled"));
    node.stop().await;
}
