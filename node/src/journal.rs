//! The node's embedded store (one redb file, every commit `Durability::Immediate`): the request
//! journal (started → finished), the audit log, the backups index and small
//! key/value state such as the live mode override.
//!
//! The journal is what guarantees that a request is never run twice: a request is marked
//! `started` durably before its side effect, so after a crash it is reported `outcome_unknown`
//! instead of being repeated.
//!
//! Both the journal and the audit log are bounded (`Retention`): finished entries older than a
//! week, beyond the newest 50,000 or beyond 256 MiB of stored results are pruned, oldest first,
//! and the audit log keeps its newest 200,000 records. So a repeated request id is recognised
//! within that window (retries come seconds to minutes apart), not forever.

use std::path::Path;
use std::time::Duration;

use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};
use serde::{Deserialize, Serialize};

use crate::audit::AuditRecord;
use remote_agents_ops::{BackupRecord, Outcome};

const JOURNAL: TableDefinition<&str, &[u8]> = TableDefinition::new("journal");
const AUDIT: TableDefinition<u64, &[u8]> = TableDefinition::new("audit");
const BACKUPS: TableDefinition<u64, &[u8]> = TableDefinition::new("backups");
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
/// The journal's ids in the order they were first recorded, with when they were received, so
/// pruning walks oldest first without reading every entry.
const JOURNAL_ORDER: TableDefinition<u64, (u64, &str)> = TableDefinition::new("journal_order");

/// How much history the store keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Finished journal entries older than this are pruned.
    pub journal_max_age: Duration,
    /// At most this many journal entries are kept.
    pub journal_max_entries: u64,
    /// At most this many bytes of journal entries (their stored results) are kept.
    pub journal_max_bytes: u64,
    /// At most this many audit records are kept.
    pub audit_max_records: u64,
    /// Prune after this many finished requests (pruning also runs when the store opens).
    pub prune_every: u64,
}

impl Default for Retention {
    fn default() -> Self {
        Self {
            journal_max_age: Duration::from_secs(7 * 24 * 3600),
            journal_max_entries: 50_000,
            journal_max_bytes: 256 * 1024 * 1024,
            audit_max_records: 200_000,
            prune_every: 256,
        }
    }
}

/// What one pruning pass removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pruned {
    pub journal_entries: u64,
    pub journal_bytes: u64,
    pub audit_records: u64,
}

/// Errors of the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store database error")]
    Db(#[from] Box<redb::Error>),
    #[error("the store at {0} is in use by another remote-agents process (is the node running?)")]
    Locked(String),
    #[error("corrupt store record")]
    Json(#[from] serde_json::Error),
    #[error("{0}: no store here (has a node run with this data dir?)")]
    Missing(String),
}

fn db<E: Into<redb::Error>>(e: E) -> StoreError {
    StoreError::Db(Box::new(e.into()))
}

/// Where a journaled request is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    /// Accepted but not started. The node no longer commits this stage (it starts a request
    /// without awaiting anything in between); journals written by earlier versions have it.
    Received,
    Started,
    Finished,
}

/// One journaled request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JournalEntry {
    pub id: String,
    pub caller: String,
    pub op: String,
    pub summary: String,
    pub stage: Stage,
    pub received_at_ms: u64,
    pub outcome: Option<Outcome>,
    /// The file a write replaces (as the request named it): if the node stops mid-write, its
    /// temp file beside that file is removed at the next start (`take_interrupted_writes`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub write_target: Option<String>,
}

/// A write that rides along with the store's next commit (see [`Store::write_with_next_commit`]).
pub type CarriedWrite =
    Box<dyn FnOnce(&redb::WriteTransaction) -> Result<(), StoreError> + Send + 'static>;

/// The store; cheap to share behind an `Arc`.
pub struct Store {
    db: Database,
    retention: Retention,
    /// Finished requests since the last pruning pass.
    finished_since_prune: std::sync::atomic::AtomicU64,
    /// Writes waiting for the next commit of the store's own.
    carried: std::sync::Mutex<Vec<CarriedWrite>>,
}

