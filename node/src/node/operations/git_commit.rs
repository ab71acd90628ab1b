//! `git_commit`: stages the given paths (default every change) and commits. Gate: the
//! repository resolves for writing beneath a root.

use std::path::PathBuf;
use std::sync::Arc;

use remote_agents_ops::operation::GitCommit;
use remote_agents_ops::{GitCommitArgs, Outcome};

use super::{Call, Run, blocking, repo, result};
use crate::node::Node;
use crate::policy::{Intent, Mode, Refusal};

impl Run for GitCommit {
    /// The repository, with the message and the paths to stage.
    type Checked = (PathBuf, GitCommitArgs);

    fn check(
        node: &Node,
        mode: Mode,
        a: GitCommitArgs,
    ) -> Result<(PathBuf, GitCommitArgs), Refusal> {
        Ok((repo::resolve(node, mode, &a.repo, Intent::Write)?, a))
    }

    async fn execute(node: Arc<Node>, _call: Call, (repo, a): (PathBuf, GitCommitArgs)) -> Outcome {
        blocking(move || {
            repo::with_gate(&node, |gate| {
                result(crate::git::commit(
                    &repo,
                    &a.message,
                    a.paths.as_deref(),
                    gate,
                ))
            })
        })
        .await
    }
}
