//! The schedules' tables in the node's one redb store: imperative schedules (name → definition),
//! cursors (name → the latest slot already handled) and the run history ((name, slot) → run).
//!
//! A cursor and the history record of the slot it moves to are written in one durable commit
//! before a run starts, so after a restart the runner never reconsiders a slot it already took:
//! together with the journal's dedup by request id, a slot runs at most once.

use redb::{ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};

use crate::journal::{Store, StoreError};
use remote_agents_ops::{ExecResult, Outcome};
use remote_agents_ops::{RunOutcome, ScheduleRun, ScheduleSource};

const IMPERATIVE: TableDefinition<&str, &[u8]> = TableDefinition::new("schedule_imperative");
const CURSORS: TableDefinition<&str, &[u8]> = TableDefinition::new("schedule_cursors");
const RUNS: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("schedule_runs");

/// Runs kept per schedule; older ones are dropped as new ones are recorded.
pub const HISTORY_PER_SCHEDULE: usize = 100;
/// Bytes kept of the end of stdout and of stderr in a run record.
pub const OUTPUT_TAIL_BYTES: usize = 2048;

fn db<E: Into<redb::Error>>(e: E) -> StoreError {
    StoreError::Db(Box::new(e.into()))
}

/// An imperative schedule as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredImperative {
    pub name: String,
    pub cron: String,
    pub command: Vec<String>,
    pub shell: Option<String>,
    pub timeout_secs: Option<f64>,
    pub concurrency: remote_agents_spec::Concurrency,
    /// Who added it (the journal's caller, e.g. `peer:<agent id>`); runs carry this caller.
    pub issuer: String,
    pub added_at_ms: u64,
    pub expires_at_ms: Option<u64>,
}

/// Every slot at or before `at_ms` of schedule `name` has been handled (run, skipped, or it
/// predates the schedule).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor {
    pub source: ScheduleSource,
    pub at_ms: i64,
}

pub fn init(store: &Store) -> Result<(), StoreError> {
    let tx = store.database().begin_write().map_err(db)?;
    tx.open_table(IMPERATIVE).map_err(db)?;
    tx.open_table(CURSORS).map_err(db)?;
    tx.open_table(RUNS).map_err(db)?;
    tx.commit().map_err(db)?;
    Ok(())
}

pub fn imperative(store: &Store) -> Result<Vec<StoredImperative>, StoreError> {
    let tx = store.database().begin_read().map_err(db)?;
    let table = tx.open_table(IMPERATIVE).map_err(db)?;
    let mut out = Vec::new();
    for item in table.iter().map_err(db)? {
        let (name, value) = item.map_err(db)?;
        // One unreadable record (another version's, or damaged) is reported and skipped: it
        // must not keep the node's other schedules (or the node) from starting.
        match serde_json::from_slice(value.value()) {
            Ok(stored) => out.push(stored),
            Err(e) => tracing::error!(
                schedule = %name.value(),
                "stored schedule is unreadable and skipped (schedule_remove it): {e}"
            ),
        }
    }
    Ok(out)
}

/// Stores raw bytes as the imperative schedule `name`: what a damaged record, or one written
/// by another version, looks like.
#[cfg(test)]
pub fn put_raw_imperative(store: &Store, name: &str, bytes: &[u8]) -> Result<(), StoreError> {
    let tx = store.database().begin_write().map_err(db)?;
    tx.open_table(IMPERATIVE)
        .map_err(db)?
        .insert(name, bytes)
        .map_err(db)?;
    tx.commit().map_err(db)?;
    Ok(())
}

