//! Each operation as a type: its name, its arguments, what it answers with, and the `Request`
//! variant that carries it. A caller that knows the operation gets its result typed
//! (`Client::call::<Exec>(peer, args)` in the node library) instead of decoding JSON itself.

use schemars::JsonSchema;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::*;

/// One operation a node performs.
pub trait Operation {
    /// Its name: the `op` tag on the wire and its MCP tool name.
    const NAME: &'static str;
    /// Its arguments (also its MCP input schema).
    type Args: Serialize + DeserializeOwned + JsonSchema + Clone + Send + 'static;
    /// What an `ok` outcome carries.
    type Output: Serialize + DeserializeOwned + Send + 'static;
    /// The request that carries `args`.
    fn request(args: Self::Args) -> Request;
}

macro_rules! operations {
    ($($(#[$doc:meta])* $op:ident = $name:literal ($args:ty) -> $output:ty;)*) => {
        $(
            $(#[$doc])*
            #[derive(Debug, Clone, Copy, PartialEq, Eq)]
            pub struct $op;

            impl Operation for $op {
                const NAME: &'static str = $name;
                type Args = $args;
                type Output = $output;
                fn request(args: Self::Args) -> Request {
                    Request::$op(args)
                }
            }
        )*

        /// Every operation's name, in `Request`'s order.
        pub const NAMES: &[&str] = &[$($name),*];
    };
}

operations! {
    /// Run a program.
    Exec = "exec" (ExecArgs) -> ExecResult;
    /// Read a file.
    ReadFile = "read_file" (ReadFileArgs) -> ReadFileResult;
    /// Write a file (the previous version kept as a backup in `edit` mode).
    WriteFile = "write_file" (WriteFileArgs) -> WriteFileResult;
    /// List a folder.
    ListDir = "list_dir" (PathArgs) -> ListDirResult;
    /// Stat a path.
    FileStat = "file_stat" (PathArgs) -> FileStatResult;
    /// Search file names and contents.
    FileSearch = "file_search" (FileSearchArgs) -> FileSearchResult;
    /// A repository's status.
    GitStatus = "git_status" (GitRepoArgs) -> GitStatusResult;
    /// Pull a repository.
    GitPull = "git_pull" (GitRemoteArgs) -> GitActionResult;
    /// Commit in a repository.
    GitCommit = "git_commit" (GitCommitArgs) -> GitActionResult;
    /// Push a repository.
    GitPush = "git_push" (GitRemoteArgs) -> GitActionResult;
    /// The node's info and facts.
    GetInfo = "get_info" (AgentArgs) -> InfoResult;
    /// Override the node's mode for a while.
    SetMode = "set_mode" (SetModeArgs) -> SetModeResult;
    /// The agents this node sees.
    ListAgents = "list_agents" (AgentArgs) -> ListAgentsResult;
    /// The backups writes kept.
    Backups = "backups" (BackupsArgs) -> BackupsResult;
    /// Add (or replace) an imperative schedule.
    ScheduleAdd = "schedule_add" (ScheduleAddArgs) -> ScheduleAddResult;
    /// Remove an imperative schedule.
    ScheduleRemove = "schedule_remove" (ScheduleRemoveArgs) -> ScheduleRemoveResult;
    /// The node's schedules and their recent runs.
    ScheduleList = "schedule_list" (ScheduleListArgs) -> ScheduleListResult;
    /// Offer a signed desired-state bundle.
    DesiredOffer = "desired_offer" (DesiredOfferArgs) -> DesiredOfferResult;
    /// The node's observed desired-state status.
    DesiredStatus = "desired_status" (AgentArgs) -> status::ObservedStatus;
    /// A kept bundle: the applied one, or one by generation or revision.
    DesiredGet = "desired_get" (DesiredGetArgs) -> bundle::SignedBundle;
    /// The generations the node accepted.
    DesiredHistory = "desired_history" (AgentArgs) -> Vec<bundle::HistoryEntry>;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The typed operations and the request enum agree on every name.
    #[test]
    fn every_operation_names_its_request_variant() {
        let exec = Exec::request(serde_json::from_str(r#"{"argv": ["true"]}"#).unwrap());
        assert_eq!(exec.name(), Exec::NAME);
        let get = DesiredGet::request(serde_json::from_str("{}").unwrap());
        assert_eq!(get.name(), DesiredGet::NAME);
        assert_eq!(NAMES.len(), 21);
        let mut unique = NAMES.to_vec();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), NAMES.len());
    }
}
