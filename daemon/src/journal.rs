//! The node's embedded store (one redb file, every commit `Durability::Immediate`): the request
//! journal (received → started → finished), the audit log, the backups index and small
//! key/value state such as the live mode override.
//!
//! The journal is what guarantees that a request is never run twice: a request is marked
//! `started` durably before its side effect, so after a crash it is reported `outcome_unknown`
//! instead of being repeated.

use std::path::Path;

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};

use crate::audit::AuditRecord;
use crate::ops::{BackupRecord, Outcome, now_ms};

const JOURNAL: TableDefinition<&str, &[u8]> = TableDefinition::new("journal");
const AUDIT: TableDefinition<u64, &[u8]> = TableDefinition::new("audit");
const BACKUPS: TableDefinition<u64, &[u8]> = TableDefinition::new("backups");
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");

/// Errors of the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store database error")]
    Db(#[from] Box<redb::Error>),
    #[error("the store at {0} is in use by another remote-agents process (is the node running?)")]
    Locked(String),
    #[error("corrupt store record")]
    Json(#[from] serde_json::Error),
}

fn db<E: Into<redb::Error>>(e: E) -> StoreError {
    StoreError::Db(Box::new(e.into()))
}

/// Where a journaled request is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
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
}

/// The store; cheap to share behind an `Arc`.
pub struct Store {
    db: Database,
}

impl Store {
    /// Opens (or creates) `store.redb` in `data_dir` and turns requests a crash interrupted
    /// after they started into `outcome_unknown`.
    pub fn open(data_dir: &Path) -> Result<Self, StoreError> {
        let path = data_dir.join("store.redb");
        let db = Database::create(&path).map_err(|e| match e {
            redb::DatabaseError::DatabaseAlreadyOpen => {
                StoreError::Locked(path.display().to_string())
            }
            other => db(other),
        })?;
        let store = Store { db };
        store.init_tables()?;
        store.recover()?;
        Ok(store)
    }

    fn init_tables(&self) -> Result<(), StoreError> {
        let tx = self.db.begin_write().map_err(db)?;
        tx.open_table(JOURNAL).map_err(db)?;
        tx.open_table(AUDIT).map_err(db)?;
        tx.open_table(BACKUPS).map_err(db)?;
        tx.open_table(META).map_err(db)?;
        tx.commit().map_err(db)?;
        Ok(())
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
            self.finish(&entry, audit)?;
        }
        Ok(())
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
        let bytes = serde_json::to_vec(entry)?;
        let tx = self.db.begin_write().map_err(db)?;
        {
            let mut table = tx.open_table(JOURNAL).map_err(db)?;
            table
                .insert(entry.id.as_str(), bytes.as_slice())
                .map_err(db)?;
        }
        tx.commit().map_err(db)?;
        Ok(())
    }

    /// Durably records a finished request and its audit record in one commit.
    pub fn finish(&self, entry: &JournalEntry, mut audit: AuditRecord) -> Result<(), StoreError> {
        let bytes = serde_json::to_vec(entry)?;
        let tx = self.db.begin_write().map_err(db)?;
        {
            let mut table = tx.open_table(JOURNAL).map_err(db)?;
            table
                .insert(entry.id.as_str(), bytes.as_slice())
                .map_err(db)?;
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
        let tx = self.db.begin_read().map_err(db)?;
        let table = tx.open_table(AUDIT).map_err(db)?;
        let mut records = Vec::new();
        for item in table.iter().map_err(db)?.rev().take(limit) {
            let (_, value) = item.map_err(db)?;
            records.push(serde_json::from_slice(value.value())?);
        }
        records.reverse();
        Ok(records)
    }

    /// Adds a backup to the index.
    pub fn add_backup(&self, mut record: BackupRecord) -> Result<BackupRecord, StoreError> {
        let tx = self.db.begin_write().map_err(db)?;
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

    /// Durably writes (or with `None` removes) a small JSON value.
    pub fn set_meta<T: Serialize>(&self, key: &str, value: Option<&T>) -> Result<(), StoreError> {
        let tx = self.db.begin_write().map_err(db)?;
        {
            let mut table = tx.open_table(META).map_err(db)?;
            match value {
                Some(v) => {
                    let bytes = serde_json::to_vec(v)?;
                    table.insert(key, bytes.as_slice()).map_err(db)?;
                }
                None => {
                    table.remove(key).map_err(db)?;
                }
            }
        }
        tx.commit().map_err(db)?;
        Ok(())
    }
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
            received_at_ms: 1,
            outcome: None,
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

    #[test]
    fn a_second_process_cannot_open_the_same_store() {
        let dir = tempfile::tempdir().unwrap();
        let _first = Store::open(dir.path()).unwrap();
        assert!(matches!(
            Store::open(dir.path()),
            Err(StoreError::Locked(_))
        ));
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
