//! The gate the git operations share: the repository folder resolves beneath a root, and the
//! git executor checks every further location and file it touches against the policy. Also the
//! check and execution `git_pull` and `git_push` share (they differ only in the git call).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use remote_agents_ops::{GitActionResult, GitRemoteArgs, Outcome};

use super::{blocking, result};
use crate::git::{Gate, GitError};
use crate::node::Node;
use crate::policy::{Intent, Mode, Policy, Refusal};

/// The repository's folder, resolved for `intent` (reading for status, writing for the rest).
pub(super) fn resolve(
    node: &Node,
    mode: Mode,
    repo: &str,
    intent: Intent,
) -> Result<PathBuf, Refusal> {
    Ok(node
        .policy()
        .resolve(mode, std::path::Path::new(repo), intent)?
        .absolute)
}

/// Runs `work` with the gate a git executor checks every location and file against: git reads
/// and writes more than the folder the request named (the git folder, remotes, each file checked
/// out). The mode is the one in force when it runs.
pub(super) fn with_gate<T>(node: &Node, work: impl FnOnce(Gate<'_>) -> T) -> T {
    let policy: Arc<Policy> = node.policy();
    work(Gate {
        policy: &policy,
        mode: node.effective_mode(),
    })
}

/// A git call between the repository and a remote: `git::pull` or `git::push`.
pub(super) type RemoteAction =
    fn(&Path, Option<&str>, Option<&str>, Gate) -> Result<GitActionResult, GitError>;

/// The gate of `git_pull` and `git_push`: the repository resolves for writing beneath a root.
pub(super) fn check_remote(
    node: &Node,
    mode: Mode,
    a: GitRemoteArgs,
) -> Result<(PathBuf, GitRemoteArgs), Refusal> {
    Ok((resolve(node, mode, &a.repo, Intent::Write)?, a))
}

/// Runs `action` on the repository and the remote and branch `a` names.
pub(super) async fn run_remote(
    node: Arc<Node>,
    (repo, a): (PathBuf, GitRemoteArgs),
    action: RemoteAction,
) -> Outcome {
    blocking(move || {
        with_gate(&node, |gate| {
            result(action(
                &repo,
                a.remote.as_deref(),
                a.branch.as_deref(),
                gate,
            ))
        })
    })
    .await
}