/// The meta key listing the targets of writes a crash interrupted, until the node has removed
/// their temp files. Kept in the store, not in memory: whoever opens the store first after a
/// crash (the node, or `remote-agents audit`) recovers the journal, and only the node cleans.
const INTERRUPTED_WRITES_KEY: &str = "interrupted_writes";

/// The newest `limit` audit records of `database`, oldest first.
fn newest_audit(
    database: &impl ReadableDatabase,
    limit: usize,
) -> Result<Vec<AuditRecord>, StoreError> {
    let tx = database.begin_read().map_err(db)?;
    let table = tx.open_table(AUDIT).map_err(db)?;
    let mut records = Vec::new();
    for item in table.iter().map_err(db)?.rev().take(limit) {
        let (_, value) = item.map_err(db)?;
        records.push(serde_json::from_slice(value.value())?);
    }
    records.reverse();
    Ok(records)
}

impl Store {
    /// Opens (or creates) `store.redb` in `data_dir` and turns requests a crash interrupted
    /// after they started into `outcome_unknown`.
    pub fn open(data_dir: &Path) -> Result<Self, StoreError> {
        Self::open_with(data_dir, Retention::default())
    }

    /// `open` with explicit retention limits; prunes once before returning.
    pub fn open_with(data_dir: &Path, retention: Retention) -> Result<Self, StoreError> {
        let path = data_dir.join("store.redb");
        // One writer (this node); `remote-agents audit` may read beside it while it runs.
        let db = redb::Builder::new()
            .set_concurrency_mode(redb::ConcurrencyMode::SingleWriter)
            .create(&path)
            .map_err(|e| match e {
                redb::DatabaseError::DatabaseAlreadyOpen => {
                    StoreError::Locked(path.display().to_string())
                }
                other => db(other),
            })?;
        let store = Store {
            db,
            retention,
            finished_since_prune: std::sync::atomic::AtomicU64::new(0),
            carried: std::sync::Mutex::new(Vec::new()),
        };
        store.init_tables()?;
        store.recover()?;
        store.prune(now_ms())?;
        Ok(store)
    }

    /// Queues `write` to run inside the next write transaction the store commits of its own
    /// (a request's journal or audit record) rather than paying a commit of its own; it is
    /// durable once that commit is. For a write whose request commits before it is answered
    /// (a bundle adopted inside a request): a crash before then loses nothing anyone was told.
    /// Should that transaction fail, its error is the commit's, and the write is lost with it.
    pub fn write_with_next_commit(&self, write: CarriedWrite) {
        self.carried
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(write);
    }

    /// Begins a write transaction with the queued carried writes applied. The second value
    /// says whether it carries any: such a transaction must be committed, never aborted.
    fn begin_write(&self) -> Result<(redb::WriteTransaction, bool), StoreError> {
        let tx = self.db.begin_write().map_err(db)?;
        let carried = std::mem::take(&mut *self.carried.lock().unwrap_or_else(|e| e.into_inner()));
        let carries = !carried.is_empty();
        for write in carried {
            write(&tx)?;
        }
        Ok((tx, carries))
    }

    fn init_tables(&self) -> Result<(), StoreError> {
        let (tx, _) = self.begin_write()?;
        let journal = tx.open_table(JOURNAL).map_err(db)?;
        tx.open_table(AUDIT).map_err(db)?;
        tx.open_table(BACKUPS).map_err(db)?;
        tx.open_table(META).map_err(db)?;
        let mut order = tx.open_table(JOURNAL_ORDER).map_err(db)?;
        // Stores written before the order table existed: index their entries once, in the order
        // they were received.
        if order.is_empty().map_err(db)? && !journal.is_empty().map_err(db)? {
            let mut entries = Vec::new();
            for item in journal.iter().map_err(db)? {
                let (_, value) = item.map_err(db)?;
                let entry: JournalEntry = serde_json::from_slice(value.value())?;
                entries.push((entry.received_at_ms, entry.id));
            }
            entries.sort();
            for (seq, (received_at_ms, id)) in (1u64..).zip(&entries) {
                order
                    .insert(seq, (*received_at_ms, id.as_str()))
                    .map_err(db)?;
            }
        }
        drop((journal, order));
        tx.commit().map_err(db)?;
        Ok(())
    }

