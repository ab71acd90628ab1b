//! Each operation as a type: its name, its arguments, what it answers with, what it changes,
//! what it needs an operator to be allowed, and the `Request` variant that carries it — all from
//! one line of the `operations!` table below, which also writes the `Request` enum and its
//! per-variant matches. A new operation is one line here plus its arguments and results (with
//! their `Summary`) in their own file. A caller that knows the operation gets its result typed
//! (`Client::call::<Exec>(peer, args)` in the node library) instead of decoding JSON itself.

use remote_agents_spec::{Capability, Toolset};
use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::*;

/// One operation a node performs.
pub trait Operation {
    /// Its name: the `op` tag on the wire and its MCP tool name.
    const NAME: &'static str;
    /// What running it changes.
    const EFFECT: Effect;
    /// What an operator must be allowed to do for it, once the fleet lists operators. `None`:
    /// authorised by other means (a bundle carries its own signature).
    const CAPABILITY: Option<Capability>;
    /// The MCP toolset it belongs to: a model's request for it runs only where the host's
    /// surface (`McpSurface`, `--toolsets`) includes that toolset.
    const TOOLSET: Toolset;
    /// Its arguments (also its MCP input schema).
    type Args: Serialize + DeserializeOwned + JsonSchema + Clone + Summary + Send + 'static;
    /// What an `ok` outcome carries.
    type Output: Serialize + DeserializeOwned + Send + 'static;
    /// The request that carries `args`.
    fn request(args: Self::Args) -> Request;
}

/// What running an operation changes, which decides how it is journaled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    /// It only reads: running it twice changes nothing.
    ReadOnly,
    /// It changes the node, but running it twice has the effect of running it once.
    Idempotent,
    /// It changes the node, and every run counts.
    Changes,
}

/// A short description of a request's arguments for the audit log (never file contents or
/// stdin).
pub trait Summary {
    /// `op` is the operation's name: one argument type may serve several operations.
    fn summary(&self, op: &str) -> String;
}

