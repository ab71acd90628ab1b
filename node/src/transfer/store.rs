//! The records of the transfers a node coordinates, in its one redb store (table
//! `transfer_records`: transfer id → the JSON of its `TransferStatus`), so `transfer_get` and
//! `transfer_list` still answer after the node restarts.
//!
//! A record is written when its transfer starts and when it finishes, not on every progress
//! step (progress lives in memory; a commit per chunk would cost more than the chunk). A record
//! that still reads `running` when the node starts belongs to a transfer the node's stop cut
//! off: it is loaded as `interrupted`, never re-run. The destination kept what it verified, so
//! sending the same file again resumes there. The newest [`KEPT`] records are kept.

use redb::{ReadableTable, ReadableTableMetadata, TableDefinition};

use crate::journal::{Store, StoreError};
use remote_agents_ops::{TransferState, TransferStatus};

const RECORDS: TableDefinition<&str, &[u8]> = TableDefinition::new("transfer_records");

/// Records kept; older finished ones are dropped as new ones finish.
pub const KEPT: usize = 1000;

/// What an interrupted record's error says.
pub const INTERRUPTED: &str = "the coordinating node stopped while this transfer ran; the \
     destination kept what it verified: send the file again to resume from there";

fn db<E: Into<redb::Error>>(e: E) -> StoreError {
    StoreError::Db(Box::new(e.into()))
}

/// Every stored record, with those a stop cut off turned `interrupted` (and saved so). An
/// unreadable record (damaged, or another version's) is reported and skipped.
pub fn load(store: &Store) -> Result<Vec<TransferStatus>, StoreError> {
    let tx = store.database().begin_write().map_err(db)?;
    let mut records = Vec::new();
    {
        let mut table = tx.open_table(RECORDS).map_err(db)?;
        let mut cut_off = Vec::new();
        for item in table.iter().map_err(db)? {
            let (id, value) = item.map_err(db)?;
            match serde_json::from_slice::<TransferStatus>(value.value()) {
                Ok(mut status) => {
                    if status.state == TransferState::Running {
                        super::fail(
                            &mut status,
                            TransferState::Interrupted,
                            INTERRUPTED.to_string(),
                        );
                        cut_off.push(status.clone());
                    }
                    records.push(status);
                }
                Err(e) => tracing::error!(
                    transfer = %id.value(),
                    "stored transfer record is unreadable and skipped: {e}"
                ),
            }
        }
        for status in cut_off {
            table
                .insert(
                    status.transfer_id.as_str(),
                    serde_json::to_vec(&status)?.as_slice(),
                )
                .map_err(db)?;
        }
    }
    tx.commit().map_err(db)?;
    Ok(records)
}

/// Saves `status` (its start or its end), dropping the oldest finished records beyond [`KEPT`].
pub fn save(store: &Store, status: &TransferStatus) -> Result<(), StoreError> {
    let tx = store.database().begin_write().map_err(db)?;
    {
        let mut table = tx.open_table(RECORDS).map_err(db)?;
        table
            .insert(
                status.transfer_id.as_str(),
                serde_json::to_vec(status)?.as_slice(),
            )
            .map_err(db)?;
        let count = table.len().map_err(db)? as usize;
        if count > KEPT {
            let mut finished = Vec::new();
            for item in table.iter().map_err(db)? {
                let (id, value) = item.map_err(db)?;
                // Unreadable records go first (nothing can show them); running ones stay.
                match serde_json::from_slice::<TransferStatus>(value.value()) {
                    Ok(s) if s.state.is_finished() => {
                        finished.push((s.started_at_ms, id.value().to_string()))
                    }
                    Ok(_) => {}
                    Err(_) => finished.push((0, id.value().to_string())),
                }
            }
            finished.sort();
            for (_, id) in finished.into_iter().take(count - KEPT) {
                table.remove(id.as_str()).map_err(db)?;
            }
        }
    }
    tx.commit().map_err(db)?;
    Ok(())
}
