//! `list_dir`: lists a folder's entries. Gate: the path resolves for reading beneath a root.

use std::sync::Arc;

use remote_agents_ops::operation::ListDir;
use remote_agents_ops::{Outcome, PathArgs};

use super::{Call, Run, blocking, fs_result};
use crate::node::Node;
use crate::policy::{Intent, Mode, Refusal, Resolved};

impl Run for ListDir {
    type Checked = Resolved;

    fn check(node: &Node, mode: Mode, a: PathArgs) -> Result<Resolved, Refusal> {
        node.policy()
            .resolve(mode, std::path::Path::new(&a.path), Intent::Read)
    }

    async fn execute(_node: Arc<Node>, _call: Call, target: Resolved) -> Outcome {
        blocking(move || fs_result(crate::fs::list_dir(&target))).await
    }
}
