//! One module per operation (mini-redis `cmd/`): each owns its arguments' gate check and its
//! execution, implemented as `Run` on the operation's marker type from
//! `remote_agents_ops::operation`. This module is the registry, the one `match` from a `Request`
//! to its operation; a new operation is its module plus one line in `registry!`. The node keeps
//! the pipeline around them: authorize → journal → check → execute → audit.
//!
//! The modules sit inside `node` rather than beside it so that `Node` and its operations reach
//! each other without a cycle between the crate's top-level modules.

use std::future::Future;
use std::sync::Arc;

use futures_util::future::BoxFuture;
use remote_agents_ops::operation::*;
use remote_agents_ops::{Outcome, Request};

use super::{CallContext, Node};
use crate::policy::{Mode, Refusal};

mod backups;
mod chat_get;
mod chat_list;
mod desired_get;
mod desired_history;
mod desired_offer;
mod desired_plan;
mod desired_status;
mod exec;
mod file_remove;
mod file_search;
mod file_stat;
mod file_thumbnail;
mod get_info;
mod git_commit;
mod git_pull;
mod git_push;
mod git_status;
mod list_agents;
mod list_dir;
mod read_file;
mod repo;
mod schedule_add;
mod schedule_list;
mod schedule_remove;
pub(crate) mod send_file;
mod set_mode;
mod task_cancel;
mod task_dispatch;
mod task_get;
mod task_list;
mod task_wait;
mod transfer_cancel;
mod transfer_get;
mod transfer_list;
mod transfer_receive;
mod transfer_source;
mod write_file;

/// What an execution knows of its request beyond what the gate approved.
pub(super) struct Call {
    pub request_id: String,
    /// Who asked, as journaled.
    pub caller: String,
    pub ctx: CallContext,
}

/// One operation's gate check and execution.
pub(super) trait Run: Operation {
    /// What the gate approved, ready to run.
    type Checked: Send + 'static;

    /// The gate: decides and resolves everything the execution needs, touching nothing.
    fn check(node: &Node, mode: Mode, args: Self::Args) -> Result<Self::Checked, Refusal>;

    /// Runs what the gate approved.
    fn execute(
        node: Arc<Node>,
        call: Call,
        checked: Self::Checked,
    ) -> impl Future<Output = Outcome> + Send + 'static;
}

/// A request the gate approved, with the execution of its operation.
pub(super) struct Prepared(Box<dyn FnOnce(Arc<Node>, Call) -> BoxFuture<'static, Outcome> + Send>);

impl Prepared {
    pub(super) async fn execute(self, node: Arc<Node>, call: Call) -> Outcome {
        (self.0)(node, call).await
    }
}

fn prepare<O: Run>(node: &Node, mode: Mode, args: O::Args) -> Result<Prepared, Refusal> {
    let checked = O::check(node, mode, args)?;
    Ok(Prepared(Box::new(move |node, call| {
        Box::pin(O::execute(node, call, checked))
    })))
}

macro_rules! registry {
    ($($op:ident,)*) => {
        /// The policy gate of `request`, by its operation.
        pub(super) fn check(node: &Node, mode: Mode, request: Request) -> Result<Prepared, Refusal> {
            match request {
                $(Request::$op(args) => prepare::<$op>(node, mode, args),)*
            }
        }

        /// Every operation the registry holds.
        #[cfg(test)]
        const REGISTERED: &[&str] = &[$(<$op as Operation>::NAME),*];
    };
}

registry! {
    Exec,
    ReadFile,
    WriteFile,
    FileRemove,
    ListDir,
    FileStat,
    FileSearch,
    FileThumbnail,
    GitStatus,
    GitPull,
    GitCommit,
    GitPush,
    GetInfo,
    SetMode,
    ListAgents,
    Backups,
    ScheduleAdd,
    ScheduleRemove,
    ScheduleList,
    DesiredOffer,
    DesiredStatus,
    DesiredGet,
    DesiredPlan,
    DesiredHistory,
    SendFile,
    TransferGet,
    TransferCancel,
    TransferList,
    TransferSource,
    TransferReceive,
    TaskDispatch,
    TaskGet,
    TaskWait,
    TaskList,
    TaskCancel,
    ChatList,
    ChatGet,
}

/// Runs `work` on a blocking thread: the file, git, store and schedule executions block.
async fn blocking(work: impl FnOnce() -> Outcome + Send + 'static) -> Outcome {
    match crate::runtime::spawn_blocking(work).await {
        Ok(outcome) => outcome,
        Err(e) => Outcome::failed(format!("executor panicked: {e}")),
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// A file executor's result: what it refused on what it opened (a hard link to a protected
/// file) is a refusal, like the gate's own.
fn fs_result<T: serde::Serialize>(r: Result<T, crate::fs::FsError>) -> Outcome {
    match r {
        Err(crate::fs::FsError::Refused(reason)) => Outcome::Refused { reason },
        other => result(other),
    }
}

fn result<T: serde::Serialize, E: std::error::Error>(r: Result<T, E>) -> Outcome {
    match r {
        Ok(v) => Outcome::ok(&v),
        Err(e) => Outcome::failed(error_chain(&e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A forgotten registry line fails here: every operation `ops` names has its module.
    #[test]
    fn every_operation_has_a_registry_entry() {
        let missing: Vec<&str> = NAMES
            .iter()
            .copied()
            .filter(|name| !REGISTERED.contains(name))
            .collect();
        assert!(missing.is_empty(), "not in the registry: {missing:?}");
        assert_eq!(REGISTERED.len(), NAMES.len());
    }
}