macro_rules! operations {
    ($(
        $(#[$doc:meta])*
        $op:ident = $name:literal ($args:ty) -> $output:ty, $effect:ident, $capability:expr, $toolset:ident;
    )*) => {
        $(
            $(#[$doc])*
            #[derive(Debug, Clone, Copy, PartialEq, Eq)]
            pub struct $op;

            impl Operation for $op {
                const NAME: &'static str = $name;
                const EFFECT: Effect = Effect::$effect;
                const CAPABILITY: Option<Capability> = $capability;
                const TOOLSET: Toolset = Toolset::$toolset;
                type Args = $args;
                type Output = $output;
                fn request(args: Self::Args) -> Request {
                    Request::$op(args)
                }
            }
        )*

        /// Every operation's name, in `Request`'s order.
        pub const NAMES: &[&str] = &[$($name),*];

        /// One operation. Adjacently tagged so that the argument structs keep rejecting unknown
        /// fields.
        #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
        #[serde(tag = "op", content = "args")]
        pub enum Request {
            $(
                $(#[$doc])*
                #[serde(rename = $name)]
                $op($args),
            )*
        }

        impl Request {
            /// The operation's name (also its MCP tool name).
            pub fn name(&self) -> &'static str {
                match self {
                    $(Request::$op(_) => $op::NAME,)*
                }
            }

            /// What running the operation changes.
            pub fn effect(&self) -> Effect {
                match self {
                    $(Request::$op(_) => $op::EFFECT,)*
                }
            }

            /// What an operator must be allowed to do for this request, once the fleet lists
            /// operators. `None`: authorised by other means (a bundle carries its own
            /// signature).
            pub fn capability(&self) -> Option<Capability> {
                match self {
                    $(Request::$op(_) => $op::CAPABILITY,)*
                }
            }

            /// The MCP toolset the operation belongs to.
            pub fn toolset(&self) -> Toolset {
                match self {
                    $(Request::$op(_) => $op::TOOLSET,)*
                }
            }

            /// The peer this request is addressed to, if not the local node.
            pub fn agent_id(&self) -> Option<&str> {
                match self {
                    $(Request::$op(args) => args.agent_id.as_deref(),)*
                }
            }

            /// The same request with `agent_id` cleared: what is sent to the peer it names, so
            /// that the peer runs it itself rather than forwarding it again.
            pub fn without_agent_id(mut self) -> Self {
                match &mut self {
                    $(Request::$op(args) => args.agent_id = None,)*
                }
                self
            }

            /// A short description for the audit log (never file contents or stdin).
            pub fn summary(&self) -> String {
                match self {
                    $(Request::$op(args) => args.summary($op::NAME),)*
                }
            }
        }
    };
}

// Capabilities: a bundle carries its own operator signature (`desired_offer`), and any member of
// the room may pass on the bundles it holds (`desired_get`: they are signed; only room members
// can read them). Offering a generation the node holds answers `current`, so an offer is
// idempotent.
operations! {
    /// Run a program.
    Exec = "exec" (ExecArgs) -> ExecResult, Changes, Some(Capability::Exec), Core;
    /// Read a file.
    ReadFile = "read_file" (ReadFileArgs) -> ReadFileResult, ReadOnly, Some(Capability::Read), Files;
    /// Write a file (the previous version kept as a backup in `edit` mode).
    WriteFile = "write_file" (WriteFileArgs) -> WriteFileResult, Changes, Some(Capability::Write), Files;
    /// Remove a file (kept as a backup in `edit` mode), only while it is as expected.
    FileRemove = "file_remove" (FileRemoveArgs) -> FileRemoveResult, Changes, Some(Capability::Write),
        Files;
    /// List a folder.
    ListDir = "list_dir" (PathArgs) -> ListDirResult, ReadOnly, Some(Capability::Read), Files;
    /// Stat a path.
    FileStat = "file_stat" (PathArgs) -> FileStatResult, ReadOnly, Some(Capability::Read), Files;
    /// Search file names and contents.
    FileSearch = "file_search" (FileSearchArgs) -> FileSearchResult, ReadOnly,
        Some(Capability::Read), Files;
    /// A bounded thumbnail of an image file.
    FileThumbnail = "file_thumbnail" (FileThumbnailArgs) -> FileThumbnailResult, ReadOnly,
        Some(Capability::Read), Files;
    /// A repository's status.
    GitStatus = "git_status" (GitRepoArgs) -> GitStatusResult, ReadOnly, Some(Capability::Read), Git;
    /// Pull a repository.
    GitPull = "git_pull" (GitRemoteArgs) -> GitActionResult, Changes, Some(Capability::Git), Git;
    /// Commit in a repository.
    GitCommit = "git_commit" (GitCommitArgs) -> GitActionResult, Changes, Some(Capability::Git), Git;
    /// Push a repository.
    GitPush = "git_push" (GitRemoteArgs) -> GitActionResult, Changes, Some(Capability::Git), Git;
    /// The node's info and facts.
    GetInfo = "get_info" (AgentArgs) -> InfoResult, ReadOnly, Some(Capability::Read), Core;
    /// Override the node's mode for a while.
    SetMode = "set_mode" (SetModeArgs) -> SetModeResult, Changes, Some(Capability::Admin), Core;
    /// The agents this node sees.
    ListAgents = "list_agents" (AgentArgs) -> ListAgentsResult, ReadOnly, Some(Capability::Read), Core;
    /// The backups writes kept.
    Backups = "backups" (BackupsArgs) -> BackupsResult, ReadOnly, Some(Capability::Read), Files;
    /// Add (or replace) an imperative schedule.
    ScheduleAdd = "schedule_add" (ScheduleAddArgs) -> ScheduleAddResult, Changes,
        Some(Capability::Schedule), Schedule;
    /// Remove an imperative schedule.
    ScheduleRemove = "schedule_remove" (ScheduleRemoveArgs) -> ScheduleRemoveResult, Changes,
        Some(Capability::Schedule), Schedule;
    /// The node's schedules and their recent runs.
    ScheduleList = "schedule_list" (ScheduleListArgs) -> ScheduleListResult, ReadOnly,
        Some(Capability::Read), Schedule;
    /// A signed desired-state bundle for this node to verify and apply.
    DesiredOffer = "desired_offer" (DesiredOfferArgs) -> DesiredOfferResult, Idempotent, None, Spec;
    /// This node's observed desired-state status.
    DesiredStatus = "desired_status" (AgentArgs) -> status::ObservedStatus, ReadOnly,
        Some(Capability::Read), Spec;
    /// A kept bundle (the applied one, or one by generation or revision), for peers that missed
    /// it and for `rollback`.
    DesiredGet = "desired_get" (DesiredGetArgs) -> bundle::SignedBundle, ReadOnly, None, Spec;
    /// The plan of spec files against the generation this node applied (nothing is applied).
    DesiredPlan = "desired_plan" (DesiredPlanArgs) -> DesiredPlanResult, ReadOnly,
        Some(Capability::Read), Spec;
    /// The generations this node accepted.
    DesiredHistory = "desired_history" (AgentArgs) -> Vec<bundle::HistoryEntry>, ReadOnly,
        Some(Capability::Read), Spec;
    /// Send a file from one host's path to another's (coordinated by this node).
    SendFile = "send_file" (SendFileArgs) -> TransferStatus, Changes, Some(Capability::Write), Transfer;
    /// One transfer's state, bytes done, rate, path in use and SHA-256 (optionally waiting).
    TransferGet = "transfer_get" (TransferGetArgs) -> TransferStatus, ReadOnly,
        Some(Capability::Read), Transfer;
    /// Stop a running transfer this node coordinates, at both ends.
    TransferCancel = "transfer_cancel" (TransferCancelArgs) -> TransferStatus, Changes,
        Some(Capability::Write), Transfer;
    /// The transfers this node coordinated.
    TransferList = "transfer_list" (TransferListArgs) -> TransferListResult, ReadOnly,
        Some(Capability::Read), Transfer;
    /// Open a file to be pulled by one destination host with a ticket (a send_file step).
    TransferSource = "transfer_source" (TransferSourceArgs) -> TransferSourceResult, ReadOnly,
        Some(Capability::Read), Transfer;
    /// Pull a file from a source host's ticket into a verified file (a send_file step).
    TransferReceive = "transfer_receive" (TransferReceiveArgs) -> TransferReceiveResult, Changes,
        Some(Capability::Write), Transfer;
    /// Hand a prompt to the host's own AI CLI (claude, opencode, codex), run under the host's
    /// mode and limits.
    TaskDispatch = "task_dispatch" (TaskDispatchArgs) -> TaskStatus, Changes,
        Some(Capability::Task), Tasks;
    /// One task's record: state, answer, turns, duration, cost, session id.
    TaskGet = "task_get" (TaskGetArgs) -> TaskStatus, ReadOnly, Some(Capability::Read), Tasks;
    /// One task's record once it ends, or at a deadline.
    TaskWait = "task_wait" (TaskWaitArgs) -> TaskStatus, ReadOnly, Some(Capability::Read), Tasks;
    /// The tasks this host ran, newest first.
    TaskList = "task_list" (TaskListArgs) -> TaskListResult, ReadOnly, Some(Capability::Read), Tasks;
    /// Stop a running task: its provider's process group is killed.
    TaskCancel = "task_cancel" (TaskCancelArgs) -> TaskStatus, Changes, Some(Capability::Task),
        Tasks;
    /// The host's local AI chats (Claude Code, opencode, Codex, Cline, Roo, Kilo, Zed), newest
    /// first, paged; read through the path policy.
    ChatList = "chat_list" (ChatListArgs) -> ChatListResult, ReadOnly, Some(Capability::Read),
        Tasks;
    /// One local AI chat's messages, paged and capped in bytes.
    ChatGet = "chat_get" (ChatGetArgs) -> ChatGetResult, ReadOnly, Some(Capability::Read), Tasks;
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
        assert_eq!(NAMES.len(), 37);
        let mut unique = NAMES.to_vec();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), NAMES.len());
    }
}