    /// Writes a journal entry inside `tx`, indexing its id the first time it is seen.
    fn put_entry(tx: &redb::WriteTransaction, entry: &JournalEntry) -> Result<(), StoreError> {
        let bytes = serde_json::to_vec(entry)?;
        let mut table = tx.open_table(JOURNAL).map_err(db)?;
        let existed = table
            .insert(entry.id.as_str(), bytes.as_slice())
            .map_err(db)?
            .is_some();
        if !existed {
            let mut order = tx.open_table(JOURNAL_ORDER).map_err(db)?;
            let next = order
                .last()
                .map_err(db)?
                .map(|(k, _)| k.value() + 1)
                .unwrap_or(1);
            order
                .insert(next, (entry.received_at_ms, entry.id.as_str()))
                .map_err(db)?;
        }
        Ok(())
    }

    /// Removes, oldest first, finished journal entries beyond the retention limits and audit
    /// records beyond their cap, in one durable commit. Entries not yet finished are never
    /// removed: pruning stops at the oldest of them.
    pub fn prune(&self, now_ms: u64) -> Result<Pruned, StoreError> {
        let limits = self.retention;
        let max_age_ms = u64::try_from(limits.journal_max_age.as_millis()).unwrap_or(u64::MAX);
        let mut pruned = Pruned::default();
        let (tx, _) = self.begin_write()?;
        {
            let mut journal = tx.open_table(JOURNAL).map_err(db)?;
            let mut order = tx.open_table(JOURNAL_ORDER).map_err(db)?;
            let mut count = order.len().map_err(db)?;
            let mut bytes: u64 = 0;
            for item in order.iter().map_err(db)? {
                let (_, value) = item.map_err(db)?;
                let (_, id) = value.value();
                if let Some(entry) = journal.get(id).map_err(db)? {
                    bytes += entry.value().len() as u64;
                }
            }
            loop {
                let Some((seq, received_at_ms, id)) = order
                    .first()
                    .map_err(db)?
                    .map(|(k, v)| (k.value(), v.value().0, v.value().1.to_string()))
                else {
                    break;
                };
                let too_old = now_ms.saturating_sub(received_at_ms) > max_age_ms;
                if !(too_old
                    || count > limits.journal_max_entries
                    || bytes > limits.journal_max_bytes)
                {
                    break;
                }
                let size = match journal.get(id.as_str()).map_err(db)? {
                    Some(value) => {
                        let entry: JournalEntry = serde_json::from_slice(value.value())?;
                        if entry.stage != Stage::Finished {
                            break;
                        }
                        value.value().len() as u64
                    }
                    None => 0,
                };
                journal.remove(id.as_str()).map_err(db)?;
                order.remove(seq).map_err(db)?;
                count -= 1;
                bytes = bytes.saturating_sub(size);
                pruned.journal_entries += 1;
                pruned.journal_bytes += size;
            }
            let mut audit = tx.open_table(AUDIT).map_err(db)?;
            let excess = audit
                .len()
                .map_err(db)?
                .saturating_sub(limits.audit_max_records);
            for _ in 0..excess {
                audit.pop_first().map_err(db)?;
                pruned.audit_records += 1;
            }
        }
        tx.commit().map_err(db)?;
        if pruned != Pruned::default() {
            tracing::debug!(?pruned, "pruned the journal and audit log");
        }
        Ok(pruned)
    }