/// Stores an imperative schedule; a schedule new under this name starts its cursor at
/// `now_ms`, so nothing before it is caught up.
pub fn put_imperative(
    store: &Store,
    schedule: &StoredImperative,
    now_ms: i64,
) -> Result<bool, StoreError> {
    let bytes = serde_json::to_vec(schedule)?;
    let tx = store.database().begin_write().map_err(db)?;
    let replaced;
    {
        let mut table = tx.open_table(IMPERATIVE).map_err(db)?;
        replaced = table
            .insert(schedule.name.as_str(), bytes.as_slice())
            .map_err(db)?
            .is_some();
        let mut cursors = tx.open_table(CURSORS).map_err(db)?;
        // A cursor already there belongs to this name's previous definition (or to a spec
        // schedule of the same name): its slots are handled, so it stays.
        if cursors.get(schedule.name.as_str()).map_err(db)?.is_none() {
            let cursor = serde_json::to_vec(&Cursor {
                source: ScheduleSource::Imperative,
                at_ms: now_ms,
            })?;
            cursors
                .insert(schedule.name.as_str(), cursor.as_slice())
                .map_err(db)?;
        }
    }
    tx.commit().map_err(db)?;
    Ok(replaced)
}

/// Removes an imperative schedule and its cursor (unless a spec schedule of the same name owns
/// the cursor); its run history stays.
pub fn remove_imperative(store: &Store, name: &str) -> Result<bool, StoreError> {
    let tx = store.database().begin_write().map_err(db)?;
    let removed;
    {
        let mut table = tx.open_table(IMPERATIVE).map_err(db)?;
        removed = table.remove(name).map_err(db)?.is_some();
        let mut cursors = tx.open_table(CURSORS).map_err(db)?;
        let owned = match cursors.get(name).map_err(db)? {
            Some(value) => {
                serde_json::from_slice::<Cursor>(value.value())?.source
                    == ScheduleSource::Imperative
            }
            None => false,
        };
        if removed && owned {
            cursors.remove(name).map_err(db)?;
        }
    }
    tx.commit().map_err(db)?;
    Ok(removed)
}

pub fn cursor(store: &Store, name: &str) -> Result<Option<Cursor>, StoreError> {
    let tx = store.database().begin_read().map_err(db)?;
    let table = tx.open_table(CURSORS).map_err(db)?;
    match table.get(name).map_err(db)? {
        Some(value) => Ok(Some(serde_json::from_slice(value.value())?)),
        None => Ok(None),
    }
}

/// Starts a cursor at `at_ms` unless the name has one: a schedule counts its slots from the
/// moment it was defined on this node, not from when the runner first looked.
pub fn init_cursor(
    store: &Store,
    name: &str,
    source: ScheduleSource,
    at_ms: i64,
) -> Result<(), StoreError> {
    let bytes = serde_json::to_vec(&Cursor { source, at_ms })?;
    let tx = store.database().begin_write().map_err(db)?;
    {
        let mut table = tx.open_table(CURSORS).map_err(db)?;
        if table.get(name).map_err(db)?.is_none() {
            table.insert(name, bytes.as_slice()).map_err(db)?;
        }
    }
    tx.commit().map_err(db)?;
    Ok(())
}

pub fn set_cursor(store: &Store, name: &str, cursor: Cursor) -> Result<(), StoreError> {
    let bytes = serde_json::to_vec(&cursor)?;
    let tx = store.database().begin_write().map_err(db)?;
    tx.open_table(CURSORS)
        .map_err(db)?
        .insert(name, bytes.as_slice())
        .map_err(db)?;
    tx.commit().map_err(db)?;
    Ok(())
}

/// Drops the cursors of spec schedules that are no longer declared (prune only what the spec
/// owns: imperative cursors go with their schedules).
pub fn prune_spec_cursors(
    store: &Store,
    keep: &std::collections::BTreeSet<String>,
) -> Result<(), StoreError> {
    let tx = store.database().begin_write().map_err(db)?;
    {
        let mut table = tx.open_table(CURSORS).map_err(db)?;
        let mut stale = Vec::new();
        for item in table.iter().map_err(db)? {
            let (key, value) = item.map_err(db)?;
            let cursor: Cursor = serde_json::from_slice(value.value())?;
            if cursor.source == ScheduleSource::Spec && !keep.contains(key.value()) {
                stale.push(key.value().to_string());
            }
        }
        for name in stale {
            table.remove(name.as_str()).map_err(db)?;
        }
    }
    tx.commit().map_err(db)?;
    Ok(())
}

