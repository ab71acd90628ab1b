//! `git_pull`: fetches and fast-forwards a branch (never merges). Gate: the repository resolves
//! for writing beneath a root.

use std::path::PathBuf;
use std::sync::Arc;

use remote_agents_ops::operation::GitPull;
use remote_agents_ops::{GitRemoteArgs, Outcome};

use super::{Call, Run, repo};
use crate::node::Node;
use crate::policy::{Mode, Refusal};

impl Run for GitPull {
    /// The repository, with the arguments that say what to pull.
    type Checked = (PathBuf, GitRemoteArgs);

    fn check(node: &Node, mode: Mode, a: GitRemoteArgs) -> Result<Self::Checked, Refusal> {
        repo::check_remote(node, mode, a)
    }

    async fn execute(node: Arc<Node>, _call: Call, checked: Self::Checked) -> Outcome {
        repo::run_remote(node, checked, crate::git::pull).await
    }
}
