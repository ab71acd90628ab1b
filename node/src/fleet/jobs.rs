//! Job history: every fan-out has an op id, and its full per-host report is kept in the issuing
//! node's store (its own table in the one redb database) so it can be listed and fetched later.
//! Runs of declared MapReduce jobs (`trigger: on-apply` or `cron`) are kept here too, by the
//! node that coordinated them, with what triggered them and their outcome.

use redb::{ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};

use super::FanoutReport;
use super::fold::fold;
use crate::journal::Store;

/// Op id → the JSON of a [`Job`]. Op ids start with a millisecond timestamp, so key order is
/// start order.
const JOBS: TableDefinition<&str, &[u8]> = TableDefinition::new("fleet_jobs");

/// One fan-out as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Job {
    pub op_id: String,
    /// The operation, e.g. `exec uptime`.
    pub summary: String,
    /// The target selector as given.
    pub target: String,
    pub started_ms: u64,
    pub finished_ms: u64,
    pub report: FanoutReport,
    /// What started a run of a declared job; none for a fan-out someone asked for. Left out
    /// of `job_get`'s output schema (not of its output): the default tool list a model reads
    /// has a size budget, and `job_list` already shows the trigger and the result line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(skip)]
    pub trigger: Option<JobTrigger>,
    /// A declared job's run: its one-line result (`running` until it ends) and its full
    /// outcome (the MapReduce report, or the error that stopped it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(skip)]
    pub outcome: Option<JobOutcome>,
}

/// What started a run of a declared `MapReduceJob`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobTrigger {
    /// `on-apply` or `cron`.
    pub kind: String,
    /// The job's `metadata.name`.
    pub job: String,
    /// The spec generation the run was made under (for `on-apply`, the one that changed it).
    pub generation: u64,
    /// The cron slot it ran for (milliseconds since the epoch), for `cron`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slot_ms: Option<u64>,
}

impl JobTrigger {
    /// E.g. `on-apply gen 3` or `cron slot 2026-12-02T10:05:00+00:00`.
    pub fn describe(&self) -> String {
        match self.slot_ms {
            Some(ms) => {
                let slot = i64::try_from(ms)
                    .ok()
                    .and_then(chrono::DateTime::<chrono::Utc>::from_timestamp_millis)
                    .map_or_else(|| ms.to_string(), |t| t.to_rfc3339());
                format!("{} slot {slot}", self.kind)
            }
            None => format!("{} gen {}", self.kind, self.generation),
        }
    }
}

/// How a declared job's run ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobOutcome {
    /// One line: `running`, `complete: 42`, `incomplete: 1 of 4 partitions failed`,
    /// `failed: ...`, `skipped: ...`.
    pub result: String,
    /// The MapReduce report of a run that started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub report: Option<serde_json::Value>,
}

/// A job's one-line view for listings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct JobSummary {
    pub op_id: String,
    pub summary: String,
    pub target: String,
    pub started_ms: u64,
    pub duration_ms: u64,
    pub hosts: usize,
    pub ok: usize,
    /// The folded summary line, e.g. "200 hosts, all ok; 200 identical".
    pub result: String,
    /// A declared job's run: `on-apply gen N` or `cron slot TIME`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trigger: Option<String>,
}