/// Whether the history already holds a record for this slot.
pub fn has_run(store: &Store, name: &str, slot: u64) -> Result<bool, StoreError> {
    let tx = store.database().begin_read().map_err(db)?;
    let table = tx.open_table(RUNS).map_err(db)?;
    Ok(table.get((name, slot)).map_err(db)?.is_some())
}

/// Writes a run record and moves the cursor in one commit, then trims the history.
pub fn record(store: &Store, run: &ScheduleRun, cursor: Cursor) -> Result<(), StoreError> {
    let bytes = serde_json::to_vec(run)?;
    let cursor_bytes = serde_json::to_vec(&cursor)?;
    let tx = store.database().begin_write().map_err(db)?;
    {
        let mut runs = tx.open_table(RUNS).map_err(db)?;
        runs.insert((run.schedule.as_str(), run.slot), bytes.as_slice())
            .map_err(db)?;
        let mut cursors = tx.open_table(CURSORS).map_err(db)?;
        cursors
            .insert(run.schedule.as_str(), cursor_bytes.as_slice())
            .map_err(db)?;
        let keys: Vec<u64> = runs
            .range((run.schedule.as_str(), 0)..=(run.schedule.as_str(), u64::MAX))
            .map_err(db)?
            .map(|item| item.map(|(k, _)| k.value().1))
            .collect::<Result<_, _>>()
            .map_err(db)?;
        if keys.len() > HISTORY_PER_SCHEDULE {
            for slot in &keys[..keys.len() - HISTORY_PER_SCHEDULE] {
                runs.remove((run.schedule.as_str(), *slot)).map_err(db)?;
            }
        }
    }
    tx.commit().map_err(db)?;
    Ok(())
}

/// Replaces a run record (a run finishing); the cursor is not touched.
pub fn update(store: &Store, run: &ScheduleRun) -> Result<(), StoreError> {
    let bytes = serde_json::to_vec(run)?;
    let tx = store.database().begin_write().map_err(db)?;
    tx.open_table(RUNS)
        .map_err(db)?
        .insert((run.schedule.as_str(), run.slot), bytes.as_slice())
        .map_err(db)?;
    tx.commit().map_err(db)?;
    Ok(())
}

/// The newest `limit` runs of a schedule, newest first.
pub fn runs(store: &Store, name: &str, limit: usize) -> Result<Vec<ScheduleRun>, StoreError> {
    let tx = store.database().begin_read().map_err(db)?;
    let table = tx.open_table(RUNS).map_err(db)?;
    let mut out = Vec::new();
    for item in table
        .range((name, 0)..=(name, u64::MAX))
        .map_err(db)?
        .rev()
        .take(limit)
    {
        let (_, value) = item.map_err(db)?;
        out.push(serde_json::from_slice(value.value())?);
    }
    Ok(out)
}

/// After a restart: runs recorded as running are settled from the journal, which knows whether
/// each one finished, was interrupted (`outcome_unknown`) or never started.
pub fn recover(store: &Store, now_ms: u64) -> Result<(), StoreError> {
    let unsettled: Vec<ScheduleRun> = {
        let tx = store.database().begin_read().map_err(db)?;
        let table = tx.open_table(RUNS).map_err(db)?;
        let mut found = Vec::new();
        for item in table.iter().map_err(db)? {
            let (_, value) = item.map_err(db)?;
            let run: ScheduleRun = serde_json::from_slice(value.value())?;
            if run.outcome == RunOutcome::Running {
                found.push(run);
            }
        }
        found
    };
    for mut run in unsettled {
        let journaled = match &run.request_id {
            Some(id) => store.lookup(id)?.and_then(|entry| entry.outcome),
            None => None,
        };
        match journaled {
            Some(outcome) => settle(&mut run, &outcome, now_ms),
            None => {
                run.outcome = RunOutcome::Failed;
                run.finished_ms = Some(now_ms);
                run.detail = Some("the node stopped before this run started; nothing ran".into());
            }
        }
        update(store, &run)?;
    }
    Ok(())
}

