//! `git_status`: a work tree's branch, upstream, ahead/behind and changed files. Gate: the
//! repository resolves for reading beneath a root.

use std::path::PathBuf;
use std::sync::Arc;

use remote_agents_ops::operation::GitStatus;
use remote_agents_ops::{GitRepoArgs, Outcome};

use super::{Call, Run, blocking, repo, result};
use crate::node::Node;
use crate::policy::{Intent, Mode, Refusal};

impl Run for GitStatus {
    type Checked = PathBuf;

    fn check(node: &Node, mode: Mode, a: GitRepoArgs) -> Result<PathBuf, Refusal> {
        repo::resolve(node, mode, &a.repo, Intent::Read)
    }

    async fn execute(node: Arc<Node>, _call: Call, repo: PathBuf) -> Outcome {
        blocking(move || repo::with_gate(&node, |gate| result(crate::git::status(&repo, gate))))
            .await
    }
}
