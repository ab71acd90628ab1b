//! `write_file`: replaces a file's content atomically, keeping the previous version as a backup
//! in edit mode, and makes missing parent folders with `create_dirs`. Gate: the content decodes
//! and the file resolves for writing beneath a root, or, with `create_dirs`, the nearest existing
//! ancestor and every folder to make do (decided before any folder is made).

use std::path::PathBuf;
use std::sync::Arc;

use remote_agents_ops::operation::WriteFile;
use remote_agents_ops::{BackupRecord, Outcome, WriteFileArgs};

use super::{Call, Run, blocking, fs_result};
use crate::journal::now_ms;
use crate::node::Node;
use crate::policy::{Intent, Mode, Refusal, Resolved};

/// What the gate approved: where to write, what, and whether to keep a backup first.
pub(in crate::node) struct Write {
    target: WriteTarget,
    bytes: Vec<u8>,
    backup: bool,
}

enum WriteTarget {
    Existing(Resolved),
    /// Parent folders must be created first beneath `ancestor`.
    Create {
        ancestor: Resolved,
        missing: PathBuf,
        path: PathBuf,
    },
}

impl Run for WriteFile {
    type Checked = Write;

    fn check(node: &Node, mode: Mode, a: WriteFileArgs) -> Result<Write, Refusal> {
        let bytes = crate::fs::decode(&a.content, a.encoding).map_err(|e| Refusal {
            reason: e.to_string(),
        })?;
        let path = std::path::Path::new(&a.path);
        let target = match node.policy().resolve(mode, path, Intent::Write) {
            Ok(r) => WriteTarget::Existing(r),
            Err(_) if a.create_dirs => prepare_create(node, mode, path)?,
            Err(e) => return Err(e),
        };
        Ok(Write {
            target,
            bytes,
            backup: mode == Mode::Edit,
        })
    }

    async fn execute(node: Arc<Node>, call: Call, write: Write) -> Outcome {
        blocking(move || {
            let Write {
                target,
                bytes,
                backup,
            } = write;
            self::write(&node, &call.request_id, target, &bytes, backup)
        })
        .await
    }
}

/// For `create_dirs`: the nearest existing ancestor beneath a root, plus the folders to make;
/// the gate decides on the file and every folder before any is made.
fn prepare_create(node: &Node, mode: Mode, path: &std::path::Path) -> Result<WriteTarget, Refusal> {
    let (ancestor, missing) = node.policy().resolve_create(mode, path)?;
    Ok(WriteTarget::Create {
        ancestor,
        missing,
        path: node.policy().absolute(path),
    })
}

fn write(
    node: &Node,
    request_id: &str,
    target: WriteTarget,
    bytes: &[u8],
    backup: bool,
) -> Outcome {
    let mode = node.effective_mode();
    let target = match target {
        WriteTarget::Existing(r) => r,
        WriteTarget::Create {
            ancestor,
            missing,
            path,
        } => {
            if let Err(e) = crate::fs::create_dirs(&ancestor, &missing) {
                return Outcome::failed(format!("cannot create folders: {e}"));
            }
            match node.policy().resolve(mode, &path, Intent::Write) {
                Ok(r) => r,
                Err(refusal) => {
                    return Outcome::Refused {
                        reason: refusal.reason,
                    };
                }
            }
        }
    };
    let mut backup_path = None;
    if backup {
        match crate::fs::previous_content(&target) {
            Ok(Some(old)) => {
                let dir = node.settings.data_dir.value.join("backups");
                match crate::fs::write_backup(&dir, &target.absolute, &mut old.as_slice()) {
                    Ok(path) => {
                        let record = BackupRecord {
                            seq: 0,
                            at_ms: now_ms(),
                            path: target.absolute.display().to_string(),
                            backup_path: path.display().to_string(),
                            size: old.len() as u64,
                            request_id: request_id.to_string(),
                        };
                        if let Err(e) = node.store.add_backup(record) {
                            return Outcome::failed(format!(
                                "backup index unavailable, file not written: {e}"
                            ));
                        }
                        backup_path = Some(path);
                    }
                    Err(e) => {
                        return Outcome::failed(format!(
                            "cannot keep a backup, file not written: {e}"
                        ));
                    }
                }
            }
            Ok(None) => {}
            Err(e) => return fs_result::<()>(Err(e)),
        }
    }
    fs_result(
        crate::fs::write_atomic(&target, bytes)
            .map(|n| crate::fs::write_result(&target, n, backup_path)),
    )
}