impl Job {
    pub fn summarize(&self) -> JobSummary {
        let folded = fold(&self.report.records);
        JobSummary {
            op_id: self.op_id.clone(),
            summary: self.summary.clone(),
            target: self.target.clone(),
            started_ms: self.started_ms,
            duration_ms: self.finished_ms.saturating_sub(self.started_ms),
            hosts: folded.hosts,
            ok: folded.ok,
            result: match &self.outcome {
                Some(outcome) => outcome.result.clone(),
                None => folded.summary,
            },
            trigger: self.trigger.as_ref().map(JobTrigger::describe),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum JobStoreError {
    #[error("job store: {0}")]
    Database(String),
    #[error("job store: stored job is unreadable")]
    Decode(#[from] serde_json::Error),
}

fn db(error: impl std::fmt::Display) -> JobStoreError {
    JobStoreError::Database(error.to_string())
}

/// A new op id: sortable by start time and unique.
pub fn new_op_id() -> String {
    format!(
        "{:013}-{}",
        crate::journal::now_ms(),
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    )
}

/// Stores a finished job (durably, before the caller reports it).
pub fn save(store: &Store, job: &Job) -> Result<(), JobStoreError> {
    let bytes = serde_json::to_vec(job)?;
    let tx = store.database().begin_write().map_err(db)?;
    {
        let mut table = tx.open_table(JOBS).map_err(db)?;
        table
            .insert(job.op_id.as_str(), bytes.as_slice())
            .map_err(db)?;
    }
    tx.commit().map_err(db)
}

/// A stored job by op id (a unique prefix of the op id is enough).
pub fn get(store: &Store, op_id: &str) -> Result<Option<Job>, JobStoreError> {
    let tx = store.database().begin_read().map_err(db)?;
    let table = match tx.open_table(JOBS) {
        Ok(table) => table,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
        Err(e) => return Err(db(e)),
    };
    if let Some(value) = table.get(op_id).map_err(db)? {
        return Ok(Some(serde_json::from_slice(value.value())?));
    }
    let mut matches = Vec::new();
    for item in table.range(op_id..).map_err(db)? {
        let (key, value) = item.map_err(db)?;
        if !key.value().starts_with(op_id) {
            break;
        }
        matches.push(value.value().to_vec());
    }
    match matches.as_slice() {
        [one] => Ok(Some(serde_json::from_slice(one)?)),
        _ => Ok(None),
    }
}

/// The newest `limit` jobs, newest first.
pub fn list(store: &Store, limit: usize) -> Result<Vec<JobSummary>, JobStoreError> {
    let tx = store.database().begin_read().map_err(db)?;
    let table = match tx.open_table(JOBS) {
        Ok(table) => table,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
        Err(e) => return Err(db(e)),
    };
    let mut jobs = Vec::new();
    for item in table.iter().map_err(db)?.rev().take(limit) {
        let (_, value) = item.map_err(db)?;
        let job: Job = serde_json::from_slice(value.value())?;
        jobs.push(job.summarize());
    }
    Ok(jobs)
}

/// How many stored jobs [`list_declared`] looks through at most.
const DECLARED_SCAN: usize = 10_000;

/// The newest `limit` runs of declared jobs (those with a trigger), newest first, among the
/// newest stored jobs.
pub fn list_declared(store: &Store, limit: usize) -> Result<Vec<JobSummary>, JobStoreError> {
    let tx = store.database().begin_read().map_err(db)?;
    let table = match tx.open_table(JOBS) {
        Ok(table) => table,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
        Err(e) => return Err(db(e)),
    };
    let mut runs = Vec::new();
    for item in table.iter().map_err(db)?.rev().take(DECLARED_SCAN) {
        let (_, value) = item.map_err(db)?;
        let job: Job = serde_json::from_slice(value.value())?;
        if job.trigger.is_some() {
            runs.push(job.summarize());
            if runs.len() == limit {
                break;
            }
        }
    }
    Ok(runs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fleet::{HostRecord, HostStatus};

    fn job(op_id: &str, hosts: usize) -> Job {
        Job {
            op_id: op_id.to_string(),
            summary: "exec true".into(),
            target: "all".into(),
            started_ms: 1,
            finished_ms: 5,
            report: FanoutReport {
                records: (0..hosts)
                    .map(|i| HostRecord::new(format!("h-{i}"), HostStatus::Ok))
                    .collect(),
                halted: false,
            },
            trigger: None,
            outcome: None,
        }
    }

    #[test]
    fn jobs_are_listed_newest_first_and_fetched_by_prefix() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        save(&store, &job("0000000000001-aaaa", 2)).unwrap();
        save(&store, &job("0000000000002-bbbb", 3)).unwrap();
        let listed = list(&store, 10).unwrap();
        assert_eq!(listed.len(), 2);
        assert_eq!(listed[0].op_id, "0000000000002-bbbb");
        assert_eq!(listed[0].result, "3 hosts, all ok; 3 identical");
        assert_eq!(
            get(&store, "0000000000001")
                .unwrap()
                .unwrap()
                .report
                .records
                .len(),
            2
        );
        // An ambiguous prefix finds nothing rather than a guess.
        assert_eq!(get(&store, "000000000000").unwrap(), None);
    }

    #[test]
    fn jobs_survive_reopening_the_store() {
        let dir = tempfile::tempdir().unwrap();
        save(
            &Store::open(dir.path()).unwrap(),
            &job("0000000000009-cccc", 1),
        )
        .unwrap();
        let reopened = Store::open(dir.path()).unwrap();
        assert!(get(&reopened, "0000000000009-cccc").unwrap().is_some());
    }
}
