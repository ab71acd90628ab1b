//! `git_push`: pushes a branch to a remote (a rejected update is an error). Gate: the
//! repository resolves for writing beneath a root.

use std::path::PathBuf;
use std::sync::Arc;

use remote_agents_ops::operation::GitPush;
use remote_agents_ops::{GitRemoteArgs, Outcome};

use super::{Call, Run, repo};
use crate::node::Node;
use crate::policy::{Mode, Refusal};

impl Run for GitPush {
    /// The repository, with the arguments that say what to push.
    type Checked = (PathBuf, GitRemoteArgs);

    fn check(node: &Node, mode: Mode, a: GitRemoteArgs) -> Result<Self::Checked, Refusal> {
        repo::check_remote(node, mode, a)
    }

    async fn execute(node: Arc<Node>, _call: Call, checked: Self::Checked) -> Outcome {
        repo::run_remote(node, checked, crate::git::push).await
    }
}