/// Fills a run record from the journal's outcome of its request.
pub fn settle(run: &mut ScheduleRun, outcome: &Outcome, finished_ms: u64) {
    run.finished_ms = Some(finished_ms);
    match outcome {
        Outcome::Ok { result } => match serde_json::from_value::<ExecResult>(result.clone()) {
            Ok(exec) => {
                run.exit_code = exec.exit_code;
                run.stdout_tail = tail(&exec.stdout, OUTPUT_TAIL_BYTES);
                run.stderr_tail = tail(&exec.stderr, OUTPUT_TAIL_BYTES);
                run.truncated = exec.truncated
                    || exec.stdout.len() > OUTPUT_TAIL_BYTES
                    || exec.stderr.len() > OUTPUT_TAIL_BYTES;
                run.outcome = if exec.timed_out {
                    RunOutcome::Timeout
                } else if exec.cancelled {
                    RunOutcome::Cancelled
                } else if exec.exit_code == Some(0) {
                    RunOutcome::Ok
                } else {
                    RunOutcome::Failed
                };
            }
            Err(e) => {
                run.outcome = RunOutcome::Failed;
                run.detail = Some(format!("malformed exec result: {e}"));
            }
        },
        Outcome::Refused { reason } => {
            run.outcome = RunOutcome::Refused;
            run.detail = Some(reason.clone());
        }
        Outcome::Failed { error } => {
            run.outcome = RunOutcome::Failed;
            run.detail = Some(error.clone());
        }
        Outcome::OutcomeUnknown { reason } => {
            run.outcome = RunOutcome::OutcomeUnknown;
            run.detail = Some(reason.clone());
        }
    }
}

/// The last `max` bytes of `text`, cut at a character boundary.
pub fn tail(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut start = text.len() - max;
    while !text.is_char_boundary(start) {
        start += 1;
    }
    text[start..].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tail_keeps_the_end_and_never_splits_a_character() {
        assert_eq!(tail("hello", 10), "hello");
        assert_eq!(tail("hello", 3), "llo");
        assert_eq!(tail("aé", 1), "");
        assert_eq!(tail("aéb", 2), "b");
    }

    #[test]
    fn history_is_bounded_per_schedule_and_listed_newest_first() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        init(&store).unwrap();
        for slot in 0..(HISTORY_PER_SCHEDULE as u64 + 5) {
            let run = ScheduleRun::skipped("a", ScheduleSource::Spec, "spec:1", slot, 1, "test");
            let cursor = Cursor {
                source: ScheduleSource::Spec,
                at_ms: slot as i64 * 1000,
            };
            record(&store, &run, cursor).unwrap();
        }
        record(
            &store,
            &ScheduleRun::skipped("b", ScheduleSource::Spec, "spec:1", 7, 1, "test"),
            Cursor {
                source: ScheduleSource::Spec,
                at_ms: 7000,
            },
        )
        .unwrap();
        let a = runs(&store, "a", 1000).unwrap();
        assert_eq!(a.len(), HISTORY_PER_SCHEDULE);
        assert_eq!(a[0].slot, HISTORY_PER_SCHEDULE as u64 + 4);
        assert_eq!(a.last().unwrap().slot, 5);
        assert_eq!(runs(&store, "b", 10).unwrap().len(), 1);
        assert_eq!(cursor(&store, "a").unwrap().unwrap().at_ms, 104_000);
    }
}