    fn recover(&self) -> Result<(), StoreError> {
        let interrupted: Vec<JournalEntry> = {
            let tx = self.db.begin_read().map_err(db)?;
            let table = tx.open_table(JOURNAL).map_err(db)?;
            let mut found = Vec::new();
            for item in table.iter().map_err(db)? {
                let (_, value) = item.map_err(db)?;
                let entry: JournalEntry = serde_json::from_slice(value.value())?;
                if entry.stage != Stage::Finished {
                    found.push(entry);
                }
            }
            found
        };
        let writes: Vec<String> = interrupted
            .iter()
            .filter(|entry| entry.stage == Stage::Started)
            .filter_map(|entry| entry.write_target.clone())
            .collect();
        if !writes.is_empty() {
            let mut pending: Vec<String> =
                self.get_meta(INTERRUPTED_WRITES_KEY)?.unwrap_or_default();
            pending.extend(writes);
            self.set_meta(INTERRUPTED_WRITES_KEY, Some(&pending))?;
        }
        for mut entry in interrupted {
            let outcome = match entry.stage {
                Stage::Started => Outcome::OutcomeUnknown {
                    reason: "the node stopped (crash or kill) while this request was running; it \
                             may or may not have taken effect and will not be run again: check \
                             the target state before retrying with a new request"
                        .to_string(),
                },
                // Received but never started: nothing ran, so it is safe to say so.
                _ => Outcome::Failed {
                    error: "the node stopped before this request started; nothing ran".into(),
                },
            };
            let audit = AuditRecord {
                seq: 0,
                at_ms: now_ms(),
                request_id: entry.id.clone(),
                caller: entry.caller.clone(),
                op: entry.op.clone(),
                summary: entry.summary.clone(),
                decision: "recovered after restart".into(),
                result: outcome.label().into(),
                detail: None,
            };
            entry.stage = Stage::Finished;
            entry.outcome = Some(outcome);
            self.finish_unpruned(Some(&entry), audit)?;
        }
        Ok(())
    }

    /// The targets of writes a crash interrupted (their requests read `outcome_unknown`) whose
    /// temp files no one removed yet; the list is cleared, so the node calls this once it is
    /// ready to remove them.
    pub fn take_interrupted_writes(&self) -> Result<Vec<String>, StoreError> {
        let pending: Vec<String> = self.get_meta(INTERRUPTED_WRITES_KEY)?.unwrap_or_default();
        if !pending.is_empty() {
            self.set_meta::<Vec<String>>(INTERRUPTED_WRITES_KEY, None)?;
        }
        Ok(pending)
    }

    /// The underlying database, for modules that keep their own tables in the node's one store
    /// (e.g. `fleet::jobs`).
    pub fn database(&self) -> &Database {
        &self.db
    }

    /// The journal entry of a request id, if any.
    pub fn lookup(&self, id: &str) -> Result<Option<JournalEntry>, StoreError> {
        let tx = self.db.begin_read().map_err(db)?;
        let table = tx.open_table(JOURNAL).map_err(db)?;
        match table.get(id).map_err(db)? {
            Some(value) => Ok(Some(serde_json::from_slice(value.value())?)),
            None => Ok(None),
        }
    }

    /// Durably records a stage (received or started) of a request.
    pub fn record(&self, entry: &JournalEntry) -> Result<(), StoreError> {
        let (tx, _) = self.begin_write()?;
        Self::put_entry(&tx, entry)?;
        tx.commit().map_err(db)?;
        Ok(())
    }

    /// Durably records a finished request and its audit record in one commit; every
    /// `prune_every` of them, prunes the journal and audit log.
    pub fn finish(&self, entry: &JournalEntry, audit: AuditRecord) -> Result<(), StoreError> {
        self.finish_with(Some(entry), audit)
    }

    /// Durably records the audit record of a finished idempotent request (a read, a
    /// desired-state offer). Those are not journaled: running one again has no effect to keep
    /// from happening twice, and a read's result (up to the output cap) would otherwise be
    /// copied into the store on every call.
    pub fn finish_audit_only(&self, audit: AuditRecord) -> Result<(), StoreError> {
        self.finish_with(None, audit)
    }

