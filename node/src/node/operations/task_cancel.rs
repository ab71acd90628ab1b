//! `task_cancel`: stops a running task of this host — its provider's process group is killed —
//! and answers with its record, which reads `cancelled` (the session id stays resumable).

use std::sync::Arc;

use remote_agents_ops::operation::TaskCancel;
use remote_agents_ops::{Outcome, TaskCancelArgs};

use super::{Call, Run};
use crate::node::Node;
use crate::policy::{Mode, Refusal};

impl Run for TaskCancel {
    type Checked = String;

    fn check(_node: &Node, _mode: Mode, args: TaskCancelArgs) -> Result<String, Refusal> {
        Ok(args.task_id)
    }

    async fn execute(node: Arc<Node>, _call: Call, task_id: String) -> Outcome {
        match node.tasks().cancel(&task_id).await {
            Ok(status) => Outcome::ok(&status),
            Err(e) => Outcome::failed(e),
        }
    }
}
