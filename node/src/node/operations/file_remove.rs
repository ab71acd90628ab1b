//! `file_remove`: removes one regular file, the second half of a move between hosts once the
//! copy arrived verified (the panel's "Move to"). Gate: the path resolves for writing beneath a
//! root (so `plan` and `disabled` refuse, and deny lists hold). It removes the file only while it
//! has the size and modification time the caller expects, and in `edit` mode first keeps it as
//! a backup (listed by `backups`), as `write_file` keeps what it replaces.

use std::sync::Arc;

use remote_agents_ops::operation::FileRemove;
use remote_agents_ops::{BackupRecord, FileRemoveArgs, FileRemoveResult, Outcome};

use super::{Call, Run, blocking, fs_result};
use crate::journal::now_ms;
use crate::node::Node;
use crate::policy::{Intent, Mode, Refusal, Resolved};

/// What the gate approved: the file, what it must still be, and whether to keep a backup.
pub(in crate::node) struct Remove {
    target: Resolved,
    expect_size: Option<u64>,
    expect_modified_ms: Option<u64>,
    backup: bool,
}

impl Run for FileRemove {
    type Checked = Remove;

    fn check(node: &Node, mode: Mode, a: FileRemoveArgs) -> Result<Remove, Refusal> {
        let target = node
            .policy()
            .resolve(mode, std::path::Path::new(&a.path), Intent::Write)?;
        Ok(Remove {
            target,
            expect_size: a.expect_size,
            expect_modified_ms: a.expect_modified_ms,
            backup: mode == Mode::Edit,
        })
    }

    async fn execute(node: Arc<Node>, call: Call, remove: Remove) -> Outcome {
        blocking(move || {
            let backups = node.settings.data_dir.value.join("backups");
            let removed = crate::fs::remove_file(
                &remove.target,
                remove.expect_size,
                remove.expect_modified_ms,
                remove.backup.then_some(backups.as_path()),
            );
            let (size, backup) = match removed {
                Ok(done) => done,
                Err(error) => return fs_result::<()>(Err(error)),
            };
            if let Some(path) = &backup {
                let record = BackupRecord {
                    seq: 0,
                    at_ms: now_ms(),
                    path: remove.target.absolute.display().to_string(),
                    backup_path: path.display().to_string(),
                    size,
                    request_id: call.request_id.clone(),
                };
                if let Err(e) = node.store.add_backup(record) {
                    // The file is gone and its copy is kept; only the index missed it.
                    tracing::warn!(
                        "file removed, backup kept at {}, not indexed: {e}",
                        path.display()
                    );
                }
            }
            Outcome::ok(&FileRemoveResult {
                path: remove.target.absolute.display().to_string(),
                size,
                backup: backup.map(|p| p.display().to_string()),
            })
        })
        .await
    }
}
