//! The git operations on a repository beneath the roots: status, pull, commit, push.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::operation::Summary;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GitRepoArgs {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<String>,
    /// Path of the repository's work tree.
    pub repo: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GitRemoteArgs {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<String>,
    pub repo: String,
    /// Remote name; default "origin".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote: Option<String>,
    /// Branch; default the current branch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub branch: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GitCommitArgs {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<String>,
    pub repo: String,
    pub message: String,
    /// Paths (relative to the work tree) to stage first; default: every change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paths: Option<Vec<String>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct GitFileStatus {
    pub path: String,
    /// e.g. "new", "modified", "deleted", "renamed", "untracked", "conflicted".
    pub status: String,
    pub staged: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct GitStatusResult {
    pub repo: String,
    pub branch: Option<String>,
    pub head: Option<String>,
    pub upstream: Option<String>,
    pub ahead: usize,
    pub behind: usize,
    pub files: Vec<GitFileStatus>,
    pub clean: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct GitActionResult {
    pub repo: String,
    /// What happened, e.g. "fast-forwarded main to 1a2b3c4", "already up to date".
    pub summary: String,
    pub head: Option<String>,
}

impl Summary for GitRepoArgs {
    fn summary(&self, op: &str) -> String {
        format!("{op} {}", self.repo)
    }
}

impl Summary for GitRemoteArgs {
    fn summary(&self, op: &str) -> String {
        format!("{op} {}", self.repo)
    }
}

impl Summary for GitCommitArgs {
    fn summary(&self, op: &str) -> String {
        format!("{op} {}: {}", self.repo, self.message)
    }
}