    fn finish_with(
        &self,
        entry: Option<&JournalEntry>,
        audit: AuditRecord,
    ) -> Result<(), StoreError> {
        self.finish_unpruned(entry, audit)?;
        let finished = 1 + self
            .finished_since_prune
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if finished >= self.retention.prune_every {
            self.finished_since_prune
                .store(0, std::sync::atomic::Ordering::Relaxed);
            self.prune(now_ms())?;
        }
        Ok(())
    }

    fn finish_unpruned(
        &self,
        entry: Option<&JournalEntry>,
        mut audit: AuditRecord,
    ) -> Result<(), StoreError> {
        let (tx, _) = self.begin_write()?;
        {
            if let Some(entry) = entry {
                Self::put_entry(&tx, entry)?;
            }
            let mut audit_table = tx.open_table(AUDIT).map_err(db)?;
            let next = audit_table
                .last()
                .map_err(db)?
                .map(|(k, _)| k.value() + 1)
                .unwrap_or(1);
            audit.seq = next;
            let audit_bytes = serde_json::to_vec(&audit)?;
            audit_table
                .insert(next, audit_bytes.as_slice())
                .map_err(db)?;
        }
        tx.commit().map_err(db)?;
        Ok(())
    }

    /// The newest `limit` audit records, oldest first.
    pub fn audit(&self, limit: usize) -> Result<Vec<AuditRecord>, StoreError> {
        newest_audit(&self.db, limit)
    }

    /// The newest `limit` audit records of the store in `data_dir`, read without writing, so
    /// while the node that owns it runs (it opens the store as its single writer).
    pub fn read_audit(data_dir: &Path, limit: usize) -> Result<Vec<AuditRecord>, StoreError> {
        let path = data_dir.join("store.redb");
        if !path.exists() {
            return Err(StoreError::Missing(path.display().to_string()));
        }
        let db = redb::Builder::new()
            .set_concurrency_mode(redb::ConcurrencyMode::SingleWriter)
            .open_read_only(&path)
            .map_err(db)?;
        newest_audit(&db, limit)
    }

    /// Adds a backup to the index.
    pub fn add_backup(&self, mut record: BackupRecord) -> Result<BackupRecord, StoreError> {
        let (tx, _) = self.begin_write()?;
        {
            let mut table = tx.open_table(BACKUPS).map_err(db)?;
            record.seq = table
                .last()
                .map_err(db)?
                .map(|(k, _)| k.value() + 1)
                .unwrap_or(1);
            let bytes = serde_json::to_vec(&record)?;
            table.insert(record.seq, bytes.as_slice()).map_err(db)?;
        }
        tx.commit().map_err(db)?;
        Ok(record)
    }

    /// Every backup, oldest first.
    pub fn backups(&self) -> Result<Vec<BackupRecord>, StoreError> {
        let tx = self.db.begin_read().map_err(db)?;
        let table = tx.open_table(BACKUPS).map_err(db)?;
        let mut records = Vec::new();
        for item in table.iter().map_err(db)? {
            let (_, value) = item.map_err(db)?;
            records.push(serde_json::from_slice(value.value())?);
        }
        Ok(records)
    }

    /// Reads a small JSON value from the key/value table.
    pub fn get_meta<T: for<'de> Deserialize<'de>>(
        &self,
        key: &str,
    ) -> Result<Option<T>, StoreError> {
        let tx = self.db.begin_read().map_err(db)?;
        let table = tx.open_table(META).map_err(db)?;
        match table.get(key).map_err(db)? {
            Some(value) => Ok(Some(serde_json::from_slice(value.value())?)),
            None => Ok(None),
        }
    }

