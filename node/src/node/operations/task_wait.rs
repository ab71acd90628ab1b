//! `task_wait`: one task's record once it ends, or as it stands at the deadline (`wait_secs`,
//! default 600); the task keeps running past the deadline, and cancelling the call only stops
//! the waiting.

use std::sync::Arc;
use std::time::Duration;

use remote_agents_ops::operation::TaskWait;
use remote_agents_ops::{Outcome, TaskWaitArgs, timeout_from_secs};

use super::{Call, Run};
use crate::node::Node;
use crate::policy::{Mode, Refusal};

/// How long `task_wait` waits when `wait_secs` is absent.
const DEFAULT_WAIT: Duration = Duration::from_secs(600);

pub(in crate::node) struct Wait {
    args: TaskWaitArgs,
    wait: Duration,
}

impl Run for TaskWait {
    type Checked = Wait;

    fn check(_node: &Node, _mode: Mode, args: TaskWaitArgs) -> Result<Wait, Refusal> {
        let wait = match args.wait_secs {
            Some(secs) => {
                timeout_from_secs("wait_secs", secs).map_err(|reason| Refusal { reason })?
            }
            None => DEFAULT_WAIT,
        };
        Ok(Wait { args, wait })
    }

    async fn execute(node: Arc<Node>, call: Call, w: Wait) -> Outcome {
        let status = node
            .tasks()
            .wait(&w.args.task_id, w.wait, w.args.transcript, &call.ctx.cancel)
            .await;
        super::task_get::found(status, &w.args.task_id)
    }
}
