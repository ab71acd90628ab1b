//! `task_list`: the tasks this host ran, newest first, without transcripts.

use std::sync::Arc;

use remote_agents_ops::operation::TaskList;
use remote_agents_ops::{Outcome, TaskListArgs, TaskListResult};

use super::{Call, Run};
use crate::node::Node;
use crate::policy::{Mode, Refusal};

impl Run for TaskList {
    type Checked = usize;

    fn check(_node: &Node, _mode: Mode, args: TaskListArgs) -> Result<usize, Refusal> {
        Ok(args.limit.unwrap_or(50))
    }

    async fn execute(node: Arc<Node>, _call: Call, limit: usize) -> Outcome {
        match node.tasks().list(limit) {
            Ok(tasks) => Outcome::ok(&TaskListResult { tasks }),
            Err(e) => Outcome::failed(e),
        }
    }
}
