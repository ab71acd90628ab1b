//! `file_stat`: the kind, size, permissions and modification time of a path. Gate: the path
//! resolves for reading beneath a root.

use std::path::PathBuf;
use std::sync::Arc;

use remote_agents_ops::operation::FileStat;
use remote_agents_ops::{Outcome, PathArgs};

use super::{Call, Run, blocking, fs_result};
use crate::node::Node;
use crate::policy::{Intent, Mode, Refusal, Resolved};

impl Run for FileStat {
    /// The resolved path and the path as requested (reported as such).
    type Checked = (Resolved, PathBuf);

    fn check(node: &Node, mode: Mode, a: PathArgs) -> Result<(Resolved, PathBuf), Refusal> {
        let requested = node.policy().absolute(std::path::Path::new(&a.path));
        Ok((
            node.policy().resolve(mode, &requested, Intent::Read)?,
            requested,
        ))
    }

    async fn execute(
        _node: Arc<Node>,
        _call: Call,
        (target, requested): (Resolved, PathBuf),
    ) -> Outcome {
        blocking(move || fs_result(crate::fs::file_stat(&target, &requested))).await
    }
}