    /// Durably writes (or with `None` removes) a small JSON value. Removing a key that is not
    /// there commits nothing (every apply clears the mode override, which is usually unset).
    pub fn set_meta<T: Serialize>(&self, key: &str, value: Option<&T>) -> Result<(), StoreError> {
        // Checked with a read: a write transaction here would have to commit any carried write
        // (an apply's bundle, waiting for its request's audit commit) as a commit of its own.
        if value.is_none() && self.get_meta::<serde_json::Value>(key)?.is_none() {
            return Ok(());
        }
        let (tx, carries) = self.begin_write()?;
        let changed = {
            let mut table = tx.open_table(META).map_err(db)?;
            match value {
                Some(v) => {
                    let bytes = serde_json::to_vec(v)?;
                    table.insert(key, bytes.as_slice()).map_err(db)?;
                    true
                }
                None => table.remove(key).map_err(db)?.is_some(),
            }
        };
        if changed || carries {
            tx.commit().map_err(db)?;
        } else {
            tx.abort().map_err(db)?;
        }
        Ok(())
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: &str, stage: Stage) -> JournalEntry {
        JournalEntry {
            id: id.into(),
            caller: "test".into(),
            op: "exec".into(),
            summary: "exec true".into(),
            stage,
            // Recent: stores prune entries older than a week when they open.
            received_at_ms: now_ms(),
            outcome: None,
            write_target: None,
        }
    }

