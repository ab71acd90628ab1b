//! `task_get`: one task of this host — state, answer, turns, duration, cost, session id — with
//! the full transcript only when asked.

use std::sync::Arc;

use remote_agents_ops::operation::TaskGet;
use remote_agents_ops::{Outcome, TaskGetArgs};

use super::{Call, Run};
use crate::node::Node;
use crate::policy::{Mode, Refusal};

impl Run for TaskGet {
    type Checked = TaskGetArgs;

    fn check(_node: &Node, _mode: Mode, args: TaskGetArgs) -> Result<TaskGetArgs, Refusal> {
        Ok(args)
    }

    async fn execute(node: Arc<Node>, _call: Call, args: TaskGetArgs) -> Outcome {
        found(
            node.tasks().get(&args.task_id, args.transcript),
            &args.task_id,
        )
    }
}

/// A task's record as an outcome: an unknown id is a failure naming it.
pub(super) fn found(
    status: Result<Option<remote_agents_ops::TaskStatus>, String>,
    task_id: &str,
) -> Outcome {
    match status {
        Ok(Some(status)) => Outcome::ok(&status),
        Ok(None) => Outcome::failed(format!(
            "no task `{task_id}` on this host; task_list shows them"
        )),
        Err(e) => Outcome::failed(e),
    }
}
