//! `backups`: the previous versions `write_file` kept, optionally only those of one path. Gate:
//! the mode allows reading.

use std::path::PathBuf;
use std::sync::Arc;

use remote_agents_ops::operation::Backups;
use remote_agents_ops::{BackupsArgs, BackupsResult, Outcome};

use super::{Call, Run, blocking};
use crate::node::Node;
use crate::policy::{Access, Mode, Policy, Refusal};

impl Run for Backups {
    /// The path whose backups to list, absolute; `None`: every path's.
    type Checked = Option<PathBuf>;

    fn check(node: &Node, mode: Mode, a: BackupsArgs) -> Result<Option<PathBuf>, Refusal> {
        Policy::check_mode(mode, Access::Read)?;
        Ok(a.path
            .map(|p| node.policy().absolute(std::path::Path::new(&p))))
    }

    async fn execute(node: Arc<Node>, _call: Call, path: Option<PathBuf>) -> Outcome {
        blocking(move || match node.store.backups() {
            Ok(all) => Outcome::ok(&BackupsResult {
                backups: all
                    .into_iter()
                    .filter(|b| {
                        path.as_ref()
                            .is_none_or(|p| std::path::Path::new(&b.path) == p)
                    })
                    .collect(),
            }),
            Err(e) => Outcome::failed(e),
        })
        .await
    }
}