    #[test]
    fn a_request_started_before_a_crash_is_outcome_unknown_after_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Store::open(dir.path()).unwrap();
            store.record(&entry("started", Stage::Started)).unwrap();
            store.record(&entry("received", Stage::Received)).unwrap();
        }
        let store = Store::open(dir.path()).unwrap();
        let started = store.lookup("started").unwrap().unwrap();
        assert_eq!(started.stage, Stage::Finished);
        assert!(matches!(
            started.outcome,
            Some(Outcome::OutcomeUnknown { .. })
        ));
        let received = store.lookup("received").unwrap().unwrap();
        assert!(matches!(received.outcome, Some(Outcome::Failed { .. })));
        let audit = store.audit(10).unwrap();
        assert_eq!(audit.len(), 2);
        assert!(audit.iter().any(|a| a.result == "outcome_unknown"));
    }

    /// A crash mid-write left its temp file forever: the store now remembers the target of
    /// every interrupted write until the node takes the list to clean up, even when another
    /// opener (`remote-agents audit`) recovered the journal first.
    #[test]
    fn interrupted_writes_are_kept_until_the_node_takes_them() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Store::open(dir.path()).unwrap();
            let write = JournalEntry {
                op: "write_file".into(),
                write_target: Some("/srv/app/config.toml".into()),
                ..entry("write", Stage::Started)
            };
            store.record(&write).unwrap();
            store.record(&entry("exec", Stage::Started)).unwrap();
        }
        // The first opener recovers the journal but does not clean.
        drop(Store::open(dir.path()).unwrap());
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(
            store.take_interrupted_writes().unwrap(),
            ["/srv/app/config.toml"]
        );
        assert!(store.take_interrupted_writes().unwrap().is_empty());
        drop(store);
        let store = Store::open(dir.path()).unwrap();
        assert!(store.take_interrupted_writes().unwrap().is_empty());
    }

    #[test]
    fn a_second_process_cannot_open_the_same_store() {
        let dir = tempfile::tempdir().unwrap();
        let _first = Store::open(dir.path()).unwrap();
        assert!(matches!(
            Store::open(dir.path()),
            Err(StoreError::Locked(_))
        ));
    }

    fn finished(id: &str, received_at_ms: u64, output: &str) -> JournalEntry {
        JournalEntry {
            received_at_ms,
            stage: Stage::Finished,
            outcome: Some(Outcome::Ok {
                result: serde_json::json!({ "stdout": output }),
            }),
            ..entry(id, Stage::Finished)
        }
    }

    fn audit_of(entry: &JournalEntry) -> AuditRecord {
        AuditRecord {
            seq: 0,
            at_ms: entry.received_at_ms,
            request_id: entry.id.clone(),
            caller: entry.caller.clone(),
            op: entry.op.clone(),
            summary: entry.summary.clone(),
            decision: "allowed".into(),
            result: "ok".into(),
            detail: None,
        }
    }

    /// Limits that never trigger, so each test sets only the one it checks.
    fn unlimited() -> Retention {
        Retention {
            journal_max_age: Duration::from_secs(u64::MAX / 2000),
            journal_max_entries: u64::MAX,
            journal_max_bytes: u64::MAX,
            audit_max_records: u64::MAX,
            prune_every: u64::MAX,
        }
    }

    const NOW: u64 = 1_000_000_000_000;

    fn finish_all(store: &Store, ids: &[&str]) {
        for (i, id) in ids.iter().enumerate() {
            let e = finished(id, NOW + i as u64, "out");
            store.finish(&e, audit_of(&e)).unwrap();
        }
    }

    fn kept(store: &Store, ids: &[&str]) -> Vec<String> {
        ids.iter()
            .filter(|id| store.lookup(id).unwrap().is_some())
            .map(|id| id.to_string())
            .collect()
    }

    #[test]
    fn the_audit_log_is_read_beside_the_store_s_writer_and_follows_its_commits() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            Store::read_audit(dir.path(), 10),
            Err(StoreError::Missing(_))
        ));
        let store = Store::open(dir.path()).unwrap();
        let first = finished("a", NOW, "out");
        store.finish(&first, audit_of(&first)).unwrap();
        // The node keeps its store open; a second process may still read it.
        let seen = Store::read_audit(dir.path(), 10).unwrap();
        assert_eq!(seen.len(), 1);
        assert_eq!(seen[0].request_id, "a");
        let second = finished("b", NOW, "out");
        store.finish(&second, audit_of(&second)).unwrap();
        let seen = Store::read_audit(dir.path(), 10).unwrap();
        let ids: Vec<&str> = seen.iter().map(|r| r.request_id.as_str()).collect();
        assert_eq!(ids, ["a", "b"]);
        // A second writer is still refused.
        assert!(matches!(
            Store::open(dir.path()),
            Err(StoreError::Locked(_))
        ));
    }

    #[test]
    fn a_carried_write_lands_with_the_next_commit_and_not_before() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store.write_with_next_commit(Box::new(|tx| {
            let mut table = tx.open_table(META).map_err(db)?;
            table.insert("carried", b"1".as_slice()).map_err(db)?;
            Ok(())
        }));
        assert_eq!(store.get_meta::<u32>("carried").unwrap(), None);
        // Clearing an absent key commits nothing, so it carries nothing either.
        store.set_meta::<u32>("absent", None).unwrap();
        assert_eq!(store.get_meta::<u32>("carried").unwrap(), None);
        let e = finished("a", NOW, "out");
        store.finish_audit_only(audit_of(&e)).unwrap();
        assert_eq!(store.get_meta::<u32>("carried").unwrap(), Some(1));
        drop(store);
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.get_meta::<u32>("carried").unwrap(), Some(1));
        assert_eq!(store.audit(10).unwrap().len(), 1);
    }

    #[test]
    fn pruning_keeps_the_newest_entries_up_to_the_count_limit() {
        let dir = tempfile::tempdir().unwrap();
        let retention = Retention {
            journal_max_entries: 3,
            ..unlimited()
        };
        let store = Store::open_with(dir.path(), retention).unwrap();
        let ids = ["a", "b", "c", "d", "e"];
        finish_all(&store, &ids);
        let pruned = store.prune(NOW).unwrap();
        assert_eq!(pruned.journal_entries, 2);
        assert_eq!(kept(&store, &ids), ["c", "d", "e"]);
        // Idempotent: a second pass removes nothing.
        assert_eq!(store.prune(NOW).unwrap(), Pruned::default());
    }

    #[test]
    fn pruning_removes_entries_older_than_the_age_limit() {
        let dir = tempfile::tempdir().unwrap();
        let retention = Retention {
            journal_max_age: Duration::from_secs(7 * 24 * 3600),
            ..unlimited()
        };
        let store = Store::open_with(dir.path(), retention).unwrap();
        let day = 24 * 3600 * 1000;
        for (id, at) in [("old", NOW - 8 * day), ("recent", NOW - day), ("new", NOW)] {
            let e = finished(id, at, "out");
            store.finish(&e, audit_of(&e)).unwrap();
        }
        assert_eq!(store.prune(NOW).unwrap().journal_entries, 1);
        assert_eq!(kept(&store, &["old", "recent", "new"]), ["recent", "new"]);
    }

    #[test]
    fn pruning_bounds_the_bytes_of_stored_results() {
        let dir = tempfile::tempdir().unwrap();
        let retention = Retention {
            journal_max_bytes: 3 * 1024,
            ..unlimited()
        };
        let store = Store::open_with(dir.path(), retention).unwrap();
        let big = "x".repeat(1000);
        for (i, id) in ["a", "b", "c", "d", "e"].iter().enumerate() {
            let e = finished(id, NOW + i as u64, &big);
            store.finish(&e, audit_of(&e)).unwrap();
        }
        let pruned = store.prune(NOW).unwrap();
        assert_eq!(pruned.journal_entries, 3, "{pruned:?}");
        assert!(pruned.journal_bytes > 3000);
        assert_eq!(kept(&store, &["a", "b", "c", "d", "e"]), ["d", "e"]);
    }

    #[test]
    fn a_request_still_running_is_never_pruned_and_holds_back_newer_ones() {
        let dir = tempfile::tempdir().unwrap();
        let retention = Retention {
            journal_max_entries: 1,
            ..unlimited()
        };
        let store = Store::open_with(dir.path(), retention).unwrap();
        let running = JournalEntry {
            received_at_ms: NOW - 1,
            ..entry("running", Stage::Started)
        };
        store.record(&running).unwrap();
        finish_all(&store, &["a", "b"]);
        assert_eq!(store.prune(NOW).unwrap().journal_entries, 0);
        assert_eq!(
            store.lookup("running").unwrap().unwrap().stage,
            Stage::Started
        );
        // Once it finishes, the oldest entries go.
        let done = JournalEntry {
            stage: Stage::Finished,
            outcome: Some(Outcome::Ok {
                result: serde_json::Value::Null,
            }),
            ..running
        };
        store.finish(&done, audit_of(&done)).unwrap();
        assert_eq!(store.prune(NOW).unwrap().journal_entries, 2);
        assert_eq!(kept(&store, &["running", "a", "b"]), ["b"]);
    }

    #[test]
    fn the_audit_log_keeps_its_newest_records_and_finish_prunes_on_its_own() {
        let dir = tempfile::tempdir().unwrap();
        let retention = Retention {
            journal_max_entries: 2,
            audit_max_records: 3,
            prune_every: 4,
            ..unlimited()
        };
        let store = Store::open_with(dir.path(), retention).unwrap();
        let ids = ["a", "b", "c", "d"];
        finish_all(&store, &ids);
        // The fourth finish ran a pruning pass without being asked.
        assert_eq!(kept(&store, &ids), ["c", "d"]);
        let audit: Vec<String> = store
            .audit(10)
            .unwrap()
            .into_iter()
            .map(|r| r.request_id)
            .collect();
        assert_eq!(audit, ["b", "c", "d"]);
    }

    #[test]
    fn a_store_written_before_the_order_index_is_indexed_and_pruned_on_open() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Store::open_with(dir.path(), unlimited()).unwrap();
            finish_all(&store, &["a", "b", "c"]);
            // What an older version left behind: the journal without its order table.
            let tx = store.database().begin_write().unwrap();
            tx.delete_table(JOURNAL_ORDER).unwrap();
            tx.commit().unwrap();
        }
        let retention = Retention {
            journal_max_entries: 1,
            ..unlimited()
        };
        let store = Store::open_with(dir.path(), retention).unwrap();
        assert_eq!(kept(&store, &["a", "b", "c"]), ["c"]);
    }

    #[test]
    fn meta_values_round_trip_and_can_be_removed() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store.set_meta("k", Some(&42u32)).unwrap();
        assert_eq!(store.get_meta::<u32>("k").unwrap(), Some(42));
        store.set_meta::<u32>("k", None).unwrap();
        assert_eq!(store.get_meta::<u32>("k").unwrap(), None);
    }
}
